//! The stored layout: every table's keys, values and writers, and every key of
//! [`Table::Meta`], in one place.
//!
//! Why one file: the bytes named here are the vault's storage format. A backup, a restore,
//! a migration between engines and a replica of another version all read them, so a
//! changed key or value is a format change (a migration and a new
//! [`meta::FORMAT_VERSION`] value), never a refactoring; reviewing one means reading this
//! file, not five. The `Meta` keys used to be constants spread over the modules that write
//! them; they are named here, and those modules use the names.
//!
//! Integers in keys are big-endian, so byte order is numeric order and a scan returns
//! sequences in order. Subject, client, purpose, proposal and ticket ids are their UTF-8
//! bytes. "HMAC" is a blind index (`crypto::blind_index`): a keyed hash, never the value.
//! Which tables carry a row tag is [`Table::is_authenticated`].

/// Declares [`Table`]: one variant per table with its stable name, [`Table::ALL`] in
/// declaration order (the position is the variant's index), and [`Table::name`].
macro_rules! tables {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// The tables of the vault. Names are stable: they are the sled tree names and the
        /// table names of other engines (`vault_<name>` in PostgreSQL). Each variant says
        /// its key layout, its value and who writes it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Table {
            $( $(#[$doc])* $variant, )*
        }

        impl Table {
            /// Every table, in a fixed order (engines may use the position as an index).
            pub const ALL: [Table; [$($name),*].len()] = [$(Table::$variant),*];

            /// The stable name of the table.
            pub fn name(self) -> &'static str {
                match self {
                    $( Table::$variant => $name, )*
                }
            }

            /// Position in [`Table::ALL`].
            pub fn position(self) -> usize {
                self as usize
            }
        }
    };
}

tables! {
    /// Store metadata. Key: one of the names in [`meta`]. Value: per key, see there.
    /// Written by the modules [`meta`] names for each key.
    Meta = "meta",
    /// Key epochs. Key: epoch number (u32). Value: the epoch's 256-bit key sealed by the
    /// root key, bound to the epoch number (`crypto::keyring`). Written when the store is
    /// created (epoch 1, `Vault::open`) and by rotation (`vault/keys.rs`), which also
    /// deletes epochs retired longer than the backup window.
    Keyring = "keyring",
    /// Subject data keys. Key: subject id. Value: epoch (u32) ‖ the data key sealed under
    /// that epoch, bound to the subject id. Written when a supporter is created
    /// (`vault/supporters.rs`), re-wrapped by rotation (`vault/keys.rs`), deleted by
    /// erasure (`vault/rights.rs`: without it the record cannot be opened).
    SubjectKeys = "subject_keys",
    /// Supporter records. Key: subject id. Value: the record sealed under the subject's
    /// data key (`supporter::record`). Written by upserts, imports and updates
    /// (`vault/supporters.rs`), deleted by erasure (`vault/rights.rs`).
    Records = "records",
    /// Blind index of emails. Key: HMAC of the normalized email. Value: subject id.
    /// Claimed (checked absent) when a supporter gets the email, moved or removed when it
    /// changes (`vault/supporters.rs`), removed by erasure (`vault/rights.rs`).
    EmailIndex = "index_email",
    /// Blind index of phones. Key: HMAC of the phone number in E.164. Value: subject id.
    /// Written as [`Table::EmailIndex`].
    PhoneIndex = "index_phone",
    /// The purpose registry. Key: purpose id. Value: JSON ([`crate::Purpose`]; no personal
    /// data). Written at start from the defaults and the config file
    /// (`purpose::registry_at_start`, `vault/admin.rs`), and by admin calls
    /// (`vault/admin.rs`, `vault/approval.rs`).
    Purposes = "purposes",
    /// Clients. Key: client id. Value: JSON (the client, its role, purposes and dates; no
    /// token). Written by registration and revocation (`vault/admin.rs`, the bootstrap
    /// admin included).
    Clients = "clients",
    /// The token index. Key: SHA-256 of a client's token. Value: client id. Written with
    /// the client (`vault/admin.rs`), deleted when its token is revoked or replaced.
    ClientTokens = "client_tokens",
    /// The consent ledger. Key: subject id ‖ 0x00 ‖ sequence (u64). Value: the consent
    /// event sealed under the subject's data key (`consent::ledger`). Appended (each key
    /// checked absent) with the write that changes consent (`Vault` supporter writes and
    /// consent calls), deleted by erasure (`vault/rights.rs`).
    Consent = "consent",
    /// Access-log entries. Key: sequence (u64). Value: entry bytes (ids only, no values;
    /// `audit::entry`). Written by the access log's writer (`journal/`) in the batch of
    /// the call it logs; deleted by retention pruning.
    AuditEntries = "audit_entries",
    /// Access-log leaf hashes. Key: sequence (u64). Value: the entry's SHA-256 leaf hash.
    /// Written with the entry (`journal/`); kept after pruning, for proofs.
    AuditLeaves = "audit_leaves",
    /// Signed checkpoints. Key: tree size (u64). Value: the signed checkpoint and the
    /// frontier at that size. Written by the access log's writer every N entries and on
    /// request (`journal/`); pruning deletes those before the anchor.
    AuditCheckpoints = "audit_checkpoints",
    /// Segment posting lists. Key: HMAC of a term (tag, postcode, consent, restricted,
    /// objected, collected-for) ‖ subject id. Value: empty. A prefix scan lists a term's
    /// subjects in id order. Written with the supporter writes that change a term
    /// (`postings.rs`), and once for the `collected` terms of older stores
    /// (`vault/search.rs`).
    Postings = "postings",
    /// The change feed. Key: access-log sequence (u64) ‖ index (u16). Value: change event
    /// (ids and kinds only, `changes.rs`). Written in the batch of the write it reports
    /// (`journal/`), pruned by the feed's retention (`vault/feed.rs`), and a subject's
    /// events deleted by erasure (`vault/rights.rs`).
    Changes = "changes",
    /// Subject state. Key: subject id. Value: restriction, objection and last contact,
    /// sealed under the subject's data key (`subject_state`). Written by supporter and
    /// rights writes (`vault/supporters.rs`), deleted by erasure (`vault/rights.rs`).
    SubjectState = "subject_state",
    /// Suppressed contact points. Key: HMAC of an email or phone. Value: JSON (when, why;
    /// no personal data). Written by an erasure that suppresses (`vault/rights.rs`); Upsert
    /// and Import of a suppressed contact point are refused.
    Suppressions = "suppressions",
    /// The erasure journal. Key: subject id. Value: erasure receipt (JSON, no personal
    /// data). Written by erasure (`vault/rights.rs`); a restore replays it
    /// (`vault/backup.rs`).
    Erasures = "erasures",
    /// Rights request tickets. Key: ticket id. Value: JSON (kind, dates, subject id; no
    /// personal data). Written by the ticket calls and by the rights action that answers a
    /// ticket (`vault/tickets.rs`).
    RightsRequests = "rights_requests",
    /// Witnesses' cosignatures of access-log checkpoints. Key: tree size (u64) ‖ 8 bytes
    /// naming origin and witness. Value: JSON (`audit::witness::StoredCosignature`).
    /// Written by `vault/witness.rs`.
    AuditCosignatures = "audit_cosignatures",
    /// Admin changes awaiting a second admin. Key: proposal id. Value: JSON
    /// ([`crate::proposal::Proposal`]: the change, who proposed it, its hash, its state; no
    /// personal data). Written by `vault/approval.rs`.
    Proposals = "proposals",
    /// Certificate fingerprints. Key: SHA-256 of a client certificate (32 bytes). Value:
    /// client id. A fingerprint is bound to at most one client, ever: the row is created in
    /// the batch that registers the client (`vault/admin.rs`), checked absent, and kept
    /// after a revocation.
    ClientCerts = "client_certs",
    /// The access log's per-subject index. Key: keyed hash of a subject id (16 bytes, see
    /// `journal::subjects`) ‖ sequence (u64). Value: empty. A prefix scan by the hash
    /// lists one subject's entries in log order. Written in the batch of the entry it
    /// points to (`journal/subjects.rs`), pruned with the log; a pointer only (every entry
    /// read through it is checked against its leaf and must name the subject), so not
    /// authenticated.
    AuditSubjects = "audit_subjects",
    /// Stored perfect subtrees of the access log's Merkle tree. Key: level (u8) ‖ index
    /// (u64). Value: the 32-byte hash of the `2^level` leaves from `index * 2^level` (level
    /// 4 and up: one row per 16 entries; lower levels are hashed from
    /// [`Table::AuditLeaves`] when needed). Written in the batch of the entry that completes
    /// the subtree (`journal/`) and kept after pruning, so proofs and roots read
    /// O(log n) rows (`audit::merkle::NodeSource`).
    AuditNodes = "audit_nodes",
}

/// The keys of [`Table::Meta`]: the only place their bytes are written down. Each says its
/// value and who writes it. Every row carries a row tag except
/// [`meta::MIGRATION_INCOMPLETE`].
pub mod meta {
    /// The store's format version. Value: `1`. Written once, checked absent, by
    /// `Vault::open` on a new store; a backup's manifest records it.
    pub const FORMAT_VERSION: &[u8] = b"format_version";

    /// Set once the bootstrap admin exists. Value: `1`. Written, checked absent, in the
    /// batch that creates the first admin (`Vault::create_bootstrap_admin`), so two daemons
    /// starting on one store create one.
    pub const BOOTSTRAP_ADMIN_CREATED: &[u8] = b"bootstrap_admin_created";

    /// The health probe's last write. Value: microseconds since the Unix epoch (i64,
    /// big-endian). Written by `Vault::probe_store` (`vault/health.rs`) to prove writes
    /// work; nothing reads it.
    pub const STORE_PROBE: &[u8] = b"store_probe";

    /// Set once every supporter has its `collected` posting terms. Value: `1`. Written by
    /// the one-time indexing at open (`vault/search.rs`).
    pub const COLLECTED_TERMS_INDEXED: &[u8] = b"postings_collected_for";

    /// Present while a restored store has not yet had the erasure journal replayed on it
    /// (its own journal proves nothing about erasures made since the backup). Value: when
    /// the restore ran (UTC, `YYYYMMDDTHHMMSS.ffffffZ`). Written and removed by the restore
    /// (`vault/backup.rs`).
    pub const RESTORE_PENDING: &[u8] = b"restore/pending";

    /// Present in a destination while a copy (`vaultctl migrate`, `vaultctl restore`) is
    /// filling it, and left behind if the copy is interrupted; the vault refuses to open a
    /// store holding it. Value: `1`. Written by `storage::copy` and
    /// [`crate::storage::PostgresStore::truncate_and_mark`]. The one `Meta` row without a
    /// row tag: copy tools write it into a bare engine.
    pub const MIGRATION_INCOMPLETE: &[u8] = b"migration_incomplete";

    /// Set once every row of an authenticated table carries its tag. Value: `1`. Written by
    /// the one-time upgrade at open (`storage::authenticated::authenticate_existing_rows`).
    pub const ROWS_AUTHENTICATED: &[u8] = b"rows_authenticated";

    /// The access log's Ed25519 signing key, sealed by the root key. Written once, checked
    /// absent, at the log's first open (`journal/`).
    pub const AUDIT_SIGNING_KEY: &[u8] = b"audit_signing_key";

    /// The oldest checkpoint kept after retention pruning, with its frontier: where the
    /// log starts. Written by pruning (`journal/`).
    pub const AUDIT_ANCHOR: &[u8] = b"audit_anchor";

    /// The signed retention cut that goes with the anchor (JSON, `audit::checkpoint`
    /// `SignedCut`). Written with the anchor (`journal/`).
    pub const AUDIT_CUT: &[u8] = b"audit_cut";

    /// Set once every stored subtree of the log is in [`super::Table::AuditNodes`]. Value:
    /// the node layout version (`1`). Written by the one-time build at open
    /// (`journal/`).
    pub const AUDIT_NODES_BUILT: &[u8] = b"audit_nodes_built";

    /// Set once every entry of the log has its rows in [`super::Table::AuditSubjects`].
    /// Value: the index layout version (`1`; another value means rebuild). Written by the
    /// one-time build at open (`journal/subjects.rs`).
    pub const AUDIT_SUBJECTS_INDEXED: &[u8] = b"audit_subjects_indexed";

    /// Prefix of the key epochs' dates: [`epoch`] gives the key of one epoch. Value: JSON
    /// (`created_at_us`, `retired_at_us`). Written with the epoch and at its retirement,
    /// deleted with it (`vault/keys.rs`).
    pub const EPOCH_PREFIX: &str = "epoch/";

    /// The key of `epoch`'s dates: [`EPOCH_PREFIX`] followed by the epoch number in
    /// decimal.
    pub fn epoch(epoch: u32) -> Vec<u8> {
        format!("{EPOCH_PREFIX}{epoch}").into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_positions_follow_all() {
        let mut names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        for (i, table) in Table::ALL.iter().enumerate() {
            assert_eq!(table.position(), i);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Table::ALL.len());
    }

    /// The stored bytes are the format: these are what stores written by earlier builds
    /// hold, and must stay so.
    #[test]
    fn stored_names_and_meta_keys_are_the_format() {
        assert_eq!(Table::EmailIndex.name(), "index_email");
        assert_eq!(Table::AuditNodes.name(), "audit_nodes");
        assert_eq!(meta::epoch(12), b"epoch/12");
        let keys: [&[u8]; 12] = [
            meta::FORMAT_VERSION,
            meta::BOOTSTRAP_ADMIN_CREATED,
            meta::STORE_PROBE,
            meta::COLLECTED_TERMS_INDEXED,
            meta::RESTORE_PENDING,
            meta::MIGRATION_INCOMPLETE,
            meta::ROWS_AUTHENTICATED,
            meta::AUDIT_SIGNING_KEY,
            meta::AUDIT_ANCHOR,
            meta::AUDIT_CUT,
            meta::AUDIT_NODES_BUILT,
            meta::AUDIT_SUBJECTS_INDEXED,
        ];
        // No key is a prefix of another, nor starts with the epoch prefix: a prefix scan
        // of one never returns another.
        for a in keys {
            assert!(!a.starts_with(meta::EPOCH_PREFIX.as_bytes()));
            for b in keys {
                assert!(a == b || !b.starts_with(a), "{a:?} / {b:?}");
            }
        }
    }
}
