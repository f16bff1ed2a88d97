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
//! writer task. The copy runs as a task of that writer ([`crate::journal::AuditLog::hold_writes`]):
//! writes queue while it runs, so the tables are copied as of one point, the log's size
//! `audit_size` at that moment. Reads go on (their log entries are still appended, after
//! `audit_size`, and the copy stops the log tables there); the metadata table is copied last,
//! so a concurrent access-log pruning cannot leave entries without their anchor. Writes
//! that do not go through this daemon's log are not held: with replicas sharing PostgreSQL,
//! stop the other replicas' traffic (or back the database up with its own tools).
//!
//! Key rotation and epoch destruction commit outside that writer, so the backup also holds
//! the vault's key-operations lock from before the copy until its manifest is written: the
//! keyring, the subject keys and the epoch metadata are copied as of one key state. (A copy
//! of the keyring before a rotation with metadata after it restores into a vault where every
//! new supporter is refused and rotation never succeeds again.)
//!
//! # Restore
//!
//! [`Vault::restore`] runs offline (no daemon on the target). Before touching anything it
//! checks that the root key file opens the backup's key epochs and that the backup's epochs
//! fit together, then gathers the erasure journal: the target store's own, plus any journal
//! files given. It replaces the target store with the backup (the old embedded store is
//! moved aside, a PostgreSQL schema is emptied in one transaction), then replays the
//! journal, so a person erased after the backup was taken stays erased.
//!
//! That holds only if the journal is **at least as new as the backup**: it comes from the
//! target store itself, live up to now (it exists, opens with this root key, and is not the
//! half-finished result of an earlier restore), or from a journal file whose `as_of_us` is
//! no earlier than the backup's `taken_at_us` ([`Vault::export_erasure_journal`], or the
//! file an earlier restore saved). When the target store is lost (disaster recovery) and no
//! such file is given, the restore refuses, unless
//! [`RestoreOptions::accept_erased_people_may_return`] says to go on regardless.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::access::{Caller, Rpc};
use crate::audit::mark::MarkFile;
use crate::crypto::keyring::Keyring;
use crate::crypto::root_key::RootKey;
use crate::crypto::row_mac::RowKey;
use crate::error::{Error, InvalidInput, Result};
use crate::fsutil;
use crate::storage::authenticated::authenticate_existing_rows;
use crate::storage::copy::{self, CopyError, CopyReport, DEFAULT_BATCH_ROWS};
use crate::storage::schema::meta;
use crate::storage::sled_store::SledOptions;
use crate::storage::{
    AuthenticatedStore, Batch, PostgresStore, SledStore, Store, StoreError, Table,
};

use super::{StorageChoice, Vault, VaultOptions, keys, now_us, read_epochs, restrict_dir};

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
    /// Where the erasure journal was saved before the store was replaced (`None` when it
    /// was empty and of unknown age). Pass it to `vaultctl restore --journal` if a restore
    /// is interrupted after the store was replaced.
    pub journal_file: Option<String>,
    /// The journal replayed holds every erasure made before this time (microseconds since
    /// the Unix epoch); `None` when no such time is known.
    pub journal_as_of_us: Option<i64>,
    /// Whether people erased after the backup was taken may have come back: the restore
    /// ran with [`RestoreOptions::accept_erased_people_may_return`] and no journal at least
    /// as new as the backup. Erase them again.
    pub erased_people_may_return: bool,
}

/// What a restore replays besides the target store's own erasure journal, and whether it
/// may run without a journal at least as new as the backup.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Erasure journals to replay too: exports ([`Vault::export_erasure_journal`],
    /// `vaultctl erasures export`) or a journal saved by an interrupted restore.
    pub journals: Vec<ErasureJournal>,
    /// Restore even when no journal is at least as new as the backup (the target store is
    /// lost and no recent export is given): **people erased after the backup was taken
    /// come back**, and must be erased again by hand.
    pub accept_erased_people_may_return: bool,
}

/// An erasure journal: (subject id, receipt JSON) rows of [`Table::Erasures`].
pub type Journal = Vec<(Vec<u8>, Vec<u8>)>;

/// An erasure journal, and how recent it is known to be. It holds subject ids (random
/// UUIDs), times, request references and client ids: no personal data, so it can be kept
/// on another machine than the vault's, where a disaster that takes the store spares it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasureJournal {
    /// (subject id, receipt JSON) rows of [`Table::Erasures`].
    pub rows: Journal,
    /// Every erasure committed before this time (microseconds since the Unix epoch) is in
    /// `rows`; `None` when unknown (a file written before journals recorded it).
    pub as_of_us: Option<i64>,
}

impl ErasureJournal {
    /// Parses an erasure journal file (written by [`ErasureJournal::to_file_bytes`]).
    pub fn from_file_bytes(raw: &[u8]) -> std::result::Result<Self, String> {
        let file: JournalFile = serde_json::from_slice(raw).map_err(|e| e.to_string())?;
        if file.kind != JOURNAL_KIND {
            return Err(format!("kind is {:?}", file.kind));
        }
        let rows = file
            .rows
            .into_iter()
            .map(|r| {
                let k = hex::decode(&r.key_hex).map_err(|e| e.to_string())?;
                let v = hex::decode(&r.value_hex).map_err(|e| e.to_string())?;
                Ok((k, v))
            })
            .collect::<std::result::Result<Journal, String>>()?;
        Ok(Self {
            rows,
            as_of_us: file.as_of_us,
        })
    }

    /// Reads an erasure journal file: an export, or one saved by a restore
    /// (`erasure-journal.before-restore-*.json`).
    pub fn read_file(path: &Path) -> Result<Self> {
        let bad = |why: String| {
            Error::from(InvalidInput::new(
                "journal",
                format!(
                    "{} is not an erasure journal file (exported, or saved by a restore): {why}",
                    path.display()
                ),
            ))
        };
        let raw = fs::read(path).map_err(|e| bad(e.to_string()))?;
        Self::from_file_bytes(&raw).map_err(bad)
    }

    /// The journal as a file (JSON, rows hex-encoded).
    pub fn to_file_bytes(&self) -> Result<Vec<u8>> {
        let file = JournalFile {
            kind: JOURNAL_KIND.to_owned(),
            as_of_us: self.as_of_us,
            rows: self
                .rows
                .iter()
                .map(|(k, v)| JournalRow {
                    key_hex: hex::encode(k),
                    value_hex: hex::encode(v),
                })
                .collect(),
        };
        serde_json::to_vec_pretty(&file).map_err(|e| Error::Codec(e.to_string()))
    }

    /// Writes the journal to `path` (mode 0600) through a temporary file beside it, durably:
    /// a failed write never leaves a truncated journal in place of the previous one.
    pub fn write_file(&self, path: &Path) -> Result<()> {
        let bytes = self.to_file_bytes()?;
        write_durably(path, &bytes)
    }

    /// Whether every erasure made after `taken_at_us` (a backup's time) is in it.
    pub fn covers(&self, taken_at_us: i64) -> bool {
        self.as_of_us.is_some_and(|t| t >= taken_at_us)
    }
}

#[derive(Serialize, Deserialize)]
struct JournalFile {
    /// What the file is.
    kind: String,
    /// Every erasure committed before this time (microseconds since the Unix epoch) is in
    /// `rows`. Files from before it was recorded lack it: they count as of unknown age.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    as_of_us: Option<i64>,
    /// Rows, hex-encoded (ids and receipts hold no personal data).
    rows: Vec<JournalRow>,
}

#[derive(Serialize, Deserialize)]
struct JournalRow {
    key_hex: String,
    value_hex: String,
}

const JOURNAL_KIND: &str = "vault erasure journal";

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
    fsutil::replace_private(path, bytes).map_err(|e| io_error(e.step.verb(), &e.path, &e.source))
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
/// entries, leaves and change events below it, checkpoints up to it, the stored subtrees
/// that end at or below it, everything else.
fn in_snapshot(table: Table, key: &[u8], size: u64) -> bool {
    if table == Table::AuditNodes {
        return crate::journal::node_end(key).is_some_and(|end| end <= size);
    }
    let size = size.to_be_bytes();
    let seq = key.get(..8).unwrap_or(key);
    match table {
        Table::AuditEntries | Table::AuditLeaves | Table::Changes => seq < &size[..],
        Table::AuditCheckpoints | Table::AuditCosignatures => seq <= &size[..],
        // A pointer goes with the entry it points to.
        Table::AuditSubjects => {
            crate::journal::subjects::row_seq(key).is_some_and(|s| s.to_be_bytes() < size)
        }
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
            // Held from here until the manifest is written, so that a key rotation neither
            // creates an epoch or re-wraps subject keys during the copy (rotation commits
            // outside the access-log writer, so holding writes does not stop it) nor
            // destroys an epoch the snapshot still lists.
            let _key_ops = self.key_ops.lock().await;
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
                let format_version =
                    parse_format(dest.get(Table::Meta, meta::FORMAT_VERSION).await?);
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

    /// The erasure journal as of now (`Admin.ExportErasureJournal`, `vaultctl erasures
    /// export`), for a later restore to replay (`vaultctl restore --journal`): keep recent
    /// exports on another machine, so that a disaster that takes the store and its own
    /// journal does not bring back the people erased since the last backup. Role `admin`;
    /// the journal holds ids, times and request references, no personal data.
    ///
    /// Read while writes are held (as a backup is), so `as_of_us` is exact: every erasure
    /// acknowledged before it is in the journal, and a backup taken before the export has
    /// an earlier `taken_at_us`. As with backups, only this daemon's writes are held: with
    /// replicas sharing PostgreSQL, an erasure in flight on another replica may be missed.
    pub async fn export_erasure_journal(&self, caller: &Caller) -> Result<ErasureJournal> {
        let rpc = Rpc::AdminExportErasureJournal;
        let mut log = self.record(caller, rpc);
        let result = async {
            let registry = self.registry().await?;
            self.decide(&mut log, caller, rpc, &registry, None, None)?;
            let store = Arc::clone(&self.store);
            self.audit
                .hold_writes(move |_| async move {
                    let as_of_us = now_us();
                    let rows = copy::scan_table(store.as_ref(), Table::Erasures).await?;
                    Ok(ErasureJournal {
                        rows,
                        as_of_us: Some(as_of_us),
                    })
                })
                .await
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Restores the backup in `backup_dir` into the store `options` names, offline: no
    /// daemon may be running on it (the embedded store is locked by a running daemon; with
    /// PostgreSQL, stop every replica first). `restore.journals` adds erasure journals to
    /// replay (exports, or a journal saved by an interrupted restore).
    ///
    /// Steps: check that the root key file opens the backup's key epochs and that its
    /// epochs are consistent; gather the erasure journal (the target store's, and
    /// `restore.journals`) and refuse unless it is at least as new as the backup (see the
    /// module documentation) or `restore.accept_erased_people_may_return` is set; save the
    /// journal next to the store; replace the target store with the backup's (the old
    /// embedded store is moved to `store.before-restore-<time>`; PostgreSQL tables are
    /// emptied in one transaction, then filled); open the vault and replay the journal.
    /// Nothing is touched until every check has passed.
    pub async fn restore(
        options: &VaultOptions,
        backup_dir: &Path,
        restore: RestoreOptions,
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
        let created_data_dir = !options.data_dir.exists();
        fs::create_dir_all(&options.data_dir)
            .map_err(|e| io_error("cannot create", &options.data_dir, &e))?;
        restrict_dir(&options.data_dir)?;

        // 1. A private copy of the backup's store, so the backup itself is never written.
        let when = stamp();
        let staging = options.data_dir.join(format!("store.restoring-{when}"));
        let outcome = match copy_tree(&backup_dir.join(BACKUP_STORE_DIR), &staging) {
            Ok(_) => {
                Self::restore_staged(
                    options, &manifest, &root, &key_path, &staging, &when, restore,
                )
                .await
            }
            Err(e) => Err(e),
        };
        if staging.exists() {
            let _ = fs::remove_dir_all(&staging);
        }
        if outcome.is_err() && created_data_dir {
            // Refused before anything was written there: leave no empty directory behind
            // (`remove_dir` removes only an empty one).
            let _ = fs::remove_dir(&options.data_dir);
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
        restore: RestoreOptions,
    ) -> Result<RestoreReport> {
        // 2. Check the backup: complete, as the manifest says, opened by this root key, and
        //    with key epochs that fit together.
        let staged = SledStore::open(staging, &SledOptions::default())?;
        if staged
            .get(Table::Meta, meta::MIGRATION_INCOMPLETE)
            .await?
            .is_some()
        {
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
        // A backup taken before rows were authenticated is tagged (in this private copy)
        // as the vault tags an old store at its first open.
        if staged
            .get(Table::Meta, meta::ROWS_AUTHENTICATED)
            .await?
            .is_none()
        {
            authenticate_existing_rows(&staged, &RowKey::derive(root)).await?;
        }
        let staged_raw = Arc::new(staged);
        let staged = AuthenticatedStore::new(
            Arc::clone(&staged_raw) as Arc<dyn Store>,
            RowKey::derive(root),
        );
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
        if let Some(why) = keys::epoch_inconsistency(&staged).await? {
            return Err(Error::FailedPrecondition(format!(
                "the backup is inconsistent: {why}. Restored, it would give a vault that \
                 refuses every new supporter and can never rotate its keys again (a backup \
                 taken during a key rotation by a build that did not hold the key lock); \
                 nothing was changed: restore another backup"
            )));
        }
        let rows_restored = tables.values().sum();

        // 3. The erasure journal: the target's (read before anything is replaced) and the
        //    files given; it must be at least as new as the backup.
        let target = Target::read(options, root).await?;
        let extra_as_of = restore.journals.iter().filter_map(|j| j.as_of_us).max();
        let journal_as_of_us = match (target.live, extra_as_of) {
            // Offline and live: nothing was erased there that its journal does not hold.
            (true, _) => Some(now_us()),
            (false, t) => t,
        };
        let covered = journal_as_of_us.is_some_and(|t| t >= manifest.taken_at_us);
        if !covered && !restore.accept_erased_people_may_return {
            return Err(Error::FailedPrecondition(not_covered(
                manifest,
                &target,
                extra_as_of,
            )));
        }
        let mut journal: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for extra in restore.journals {
            journal.extend(extra.rows);
        }
        journal.extend(target.journal);
        let journal = ErasureJournal {
            rows: journal.into_iter().collect(),
            as_of_us: journal_as_of_us,
        };
        let journal_file = if journal.rows.is_empty() && journal.as_of_us.is_none() {
            None
        } else {
            let path = options
                .data_dir
                .join(format!("erasure-journal.before-restore-{when}.json"));
            journal.write_file(&path)?;
            Some(path.display().to_string())
        };

        // 4. Replace the target's contents, marked as a restore in progress until the
        //    journal is replayed.
        let mut pending = Batch::new();
        pending.put(Table::Meta, meta::RESTORE_PENDING, when.as_bytes().to_vec());
        staged.commit(pending).await?;
        let previous_store = match target.postgres {
            None => {
                drop(staged);
                drop(staged_raw);
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
                pg.truncate_and_mark(meta::MIGRATION_INCOMPLETE).await?;
                // Byte for byte, tags included.
                copy::copy_into_marked(
                    staged_raw.as_ref(),
                    pg.as_ref(),
                    DEFAULT_BATCH_ROWS,
                    &Table::ALL,
                    &|_, _| true,
                )
                .await
                .map_err(copy_failed)?;
                Some(format!(
                    "emptied the tables of {} before the copy",
                    pg.describe()
                ))
            }
        };

        // 5. Replay the journal on the restored store, then lift the pending marker. Its
        // access log is older than the one the high-water mark beside the root key file has
        // seen: that is the point of a restore, so that mark starts again from the restored
        // log.
        MarkFile::beside(key_path, root).forget()?;
        let (vault, _) = Vault::open(options).await?;
        let journal_rows = journal.rows.len() as u64;
        let replayed = match vault.replay_erasures(journal.rows).await {
            Ok(n) => {
                let mut done = Batch::new();
                done.delete(Table::Meta, meta::RESTORE_PENDING);
                vault
                    .store
                    .commit(done)
                    .await
                    .map(|()| n)
                    .map_err(Error::from)
            }
            Err(e) => Err(e),
        };
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
            journal_as_of_us,
            erased_people_may_return: !covered,
        })
    }
}

/// The store a restore replaces, as found before anything is touched.
struct Target {
    /// Its erasure journal (empty when there is no store).
    journal: Journal,
    /// Whether it is a live vault: a store that exists, opens, holds key epochs this root
    /// key opens, and is not the unfinished result of a copy or an earlier restore. Its
    /// journal is then complete up to now.
    live: bool,
    /// What was found, for messages.
    found: &'static str,
    /// The PostgreSQL store, kept for the copy.
    postgres: Option<Arc<PostgresStore>>,
}

impl Target {
    async fn read(options: &VaultOptions, root: &RootKey) -> Result<Self> {
        match &options.storage {
            StorageChoice::Embedded(_) => {
                let dir = options.data_dir.join("store");
                if !dir.exists() {
                    return Ok(Self {
                        journal: Vec::new(),
                        live: false,
                        found: "there is no store in the data directory",
                        postgres: None,
                    });
                }
                let store = SledStore::open(&dir, &SledOptions::default()).map_err(|e| {
                    Error::FailedPrecondition(format!(
                        "cannot open the embedded store in {} (stop the daemon first): {e}",
                        dir.display()
                    ))
                })?;
                Self::of(Arc::new(store), root).await
            }
            StorageChoice::Postgres { url, options: pg } => {
                let store = Arc::new(PostgresStore::connect(url.expose(), pg).await?);
                let mut target = Self::of(Arc::clone(&store) as Arc<dyn Store>, root).await?;
                target.postgres = Some(store);
                Ok(target)
            }
        }
    }

    async fn of(raw: Arc<dyn Store>, root: &RootKey) -> Result<Self> {
        // Read as the vault reads: rows whose tags do not verify under this root key are
        // left out (another vault's store, or forged journal rows). A store last written
        // before rows were authenticated is read as it is.
        let authenticated = AuthenticatedStore::new(Arc::clone(&raw), RowKey::derive(root));
        let store: &dyn Store = if raw
            .get(Table::Meta, meta::ROWS_AUTHENTICATED)
            .await?
            .is_some()
        {
            &authenticated
        } else {
            raw.as_ref()
        };
        let journal = copy::scan_table(store, Table::Erasures).await?;
        let epochs = read_epochs(store).await?;
        let (live, found) = if epochs.is_empty() {
            (false, "the target store holds no vault")
        } else if Keyring::unwrap(root, &epochs).is_err() {
            (
                false,
                "the target store is another vault's (this root key does not open it)",
            )
        } else if raw
            .get(Table::Meta, meta::MIGRATION_INCOMPLETE)
            .await?
            .is_some()
        {
            (
                false,
                "the target store is the unfinished result of an interrupted copy",
            )
        // Presence is enough, tag or not: a marker only ever makes the store count as not
        // live, the cautious side.
        } else if raw.get(Table::Meta, meta::RESTORE_PENDING).await?.is_some() {
            (
                false,
                "the target store is the unfinished result of an interrupted restore",
            )
        } else {
            (true, "the target store is live")
        };
        Ok(Self {
            journal,
            live,
            found,
            postgres: None,
        })
    }
}

/// Why a restore refuses to run without a recent enough journal, and how to go on.
fn not_covered(manifest: &BackupManifest, target: &Target, extra_as_of: Option<i64>) -> String {
    let files = match extra_as_of {
        Some(t) => format!(
            "the newest journal file given is as of {}, before the backup",
            rfc3339(t)
        ),
        None => "no journal file with a recorded time was given".to_owned(),
    };
    format!(
        "no erasure journal at least as new as the backup (taken {}): {}, and {files}. \
         Restored so, people erased after the backup was taken would come back. Nothing was \
         changed. Give a journal exported after the backup (vaultctl erasures export FILE, \
         kept off this host) with --journal FILE, or, if there is none, accept the risk with \
         --accept-erased-people-may-return and erase again everyone erased since the backup",
        rfc3339(manifest.taken_at_us),
        target.found
    )
}

/// `t` (microseconds since the Unix epoch) as an RFC 3339 UTC time, for messages.
fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1000)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{t} µs after the Unix epoch"))
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

    fn accept_the_risk() -> RestoreOptions {
        RestoreOptions {
            accept_erased_people_may_return: true,
            ..RestoreOptions::default()
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
        let e = Vault::restore(&options(&d, &other_key), &path, RestoreOptions::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("did not make this backup"), "{e}");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "only the key file");

        // Restored with the right key into a new data dir (no journal there: told to go on).
        let c = base.path().join("c");
        let report = Vault::restore(&options(&c, &key), &path, accept_the_risk())
            .await
            .unwrap();
        assert_eq!(report.rows_restored, manifest.tables.values().sum::<u64>());
        assert_eq!(report.previous_store, None);
        assert!(report.erased_people_may_return);
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
            let s = restored
                .get(&tool, id, FieldSet::all())
                .await
                .unwrap()
                .supporter;
            assert!(s.email.starts_with("personne"));
        }
        assert!(restored.audit.size().await >= manifest.audit_size);
        restored.audit.verify(None, None).await.unwrap().unwrap();
        restored.audit.close().await.unwrap();
        drop(restored);

        // Restoring again over it moves the old store aside; that store is live, so its
        // journal is as new as the backup.
        let report = Vault::restore(&options(&c, &key), &path, RestoreOptions::default())
            .await
            .unwrap();
        assert!(!report.erased_people_may_return);
        assert!(report.journal_as_of_us.unwrap() >= manifest.taken_at_us);
        let saved = ErasureJournal::read_file(Path::new(&report.journal_file.unwrap())).unwrap();
        assert_eq!(saved.as_of_us, report.journal_as_of_us);
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
        // Subtree (level 1, index 4) covers leaves 8 and 9; (1, 5) covers 10 and 11.
        let node = |level: u8, index: u64| crate::journal::node_key(level, index);
        assert!(in_snapshot(Table::AuditNodes, &node(1, 4), 10));
        assert!(!in_snapshot(Table::AuditNodes, &node(1, 5), 10));
        assert!(!in_snapshot(Table::AuditNodes, &node(4, 0), 10));
        assert!(!in_snapshot(Table::AuditNodes, &node(64, 0), 10));
        assert!(!in_snapshot(Table::AuditNodes, b"junk", 10));
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
        let journal = ErasureJournal {
            rows: vec![(b"id".to_vec(), b"{}".to_vec())],
            as_of_us: Some(1_700_000_000_000_000),
        };
        journal.write_file(&path).unwrap();
        assert_eq!(ErasureJournal::read_file(&path).unwrap(), journal);
        assert!(journal.covers(1_700_000_000_000_000));
        assert!(!journal.covers(1_700_000_000_000_001));
        // Written again over itself.
        journal.write_file(&path).unwrap();
        assert_eq!(ErasureJournal::read_file(&path).unwrap(), journal);
        // A file from before journals recorded their time: read, but as of unknown age.
        fs::write(
            &path,
            format!(
                "{{\"kind\":\"{JOURNAL_KIND}\",\"rows\":[{{\"key_hex\":\"{}\",\"value_hex\":\"{}\"}}]}}",
                hex::encode(b"id"),
                hex::encode(b"{}")
            ),
        )
        .unwrap();
        let old = ErasureJournal::read_file(&path).unwrap();
        assert_eq!((old.rows, old.as_of_us), (journal.rows, None));
        assert!(!ErasureJournal::read_file(&path).unwrap().covers(0));
        fs::write(&path, b"{\"kind\":\"other\",\"rows\":[]}").unwrap();
        assert!(ErasureJournal::read_file(&path).is_err());
    }

    /// A store that can stop one full scan of a table until told to go on: it holds a
    /// backup's copy at a chosen table, with the writer held, for as long as a test needs.
    struct PausingStore {
        inner: SledStore,
        pause: std::sync::Mutex<Option<Pause>>,
    }

    struct Pause {
        table: Table,
        reached: tokio::sync::oneshot::Sender<()>,
        resume: tokio::sync::oneshot::Receiver<()>,
    }

    impl PausingStore {
        /// Stops the next full scan of `table`: the first receiver fires when it starts,
        /// and it goes on once the sender is used (or dropped).
        fn pause_next_scan(
            &self,
            table: Table,
        ) -> (
            tokio::sync::oneshot::Receiver<()>,
            tokio::sync::oneshot::Sender<()>,
        ) {
            let (reached, on_reached) = tokio::sync::oneshot::channel();
            let (resume_tx, resume) = tokio::sync::oneshot::channel();
            *self.pause.lock().unwrap() = Some(Pause {
                table,
                reached,
                resume,
            });
            (on_reached, resume_tx)
        }
    }

    #[async_trait::async_trait]
    impl Store for PausingStore {
        async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(table, key).await
        }
        async fn scan_prefix(
            &self,
            table: Table,
            prefix: &[u8],
        ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
            let pause = {
                let mut p = self.pause.lock().unwrap();
                if p.as_ref().is_some_and(|p| p.table == table) && prefix.is_empty() {
                    p.take()
                } else {
                    None
                }
            };
            if let Some(p) = pause {
                let _ = p.reached.send(());
                let _ = p.resume.await;
            }
            self.inner.scan_prefix(table, prefix).await
        }
        async fn scan_range(
            &self,
            table: Table,
            start: &[u8],
            end: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
            self.inner.scan_range(table, start, end, limit).await
        }
        async fn last(&self, table: Table) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
            self.inner.last(table).await
        }
        async fn apply(&self, batch: Batch) -> Result<(), StoreError> {
            self.inner.apply(batch).await
        }
        async fn apply_all(&self, batches: &[&Batch]) -> Result<(), StoreError> {
            self.inner.apply_all(batches).await
        }
        async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
            self.inner.commit(batch).await
        }
        async fn sync(&self) -> Result<(), StoreError> {
            self.inner.sync().await
        }
    }

    /// Issue 14: a backup copies the keyring before the metadata. A rotation committing
    /// between the two (rotation commits outside the access-log writer that the copy holds)
    /// gave a backup with epoch 1 only in its keyring and epoch 2 active in its metadata: it
    /// restored, then refused every new supporter and never rotated again. The copy is
    /// stopped here just before the metadata, and a rotation is made to run then.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backup_during_a_key_rotation_restores_a_vault_that_takes_supporters_and_rotates() {
        let base = tempfile::tempdir().unwrap();
        let a = base.path().join("a");
        fs::create_dir_all(&a).unwrap();
        let key = a.join("root.key");
        let (root, _) = RootKey::load_or_create(&key).unwrap();
        let store = Arc::new(PausingStore {
            inner: SledStore::open(&a.join("store"), &SledOptions::default()).unwrap(),
            pause: std::sync::Mutex::new(None),
        });
        let vault = Vault::with_store(
            Arc::clone(&store) as Arc<dyn Store>,
            &root,
            crate::journal::AuditOptions::default(),
        )
        .await
        .unwrap();
        vault.install_purposes(None).await.unwrap();
        let vault = Arc::new(vault);
        let tool = caller(Role::CampaignTool, Some("membership"));
        let admin = caller(Role::Admin, None);
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push(vault.upsert(&tool, &person(i), &[]).await.unwrap().id);
        }

        let (reached, resume) = store.pause_next_scan(Table::Meta);
        let path = base.path().join("backups").join("during-rotation");
        let backup = {
            let (vault, admin, path) = (Arc::clone(&vault), admin.clone(), path.clone());
            tokio::spawn(async move { vault.backup(&admin, &path).await })
        };
        // The copy has taken the keyring and the subject keys, holds the writer, and waits
        // before the metadata.
        reached.await.unwrap();
        let rotation = match vault.key_ops.try_lock() {
            // Nothing stops a rotation now (the build before the fix): its whole key work
            // runs, as `rotate_keys` would run it, while the copy waits.
            Ok(_ops) => {
                vault.rotate_locked(None).await.unwrap();
                None
            }
            // The backup holds the key lock: a rotation waits for the backup to end.
            Err(_) => {
                let (vault, admin) = (Arc::clone(&vault), admin.clone());
                Some(tokio::spawn(async move { vault.rotate_keys(&admin).await }))
            }
        };
        resume.send(()).unwrap();
        let manifest = backup.await.unwrap().unwrap();
        if let Some(rotation) = rotation {
            assert_eq!(rotation.await.unwrap().unwrap().epoch, 2);
        }
        assert_eq!(manifest.epochs, vec![1], "taken before the rotation");
        // The live vault rotated and still works.
        assert_eq!(vault.keyring().active_epoch(), 2);
        vault.upsert(&tool, &person(100), &[]).await.unwrap();
        vault.audit.close().await.unwrap();
        drop(vault);

        let c = base.path().join("c");
        let report = Vault::restore(&options(&c, &key), &path, accept_the_risk())
            .await
            .unwrap();
        assert_eq!(report.backup, manifest);
        let (restored, _) = Vault::open(&options(&c, &key)).await.unwrap();
        for (i, id) in ids.iter().enumerate() {
            let s = restored
                .get(&tool, id, FieldSet::all())
                .await
                .unwrap()
                .supporter;
            assert_eq!(s.email, person(i as u64).email);
        }
        // New supporters are taken, and keys rotate again, twice.
        let new = restored.upsert(&tool, &person(200), &[]).await.unwrap().id;
        let r = restored.rotate_keys(&admin).await.unwrap();
        assert_eq!((r.epoch, r.rewrapped), (2, 21));
        assert_eq!(restored.rotate_keys(&admin).await.unwrap().epoch, 3);
        restored.upsert(&tool, &person(201), &[]).await.unwrap();
        let s = restored
            .get(&tool, &new, FieldSet::all())
            .await
            .unwrap()
            .supporter;
        assert_eq!(s.email, person(200).email);
        restored.audit.close().await.unwrap();
    }

    /// A backup whose keyring lacks an epoch its subject keys and metadata name (a row
    /// deleted by hand, the manifest's counts adjusted to match) is refused before anything
    /// is touched.
    #[tokio::test]
    async fn a_backup_whose_key_epochs_do_not_fit_together_is_refused() {
        let base = tempfile::tempdir().unwrap();
        let a = base.path().join("a");
        let key = a.join("root.key");
        let (vault, _) = Vault::open(&VaultOptions::new(&a)).await.unwrap();
        vault.install_purposes(None).await.unwrap();
        let tool = caller(Role::CampaignTool, Some("membership"));
        let admin = caller(Role::Admin, None);
        for i in 0..3 {
            vault.upsert(&tool, &person(i), &[]).await.unwrap();
        }
        vault.rotate_keys(&admin).await.unwrap();
        let path = base.path().join("b");
        let manifest = vault.backup(&admin, &path).await.unwrap();
        assert_eq!(manifest.epochs, vec![1, 2]);
        vault.audit.close().await.unwrap();
        drop(vault);

        // The intact backup passes the check; without keyring row 2 it does not.
        let restorable = base.path().join("restorable");
        Vault::restore(&options(&restorable, &key), &path, accept_the_risk())
            .await
            .unwrap();
        {
            let staged =
                SledStore::open(&path.join(BACKUP_STORE_DIR), &SledOptions::default()).unwrap();
            let mut b = Batch::new();
            b.delete(Table::Keyring, &2u32.to_be_bytes());
            staged.commit(b).await.unwrap();
        }
        let mut edited = manifest.clone();
        *edited.tables.get_mut("keyring").unwrap() -= 1;
        fs::write(
            path.join(MANIFEST_FILE),
            serde_json::to_vec_pretty(&edited).unwrap(),
        )
        .unwrap();
        let c = base.path().join("c");
        let e = Vault::restore(&options(&c, &key), &path, accept_the_risk())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("the backup is inconsistent")
                && msg.contains("key epoch 2")
                && msg.contains("nothing was changed"),
            "{msg}"
        );
        assert!(!c.exists(), "nothing was created");
    }

    /// Issue 14: with the target store lost, its erasure journal is lost too. A restore then
    /// needs a journal file at least as new as the backup, or an explicit go-ahead.
    #[tokio::test]
    async fn a_restore_without_a_journal_as_new_as_the_backup_is_refused_unless_told() {
        let base = tempfile::tempdir().unwrap();
        let a = base.path().join("a");
        let key = a.join("root.key");
        let (vault, _) = Vault::open(&VaultOptions::new(&a)).await.unwrap();
        vault.install_purposes(None).await.unwrap();
        let tool = caller(Role::CampaignTool, Some("membership"));
        let admin = caller(Role::Admin, None);
        let dpo = caller(Role::Dpo, Some(crate::purpose::DPO_PURPOSE));
        let kept = vault.upsert(&tool, &person(1), &[]).await.unwrap().id;
        let erased = vault.upsert(&tool, &person(2), &[]).await.unwrap().id;
        let stale = vault.export_erasure_journal(&admin).await.unwrap();
        let path = base.path().join("b");
        let manifest = vault.backup(&admin, &path).await.unwrap();
        vault.erase(&dpo, &erased, "REQ-1", false).await.unwrap();
        let fresh = vault.export_erasure_journal(&admin).await.unwrap();
        assert_eq!(fresh.rows.len(), 1);
        assert!(fresh.covers(manifest.taken_at_us) && !stale.covers(manifest.taken_at_us));
        let e = vault.export_erasure_journal(&tool).await.unwrap_err();
        assert!(matches!(e, Error::PermissionDenied(_)), "{e}");
        let fresh_file = base.path().join("journal.json");
        fresh.write_file(&fresh_file).unwrap();
        vault.audit.close().await.unwrap();
        drop(vault);

        // No target store, and no journal, a journal of unknown age, or one older than the
        // backup: refused, nothing created.
        let c = base.path().join("c");
        let undated = ErasureJournal {
            as_of_us: None,
            ..fresh.clone()
        };
        for journals in [vec![], vec![undated], vec![stale]] {
            let restore = RestoreOptions {
                journals,
                accept_erased_people_may_return: false,
            };
            let e = Vault::restore(&options(&c, &key), &path, restore)
                .await
                .unwrap_err();
            assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
            let msg = e.to_string();
            for needle in [
                "no erasure journal at least as new as the backup",
                "there is no store in the data directory",
                "Nothing was changed",
                "--journal FILE",
                "--accept-erased-people-may-return",
            ] {
                assert!(msg.contains(needle), "{needle:?} not in {msg}");
            }
            assert!(!c.exists(), "nothing was created");
        }

        // With the fresh export: the person erased after the backup stays erased.
        let restore = RestoreOptions {
            journals: vec![ErasureJournal::read_file(&fresh_file).unwrap()],
            accept_erased_people_may_return: false,
        };
        let report = Vault::restore(&options(&c, &key), &path, restore)
            .await
            .unwrap();
        assert_eq!((report.erasures_replayed, report.journal_rows), (1, 1));
        assert!(!report.erased_people_may_return);
        assert_eq!(report.journal_as_of_us, fresh.as_of_us);
        let (restored, _) = Vault::open(&options(&c, &key)).await.unwrap();
        assert!(restored.get(&tool, &kept, FieldSet::all()).await.is_ok());
        let e = restored
            .get(&tool, &erased, FieldSet::all())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e}");
        restored.audit.close().await.unwrap();
        drop(restored);

        // Told to go on without one: it runs, says so, and the person is back.
        let d = base.path().join("d");
        let report = Vault::restore(&options(&d, &key), &path, accept_the_risk())
            .await
            .unwrap();
        assert!(report.erased_people_may_return);
        assert_eq!(report.erasures_replayed, 0);
        let (restored, _) = Vault::open(&options(&d, &key)).await.unwrap();
        assert!(restored.get(&tool, &erased, FieldSet::all()).await.is_ok());
        restored.audit.close().await.unwrap();
        drop(restored);

        // A store left by an interrupted restore is no proof of what was erased since: its
        // own journal does not count, the journal that restore saved does.
        let store = SledStore::open(&d.join("store"), &SledOptions::default()).unwrap();
        let mut b = Batch::new();
        b.put(Table::Meta, meta::RESTORE_PENDING, b"x".to_vec());
        store.commit(b).await.unwrap();
        drop(store);
        let e = Vault::restore(&options(&d, &key), &path, RestoreOptions::default())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("interrupted restore"), "{e}");
    }
}
