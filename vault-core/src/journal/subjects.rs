//! The access log's per-subject index: which sequence numbers name a given subject, so that
//! Audit.Query for one person and Rights.Export read that person's entries and no others.
//!
//! Layout ([`Table::AuditSubjects`]): one empty row per (entry, distinct subject it names),
//! keyed `HMAC-SHA256(subject-index key, subject id)[..16] ‖ seq (u64 big-endian)`, so a
//! range scan over one hash yields the subject's sequence numbers in log order. The key is
//! derived from the root key (HKDF, its own label): the keys say no more than the log
//! already holds in clear (ids are in the entries), and a store reader cannot tell from a
//! key alone which id it is about. Rows are staged (`Core::stage`) into the batch of the
//! entry they point to, so an entry and its rows commit together; pruning deletes the rows
//! of the entries it deletes, in the same batch.
//!
//! Trust (DESIGN.md: a store writer is an attacker): a row is only a pointer. Every entry
//! read through it is fetched from the log, hashed against its leaf (the leaves are
//! authenticated rows) and must carry the sequence number and name the subject; anything
//! else is an integrity error. A pointer cannot therefore make a query return an entry that
//! is not the subject's, or a rewritten one. What a pointer cannot prove is absence: a store
//! writer who deletes rows hides entries from subject queries. [`Core::check_subject_index`]
//! finds that (every retained entry has its rows, every row points at an entry that names
//! its hash); the vault runs it with every Audit.Verify.
//!
//! Stores written before the index are indexed once at open ([`Core::index_subjects_once`]),
//! in pages, marked in `Meta` by [`meta::AUDIT_SUBJECTS_INDEXED`].

use ring::{hkdf, hmac};

use super::{Core, SCAN_CHUNK, corrupt, parse_seq, seq_key};
use crate::audit::entry::{AuditEntry, entry_hash};
use crate::crypto::root_key::RootKey;
use crate::error::{Error, IntegrityObject, Result};
use crate::storage::schema::meta;
use crate::storage::{Batch, Table};

/// The version of the index layout the marker records; another value means rebuild.
const INDEX_VERSION: &[u8] = b"1";
/// Bytes of the keyed hash in a row key: 128 bits, so that ids never collide in practice.
pub const SUBJECT_HASH_LEN: usize = 16;
/// Length of a row key.
const ROW_KEY_LEN: usize = SUBJECT_HASH_LEN + 8;
/// How often (in entries) the one-time indexing reports progress.
const PROGRESS_EVERY: u64 = 100_000;

/// The key of the per-subject index, derived from the root key.
pub struct SubjectIndexKey(hmac::Key);

impl std::fmt::Debug for SubjectIndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectIndexKey(<redacted>)")
    }
}

impl SubjectIndexKey {
    /// HKDF-SHA256(salt = "vault.v1 audit-subjects", ikm = root key,
    /// info = "vault.v1/audit-subjects/hmac-sha256"): apart from the row-MAC and blind-index
    /// keys, so a row key says nothing about any other table's keys.
    pub fn derive(root: &RootKey) -> Self {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"vault.v1 audit-subjects");
        let prk = salt.extract(root.key().expose());
        let key = match prk.expand(&[b"vault.v1/audit-subjects/hmac-sha256"], hmac::HMAC_SHA256) {
            Ok(okm) => hmac::Key::from(okm),
            // One HMAC key is one hash block, far within HKDF's limit of 255 blocks.
            Err(_) => unreachable_hkdf(),
        };
        Self(key)
    }

    /// The keyed hash of a subject id, as row keys start with it.
    pub fn hash(&self, subject: &str) -> [u8; SUBJECT_HASH_LEN] {
        let tag = hmac::sign(&self.0, subject.as_bytes());
        let mut out = [0u8; SUBJECT_HASH_LEN];
        out.copy_from_slice(&tag.as_ref()[..SUBJECT_HASH_LEN]);
        out
    }

    /// Adds the rows of entry `seq` naming `subjects` to `batch` (one per distinct subject).
    pub(super) fn stage(&self, batch: &mut Batch, seq: u64, subjects: &[String]) {
        for key in self.row_keys(seq, subjects) {
            batch.put(Table::AuditSubjects, &key, Vec::new());
        }
    }

    fn row_keys(&self, seq: u64, subjects: &[String]) -> Vec<[u8; ROW_KEY_LEN]> {
        let mut keys: Vec<[u8; ROW_KEY_LEN]> = subjects
            .iter()
            .map(|s| row_key(&self.hash(s), seq))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

#[cold]
fn unreachable_hkdf() -> ! {
    panic!("HKDF-SHA256 refused a 32-byte output")
}

fn row_key(hash: &[u8; SUBJECT_HASH_LEN], seq: u64) -> [u8; ROW_KEY_LEN] {
    let mut key = [0u8; ROW_KEY_LEN];
    key[..SUBJECT_HASH_LEN].copy_from_slice(hash);
    key[SUBJECT_HASH_LEN..].copy_from_slice(&seq_key(seq));
    key
}

/// The sequence number a row of [`Table::AuditSubjects`] points to (`None`: not a row key).
pub fn row_seq(key: &[u8]) -> Option<u64> {
    if key.len() != ROW_KEY_LEN {
        return None;
    }
    parse_seq(&key[SUBJECT_HASH_LEN..]).ok()
}

fn index_problem(what: String) -> Error {
    Error::Integrity(IntegrityObject::AccessLog(what))
}

/// What [`Core::check_subject_index`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectIndexCheck {
    /// Entries read.
    pub entries: u64,
    /// Index rows read.
    pub rows: u64,
    /// (entry, subject) pairs with no index row: entries a subject query would not return.
    pub missing: u64,
    /// The first entry found without one of its rows.
    pub first_missing: Option<u64>,
    /// Index rows pointing at an entry that does not name their subject, or at none.
    pub stray: u64,
    /// The entry the first stray row points to.
    pub first_stray: Option<u64>,
}

impl SubjectIndexCheck {
    /// The problem found, as an integrity error, or `Ok` when index and entries agree.
    pub fn into_result(self) -> Result<Self> {
        if let Some(seq) = self.first_missing {
            return Err(index_problem(format!(
                "{} subject index rows are missing, the first for entry {seq}: rows were \
                 deleted from the store, which hides entries from queries by subject; \
                 investigate, then reopen the vault after deleting the `{}` metadata row to \
                 rebuild the index",
                self.missing,
                String::from_utf8_lossy(meta::AUDIT_SUBJECTS_INDEXED)
            )));
        }
        if let Some(seq) = self.first_stray {
            return Err(index_problem(format!(
                "{} subject index rows point at entries that do not name their subject, the \
                 first at entry {seq}: rows were written outside the vault",
                self.stray
            )));
        }
        Ok(self)
    }
}

impl Core {
    /// The first sequence number the log still holds entries for (the anchor's size).
    async fn retained_from(&self) -> Result<u64> {
        Ok(self.anchor().await?.map_or(0, |(c, _)| c.size))
    }

    /// The entries naming `subject` with `from <= seq < to`, oldest first, read through the
    /// index: only this subject's entries are fetched. Each is checked against its leaf and
    /// must name the subject; a row that points elsewhere, or at an entry missing or
    /// rewritten, is an integrity error.
    pub async fn subject_entries(
        &self,
        subject: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<(Vec<u8>, AuditEntry)>> {
        let hash = self.subjects.hash(subject);
        // Rows below the anchor can be left by a crash in the middle of a pruning (or a
        // migration racing with one): their entries are gone on purpose.
        let mut next = from.max(self.retained_from().await?);
        let end = row_key(&hash, to);
        let mut out = Vec::new();
        while next < to {
            let rows = self
                .store
                .scan_range(
                    Table::AuditSubjects,
                    &row_key(&hash, next),
                    Some(&end),
                    SCAN_CHUNK,
                )
                .await?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            next = row_seq(last).ok_or(corrupt("audit subject index key"))? + 1;
            for (key, _) in rows {
                let seq = row_seq(&key).ok_or(corrupt("audit subject index key"))?;
                out.push(self.pointed_entry(seq, subject).await?);
            }
        }
        Ok(out)
    }

    /// The sequence numbers the index lists for `subject` at or after the retention
    /// anchor, oldest first, as pointers only (nothing is checked against the entries): for
    /// housekeeping that re-checks what it finds there, such as the change-feed rows an
    /// erasure collapses.
    pub async fn subject_seqs(&self, subject: &str) -> Result<Vec<u64>> {
        let hash = self.subjects.hash(subject);
        let mut next = self.retained_from().await?;
        let end = row_key(&hash, u64::MAX);
        let mut out = Vec::new();
        loop {
            let rows = self
                .store
                .scan_range(
                    Table::AuditSubjects,
                    &row_key(&hash, next),
                    Some(&end),
                    SCAN_CHUNK,
                )
                .await?;
            let Some((last, _)) = rows.last() else {
                return Ok(out);
            };
            next = row_seq(last).ok_or(corrupt("audit subject index key"))? + 1;
            for (key, _) in &rows {
                out.push(row_seq(key).ok_or(corrupt("audit subject index key"))?);
            }
        }
    }

    /// Entry `seq`, which an index row of `subject` points to, checked.
    async fn pointed_entry(&self, seq: u64, subject: &str) -> Result<(Vec<u8>, AuditEntry)> {
        let bytes = self.store.get(Table::AuditEntries, &seq_key(seq)).await?;
        let leaf = self.store.get(Table::AuditLeaves, &seq_key(seq)).await?;
        let (Some(bytes), Some(leaf)) = (bytes, leaf) else {
            return Err(index_problem(format!(
                "the subject index points at entry {seq}, which is missing from the store: \
                 the entry was deleted"
            )));
        };
        if entry_hash(&bytes).as_slice() != leaf.as_slice() {
            return Err(index_problem(format!(
                "entry {seq} does not hash to its leaf: it was rewritten in the store"
            )));
        }
        let entry = AuditEntry::decode(&bytes).ok_or(corrupt("audit entry"))?;
        if entry.seq != seq || !entry.subjects.iter().any(|s| s == subject) {
            return Err(index_problem(format!(
                "a subject index row points at entry {seq}, which is not about that subject: \
                 the row was written outside the vault"
            )));
        }
        Ok((bytes, entry))
    }

    /// Cross-checks the index against the entries with `from <= seq < to`, streaming: every
    /// entry must have a row for each subject it names (else a subject query would miss
    /// it), and every row in the range must point at an entry naming its hash.
    pub async fn check_subject_index(&self, from: u64, to: u64) -> Result<SubjectIndexCheck> {
        let mut report = SubjectIndexCheck::default();
        let mut next = from.max(self.retained_from().await?);
        while next < to {
            let rows = self
                .store
                .scan_range(
                    Table::AuditEntries,
                    &seq_key(next),
                    Some(&seq_key(to)),
                    SCAN_CHUNK,
                )
                .await?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            next = parse_seq(last)? + 1;
            for (key, bytes) in rows {
                let seq = parse_seq(&key)?;
                let entry = AuditEntry::decode(&bytes).ok_or(corrupt("audit entry"))?;
                report.entries += 1;
                for row in self.subjects.row_keys(seq, &entry.subjects) {
                    if self.store.get(Table::AuditSubjects, &row).await?.is_none() {
                        report.missing += 1;
                        report.first_missing.get_or_insert(seq);
                    }
                }
            }
        }
        // The other way: rows are keyed by hash, so the whole table is read.
        let from = from.max(self.retained_from().await?);
        let mut start: Vec<u8> = Vec::new();
        loop {
            let rows = self
                .store
                .scan_range(Table::AuditSubjects, &start, None, SCAN_CHUNK)
                .await?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            start.clone_from(last);
            start.push(0);
            for (key, _) in rows {
                let Some(seq) = row_seq(&key) else {
                    report.stray += 1;
                    continue;
                };
                if seq < from || seq >= to {
                    continue;
                }
                report.rows += 1;
                let named = match self.store.get(Table::AuditEntries, &seq_key(seq)).await? {
                    Some(bytes) => AuditEntry::decode(&bytes).is_some_and(|e| {
                        e.subjects
                            .iter()
                            .any(|s| self.subjects.hash(s)[..] == key[..SUBJECT_HASH_LEN])
                    }),
                    None => false,
                };
                if !named {
                    report.stray += 1;
                    report.first_stray.get_or_insert(seq);
                }
            }
        }
        Ok(report)
    }

    /// Builds the index for the entries of a store written before it, once (the `Meta`
    /// marker says it was done), a page of entries per batch so memory stays flat. Entries
    /// appended meanwhile index themselves; writing a row twice is harmless, so daemons
    /// sharing a store may race through this. Returns the entries indexed.
    pub async fn index_subjects_once(&self) -> Result<u64> {
        if self
            .store
            .get(Table::Meta, meta::AUDIT_SUBJECTS_INDEXED)
            .await?
            .as_deref()
            == Some(INDEX_VERSION)
        {
            return Ok(0);
        }
        let mut next = self.retained_from().await?;
        let mut indexed = 0u64;
        loop {
            let rows = self
                .store
                .scan_range(Table::AuditEntries, &seq_key(next), None, SCAN_CHUNK)
                .await?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            next = parse_seq(last)? + 1;
            let mut b = Batch::new();
            for (key, bytes) in rows {
                let seq = parse_seq(&key)?;
                let entry = AuditEntry::decode(&bytes).ok_or(corrupt("audit entry"))?;
                self.subjects.stage(&mut b, seq, &entry.subjects);
                indexed += 1;
                if indexed.is_multiple_of(PROGRESS_EVERY) {
                    tracing::info!(
                        target: "vault::audit",
                        indexed,
                        up_to_seq = seq,
                        "indexing the access log by subject (once, for queries by subject)"
                    );
                }
            }
            self.store.commit(b).await?;
        }
        let mut b = Batch::new();
        b.put(
            Table::Meta,
            meta::AUDIT_SUBJECTS_INDEXED,
            INDEX_VERSION.to_vec(),
        );
        self.store.commit(b).await?;
        if indexed > 0 {
            tracing::info!(
                target: "vault::audit",
                indexed,
                "indexed the access log by subject (once, for queries by subject)"
            );
        }
        Ok(indexed)
    }

    /// Adds to `batch` the deletion of the index rows of the entries `from <= seq < to`,
    /// which the same batch deletes (pruning).
    pub(super) async fn stage_prune_rows(
        &self,
        batch: &mut Batch,
        from: u64,
        to: u64,
    ) -> Result<()> {
        let mut next = from;
        while next < to {
            let rows = self
                .store
                .scan_range(
                    Table::AuditEntries,
                    &seq_key(next),
                    Some(&seq_key(to)),
                    SCAN_CHUNK,
                )
                .await?;
            let Some((last, _)) = rows.last() else {
                break;
            };
            next = parse_seq(last)? + 1;
            for (key, bytes) in rows {
                // An entry that does not decode names no subject we could find rows for;
                // any left behind sit below the anchor, where queries never look.
                if let Some(entry) = AuditEntry::decode(&bytes) {
                    for row in self.subjects.row_keys(parse_seq(&key)?, &entry.subjects) {
                        batch.delete(Table::AuditSubjects, &row);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
