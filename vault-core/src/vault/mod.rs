//! The vault: opens keys and store, and runs every operation through the access decision
//! point and into the access log.
//!
//! Operations live in submodules by concept (`supporters`, `consent`, `admin`). Each public
//! operation records exactly one access-log entry, allowed or denied. Every write is one
//! [`Batch`] whose checks pin what the operation read (the record's ciphertext, the index
//! entries and ledger positions it claims), so concurrent writers never lose an update or
//! create two supporters for one email: a conflicting batch fails as a whole and the
//! operation re-reads and retries. A write returns only once it is durable.

mod admin;
mod approval;
mod audit;
pub mod backup;
mod consent;
mod feed;
mod health;
mod keys;
mod retention;
mod rights;
mod search;
mod supporters;
mod tickets;
mod witness;

pub use audit::AuditQuery;
pub use feed::{LogPruneReport, WatchBatch, WatchSession};
pub use keys::{KeyOptions, RotationReport};
pub use retention::SweepReport;
pub use rights::{ErasureReceipt, ExportKey, RightsState};
pub use search::{SearchPage, SearchQuery};
pub use witness::WitnessedNote;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::access::{self, Caller, Decision, Rpc, Subject};
use crate::audit::mark::{Mark, MarkFile};
use crate::consent::ConsentState;
use crate::consent::ledger::{self as consent_ledger, ConsentEvent};
use crate::crypto::keyring::{self, Keyring};
use crate::crypto::root_key::{Origin, RootKey};
use crate::crypto::row_mac::RowKey;
use crate::crypto::{BlindIndexKey, IndexKind, Key256};
use crate::error::{Error, IntegrityObject, InvalidInput, Result};
use crate::journal::AccessRecord;
use crate::journal::Outside;
use crate::journal::{AuditLog, AuditOptions};
use crate::postings;
use crate::purpose::{Channel, Purpose, Registry};
use crate::storage::authenticated::{
    authenticate_existing_rows, describe_key, unverified_security_rows,
};
use crate::storage::schema::meta;
use crate::storage::sled_store::SledOptions;
use crate::storage::{
    AuthenticatedStore, Batch, DatabaseUrl, PostgresOptions, PostgresStore, SledStore, Store,
    StoreError, Table,
};
use crate::subject_state::{self, Pins, SubjectState};
use crate::supporter::{Supporter, record};
use crate::txn;

const FORMAT_VERSION: &[u8] = b"1";

/// Which storage engine holds the vault's tables.
#[derive(Debug, Clone)]
pub enum StorageChoice {
    /// The embedded sled store in `<data_dir>/store` (the zero-configuration default).
    Embedded(SledOptions),
    /// A PostgreSQL database, which several daemons (replicas) may share. Every replica
    /// must be given the same root key file.
    Postgres {
        /// Where to connect (its `Debug` never shows the password).
        url: DatabaseUrl,
        /// Schema, pool size and retries.
        options: PostgresOptions,
    },
}

impl Default for StorageChoice {
    fn default() -> Self {
        StorageChoice::Embedded(SledOptions::default())
    }
}

/// Where the vault keeps its data and keys.
#[derive(Debug, Clone)]
pub struct VaultOptions {
    /// The data directory: the embedded store lives in `<data_dir>/store`; the root key
    /// file defaults to `<data_dir>/root.key` whatever the engine.
    pub data_dir: PathBuf,
    /// The root key file; `<data_dir>/root.key` when `None`.
    pub root_key_file: Option<PathBuf>,
    /// The storage engine.
    pub storage: StorageChoice,
    /// Checkpoints and retention of the access log.
    pub audit: AuditOptions,
    /// Key rotation schedule and backup window.
    pub keys: KeyOptions,
    /// The retention floor in days ([`crate::purpose::MIN_RETENTION_DAYS`] at least: a
    /// lower value is raised to it).
    pub min_retention_days: u32,
}

impl VaultOptions {
    /// Defaults for `data_dir` (the embedded store).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            root_key_file: None,
            storage: StorageChoice::default(),
            audit: AuditOptions::default(),
            keys: KeyOptions::default(),
            min_retention_days: crate::purpose::MIN_RETENTION_DAYS,
        }
    }

    /// The root key file in effect.
    pub fn root_key_path(&self) -> PathBuf {
        self.root_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("root.key"))
    }
}

/// What opening the vault found or created.
#[derive(Debug, Clone)]
pub struct OpenReport {
    /// The root key file in use.
    pub root_key_path: PathBuf,
    /// Whether the root key file was created by this open.
    pub root_key_created: bool,
    /// The store in use, for logs: the embedded store's directory, or the PostgreSQL
    /// `user@host:port/dbname` and schema (never a password).
    pub store: String,
}

/// A supporter as read from the store, with what a write needs to pin it.
struct Loaded {
    supporter: Supporter,
    dek: Key256,
    wrapped: Vec<u8>,
    sealed: Vec<u8>,
    consent: Vec<ConsentEvent>,
    state: SubjectState,
    state_sealed: Option<Vec<u8>>,
}

impl Loaded {
    fn consent_state(&self) -> ConsentState {
        ConsentState::from_events(&self.consent)
    }

    /// The subject as the access decision sees it.
    fn subject<'a>(&'a self, consent: &'a ConsentState) -> Subject<'a> {
        Subject {
            id: &self.supporter.id,
            consent,
            restricted: self.state.restricted,
            objected: &self.state.objected,
            collected_for: &self.state.collected_for,
        }
    }

    /// The posting-list terms the subject holds for now.
    fn terms(&self, key: &BlindIndexKey) -> BTreeSet<postings::TermHash> {
        postings::terms(key, &self.supporter, &self.consent_state(), &self.state)
    }
}

/// The vault.
pub struct Vault {
    /// The store as the vault reads it: security rows authenticated
    /// ([`AuthenticatedStore`]).
    store: Arc<dyn Store>,
    /// The engine itself, for byte-for-byte copies (backups), which keep the tags.
    raw: Arc<dyn Store>,
    /// Security rows that failed authentication at open, (table, key).
    integrity_problems: Vec<(&'static str, String)>,
    /// Swapped whole when key epochs change (rotation here or on another replica).
    keyring: std::sync::RwLock<Arc<Keyring>>,
    root: RootKey,
    blind: BlindIndexKey,
    audit: AuditLog,
    /// Rotation schedule and backup window (`keys.rs`).
    key_options: KeyOptions,
    /// Held by key rotation and epoch destruction (and by anything that must not run
    /// while epochs change, such as a backup).
    pub(crate) key_ops: tokio::sync::Mutex<()>,
    /// The retention floor, in days (`purpose::check_retention`).
    min_retention_days: u32,
    /// Whether the store accepts writes (`health.rs`), fed by every call on the engine.
    health: crate::storage::StoreHealth,
    /// What rights request deadlines are judged by (`tickets.rs`); the system clock but in
    /// tests.
    clock: crate::clock::Clock,
    /// The purpose registry as last parsed, with the rows it was parsed from.
    registry_seen: std::sync::Mutex<Option<RegistrySeen>>,
}

/// The purpose rows a [`Registry`] was parsed from, and that registry.
type RegistrySeen = (Vec<(Vec<u8>, Vec<u8>)>, Arc<Registry>);

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("keyring", &self.keyring())
            .finish_non_exhaustive()
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Validates a supporter id and returns its canonical form.
fn parse_id(field: &str, id: &str) -> Result<String> {
    uuid::Uuid::try_parse(id.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            InvalidInput::new(
                field,
                "must be a supporter id as returned by Upsert (a UUID)",
            )
            .into()
        })
}

fn not_found(id: &str) -> Error {
    access::no_supporter(id)
}

impl Vault {
    /// Opens the store `options.storage` names (the embedded store in `options.data_dir`,
    /// or PostgreSQL), creating the data directory, the root key file and the first key
    /// epoch on first start.
    ///
    /// A missing root key file is created only when the store holds no key epoch yet: a
    /// new key could never open data sealed under another one. With PostgreSQL this is
    /// what keeps a replica started without the shared key file from minting its own.
    pub async fn open(options: &VaultOptions) -> Result<(Self, OpenReport)> {
        std::fs::create_dir_all(&options.data_dir).map_err(|e| {
            Error::Storage(StoreError::Engine(format!(
                "cannot create data directory {}: {e}",
                options.data_dir.display()
            )))
        })?;
        restrict_dir(&options.data_dir)?;
        // The store first: whether it already holds data decides whether a missing root
        // key file may be created.
        let (store, described): (Arc<dyn Store>, String) = match &options.storage {
            StorageChoice::Embedded(sled) => {
                let dir = options.data_dir.join("store");
                let store = SledStore::open(&dir, sled)?;
                (
                    Arc::new(store),
                    format!("the embedded store in {}", dir.display()),
                )
            }
            StorageChoice::Postgres { url, options } => {
                let store = PostgresStore::connect(url.expose(), options).await?;
                let described = format!("the PostgreSQL database {}", store.describe());
                (Arc::new(store), described)
            }
        };
        let key_path = options.root_key_path();
        let missing_key = |path: &Path| Error::RootKeyFile {
            path: path.display().to_string(),
            reason: format!(
                "is missing, but the store ({described}) holds data sealed under a root key; \
                 restore the original key file (or point --root-key at it; every replica \
                 sharing a database needs the same key file)"
            ),
        };
        let has_epochs = !store.scan_prefix(Table::Keyring, b"").await?.is_empty();
        if has_epochs
            && matches!(std::fs::symlink_metadata(&key_path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        {
            return Err(missing_key(&key_path));
        }
        let (root, origin) = RootKey::load_or_create(&key_path)?;
        if origin == Origin::Created && !store.scan_prefix(Table::Keyring, b"").await?.is_empty() {
            // Another daemon initialized the shared store between the check above and the
            // key's creation. A new key can never open it: don't leave it behind to
            // confuse the next start.
            let _ = std::fs::remove_file(&key_path);
            return Err(missing_key(&key_path));
        }
        let mark = MarkFile::beside(&key_path, &root);
        let vault = Self::open_with(store, &root, options.audit.clone(), Some(mark))
            .await?
            .with_key_options(options.keys.clone())
            .with_min_retention_days(options.min_retention_days);
        Ok((
            vault,
            OpenReport {
                root_key_path: key_path,
                root_key_created: origin == Origin::Created,
                store: described,
            },
        ))
    }

    /// Opens the vault on any store with the given root key (first use initializes it).
    /// No high-water mark is kept outside the store ([`Vault::open`] keeps one beside the
    /// root key file).
    pub async fn with_store(
        store: Arc<dyn Store>,
        root: &RootKey,
        audit: AuditOptions,
    ) -> Result<Self> {
        Self::open_with(store, root, audit, None).await
    }

    /// Makes sure every security row of `raw` carries its tag: a new store gets the
    /// authentication marker; a store written before tags existed is tagged once, as it is
    /// (unless the mark outside the store says it was authenticated already: then the
    /// marker was deleted, and nothing is trusted).
    async fn authenticate_rows(
        raw: &dyn Store,
        row_key: &RowKey,
        mark: Option<&Mark>,
        mark_path: Option<&Path>,
    ) -> Result<()> {
        let marker = raw.get(Table::Meta, meta::ROWS_AUTHENTICATED).await?;
        if let Some(v) = marker {
            if row_key
                .open(Table::Meta.name(), meta::ROWS_AUTHENTICATED, &v)
                .is_some()
            {
                return Ok(());
            }
            // Another root key's tags, everywhere: say so rather than "tampered".
            let epochs = raw.scan_prefix(Table::Keyring, b"").await?;
            let foreign = epochs
                .iter()
                .all(|(k, v)| row_key.open(Table::Keyring.name(), k, v).is_none());
            if let (true, Some((k, _))) = (foreign, epochs.first()) {
                let epoch = <[u8; 4]>::try_from(k.as_slice()).map_or(0, u32::from_be_bytes);
                return Err(Error::WrongRootKey(epoch));
            }
            return Err(StoreError::Tampered {
                table: Table::Meta.name(),
                key: describe_key(meta::ROWS_AUTHENTICATED),
            }
            .into());
        }
        if mark.is_some_and(|m| m.rows_authenticated) {
            return Err(Error::Integrity(IntegrityObject::AccessLog(format!(
                "the store's row-authentication marker is missing, but the high-water mark {} \
                 says this store's rows were authenticated: the store was altered or replaced \
                 by an older copy; investigate before starting",
                mark_path
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ))));
        }
        let report = authenticate_existing_rows(raw, row_key).await?;
        if report.tagged > 0 {
            tracing::warn!(
                target: "vault::store",
                rows = report.tagged,
                "tagged the security rows of a store written before rows were authenticated, \
                 trusting them as they are this once"
            );
        }
        Ok(())
    }

    async fn open_with(
        store: Arc<dyn Store>,
        root: &RootKey,
        audit: AuditOptions,
        mark_file: Option<MarkFile>,
    ) -> Result<Self> {
        if store
            .get(Table::Meta, meta::MIGRATION_INCOMPLETE)
            .await?
            .is_some()
        {
            return Err(Error::FailedPrecondition(
                "the store is an incomplete copy: `vaultctl migrate` or `vaultctl restore` was \
                 interrupted while filling it; run the restore again (with --journal and the \
                 erasure journal it saved), or empty the store (drop its tables) and run the \
                 migration again"
                    .into(),
            ));
        }
        let mark = match &mark_file {
            Some(f) => f.read()?,
            None => None,
        };
        // Every use of the engine, through the authenticated view or raw (backups), feeds
        // the store's health.
        let health = crate::storage::StoreHealth::default();
        let store: Arc<dyn Store> = Arc::new(crate::storage::HealthWatchedStore::new(
            store,
            health.clone(),
        ));
        let row_key = RowKey::derive(root);
        Self::authenticate_rows(
            store.as_ref(),
            &row_key,
            mark.as_ref(),
            mark_file.as_ref().map(MarkFile::path),
        )
        .await?;
        let integrity_problems = unverified_security_rows(store.as_ref(), &row_key).await?;
        for (table, key) in &integrity_problems {
            tracing::error!(
                target: "vault::store",
                table,
                key = %key,
                "a security row failed authentication (written, altered or moved outside the \
                 vault); calls that need it are refused"
            );
        }
        let raw = store;
        let store: Arc<dyn Store> = Arc::new(AuthenticatedStore::new(Arc::clone(&raw), row_key));
        match store.get(Table::Meta, meta::FORMAT_VERSION).await? {
            None => {
                let mut b = Batch::new();
                b.check(Table::Meta, meta::FORMAT_VERSION, None).put(
                    Table::Meta,
                    meta::FORMAT_VERSION,
                    FORMAT_VERSION.to_vec(),
                );
                match store.commit(b).await {
                    Ok(()) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Some(v) if v == FORMAT_VERSION => {}
            Some(_) => {
                return Err(Error::FailedPrecondition(
                    "the store was written by a newer, incompatible version of the vault".into(),
                ));
            }
        }
        let keyring = load_keyring(store.as_ref(), root).await?;
        let outside = mark_file.map(|file| Outside {
            file: Arc::new(file),
            mark,
        });
        let audit = AuditLog::open_checked(Arc::clone(&store), root, audit, outside).await?;
        let vault = Self {
            store,
            raw,
            integrity_problems,
            keyring: std::sync::RwLock::new(Arc::new(keyring)),
            root: RootKey::from_key(Key256::from_bytes(root.key().expose())),
            blind: BlindIndexKey::derive(root),
            audit,
            key_options: KeyOptions::default(),
            key_ops: tokio::sync::Mutex::new(()),
            min_retention_days: crate::purpose::MIN_RETENTION_DAYS,
            health,
            clock: crate::clock::Clock::system(),
            registry_seen: std::sync::Mutex::new(None),
        };
        vault.index_collected_for().await?;
        vault.audit.index_subjects_once().await?;
        Ok(vault)
    }

    /// Sets the retention floor: purposes installed or put afterwards must keep data at
    /// least `days`. It can only be raised: a value below
    /// [`crate::purpose::MIN_RETENTION_DAYS`] is taken as that.
    pub fn with_min_retention_days(mut self, days: u32) -> Self {
        self.min_retention_days = days.max(crate::purpose::MIN_RETENTION_DAYS);
        self
    }

    /// Judges rights request deadlines (due, overdue, answered at) by `clock` instead of
    /// the system clock: for tests that cross a deadline without waiting.
    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The retention floor in force, in days.
    pub fn min_retention_days(&self) -> u32 {
        self.min_retention_days
    }

    /// Security rows that failed authentication when the vault opened, as (table, key):
    /// the daemon names them at start. Calls that need them are refused.
    pub fn integrity_problems(&self) -> &[(&'static str, String)] {
        &self.integrity_problems
    }

    /// Signs a final checkpoint and makes everything written so far durable (shutdown).
    pub async fn sync(&self) -> Result<()> {
        self.audit.checkpoint().await?;
        Ok(self.store.sync().await?)
    }

    /// The key epochs in force.
    fn keyring(&self) -> Arc<Keyring> {
        // A poisoned lock only means a panic elsewhere while swapping in a complete value.
        match self.keyring.read() {
            Ok(k) => Arc::clone(&k),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Re-reads the key epochs from the store (after a rotation, here or on a replica).
    async fn reload_keyring(&self) -> Result<Arc<Keyring>> {
        let fresh = Arc::new(Keyring::unwrap(
            &self.root,
            &read_epochs(self.store.as_ref()).await?,
        )?);
        match self.keyring.write() {
            Ok(mut k) => *k = Arc::clone(&fresh),
            Err(p) => *p.into_inner() = Arc::clone(&fresh),
        }
        Ok(fresh)
    }

    /// Unwraps a subject key; a key wrapped under an epoch this process has not loaded yet
    /// (another replica rotated) reloads the keyring once.
    async fn unwrap_subject_key(&self, id: &str, wrapped: &[u8]) -> Result<Key256> {
        let ring = self.keyring();
        let known = wrapped
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .is_some_and(|e| ring.has_epoch(u32::from_be_bytes(e)));
        if known {
            return ring.unwrap_subject_key(id, wrapped);
        }
        self.reload_keyring().await?.unwrap_subject_key(id, wrapped)
    }

    // ---- decisions ------------------------------------------------------------------

    /// The purposes in force (read per call, so a change on any replica applies at once).
    async fn registry(&self) -> Result<Arc<Registry>> {
        // Read on every call: the store is the truth (an admin call on another replica
        // changes it). Parsed only when the rows changed: the JSON of every purpose was a
        // tenth of an audited Get's CPU.
        let rows = self.store.scan_prefix(Table::Purposes, b"").await?;
        let mut seen = self
            .registry_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((parsed_from, registry)) = seen.as_ref()
            && *parsed_from == rows
        {
            return Ok(Arc::clone(registry));
        }
        let mut purposes = Vec::with_capacity(rows.len());
        for (_, json) in &rows {
            let p: Purpose = serde_json::from_slice(json)
                .map_err(|_| Error::Integrity(IntegrityObject::Metadata("purpose registry")))?;
            purposes.push(p);
        }
        let registry = Arc::new(Registry::new(purposes));
        *seen = Some((rows, Arc::clone(&registry)));
        Ok(registry)
    }

    /// Logs a call refused before any client was identified (missing, malformed, unknown or
    /// revoked credentials).
    pub async fn log_unauthenticated(&self, rpc: String, request_id: &str) -> Result<()> {
        let entry = crate::journal::AccessEntry {
            at_us: now_us(),
            request_id: request_id.to_owned(),
            client_id: "-".to_owned(),
            role: "none",
            rpc,
            purpose: None,
            subjects: Vec::new(),
            fields: Vec::new(),
            outcome: crate::journal::Outcome::Denied(crate::denial::DenialReason::Unauthenticated),
            request_ref: None,
            changes: Vec::new(),
        };
        self.audit.append(Batch::new(), &entry).await.map(|_| ())
    }

    /// Records an authenticated call to a protocol service that reads no personal data and
    /// has no [`Rpc`] of its own (gRPC server reflection), so that every authenticated call
    /// is one access-log entry. `rpc` is the call's `Service.Method`, bounded by the caller.
    pub async fn log_protocol_call(&self, caller: &Caller, rpc: &str) -> Result<()> {
        let entry = crate::journal::AccessEntry {
            at_us: now_us(),
            request_id: caller.request_id.clone(),
            client_id: caller.client_id.clone(),
            role: caller.role.as_str(),
            rpc: rpc.chars().take(96).collect(),
            // No purpose: the header is free text, and these calls have none.
            purpose: None,
            subjects: Vec::new(),
            fields: Vec::new(),
            outcome: crate::journal::Outcome::Allowed,
            request_ref: None,
            changes: Vec::new(),
        };
        self.audit.append(Batch::new(), &entry).await.map(|_| ())
    }

    /// Records a call refused before it reached an operation (a request the server could
    /// not convert: a bad field mask, a missing field, a bad consent source), so that every
    /// refusal is one access-log entry. Returns the refusal (or the log's failure).
    pub async fn refused<T>(&self, caller: &Caller, rpc: Rpc, error: Error) -> Result<T> {
        self.record(caller, rpc)
            .finish(&self.audit, Err(error))
            .await
    }

    fn record(&self, caller: &Caller, rpc: Rpc) -> AccessRecord {
        AccessRecord::start(caller, rpc, now_us())
    }

    /// Runs [`access::decide`], turning a denial into the caller's error (and noting it in
    /// the record).
    fn decide(
        &self,
        log: &mut AccessRecord,
        caller: &Caller,
        rpc: Rpc,
        registry: &Registry,
        subject: Option<Subject<'_>>,
        channel: Option<Channel>,
    ) -> Result<Decision> {
        log.keep_purpose_if(|p| registry.get(p).is_some());
        access::decide(caller, rpc, registry, subject, channel).map_err(|d| log.denied(d))
    }

    // ---- subjects -------------------------------------------------------------------

    fn index_of(&self, kind: IndexKind, normalized: &str) -> Option<[u8; 32]> {
        (!normalized.is_empty()).then(|| self.blind.index(kind, normalized))
    }

    async fn index_owner(&self, table: Table, hash: Option<&[u8; 32]>) -> Result<Option<String>> {
        match hash {
            None => Ok(None),
            Some(h) => self
                .store
                .get(table, h)
                .await?
                .map(|bytes| {
                    String::from_utf8(bytes).map_err(|_| {
                        Error::Integrity(IntegrityObject::Metadata("blind index entry"))
                    })
                })
                .transpose(),
        }
    }

    /// Reads a supporter and checks that their rows agree ([`check_pins`]).
    ///
    /// The rows are read one after the other, so a write that commits in between can show
    /// a new record with an old state: the rows then disagree for a moment. A disagreement
    /// is only tampering if it holds still: the rows are read again, and only the same
    /// bytes twice over are refused.
    async fn load(&self, id: &str) -> Result<Option<Loaded>> {
        txn::retry!("supporter read", {
            let Some((loaded, pinned)) = self.load_once(id).await? else {
                return Ok(None);
            };
            let Err(mismatch) = pinned else {
                return Ok(Some(loaded));
            };
            match self.load_once(id).await? {
                Some((again, _))
                    if again.sealed == loaded.sealed
                        && again.state_sealed == loaded.state_sealed
                        && again.consent.len() == loaded.consent.len()
                        && again.wrapped == loaded.wrapped =>
                {
                    Err(mismatch)
                }
                // Moved between the two reads: a write in flight, not tampering.
                _ => Err(txn::stale(Table::Records.name())),
            }
        })
    }

    /// One read of a supporter's rows, and whether they agree.
    async fn load_once(&self, id: &str) -> Result<Option<(Loaded, Result<()>)>> {
        let Some(wrapped) = self.store.get(Table::SubjectKeys, id.as_bytes()).await? else {
            return Ok(None);
        };
        let sealed = self
            .store
            .get(Table::Records, id.as_bytes())
            .await?
            .ok_or_else(|| Error::Integrity(IntegrityObject::Record(id.to_owned())))?;
        let dek = self.unwrap_subject_key(id, &wrapped).await?;
        let (supporter, record_version) = record::open_versioned(&dek, id, &sealed)?;
        let state_sealed = self.store.get(Table::SubjectState, id.as_bytes()).await?;
        let state = match &state_sealed {
            Some(bytes) => subject_state::open(&dek, id, bytes)?,
            None => SubjectState::default(),
        };
        let rows = self
            .store
            .scan_prefix(Table::Consent, &consent_ledger::subject_prefix(id))
            .await?;
        let mut consent = Vec::with_capacity(rows.len());
        for (i, (_, sealed_event)) in rows.iter().enumerate() {
            // Events are numbered from 0 without gaps; a missing or moved one is tampering.
            consent.push(consent_ledger::open(&dek, id, i as u64, sealed_event)?);
        }
        let pinned = check_pins(id, &state, record_version, &sealed, consent.len() as u64);
        Ok(Some((
            Loaded {
                supporter,
                dek,
                wrapped,
                sealed,
                consent,
                state,
                state_sealed,
            },
            pinned,
        )))
    }

    /// Adds `events` (numbered after `loaded`'s) to `batch`, each claiming its slot.
    fn append_consent(
        &self,
        batch: &mut Batch,
        dek: &Key256,
        events: &[ConsentEvent],
    ) -> Result<()> {
        for e in events {
            let key = consent_ledger::event_key(&e.subject_id, e.seq);
            batch.check(Table::Consent, &key, None).put(
                Table::Consent,
                &key,
                consent_ledger::seal(dek, e)?,
            );
        }
        Ok(())
    }
}

/// Refuses a person whose rows do not agree with the pins of their state row: a ledger
/// cut short, or a record or state put back from an older copy (see
/// [`subject_state::Pins`]). Records written before pins existed (version 1, with a state
/// that has none) are accepted as they are.
fn check_pins(
    id: &str,
    state: &SubjectState,
    record_version: u32,
    sealed_record: &[u8],
    consent_len: u64,
) -> Result<()> {
    match &state.pins {
        Some(pins) => {
            let found = Pins::of(sealed_record, consent_len);
            if found.record_sha256 != pins.record_sha256 {
                return Err(Error::Integrity(IntegrityObject::Record(id.to_owned())));
            }
            if found.consent_len != pins.consent_len {
                return Err(Error::Integrity(IntegrityObject::ConsentEvent(
                    id.to_owned(),
                    consent_len.min(pins.consent_len),
                )));
            }
            Ok(())
        }
        None if record_version >= 2 => {
            Err(Error::Integrity(IntegrityObject::Record(id.to_owned())))
        }
        None => Ok(()),
    }
}

async fn load_keyring(store: &dyn Store, root: &RootKey) -> Result<Keyring> {
    let mut stored = read_epochs(store).await?;
    if stored.is_empty() {
        let epoch = 1u32;
        let mut b = Batch::new();
        b.check(Table::Keyring, &epoch.to_be_bytes(), None).put(
            Table::Keyring,
            &epoch.to_be_bytes(),
            keyring::new_wrapped_epoch(root, epoch)?,
        );
        keys::put_new_epoch_meta(&mut b, epoch, now_us())?;
        match store.commit(b).await {
            Ok(()) | Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        stored = read_epochs(store).await?;
    }
    Keyring::unwrap(root, &stored)
}

async fn read_epochs(store: &dyn Store) -> Result<BTreeMap<u32, Vec<u8>>> {
    store
        .scan_prefix(Table::Keyring, b"")
        .await?
        .into_iter()
        .map(|(k, v)| {
            let epoch: [u8; 4] = k
                .as_slice()
                .try_into()
                .map_err(|_| Error::Integrity(IntegrityObject::Metadata("keyring entry")))?;
            Ok((u32::from_be_bytes(epoch), v))
        })
        .collect()
}

/// The data directory holds only ciphertext, but its layout still tells who runs a vault;
/// keep it to its owner.
fn restrict_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        Error::Storage(StoreError::Engine(format!(
            "cannot restrict permissions of {}: {e}",
            dir.display()
        )))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::journal::AuditOptions;
    use crate::storage::sled_store::SledStore;

    /// The parsed registry is reused only while the rows are the ones it was parsed from:
    /// a purpose changed in the store by anyone (another replica sharing the database, not
    /// this vault's admin calls) is seen by the next call.
    #[tokio::test]
    async fn the_registry_follows_the_store_not_its_last_parse() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn Store> =
            Arc::new(SledStore::open(dir.path(), &SledOptions::default()).unwrap());
        let root = RootKey::from_key(Key256::from_bytes(&[7; 32]));
        let v = Vault::with_store(Arc::clone(&raw), &root, AuditOptions::default())
            .await
            .unwrap();
        v.install_purposes(None).await.unwrap();
        let first = v.registry().await.unwrap();
        let again = v.registry().await.unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "unchanged rows are parsed once"
        );

        let mut changed = first.get("newsletter").unwrap().clone();
        changed.description = "changed by another replica".into();
        let mut b = Batch::new();
        b.put(
            Table::Purposes,
            changed.id.as_bytes(),
            serde_json::to_vec(&changed).unwrap(),
        );
        v.store.apply(b).await.unwrap();
        let after = v.registry().await.unwrap();
        assert_eq!(
            after.get("newsletter").unwrap().description,
            "changed by another replica"
        );
    }
}
