//! Backups (`Admin.Backup`) and their restore (`vaultctl restore`).
//!
//! # What a backup is
//!
//! [`Vault::backup`] writes a consistent snapshot of the store, while the daemon keeps
//! serving, into a new directory:
//!
//! ```text
//! <path>/store           an embedded (sled) store holding every table, byte for byte
//! <path>/manifest.json   BackupManifest: when, access-log size, counts, key epochs, versions
//! ```
//!
//! The snapshot holds **ciphertext only**: sealed records and consent events, wrapped keys,
//! blind-index HMACs, ids, counters and the access log (ids and field names, no values).
//! **The root key is never in a backup**, any more than in the store: keep the root key
//! file apart from the backups (restoring needs the very key file that made the backup),
//! and a stolen backup without it reveals nothing. Once the key epochs a backup lists are
//! destroyed by rotation, the backup can no longer be decrypted by anyone: that is how
//! erasures reach backups (see SECURITY.md).
//!
//! # Why it is consistent
//!
//! Every write of the vault, with its access-log entry, is applied by the access log's single
//! writer task. The copy runs as a task of that writer ([`crate::audit::AuditLog::hold_writes`]):
//! writes queue while it runs, so the tables are copied as of one point, the log's size
//! `audit_size` at that moment. Reads go on (their log entries are still appended, after
//! `audit_size`, and the copy stops the log tables there); the metadata table is copied last,
//! so a concurrent access-log pruning cannot leave entries without their anchor. Writes
//! that do not go through this daemon's log are not held: with replicas sharing PostgreSQL,
//! stop the other replicas' traffic (or back the database up with its own tools).
//!
//! # Restore
//!
//! [`Vault::restore`] runs offline (no daemon on the target): it checks that the root key
//! file opens the backup's key epochs before touching anything, reads the target's erasure
//! journal (and saves it to a file), replaces the target store with the backup (the old
//! embedded store is moved aside, a PostgreSQL schema is emptied in one transaction), then
//! replays the journal, so a person erased after the backup was taken stays erased.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::access::{Caller, Rpc};
use crate::audit::mark::MarkFile;
use crate::crypto::keyring::Keyring;
use crate::crypto::root_key::RootKey;
use crate::crypto::row_mac::RowKey;
use crate::error::{Error, InvalidInput, Result};
use crate::storage::copy::{self, CopyError, CopyReport, DEFAULT_BATCH_ROWS, MIGRATION_MARKER};
use crate::storage::sled_store::SledOptions;
use crate::storage::{AuthenticatedStore, PostgresStore, SledStore, Store, StoreError, Table};

use super::{META_FORMAT, StorageChoice, Vault, VaultOptions, now_us, read_epochs, restrict_dir};

/// The manifest's file name inside a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The store's directory name inside a backup directory.
pub const BACKUP_STORE_DIR: &str = "store";
/// Version of the manifest layout this build writes (and the newest it reads).
pub const MANIFEST_VERSION: u32 = 1;
/// What every manifest says about its contents.
pub const CONTENTS: &str = "ciphertext only: sealed records and consent events, wrapped \
    keys, blind-index HMACs, ids, counters and the access log; the root key is NOT in the \
    backup (restoring needs the root key file that made it; keep that file apart)";

/// The manifest of a backup: `<path>/manifest.json`.
///
/// A backup holds ciphertext only and never the root key (see [`CONTENTS`]); it can be
/// restored only with the root key file of the vault that made it, and only while the key
/// epochs in `epochs` have not been destroyed by rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// Layout version of this manifest ([`MANIFEST_VERSION`]).
    pub manifest_version: u32,
    /// The backup directory, as given.
    pub path: String,
    /// When the snapshot was taken (writes were held), microseconds since the Unix epoch.
    pub taken_at_us: i64,
    /// Access-log size at the snapshot: the backup holds entries `0..audit_size`, and every
    /// write acknowledged before the snapshot.
    pub audit_size: u64,
    /// Supporters in the backup (sealed records).
    pub supporters: u64,
    /// Key epochs the backup's data is wrapped under; once they are destroyed, the backup
    /// can no longer be decrypted.
    pub epochs: Vec<u32>,
    /// The store format version (the vault refuses a store of another format).
    pub format_version: u32,
    /// Entries of the erasure journal in the backup.
    pub erasures: u64,
    /// Version of the vault that wrote the backup.
    pub vault_version: String,
    /// Rows per table, by table name.
    pub tables: BTreeMap<String, u64>,
    /// Always `false`: the root key never leaves its file.
    pub root_key_included: bool,
    /// What the backup holds ([`CONTENTS`]).
    pub contents: String,
}

impl BackupManifest {
    /// Reads and checks `<dir>/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let raw = fs::read(&path).map_err(|e| {
            Error::FailedPrecondition(format!(
                "{} is not a complete vault backup: cannot read {} ({e})",
                dir.display(),
                path.display()
            ))
        })?;
        let manifest: BackupManifest = serde_json::from_slice(&raw).map_err(|e| {
            Error::FailedPrecondition(format!("{} is not a backup manifest: {e}", path.display()))
        })?;
        if manifest.manifest_version == 0 || manifest.manifest_version > MANIFEST_VERSION {
            return Err(Error::FailedPrecondition(format!(
                "{} has manifest version {}, this build reads up to {MANIFEST_VERSION}: \
                 restore with the vault version that wrote it ({})",
                path.display(),
                manifest.manifest_version,
                manifest.vault_version
            )));
        }
        Ok(manifest)
    }
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The manifest of the restored backup.
    pub backup: BackupManifest,
    /// Rows restored per table.
    pub tables: BTreeMap<String, u64>,
    /// All rows restored.
    pub rows_restored: u64,
    /// Entries of the target's erasure journal (and of the extra journal given) replayed.
    pub journal_rows: u64,
    /// Supporters erased again by the replay (present in the backup, erased since).
    pub erasures_replayed: u64,
    /// What became of the replaced store: the directory the old embedded store was moved
    /// to, or that the PostgreSQL tables were emptied; `None` when there was none.
    pub previous_store: Option<String>,
    /// Where the target's erasure journal was saved before the store was replaced (`None`
    /// when it was empty). Pass it to `vaultctl restore --journal` if a restore is
    /// interrupted after the store was replaced.
    pub journal_file: Option<String>,
}

/// An erasure journal: (subject id, receipt JSON) rows of [`Table::Erasures`].
pub type Journal = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Serialize, Deserialize)]
struct JournalFile {
    /// What the file is.
    kind: String,
    /// Rows, hex-encoded (ids and receipts hold no personal data).
    rows: Vec<JournalRow>,
}

#[derive(Serialize, Deserialize)]
struct JournalRow {
    key_hex: String,
    value_hex: String,
}

const JOURNAL_KIND: &str = "vault erasure journal";

/// Reads an erasure journal saved by a restore (`erasure-journal.before-restore-*.json`).
pub fn read_journal_file(path: &Path) -> Result<Journal> {
    let bad = |why: String| {
        Error::from(InvalidInput::new(
            "journal",
            format!(
                "{} is not an erasure journal saved by a restore: {why}",
                path.display()
            ),
        ))
    };
    let raw = fs::read(path).map_err(|e| bad(e.to_string()))?;
    let file: JournalFile = serde_json::from_slice(&raw).map_err(|e| bad(e.to_string()))?;
    if file.kind != JOURNAL_KIND {
        return Err(bad(format!("kind is {:?}", file.kind)));
    }
    file.rows
        .into_iter()
        .map(|r| {
            let k = hex::decode(&r.key_hex).map_err(|e| bad(e.to_string()))?;
            let v = hex::decode(&r.value_hex).map_err(|e| bad(e.to_string()))?;
            Ok((k, v))
        })
        .collect()
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> Error {
    Error::Storage(StoreError::Engine(format!(
        "{what} {}: {e}",
        path.display()
    )))
}

/// Makes `path`'s directory entry and contents durable.
fn fsync_path(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_error("cannot sync", path, &e))
}

/// fsyncs every file and directory under `dir`, and `dir` itself.
fn fsync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| io_error("cannot list", dir, &e))? {
        let entry = entry.map_err(|e| io_error("cannot list", dir, &e))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| io_error("cannot inspect", &path, &e))?;
        if kind.is_dir() {
            fsync_tree(&path)?;
        } else if kind.is_file() {
            fsync_path(&path)?;
        }
    }
    fsync_path(dir)
}

/// Copies the directory tree `from` into the new directory `to` (regular files and
/// directories only), durably.
fn copy_tree(from: &Path, to: &Path) -> Result<u64> {
    fs::create_dir(to).map_err(|e| io_error("cannot create", to, &e))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o700))
        .map_err(|e| io_error("cannot restrict permissions of", to, &e))?;
    let mut bytes = 0;
    for entry in fs::read_dir(from).map_err(|e| io_error("cannot list", from, &e))? {
        let entry = entry.map_err(|e| io_error("cannot list", from, &e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| io_error("cannot inspect", &src, &e))?;
        if kind.is_dir() {
            bytes += copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            bytes += fs::copy(&src, &dst).map_err(|e| io_error("cannot copy", &src, &e))?;
            fsync_path(&dst)?;
        } else {
            return Err(Error::FailedPrecondition(format!(
                "{} is neither a file nor a directory; a backup holds only those",
                src.display()
            )));
        }
    }
    fsync_path(to)?;
    Ok(bytes)
}

/// A file name stamp, `YYYYMMDDTHHMMSSZ` (UTC), plus microseconds to keep names unique.
fn stamp() -> String {
    let us = now_us();
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000) {
        Ok(t) => format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}.{:06}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        ),
        Err(_) => us.to_string(),
    }
}

/// Writes `bytes` to `path` (mode 0600) through a temporary file, durably.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io_error("cannot create", &tmp, &e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("cannot write", &tmp, &e))?;
    fs::rename(&tmp, path).map_err(|e| io_error("cannot rename into", path, &e))?;
    if let Some(dir) = path.parent() {
        fsync_path(dir)?;
    }
    Ok(())
}

/// The backup directory, claimed for this backup.
struct BackupDir {
    path: PathBuf,
    /// Whether this backup created the directory (removed again if the backup fails).
    created: bool,
}

impl BackupDir {
    /// Checks `path` (absolute; absent or an empty directory) and creates it.
    fn claim(path: &Path) -> Result<Self> {
        if path.as_os_str().is_empty() {
            return Err(InvalidInput::new(
                "path",
                "is required: a new directory on the daemon's machine",
            )
            .into());
        }
        if !path.is_absolute() {
            return Err(InvalidInput::new(
                "path",
                "must be an absolute path (a new directory on the daemon's machine)",
            )
            .into());
        }
        let refuse = |why: &str| {
            Error::FailedPrecondition(format!(
                "backup path {} {why}: give a new (or empty) directory; a backup never \
                 overwrites anything",
                path.display()
            ))
        };
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let mut entries =
                    fs::read_dir(path).map_err(|e| io_error("cannot list", path, &e))?;
                if entries.next().is_some() {
                    return Err(refuse("is not empty"));
                }
                Ok(Self {
                    path: path.to_path_buf(),
                    created: false,
                })
            }
            Ok(_) => Err(refuse("exists and is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| io_error("cannot create", parent, &e))?;
                }
                // `create_dir`, not `_all`: of two backups racing for one path, one fails.
                match fs::create_dir(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Err(refuse("was just created by someone else"));
                    }
                    Err(e) => return Err(io_error("cannot create", path, &e)),
                }
                restrict_dir(path)?;
                Ok(Self {
                    path: path.to_path_buf(),
                    created: true,
                })
            }
            Err(e) => Err(io_error("cannot inspect", path, &e)),
        }
    }

    /// Removes what a failed backup left.
    fn abandon(&self) {
        let _ = fs::remove_dir_all(self.path.join(BACKUP_STORE_DIR));
        let _ = fs::remove_file(self.path.join(MANIFEST_FILE).with_extension("tmp"));
        if self.created {
            let _ = fs::remove_dir(&self.path);
        }
    }
}

/// The order tables are copied in: the metadata last, so that a pruning of the access log
/// during the copy (anchor written first, then entries deleted) is seen with its anchor.
fn backup_order() -> Vec<Table> {
    Table::ALL
        .iter()
        .copied()
        .filter(|t| *t != Table::Meta)
        .chain([Table::Meta])
        .collect()
}

/// Whether the row `key` of `table` belongs to the snapshot at access-log size `size`:
/// entries, leaves and change events below it, checkpoints up to it, everything else.
fn in_snapshot(table: Table, key: &[u8], size: u64) -> bool {
    let size = size.to_be_bytes();
    let seq = key.get(..8).unwrap_or(key);
    match table {
        Table::AuditEntries | Table::AuditLeaves | Table::Changes => seq < &size[..],
        Table::AuditCheckpoints | Table::AuditCosignatures => seq <= &size[..],
        _ => true,
    }
}

fn copy_failed(e: CopyError) -> Error {
    match e {
        CopyError::Store(e) => Error::Storage(e),
        other => Error::Storage(StoreError::Engine(format!("the copy failed: {other}"))),
    }
}

fn table_counts(report: &CopyReport) -> BTreeMap<String, u64> {
    report
        .tables
        .iter()
        .map(|(t, n)| (t.name().to_owned(), *n))
        .collect()
}

fn parse_format(raw: Option<Vec<u8>>) -> u32 {
    raw.and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// What the held copy found.
struct Snapshot {
    taken_at_us: i64,
    audit_size: u64,
    report: CopyReport,
    epochs: Vec<u32>,
    format_version: u32,
}

impl Vault {
    /// Writes a consistent, encrypted snapshot of the store to `path` (absolute; a new or
    /// empty directory on this machine) while serving, and returns its manifest. Role
    /// `admin`. See the module documentation for what it holds (never the root key) and
    /// why it is consistent.
    pub async fn backup(&self, caller: &Caller, path: &Path) -> Result<BackupManifest> {
        let mut log = self.record(caller, Rpc::AdminBackup);
        let result = async {
            let registry = self.registry().await?;
            self.decide(&mut log, caller, Rpc::AdminBackup, &registry, None, None)?;
            // KEY-OPS-LOCK: hold `self.key_ops` from here until the manifest is written, so
            // that a key rotation neither re-wraps subject keys during the copy nor
            // destroys an epoch the snapshot still lists.
            let dir = BackupDir::claim(path)?;
            match self.snapshot_into(&dir.path).await {
                Ok(manifest) => Ok(manifest),
                Err(e) => {
                    dir.abandon();
                    Err(e)
                }
            }
        }
        .await;
        log.finish(&self.audit, result).await
    }

    async fn snapshot_into(&self, dir: &Path) -> Result<BackupManifest> {
        // Byte for byte, tags included: the restored rows verify under the same root key.
        let source = Arc::clone(&self.raw);
        let row_key = RowKey::derive(&self.root);
        let store_dir = dir.join(BACKUP_STORE_DIR);
        let snap = self
            .audit
            .hold_writes(move |audit_size| async move {
                let taken_at_us = now_us();
                let dest = SledStore::open(&store_dir, &SledOptions::default())?;
                let keep = move |t: Table, k: &[u8]| in_snapshot(t, k, audit_size);
                let report = copy::copy_filtered(
                    source.as_ref(),
                    &dest,
                    DEFAULT_BATCH_ROWS,
                    &backup_order(),
                    &keep,
                )
                .await
                .map_err(copy_failed)?;
                let dest = AuthenticatedStore::new(Arc::new(dest), row_key);
                let epochs = read_epochs(&dest).await?.into_keys().collect();
                let format_version = parse_format(dest.get(Table::Meta, META_FORMAT).await?);
                drop(dest);
                Ok(Snapshot {
                    taken_at_us,
                    audit_size,
                    report,
                    epochs,
                    format_version,
                })
            })
            .await?;
        // Writes flow again; make the copy durable down to the directory entries.
        fsync_tree(&dir.join(BACKUP_STORE_DIR))?;
        let tables = table_counts(&snap.report);
        let count = |t: Table| tables.get(t.name()).copied().unwrap_or(0);
        let manifest = BackupManifest {
            manifest_version: MANIFEST_VERSION,
            path: dir.display().to_string(),
            taken_at_us: snap.taken_at_us,
            audit_size: snap.audit_size,
            supporters: count(Table::Records),
            epochs: snap.epochs,
            format_version: snap.format_version,
            erasures: count(Table::Erasures),
            vault_version: env!("CARGO_PKG_VERSION").to_owned(),
            tables,
            root_key_included: false,
            contents: CONTENTS.to_owned(),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Codec(e.to_string()))?;
        write_durably(&dir.join(MANIFEST_FILE), &json)?;
        if let Some(parent) = dir.parent() {
            fsync_path(parent)?;
        }
        Ok(manifest)
    }

    /// Restores the backup in `backup_dir` into the store `options` names, offline: no
    /// daemon may be running on it (the embedded store is locked by a running daemon; with
    /// PostgreSQL, stop every replica first). `extra_journal` adds erasure journal rows to
    /// replay (a journal file saved by an interrupted restore).
    ///
    /// Steps: check that the root key file opens the backup's key epochs (nothing is
    /// touched otherwise); read the target's erasure journal and save it next to the store;
    /// replace the target store with the backup's (the old embedded store is moved to
    /// `store.before-restore-<time>`; PostgreSQL tables are emptied in one transaction,
    /// then filled); open the vault and replay the journal.
    pub async fn restore(
        options: &VaultOptions,
        backup_dir: &Path,
        extra_journal: Journal,
    ) -> Result<RestoreReport> {
        let manifest = BackupManifest::read(backup_dir)?;
        let expected_format = parse_format(Some(super::FORMAT_VERSION.to_vec()));
        if manifest.format_version != expected_format {
            return Err(Error::FailedPrecondition(format!(
                "the backup has store format {}, this build uses {expected_format}: restore it \
                 with vault {}",
                manifest.format_version, manifest.vault_version
            )));
        }
        let key_path = options.root_key_path();
        let root = RootKey::load(&key_path)?;
        fs::create_dir_all(&options.data_dir)
            .map_err(|e| io_error("cannot create", &options.data_dir, &e))?;
        restrict_dir(&options.data_dir)?;

        // 1. A private copy of the backup's store, so the backup itself is never written.
        let when = stamp();
        let staging = options.data_dir.join(format!("store.restoring-{when}"));
        copy_tree(&backup_dir.join(BACKUP_STORE_DIR), &staging)?;
        let outcome = Self::restore_staged(
            options,
            &manifest,
            &root,
            &key_path,
            &staging,
            &when,
            extra_journal,
        )
        .await;
        if staging.exists() {
            let _ = fs::remove_dir_all(&staging);
        }
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    async fn restore_staged(
        options: &VaultOptions,
        manifest: &BackupManifest,
        root: &RootKey,
        key_path: &Path,
        staging: &Path,
        when: &str,
        extra_journal: Journal,
    ) -> Result<RestoreReport> {
        // 2. Check the backup: complete, as the manifest says, and opened by this root key.
        let staged = SledStore::open(staging, &SledOptions::default())?;
        if staged.get(Table::Meta, MIGRATION_MARKER).await?.is_some() {
            return Err(Error::FailedPrecondition(
                "the backup is incomplete (it was interrupted while being written); use \
                 another backup"
                    .into(),
            ));
        }
        let mut tables = BTreeMap::new();
        for table in Table::ALL {
            let rows = copy::scan_table(&staged, table).await?.len() as u64;
            if manifest.tables.get(table.name()).copied().unwrap_or(0) != rows {
                return Err(Error::FailedPrecondition(format!(
                    "the backup's table {} holds {rows} rows, its manifest says {}: the backup \
                     is damaged; use another one",
                    table.name(),
                    manifest.tables.get(table.name()).copied().unwrap_or(0)
                )));
            }
            tables.insert(table.name().to_owned(), rows);
        }
        // The backup's rows as the vault reads them: tags verified under this root key.
        let staged = AuthenticatedStore::new(Arc::new(staged), RowKey::derive(root));
        // A row tag that does not verify says the same as an epoch that does not unwrap.
        let epochs = match read_epochs(&staged).await {
            Ok(epochs) => Keyring::unwrap(root, &epochs).map(|_| ()),
            Err(e) => Err(e),
        };
        epochs.map_err(|e| {
            Error::FailedPrecondition(format!(
                "the root key file {} did not make this backup ({e}); nothing was changed: \
                 restore with the root key file of the vault that made it (--root-key)",
                key_path.display()
            ))
        })?;
        let rows_restored = tables.values().sum();

        // 3. The target's erasure journal, read before anything is replaced.
        let mut journal: BTreeMap<Vec<u8>, Vec<u8>> = extra_journal.into_iter().collect();
        let target = match &options.storage {
            StorageChoice::Embedded(_) => {
                let dir = options.data_dir.join("store");
                if dir.exists() {
                    let store = SledStore::open(&dir, &SledOptions::default()).map_err(|e| {
                        Error::FailedPrecondition(format!(
                            "cannot open the embedded store in {} (stop the daemon first): {e}",
                            dir.display()
                        ))
                    })?;
                    journal.extend(copy::scan_table(&store, Table::Erasures).await?);
                }
                None
            }
            StorageChoice::Postgres { url, options: pg } => {
                let store = PostgresStore::connect(url.expose(), pg).await?;
                journal.extend(copy::scan_table(&store, Table::Erasures).await?);
                Some(store)
            }
        };
        let journal: Journal = journal.into_iter().collect();
        let journal_file = if journal.is_empty() {
            None
        } else {
            let path = options
                .data_dir
                .join(format!("erasure-journal.before-restore-{when}.json"));
            let file = JournalFile {
                kind: JOURNAL_KIND.to_owned(),
                rows: journal
                    .iter()
                    .map(|(k, v)| JournalRow {
                        key_hex: hex::encode(k),
                        value_hex: hex::encode(v),
                    })
                    .collect(),
            };
            let json = serde_json::to_vec_pretty(&file).map_err(|e| Error::Codec(e.to_string()))?;
            write_durably(&path, &json)?;
            Some(path.display().to_string())
        };

        // 4. Replace the target's contents.
        let previous_store = match target {
            None => {
                drop(staged);
                let dir = options.data_dir.join("store");
                let previous = if dir.exists() {
                    let aside = options
                        .data_dir
                        .join(format!("store.before-restore-{when}"));
                    fs::rename(&dir, &aside)
                        .map_err(|e| io_error("cannot move aside", &dir, &e))?;
                    Some(aside.display().to_string())
                } else {
                    None
                };
                fs::rename(staging, &dir)
                    .map_err(|e| io_error("cannot move into place", &dir, &e))?;
                fsync_path(&options.data_dir)?;
                previous
            }
            Some(pg) => {
                pg.truncate_and_mark(MIGRATION_MARKER).await?;
                copy::copy_into_marked(&staged, &pg, DEFAULT_BATCH_ROWS, &Table::ALL, &|_, _| true)
                    .await
                    .map_err(copy_failed)?;
                Some(format!(
                    "emptied the tables of {} before the copy",
                    pg.describe()
                ))
            }
        };

        // 5. Replay the journal on the restored store. Its access log is older than the one
        // the high-water mark beside the root key file has seen: that is the point of a
        // restore, so the mark starts again from the restored log.
        MarkFile::beside(key_path, root).forget()?;
        let (vault, _) = Vault::open(options).await?;
        let journal_rows = journal.len() as u64;
        let replayed = vault.replay_erasures(journal).await;
        let synced = vault.sync().await;
        let closed = vault.audit.close().await;
        let erasures_replayed = replayed?;
        synced?;
        closed?;
        Ok(RestoreReport {
            backup: manifest.clone(),
            tables,
            rows_restored,
            journal_rows,
            erasures_replayed,
            previous_store,
            journal_file,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::access::Role;
    use crate::supporter::{FieldSet, Supporter};

    fn caller(role: Role, purpose: Option<&str>) -> Caller {
        Caller {
            client_id: format!("{role}-test"),
            role,
            allowed_purposes: purpose.map(str::to_owned).into_iter().collect(),
            purpose: purpose.map(str::to_owned),
            request_id: "t".into(),
        }
    }

    fn person(i: u64) -> Supporter {
        Supporter {
            given_name: format!("Prénom{i}"),
            email: format!("personne{i}@exemple.fr"),
            ..Supporter::default()
        }
    }

    fn options(data_dir: &Path, key: &Path) -> VaultOptions {
        let mut o = VaultOptions::new(data_dir);
        o.root_key_file = Some(key.to_path_buf());
        o
    }

    async fn record_ids(vault: &Vault) -> BTreeSet<String> {
        vault
            .store
            .scan_prefix(Table::Records, b"")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_taken_while_writing_restores_what_was_acknowledged() {
        let base = tempfile::tempdir().unwrap();
        let a = base.path().join("a");
        let key = a.join("root.key");
        let (vault, _) = Vault::open(&VaultOptions::new(&a)).await.unwrap();
        vault.install_purposes(None).await.unwrap();
        let vault = Arc::new(vault);
        let tool = caller(Role::CampaignTool, Some("membership"));
        let admin = caller(Role::Admin, None);
        let mut before = BTreeSet::new();
        for i in 0..10 {
            before.insert(vault.upsert(&tool, &person(i), &[]).await.unwrap().id);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (vault, stop, tool) = (Arc::clone(&vault), Arc::clone(&stop), tool.clone());
            tokio::spawn(async move {
                let mut acked = BTreeSet::new();
                let mut i = 100;
                while !stop.load(Ordering::Relaxed) || acked.len() < 5 {
                    acked.insert(vault.upsert(&tool, &person(i), &[]).await.unwrap().id);
                    i += 1;
                }
                acked
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let path = base.path().join("backups").join("one");
        let manifest = vault.backup(&admin, &path).await.unwrap();
        stop.store(true, Ordering::Relaxed);
        let during = writer.await.unwrap();
        assert!(manifest.supporters >= 10, "{manifest:?}");
        assert_eq!(manifest.tables["records"], manifest.supporters);
        assert_eq!(manifest.tables["subject_keys"], manifest.supporters);
        assert_eq!(manifest.epochs, vec![1]);
        assert_eq!(manifest.format_version, 1);
        assert!(!manifest.root_key_included);
        assert_eq!(BackupManifest::read(&path).unwrap(), manifest);
        // Neither the root key nor any plaintext is in the backup.
        let root_hex = fs::read_to_string(&key).unwrap();
        for file in walk(&path) {
            let bytes = fs::read(&file).unwrap();
            for needle in [
                root_hex.trim().as_bytes(),
                b"personne1@exemple.fr",
                "Prénom1".as_bytes(),
            ] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{}",
                    file.display()
                );
            }
        }
        // A second backup into the same path, and a non-admin, are refused.
        let e = vault.backup(&admin, &path).await.unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
        let e = vault
            .backup(&tool, &base.path().join("other"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::PermissionDenied(_)), "{e}");
        assert!(!base.path().join("other").exists());
        let live_size = vault.audit.size().await;
        assert!(live_size > manifest.audit_size);
        vault.audit.close().await.unwrap();
        drop(vault);

        // A wrong root key is refused before anything is touched.
        let d = base.path().join("d");
        fs::create_dir_all(&d).unwrap();
        let other_key = d.join("other.key");
        RootKey::load_or_create(&other_key).unwrap();
        let e = Vault::restore(&options(&d, &other_key), &path, Vec::new())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("did not make this backup"), "{e}");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "only the key file");

        // Restored with the right key into a new data dir.
        let c = base.path().join("c");
        let report = Vault::restore(&options(&c, &key), &path, Vec::new())
            .await
            .unwrap();
        assert_eq!(report.rows_restored, manifest.tables.values().sum::<u64>());
        assert_eq!(report.previous_store, None);
        let (restored, _) = Vault::open(&options(&c, &key)).await.unwrap();
        let ids = record_ids(&restored).await;
        assert_eq!(ids.len() as u64, manifest.supporters);
        assert!(
            before.is_subset(&ids),
            "every supporter acknowledged before the backup"
        );
        let acked: BTreeSet<String> = before.union(&during).cloned().collect();
        assert!(ids.is_subset(&acked), "nothing that was not acknowledged");
        for id in &before {
            let s = restored.get(&tool, id, FieldSet::all()).await.unwrap();
            assert!(s.email.starts_with("personne"));
        }
        assert!(restored.audit.size().await >= manifest.audit_size);
        restored.audit.verify(None, None).await.unwrap().unwrap();
        restored.audit.close().await.unwrap();
        drop(restored);

        // Restoring again over it moves the old store aside.
        let report = Vault::restore(&options(&c, &key), &path, Vec::new())
            .await
            .unwrap();
        let aside = PathBuf::from(report.previous_store.unwrap());
        assert!(aside.is_dir() && aside.starts_with(&c));
        assert!(c.join("store").is_dir());
        let leftovers: Vec<_> = fs::read_dir(&c)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("restoring"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn the_snapshot_stops_the_log_at_its_size() {
        let k = |n: u64| n.to_be_bytes().to_vec();
        let change = |n: u64| [n.to_be_bytes().as_slice(), &[0, 1]].concat();
        assert!(in_snapshot(Table::AuditEntries, &k(9), 10));
        assert!(!in_snapshot(Table::AuditEntries, &k(10), 10));
        assert!(!in_snapshot(Table::AuditLeaves, &k(11), 10));
        assert!(in_snapshot(Table::AuditCheckpoints, &k(10), 10));
        assert!(!in_snapshot(Table::AuditCheckpoints, &k(11), 10));
        assert!(in_snapshot(Table::Changes, &change(9), 10));
        assert!(!in_snapshot(Table::Changes, &change(10), 10));
        assert!(in_snapshot(Table::Records, &k(u64::MAX), 0));
        let order = backup_order();
        assert_eq!(order.len(), Table::ALL.len());
        assert_eq!(order.last(), Some(&Table::Meta));
    }

    #[test]
    fn a_backup_path_must_be_absolute_and_new_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            BackupDir::claim(Path::new("relative/dir")),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            BackupDir::claim(Path::new("")),
            Err(Error::InvalidInput(_))
        ));
        let empty = BackupDir::claim(dir.path()).unwrap();
        assert!(!empty.created);
        fs::write(dir.path().join("x"), b"x").unwrap();
        let e = BackupDir::claim(dir.path()).err().unwrap();
        assert!(e.to_string().contains("is not empty"), "{e}");
        let e = BackupDir::claim(&dir.path().join("x")).err().unwrap();
        assert!(e.to_string().contains("not a directory"), "{e}");
        let new = BackupDir::claim(&dir.path().join("a/b")).unwrap();
        assert!(new.created && new.path.is_dir());
        new.abandon();
        assert!(!dir.path().join("a/b").exists());
    }

    #[test]
    fn journal_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.json");
        let file = JournalFile {
            kind: JOURNAL_KIND.to_owned(),
            rows: vec![JournalRow {
                key_hex: hex::encode(b"id"),
                value_hex: hex::encode(b"{}"),
            }],
        };
        write_durably(&path, &serde_json::to_vec(&file).unwrap()).unwrap();
        assert_eq!(
            read_journal_file(&path).unwrap(),
            vec![(b"id".to_vec(), b"{}".to_vec())]
        );
        fs::write(&path, b"{\"kind\":\"other\",\"rows\":[]}").unwrap();
        assert!(read_journal_file(&path).is_err());
    }
}
