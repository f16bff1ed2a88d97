//! Key epochs over time: rotation, retirement and destruction. This is what makes an
//! erasure hold for the stale copies of a person's data that storage keeps.
//!
//! Erasing a supporter deletes their wrapped data key, but log-structured pages, a
//! database's write-ahead log and backups keep stale copies of it. Every such copy is
//! wrapped under a key epoch; once that epoch is destroyed, no copy wrapped under it opens
//! again. So:
//!
//! - [`Vault::rotate_keys`] creates epoch N+1, the new active epoch, and retires every older
//!   one in the same batch; then it re-wraps every live subject key under N+1. Records are
//!   not re-encrypted: they stay sealed under their subject key, only its wrapping changes.
//! - [`Vault::destroy_expired_epochs`] deletes every retired epoch whose retirement is older
//!   than the backup window ([`KeyOptions::backup_window`]), after moving any subject key
//!   still under it to the active epoch. Until then, a backup taken while the epoch was
//!   active can still be restored.
//! - [`Vault::rotate_if_due`] rotates when the active epoch is older than
//!   [`KeyOptions::rotate_every`]. The daemon runs it and the destruction at start, then
//!   whenever [`Vault::key_work_due_in`] says the next one is due (at least hourly).
//!
//! A stale copy of an erased person's data key is therefore undecryptable at most
//! `rotate_every + backup_window` after the erasure (SECURITY.md states the bound and what
//! it assumes).
//!
//! Epoch metadata (`created_at_us`, `retired_at_us`, JSON) lives in [`Table::Meta`] under
//! `epoch/<n>`, written in the batch that creates, retires or destroys the epoch.
//!
//! # Replicas and stale keyrings
//!
//! Each process holds the keyring in memory and wraps new subject keys under its active
//! epoch, so after a rotation on another replica a process may still wrap under the old
//! one. Two mechanisms keep that from ever leaving a subject key under a destroyed epoch:
//!
//! 1. A write creating a subject key pins its epoch ([`Vault::wrap_new_subject_key`]): the
//!    batch checks that the epoch's metadata still reads "not retired". A rotation retires
//!    the old epoch in the batch that creates the new one, so a stale writer either commits
//!    before the rotation (and the rotation's re-wrap pass, which scans afterwards, moves
//!    its key) or fails its check, reloads the keyring and wraps under the new epoch.
//! 2. Destruction first re-wraps every subject key not under the active epoch, and only
//!    then deletes the epoch: a write that does not pin its epoch (an older build during a
//!    rolling upgrade) and wrapped a key under a retired epoch since the rotation is moved
//!    in time, unless it commits between that pass and the deletion, a window that pinning
//!    closes.
//!
//! Destruction also reloads the keyring, so the daemon's housekeeping (at least hourly)
//! bounds how long any replica keeps a stale one. Rotation and destruction hold `key_ops` in this
//! process; across replicas every step is a compare-and-set batch: concurrent rotations
//! adopt each other's new epoch, and a row re-wrapped (or erased) by someone else meanwhile
//! is re-read, never overwritten: an erased subject's key is never re-created.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Vault, now_us, read_epochs};
use crate::access::{Caller, Role, Rpc};
use crate::crypto::Key256;
use crate::crypto::keyring::{self, Keyring};
use crate::error::{Error, IntegrityObject, Result};
use crate::storage::schema::meta;
use crate::storage::{Batch, Store, StoreError, Table};
use crate::txn;

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
/// Subject keys read, and re-wrapped in one batch, at a time.
const REWRAP_CHUNK: usize = 256;
/// Client id of the access-log entries of scheduled key work (no client calls it).
pub const SYSTEM_CLIENT_ID: &str = "system";

/// When keys rotate, and how long a retired epoch is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOptions {
    /// Rotate when the active epoch is older than this ([`Vault::rotate_if_due`]); `None`:
    /// only on request (`Admin.RotateKeys`). Default: 7 days.
    pub rotate_every: Option<Duration>,
    /// How long a retired epoch is kept before it is destroyed: backups taken under it can
    /// be restored for that long after it was retired. Default: 7 days.
    pub backup_window: Duration,
}

impl Default for KeyOptions {
    fn default() -> Self {
        Self {
            rotate_every: Some(WEEK),
            backup_window: WEEK,
        }
    }
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// The new active epoch (created by this call, or by a replica rotating at the same
    /// time).
    pub epoch: u32,
    /// Subject keys re-wrapped under it.
    pub rewrapped: u64,
    /// Epochs destroyed (retired for longer than the backup window).
    pub destroyed: Vec<u32>,
    /// Epochs still held, oldest first: the active one and those inside the backup window.
    pub epochs: Vec<u32>,
}

/// An epoch's dates, in [`Table::Meta`] under `epoch/<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct EpochMeta {
    /// When it was created (or first seen, for epochs from before metadata was kept).
    created_at_us: i64,
    /// When a newer epoch replaced it; `None` while it is active.
    retired_at_us: Option<i64>,
}

fn meta_key(epoch: u32) -> Vec<u8> {
    meta::epoch(epoch)
}

fn meta_json(meta: &EpochMeta) -> Result<Vec<u8>> {
    serde_json::to_vec(meta).map_err(|e| Error::Codec(e.to_string()))
}

fn parse_meta(raw: &[u8]) -> Result<EpochMeta> {
    serde_json::from_slice(raw)
        .map_err(|_| Error::Integrity(IntegrityObject::Metadata("key epoch metadata")))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Adds the metadata of a new, active `epoch` to `batch` (which creates the epoch).
pub(super) fn put_new_epoch_meta(batch: &mut Batch, epoch: u32, now: i64) -> Result<()> {
    let key = meta_key(epoch);
    batch.check(Table::Meta, &key, None).put(
        Table::Meta,
        &key,
        meta_json(&EpochMeta {
            created_at_us: now,
            retired_at_us: None,
        })?,
    );
    Ok(())
}

/// The epoch a wrapped subject key names (its first four bytes).
fn wrapped_epoch(wrapped: &[u8]) -> Option<u32> {
    wrapped
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
}

/// Why the key epochs of `store` do not fit together, if they do not: a subject key under
/// an epoch the keyring lacks, epoch metadata for an epoch the keyring lacks, metadata that
/// does not parse, or metadata that does not make the newest epoch the one active epoch.
/// A store in that state opens, but every write creating a subject key fails (its pinned
/// epoch reads retired) and rotation never succeeds again (the next epoch's metadata is
/// already there). It is what a copy of the tables taken while keys rotated can hold, so
/// a restore checks its backup with this before touching anything.
///
/// An epoch without metadata is not a fault: stores from before epochs carried it have
/// none, and the vault dates such an epoch when it first needs to.
pub(super) async fn epoch_inconsistency(store: &dyn Store) -> Result<Option<String>> {
    let epochs = read_epochs(store).await?;
    let Some(&newest) = epochs.keys().next_back() else {
        return Ok(Some("it holds no key epoch".to_owned()));
    };
    let mut unknown: BTreeMap<u32, u64> = BTreeMap::new();
    let mut malformed = 0u64;
    for (_, wrapped) in store.scan_prefix(Table::SubjectKeys, b"").await? {
        match wrapped_epoch(&wrapped) {
            Some(e) if epochs.contains_key(&e) => {}
            Some(e) => *unknown.entry(e).or_default() += 1,
            None => malformed += 1,
        }
    }
    if let Some((epoch, n)) = unknown.iter().next_back() {
        return Ok(Some(format!(
            "{n} supporter keys are wrapped under key epoch {epoch}, which its keyring \
             (epochs {:?}) does not hold",
            epochs.keys().collect::<Vec<_>>()
        )));
    }
    if malformed > 0 {
        return Ok(Some(format!(
            "{malformed} supporter keys are too short to name their key epoch"
        )));
    }
    let mut active = Vec::new();
    for (key, raw) in store
        .scan_prefix(Table::Meta, meta::EPOCH_PREFIX.as_bytes())
        .await?
    {
        let name = String::from_utf8_lossy(&key).into_owned();
        let epoch = name
            .strip_prefix(meta::EPOCH_PREFIX)
            .and_then(|n| n.parse::<u32>().ok());
        let Some(epoch) = epoch.filter(|e| meta_key(*e) == key) else {
            return Ok(Some(format!(
                "its metadata row {name:?} names no key epoch"
            )));
        };
        if !epochs.contains_key(&epoch) {
            return Ok(Some(format!(
                "its metadata describes key epoch {epoch}, which its keyring (epochs {:?}) \
                 does not hold",
                epochs.keys().collect::<Vec<_>>()
            )));
        }
        let Ok(meta) = parse_meta(&raw) else {
            return Ok(Some(format!(
                "the metadata of key epoch {epoch} does not parse"
            )));
        };
        if meta.retired_at_us.is_none() {
            active.push(epoch);
        }
    }
    if active.iter().any(|e| *e != newest) {
        return Ok(Some(format!(
            "its metadata marks key epochs {active:?} active, where only the newest, {newest}, \
             may be"
        )));
    }
    let newest_retired = match store.get(Table::Meta, &meta_key(newest)).await? {
        Some(raw) => parse_meta(&raw)?.retired_at_us.is_some(),
        None => false,
    };
    if newest_retired {
        return Ok(Some(format!(
            "its metadata marks its newest key epoch, {newest}, retired, so no epoch is active"
        )));
    }
    Ok(None)
}

/// What re-wrapping one stored subject key under a keyring's active epoch gives.
enum Rewrapped {
    /// The key wrapped under the active epoch.
    New(Vec<u8>),
    /// Already under the active epoch.
    Current,
    /// Under an epoch the keyring does not hold (newer, or destroyed).
    UnknownEpoch,
    /// Cannot be opened (malformed or altered): it stays as it is.
    Unreadable,
}

fn rewrap_value(ring: &Keyring, id: &[u8], wrapped: &[u8]) -> Result<Rewrapped> {
    let Some(epoch) = wrapped_epoch(wrapped) else {
        return Ok(Rewrapped::Unreadable);
    };
    if epoch == ring.active_epoch() {
        return Ok(Rewrapped::Current);
    }
    if !ring.has_epoch(epoch) {
        return Ok(Rewrapped::UnknownEpoch);
    }
    let Ok(subject) = std::str::from_utf8(id) else {
        return Ok(Rewrapped::Unreadable);
    };
    match ring.unwrap_subject_key(subject, wrapped) {
        Ok(dek) => Ok(Rewrapped::New(ring.wrap_subject_key(subject, &dek)?)),
        Err(_) => Ok(Rewrapped::Unreadable),
    }
}

/// How one row's re-wrap ended.
enum RowOutcome {
    Moved,
    Skipped,
    Unreadable,
}

/// The caller recorded in the access log for scheduled key work.
fn system_caller() -> Caller {
    Caller {
        client_id: SYSTEM_CLIENT_ID.to_owned(),
        role: Role::Admin,
        allowed_purposes: BTreeSet::new(),
        purpose: None,
        request_id: format!("system-{}", uuid::Uuid::new_v4().simple()),
    }
}

impl Vault {
    /// Sets the rotation schedule and backup window (for vaults opened with
    /// [`Vault::with_store`]; [`Vault::open`] takes them from `VaultOptions::keys`).
    pub fn with_key_options(mut self, keys: KeyOptions) -> Self {
        self.key_options = keys;
        self
    }

    /// The rotation schedule and backup window in force.
    pub fn key_options(&self) -> &KeyOptions {
        &self.key_options
    }

    /// Rotates the key epochs (`Admin.RotateKeys`): creates a new active epoch, re-wraps
    /// every live subject key under it, then destroys the epochs retired for longer than
    /// the backup window.
    pub async fn rotate_keys(&self, caller: &Caller) -> Result<RotationReport> {
        let mut log = self.record(caller, Rpc::AdminRotateKeys);
        let result = async {
            let registry = self.registry().await?;
            self.decide(
                &mut log,
                caller,
                Rpc::AdminRotateKeys,
                &registry,
                None,
                None,
            )?;
            let _ops = self.key_ops.lock().await;
            self.rotate_locked(None).await
        }
        .await;
        log.finish(&self.audit, result).await
    }

    /// Rotates if the active epoch is older than [`KeyOptions::rotate_every`]; returns the
    /// new epoch. A rotation is logged as a system action (client `system`, role admin);
    /// a check that finds nothing due writes no entry.
    ///
    /// An active epoch without metadata (a store from before epochs carried it) is dated
    /// now: its schedule starts from the first check.
    pub async fn rotate_if_due(&self) -> Result<Option<u32>> {
        let Some(every) = self.key_options.rotate_every else {
            return Ok(None);
        };
        let _ops = self.key_ops.lock().await;
        let Some(active) = self.rotation_due(every).await? else {
            return Ok(None);
        };
        let caller = system_caller();
        let log = self.record(&caller, Rpc::AdminRotateKeys);
        let result = self
            .rotate_locked(Some(active))
            .await
            .map(|r| Some(r.epoch));
        log.finish(&self.audit, result).await
    }

    /// Destroys every epoch that is not active and was retired at least the backup window
    /// ago; returns them. Every subject key still under one of them is first re-wrapped
    /// under the active epoch, so no key is ever left under a destroyed epoch. Also
    /// reloads this process's keyring. Logged as a system action when it destroyed
    /// something (or failed); a run with nothing to destroy writes no entry.
    pub async fn destroy_expired_epochs(&self) -> Result<Vec<u32>> {
        let _ops = self.key_ops.lock().await;
        let caller = system_caller();
        let log = self.record(&caller, Rpc::AdminRotateKeys);
        let result = self.destroy_expired_locked().await;
        match result {
            Ok(destroyed) if destroyed.is_empty() => Ok(destroyed),
            result => log.finish(&self.audit, result).await,
        }
    }

    /// How long until key work is due: the scheduled rotation of the active epoch, or the
    /// destruction of a retired epoch at the end of the backup window (zero when due now;
    /// `None` when nothing is scheduled). The daemon sleeps that long (at most an hour)
    /// between runs of [`Vault::rotate_if_due`] and [`Vault::destroy_expired_epochs`], so
    /// both happen on time, not at the next hourly check.
    pub async fn key_work_due_in(&self) -> Result<Option<Duration>> {
        let stored = read_epochs(self.store.as_ref()).await?;
        let Some(&active) = stored.keys().next_back() else {
            return Ok(None);
        };
        let now = now_us();
        let window = micros(self.key_options.backup_window);
        let mut next: Option<i64> = None;
        for &epoch in stored.keys() {
            let meta = match self.store.get(Table::Meta, &meta_key(epoch)).await? {
                Some(raw) => Some(parse_meta(&raw)?),
                None => None,
            };
            let at = if epoch == active {
                match (self.key_options.rotate_every, meta) {
                    (None, _) => continue,
                    (Some(every), Some(m)) => m.created_at_us.saturating_add(micros(every)),
                    // Undated: the next check dates it.
                    (Some(_), None) => now,
                }
            } else {
                match meta.and_then(|m| m.retired_at_us) {
                    Some(retired) => retired.saturating_add(window),
                    None => now,
                }
            };
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        Ok(next.map(|at| Duration::from_micros(u64::try_from(at - now.min(at)).unwrap_or(0))))
    }

    /// Wraps `dek`, a new data key for `subject`, under the active epoch, and pins that
    /// epoch in `batch`: the batch fails with a conflict if the epoch is retired before it
    /// commits (a rotation here or on a replica). A retry then wraps under the new epoch,
    /// reloading the keyring if it is stale. Every write that creates a subject key should
    /// wrap it this way (see the module documentation).
    pub(crate) async fn wrap_new_subject_key(
        &self,
        batch: &mut Batch,
        subject: &str,
        dek: &Key256,
    ) -> Result<Vec<u8>> {
        let (ring, key, raw) = self.open_epoch().await?;
        batch.check(Table::Meta, &key, Some(&raw));
        ring.wrap_subject_key(subject, dek)
    }

    // ---- internals -------------------------------------------------------------------

    /// The keyring whose active epoch is not retired, with that epoch's metadata key and
    /// value as read (what a write pins). Reloads the keyring when it is stale.
    async fn open_epoch(&self) -> Result<(Arc<Keyring>, Vec<u8>, Vec<u8>)> {
        let mut ring = self.keyring();
        txn::retry!("key epochs", {
            let key = meta_key(ring.active_epoch());
            match self.store.get(Table::Meta, &key).await? {
                Some(raw) if parse_meta(&raw)?.retired_at_us.is_none() => {
                    return Ok((Arc::clone(&ring), key, raw));
                }
                Some(_) => ring = self.reload_keyring().await?,
                None => {
                    if !self.date_epoch(ring.active_epoch()).await? {
                        ring = self.reload_keyring().await?;
                    }
                }
            }
            // A stale keyring (rotated meanwhile) or an epoch just dated: read again.
            Err(txn::stale(Table::Meta.name()))
        })
    }

    /// Writes the missing metadata of `epoch` as active since now, if it is still the
    /// newest epoch in the store (a store from before epochs carried metadata). Returns
    /// `false` when it is not (destroyed, or a newer epoch exists): the keyring is stale.
    async fn date_epoch(&self, epoch: u32) -> Result<bool> {
        let stored = read_epochs(self.store.as_ref()).await?;
        let Some(wrapped) = stored.get(&epoch) else {
            return Ok(false);
        };
        if stored.keys().next_back() != Some(&epoch) {
            return Ok(false);
        }
        let mut b = Batch::new();
        b.check(Table::Keyring, &epoch.to_be_bytes(), Some(wrapped));
        if let Some(next) = epoch.checked_add(1) {
            b.check(Table::Keyring, &next.to_be_bytes(), None);
        }
        put_new_epoch_meta(&mut b, epoch, now_us())?;
        match self.store.commit(b).await {
            Ok(()) | Err(StoreError::Conflict(_)) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// The active epoch if it is older than `every`.
    async fn rotation_due(&self, every: Duration) -> Result<Option<u32>> {
        let stored = read_epochs(self.store.as_ref()).await?;
        let Some(&active) = stored.keys().next_back() else {
            return Ok(None);
        };
        let Some(raw) = self.store.get(Table::Meta, &meta_key(active)).await? else {
            self.date_epoch(active).await?;
            return Ok(None);
        };
        let meta = parse_meta(&raw)?;
        Ok((meta.created_at_us.saturating_add(micros(every)) <= now_us()).then_some(active))
    }

    /// The rotation proper (under `key_ops`). `seen`: the active epoch the caller decided
    /// to rotate away from; if a replica rotated since, its epoch is adopted.
    pub(super) async fn rotate_locked(&self, seen: Option<u32>) -> Result<RotationReport> {
        let epoch = self.open_next_epoch(seen).await?;
        self.reload_keyring().await?;
        let rewrapped = self.rewrap_all().await?;
        let destroyed = self.destroy_expired_locked().await?;
        Ok(RotationReport {
            epoch,
            rewrapped,
            destroyed,
            epochs: self.keyring().epochs(),
        })
    }

    /// Creates the epoch after the newest, retiring every older one in the same batch.
    /// If another replica creates it first, re-reads, and adopts the epoch the replica
    /// created rather than rotating twice.
    async fn open_next_epoch(&self, mut seen: Option<u32>) -> Result<u32> {
        txn::retry!("key rotation", {
            let stored = read_epochs(self.store.as_ref()).await?;
            let current = *stored
                .keys()
                .next_back()
                .ok_or(Error::Integrity(IntegrityObject::Metadata("no key epoch")))?;
            if seen.is_some_and(|s| current > s) {
                return Ok(current);
            }
            seen = Some(current);
            let next = current.checked_add(1).ok_or_else(|| {
                Error::FailedPrecondition("the key epoch numbers are exhausted".into())
            })?;
            let now = now_us();
            let mut b = Batch::new();
            let next_key = next.to_be_bytes();
            b.check(Table::Keyring, &next_key, None).put(
                Table::Keyring,
                &next_key,
                keyring::new_wrapped_epoch(&self.root, next)?,
            );
            put_new_epoch_meta(&mut b, next, now)?;
            for &epoch in stored.keys() {
                let key = meta_key(epoch);
                let raw = self.store.get(Table::Meta, &key).await?;
                let meta = match raw.as_deref() {
                    Some(r) => parse_meta(r)?,
                    None => EpochMeta {
                        created_at_us: now,
                        retired_at_us: None,
                    },
                };
                if meta.retired_at_us.is_none() {
                    let retired = EpochMeta {
                        retired_at_us: Some(now),
                        ..meta
                    };
                    b.check(Table::Meta, &key, raw.as_deref()).put(
                        Table::Meta,
                        &key,
                        meta_json(&retired)?,
                    );
                }
            }
            self.store.commit(b).await?;
            Ok(next)
        })
    }

    /// Destroys the expired epochs (under `key_ops`); see
    /// [`Vault::destroy_expired_epochs`].
    async fn destroy_expired_locked(&self) -> Result<Vec<u32>> {
        let window = micros(self.key_options.backup_window);
        txn::retry!("key epoch destruction", {
            let stored = read_epochs(self.store.as_ref()).await?;
            self.reload_keyring().await?;
            let Some(&active) = stored.keys().next_back() else {
                return Ok(Vec::new());
            };
            let now = now_us();
            let mut expired = Vec::new();
            let mut dated = false;
            for &epoch in stored.keys().filter(|&&e| e != active) {
                let key = meta_key(epoch);
                let raw = self.store.get(Table::Meta, &key).await?;
                let meta = raw.as_deref().map(parse_meta).transpose()?;
                match meta.and_then(|m| m.retired_at_us) {
                    Some(at) if at.saturating_add(window) <= now => expired.push((epoch, raw)),
                    Some(_) => {}
                    None => {
                        // Superseded but never marked retired (metadata from before
                        // epochs carried it): retired from now on.
                        let retired = EpochMeta {
                            created_at_us: meta.map_or(now, |m| m.created_at_us),
                            retired_at_us: Some(now),
                        };
                        let mut b = Batch::new();
                        b.check(Table::Meta, &key, raw.as_deref()).put(
                            Table::Meta,
                            &key,
                            meta_json(&retired)?,
                        );
                        match self.store.commit(b).await {
                            Ok(()) | Err(StoreError::Conflict(_)) => dated = true,
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
            if dated {
                // Epochs just marked retired: decide on what the store now says.
                return Err(txn::stale(Table::Meta.name()));
            }
            if expired.is_empty() {
                return Ok(Vec::new());
            }
            // First move every subject key off the old epochs (a replica with a stale
            // keyring may have wrapped one under them since the rotation) ...
            self.rewrap_all().await?;
            // ... then delete them, each exactly as read, and only while the active epoch
            // still exists.
            let mut b = Batch::new();
            b.check(
                Table::Keyring,
                &active.to_be_bytes(),
                stored.get(&active).map(Vec::as_slice),
            );
            for (epoch, raw) in &expired {
                let key = epoch.to_be_bytes();
                b.check(Table::Keyring, &key, stored.get(epoch).map(Vec::as_slice))
                    .delete(Table::Keyring, &key);
                let meta = meta_key(*epoch);
                b.check(Table::Meta, &meta, raw.as_deref())
                    .delete(Table::Meta, &meta);
            }
            self.store.commit(b).await?;
            self.reload_keyring().await?;
            let destroyed: Vec<u32> = expired.into_iter().map(|(e, _)| e).collect();
            tracing::info!(epochs = ?destroyed, "destroyed expired key epochs");
            Ok(destroyed)
        })
    }

    /// Re-wraps every subject key that is not under the active epoch, chunk by chunk;
    /// returns how many it moved. Keys that cannot be opened (altered, or under an epoch
    /// already destroyed) stay as they are and are counted in the daemon's log (no ids).
    async fn rewrap_all(&self) -> Result<u64> {
        let mut start = Vec::new();
        let (mut moved, mut unreadable) = (0u64, 0u64);
        loop {
            let rows = self
                .store
                .scan_range(Table::SubjectKeys, &start, None, REWRAP_CHUNK)
                .await?;
            let full = rows.len() == REWRAP_CHUNK;
            let Some((last, _)) = rows.last() else {
                break;
            };
            start.clone_from(last);
            start.push(0);
            let active = self.keyring().active_epoch();
            let stale: Vec<(Vec<u8>, Vec<u8>)> = rows
                .into_iter()
                .filter(|(_, w)| wrapped_epoch(w) != Some(active))
                .collect();
            if !stale.is_empty() {
                let (m, u) = self.rewrap_rows(&stale).await?;
                moved += m;
                unreadable += u;
            }
            if !full {
                break;
            }
        }
        if unreadable > 0 {
            tracing::error!(
                unreadable,
                "subject keys that cannot be opened (altered, or under a destroyed key epoch) \
                 were left as they are; their supporters' data cannot be read"
            );
        }
        Ok(moved)
    }

    /// Re-wraps `rows` (id, wrapped key as read) under the active epoch: all in one batch
    /// when none changed since it was read, else row by row. Returns (moved, unreadable).
    async fn rewrap_rows(&self, rows: &[(Vec<u8>, Vec<u8>)]) -> Result<(u64, u64)> {
        let (ring, pin, pinned) = self.open_epoch().await?;
        let mut b = Batch::new();
        b.check(Table::Meta, &pin, Some(&pinned));
        let mut whole = true;
        for (id, wrapped) in rows {
            match rewrap_value(&ring, id, wrapped)? {
                Rewrapped::New(new) => {
                    b.check(Table::SubjectKeys, id, Some(wrapped))
                        .put(Table::SubjectKeys, id, new);
                }
                _ => {
                    whole = false;
                    break;
                }
            }
        }
        if whole {
            match self.store.commit(b).await {
                Ok(()) => return Ok((rows.len() as u64, 0)),
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let (mut moved, mut unreadable) = (0u64, 0u64);
        for (id, _) in rows {
            match self.rewrap_one(id).await? {
                RowOutcome::Moved => moved += 1,
                RowOutcome::Skipped => {}
                RowOutcome::Unreadable => unreadable += 1,
            }
        }
        Ok((moved, unreadable))
    }

    /// Re-wraps one subject key, re-reading it first: a key erased meanwhile stays erased,
    /// one already under the active epoch is left alone.
    async fn rewrap_one(&self, id: &[u8]) -> Result<RowOutcome> {
        let mut reloaded = false;
        txn::retry!("re-wrapping subject keys", {
            let Some(wrapped) = self.store.get(Table::SubjectKeys, id).await? else {
                return Ok(RowOutcome::Skipped);
            };
            let (ring, pin, pinned) = self.open_epoch().await?;
            let new = match rewrap_value(&ring, id, &wrapped)? {
                Rewrapped::New(new) => new,
                Rewrapped::Current => return Ok(RowOutcome::Skipped),
                Rewrapped::Unreadable => return Ok(RowOutcome::Unreadable),
                Rewrapped::UnknownEpoch if !reloaded => {
                    // A replica may have rotated since this keyring was loaded.
                    reloaded = true;
                    self.reload_keyring().await?;
                    return Err(txn::stale(Table::Keyring.name()));
                }
                Rewrapped::UnknownEpoch => return Ok(RowOutcome::Unreadable),
            };
            let mut b = Batch::new();
            b.check(Table::Meta, &pin, Some(&pinned))
                .check(Table::SubjectKeys, id, Some(&wrapped))
                .put(Table::SubjectKeys, id, new);
            self.store.commit(b).await?;
            Ok(RowOutcome::Moved)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::audit::entry::AuditEntry;
    use crate::crypto::RootKey;
    use crate::journal::AuditOptions;
    use crate::storage::sled_store::SledOptions;
    use crate::storage::{SledStore, Store};
    use crate::supporter::{FieldSet, Supporter};
    use crate::vault::VaultOptions;

    const DAY_US: i64 = 24 * 3600 * 1_000_000;

    fn zero_window() -> KeyOptions {
        KeyOptions {
            rotate_every: None,
            backup_window: Duration::ZERO,
        }
    }

    async fn open(dir: &Path, keys: KeyOptions) -> Vault {
        let mut options = VaultOptions::new(dir);
        options.keys = keys;
        let (vault, _) = Vault::open(&options).await.unwrap();
        vault.install_purposes(None).await.unwrap();
        vault
    }

    /// Two vaults on one store, as two replicas sharing a database.
    async fn replicas(dir: &Path, x: KeyOptions, y: KeyOptions) -> (Vault, Vault) {
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(&dir.join("store"), &SledOptions::default()).unwrap());
        let root = RootKey::from_key(Key256::from_bytes(&[7; 32]));
        let a = Vault::with_store(Arc::clone(&store), &root, AuditOptions::default())
            .await
            .unwrap()
            .with_key_options(x);
        a.install_purposes(None).await.unwrap();
        let b = Vault::with_store(store, &root, AuditOptions::default())
            .await
            .unwrap()
            .with_key_options(y);
        (a, b)
    }

    fn caller(role: Role, purpose: Option<&str>) -> Caller {
        Caller {
            client_id: format!("{role}-client"),
            role,
            allowed_purposes: purpose.iter().map(|p| (*p).to_owned()).collect(),
            purpose: purpose.map(str::to_owned),
            request_id: "test".into(),
        }
    }

    fn admin() -> Caller {
        caller(Role::Admin, None)
    }

    fn tool() -> Caller {
        caller(Role::CampaignTool, Some("membership"))
    }

    async fn add(vault: &Vault, email: &str) -> String {
        let s = Supporter {
            given_name: "Ada".into(),
            email: email.into(),
            ..Supporter::default()
        };
        vault.upsert(&tool(), &s, &[]).await.unwrap().id
    }

    async fn email_of(vault: &Vault, id: &str) -> String {
        vault
            .get(&tool(), id, FieldSet::empty())
            .await
            .unwrap()
            .supporter
            .email
    }

    /// Epoch of every stored subject key, by id.
    async fn key_epochs(vault: &Vault) -> BTreeMap<String, u32> {
        vault
            .store
            .scan_prefix(Table::SubjectKeys, b"")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), wrapped_epoch(&v).unwrap()))
            .collect()
    }

    async fn stored_epochs(vault: &Vault) -> Vec<u32> {
        read_epochs(vault.store.as_ref())
            .await
            .unwrap()
            .into_keys()
            .collect()
    }

    async fn meta(vault: &Vault, epoch: u32) -> Option<EpochMeta> {
        vault
            .store
            .get(Table::Meta, &meta_key(epoch))
            .await
            .unwrap()
            .map(|raw| parse_meta(&raw).unwrap())
    }

    async fn set_meta(vault: &Vault, epoch: u32, meta: EpochMeta) {
        let mut b = Batch::new();
        b.put(Table::Meta, &meta_key(epoch), meta_json(&meta).unwrap());
        vault.store.commit(b).await.unwrap();
    }

    async fn last_entry(vault: &Vault) -> AuditEntry {
        let (_, raw) = vault
            .store
            .last(Table::AuditEntries)
            .await
            .unwrap()
            .unwrap();
        AuditEntry::decode(&raw).unwrap()
    }

    #[tokio::test]
    async fn rotation_rewraps_and_destroys_with_a_zero_window() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), zero_window()).await;
        let a = add(&vault, "a@example.fr").await;
        let b = add(&vault, "b@example.fr").await;
        assert_eq!(stored_epochs(&vault).await, [1]);
        assert!(meta(&vault, 1).await.unwrap().retired_at_us.is_none());

        let report = vault.rotate_keys(&admin()).await.unwrap();
        assert_eq!(
            report,
            RotationReport {
                epoch: 2,
                rewrapped: 2,
                destroyed: vec![1],
                epochs: vec![2],
            }
        );
        assert_eq!(stored_epochs(&vault).await, [2]);
        assert!(meta(&vault, 1).await.is_none());
        assert!(meta(&vault, 2).await.unwrap().retired_at_us.is_none());
        assert!(key_epochs(&vault).await.values().all(|&e| e == 2));
        assert_eq!(email_of(&vault, &a).await, "a@example.fr");

        // New supporters go under the new epoch; everything survives a reopen.
        let c = add(&vault, "c@example.fr").await;
        assert_eq!(key_epochs(&vault).await[&c], 2);
        vault.access_log().close().await.unwrap();
        drop(vault);
        let vault = open(dir.path(), zero_window()).await;
        for (id, email) in [
            (&a, "a@example.fr"),
            (&b, "b@example.fr"),
            (&c, "c@example.fr"),
        ] {
            assert_eq!(email_of(&vault, id).await, email);
        }
        vault.access_log().close().await.unwrap();
    }

    #[tokio::test]
    async fn retired_epochs_are_kept_for_the_backup_window() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), KeyOptions::default()).await;
        let a = add(&vault, "a@example.fr").await;

        let due = vault.key_work_due_in().await.unwrap().unwrap();
        assert!(
            due > Duration::from_secs(6 * 24 * 3600) && due <= WEEK,
            "{due:?}"
        );
        let report = vault.rotate_keys(&admin()).await.unwrap();
        assert_eq!((report.epoch, report.rewrapped), (2, 1));
        assert!(report.destroyed.is_empty());
        assert_eq!(report.epochs, [1, 2]);
        let retired = meta(&vault, 1).await.unwrap();
        assert!(retired.retired_at_us.is_some());
        assert!(vault.destroy_expired_epochs().await.unwrap().is_empty());

        // Eight days later, the window is over.
        set_meta(
            &vault,
            1,
            EpochMeta {
                retired_at_us: Some(now_us() - 8 * DAY_US),
                ..retired
            },
        )
        .await;
        assert_eq!(vault.key_work_due_in().await.unwrap(), Some(Duration::ZERO));
        assert_eq!(vault.destroy_expired_epochs().await.unwrap(), [1]);
        assert_eq!(stored_epochs(&vault).await, [2]);
        assert_eq!(vault.keyring().epochs(), [2]);
        let entry = last_entry(&vault).await;
        assert_eq!(
            (
                entry.client.as_str(),
                entry.role.as_str(),
                entry.rpc.as_str()
            ),
            (SYSTEM_CLIENT_ID, "admin", "Admin.RotateKeys")
        );
        assert!(entry.allowed());
        assert_eq!(email_of(&vault, &a).await, "a@example.fr");

        let report = vault.rotate_keys(&admin()).await.unwrap();
        assert_eq!((report.epoch, report.epochs), (3, vec![2, 3]));
        vault.access_log().close().await.unwrap();
    }

    #[tokio::test]
    async fn a_key_wrapped_under_a_retired_epoch_is_moved_before_destruction() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), KeyOptions::default()).await;
        let a = add(&vault, "a@example.fr").await;
        vault.rotate_keys(&admin()).await.unwrap();

        // A replica with a stale keyring (and no epoch pinning) writes A's key under
        // epoch 1 after the rotation.
        let epochs = read_epochs(vault.store.as_ref()).await.unwrap();
        let stale = Keyring::unwrap(
            &vault.root,
            &epochs
                .iter()
                .filter(|(e, _)| **e == 1)
                .map(|(e, w)| (*e, w.clone()))
                .collect(),
        )
        .unwrap();
        let current = vault
            .store
            .get(Table::SubjectKeys, a.as_bytes())
            .await
            .unwrap()
            .unwrap();
        let dek = vault.keyring().unwrap_subject_key(&a, &current).unwrap();
        let mut b = Batch::new();
        b.put(
            Table::SubjectKeys,
            a.as_bytes(),
            stale.wrap_subject_key(&a, &dek).unwrap(),
        );
        vault.store.commit(b).await.unwrap();
        assert_eq!(key_epochs(&vault).await[&a], 1);

        let retired = meta(&vault, 1).await.unwrap();
        set_meta(
            &vault,
            1,
            EpochMeta {
                retired_at_us: Some(now_us() - 8 * DAY_US),
                ..retired
            },
        )
        .await;
        assert_eq!(vault.destroy_expired_epochs().await.unwrap(), [1]);
        // Never a key under a destroyed epoch: A was moved first, and still reads.
        assert_eq!(key_epochs(&vault).await[&a], 2);
        assert_eq!(email_of(&vault, &a).await, "a@example.fr");
        vault.access_log().close().await.unwrap();
    }

    #[tokio::test]
    async fn an_erased_or_already_moved_key_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), KeyOptions::default()).await;
        let a = add(&vault, "a@example.fr").await;
        let b = add(&vault, "b@example.fr").await;
        let read = |id: &str| {
            let id = id.to_owned();
            let store = Arc::clone(&vault.store);
            async move {
                let w = store
                    .get(Table::SubjectKeys, id.as_bytes())
                    .await
                    .unwrap()
                    .unwrap();
                (id.into_bytes(), w)
            }
        };
        let (old_a, old_b) = (read(&a).await, read(&b).await);
        // A is erased behind the re-wrap's back (its key row deleted).
        let mut erase = Batch::new();
        erase.delete(Table::SubjectKeys, a.as_bytes());
        vault.store.commit(erase).await.unwrap();
        // A rotation's pass working from rows read before the erasure.
        let ops = vault.key_ops.lock().await;
        let epoch = vault.open_next_epoch(None).await.unwrap();
        vault.reload_keyring().await.unwrap();
        assert_eq!(epoch, 2);
        let (moved, unreadable) = vault.rewrap_rows(&[old_a, old_b.clone()]).await.unwrap();
        assert_eq!((moved, unreadable), (1, 0));
        assert!(
            vault
                .store
                .get(Table::SubjectKeys, a.as_bytes())
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(key_epochs(&vault).await[&b], 2);
        // B was moved meanwhile: a pass with its old value leaves the new one alone.
        let now_b = vault
            .store
            .get(Table::SubjectKeys, b.as_bytes())
            .await
            .unwrap();
        assert_eq!(vault.rewrap_rows(&[old_b]).await.unwrap(), (0, 0));
        assert_eq!(
            vault
                .store
                .get(Table::SubjectKeys, b.as_bytes())
                .await
                .unwrap(),
            now_b
        );
        drop(ops);
        assert_eq!(email_of(&vault, &b).await, "b@example.fr");
        vault.access_log().close().await.unwrap();
    }

    #[tokio::test]
    async fn rotation_follows_the_schedule() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), KeyOptions::default()).await;
        add(&vault, "a@example.fr").await;
        assert_eq!(vault.rotate_if_due().await.unwrap(), None);
        let fresh = meta(&vault, 1).await.unwrap();
        set_meta(
            &vault,
            1,
            EpochMeta {
                created_at_us: now_us() - 8 * DAY_US,
                ..fresh
            },
        )
        .await;
        assert_eq!(vault.rotate_if_due().await.unwrap(), Some(2));
        let entry = last_entry(&vault).await;
        assert_eq!(
            (entry.client.as_str(), entry.rpc.as_str()),
            (SYSTEM_CLIENT_ID, "Admin.RotateKeys")
        );
        assert_eq!(vault.rotate_if_due().await.unwrap(), None);
        assert!(key_epochs(&vault).await.values().all(|&e| e == 2));
        // An active epoch without metadata (an older store) is dated, not rotated.
        let mut b = Batch::new();
        b.delete(Table::Meta, &meta_key(2));
        vault.store.commit(b).await.unwrap();
        assert_eq!(vault.rotate_if_due().await.unwrap(), None);
        assert!(meta(&vault, 2).await.unwrap().created_at_us > now_us() - DAY_US);
        vault.access_log().close().await.unwrap();

        // No schedule: never due, nothing to wait for.
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), zero_window()).await;
        assert_eq!(vault.key_work_due_in().await.unwrap(), None);
        set_meta(
            &vault,
            1,
            EpochMeta {
                created_at_us: 0,
                retired_at_us: None,
            },
        )
        .await;
        assert_eq!(vault.rotate_if_due().await.unwrap(), None);
        vault.access_log().close().await.unwrap();
    }

    #[tokio::test]
    async fn only_admins_rotate_and_refusals_are_logged() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), zero_window()).await;
        for who in [
            tool(),
            caller(Role::Dpo, Some("dpo")),
            caller(Role::Auditor, None),
        ] {
            let err = vault.rotate_keys(&who).await.unwrap_err();
            assert!(matches!(err, Error::PermissionDenied(_)), "{err}");
            let entry = last_entry(&vault).await;
            assert_eq!(entry.rpc, "Admin.RotateKeys");
            assert_eq!(entry.reason.as_deref(), Some("role"));
        }
        assert_eq!(stored_epochs(&vault).await, [1]);
        vault.rotate_keys(&admin()).await.unwrap();
        let entry = last_entry(&vault).await;
        assert_eq!(
            (entry.client.as_str(), entry.allowed()),
            ("admin-client", true)
        );
        vault.access_log().close().await.unwrap();
    }

    #[tokio::test]
    async fn a_stale_replica_wraps_new_keys_under_the_new_epoch() {
        // Retired but kept: the stale replica's epoch still exists.
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = replicas(dir.path(), KeyOptions::default(), KeyOptions::default()).await;
        assert_eq!(y.rotate_keys(&admin()).await.unwrap().epoch, 2);
        assert_eq!(x.keyring().active_epoch(), 1);
        let c = add(&x, "c@example.fr").await;
        assert_eq!(key_epochs(&x).await[&c], 2);
        assert_eq!(email_of(&y, &c).await, "c@example.fr");
        x.access_log().close().await.unwrap();
        y.access_log().close().await.unwrap();

        // Destroyed at once: the stale replica's epoch is gone.
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = replicas(dir.path(), zero_window(), zero_window()).await;
        let a = add(&x, "a@example.fr").await;
        assert_eq!(y.rotate_keys(&admin()).await.unwrap().destroyed, [1]);
        assert_eq!(x.keyring().active_epoch(), 1);
        let d = add(&x, "d@example.fr").await;
        assert_eq!(key_epochs(&x).await[&d], 2);
        assert_eq!(email_of(&y, &d).await, "d@example.fr");
        assert_eq!(email_of(&x, &a).await, "a@example.fr");
        x.access_log().close().await.unwrap();
        y.access_log().close().await.unwrap();
    }

    #[tokio::test]
    async fn concurrent_rotations_on_two_replicas_leave_every_key_readable() {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = replicas(dir.path(), zero_window(), zero_window()).await;
        let mut ids = Vec::new();
        for i in 0..300 {
            ids.push(add(&x, &format!("p{i}@example.fr")).await);
        }
        let who = admin();
        let (rx, ry) = tokio::join!(x.rotate_keys(&who), y.rotate_keys(&who));
        let (rx, ry) = (rx.unwrap(), ry.unwrap());
        assert!(rx.epoch >= 2 && ry.epoch >= 2);
        let epochs = stored_epochs(&x).await;
        let active = *epochs.last().unwrap();
        // Whatever interleaving: every key under an epoch that exists, and readable.
        let keys = key_epochs(&x).await;
        assert!(
            keys.values().all(|e| epochs.contains(e)),
            "{keys:?} {epochs:?}"
        );
        x.destroy_expired_epochs().await.unwrap();
        assert!(key_epochs(&x).await.values().all(|&e| e == active));
        for (i, id) in ids.iter().enumerate().step_by(37) {
            assert_eq!(email_of(&y, id).await, format!("p{i}@example.fr"));
        }
        x.access_log().close().await.unwrap();
        y.access_log().close().await.unwrap();
    }

    #[tokio::test]
    async fn epoch_metadata_and_subject_keys_must_fit_the_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let vault = open(dir.path(), KeyOptions::default()).await;
        let store = Arc::clone(&vault.store);
        let check = || {
            let store = Arc::clone(&store);
            async move { epoch_inconsistency(store.as_ref()).await.unwrap() }
        };
        add(&vault, "a@example.fr").await;
        assert_eq!(check().await, None);
        vault.rotate_keys(&admin()).await.unwrap();
        assert_eq!(check().await, None, "epochs 1 (retired) and 2 (active)");
        let retired = meta(&vault, 1).await.unwrap();
        let active = meta(&vault, 2).await.unwrap();

        // An epoch without metadata (a store from before it was kept) is no fault.
        let mut b = Batch::new();
        b.delete(Table::Meta, &meta_key(1));
        vault.store.commit(b).await.unwrap();
        assert_eq!(check().await, None);

        let cases: [(u32, EpochMeta, &str); 3] = [
            (
                2,
                EpochMeta {
                    retired_at_us: Some(now_us()),
                    ..active
                },
                "newest key epoch, 2, retired",
            ),
            (1, active, "marks key epochs [1, 2] active"),
            (
                3,
                active,
                "describes key epoch 3, which its keyring (epochs [1, 2])",
            ),
        ];
        for (epoch, m, why) in cases {
            set_meta(&vault, epoch, m).await;
            let found = check().await.unwrap_or_default();
            assert!(found.contains(why), "{found}");
            // Put back.
            let mut b = Batch::new();
            match epoch {
                2 => b.put(Table::Meta, &meta_key(2), meta_json(&active).unwrap()),
                1 => b.put(Table::Meta, &meta_key(1), meta_json(&retired).unwrap()),
                _ => b.delete(Table::Meta, &meta_key(epoch)),
            };
            vault.store.commit(b).await.unwrap();
            assert_eq!(check().await, None);
        }

        // A subject key under an epoch the keyring lacks.
        let mut b = Batch::new();
        b.delete(Table::Keyring, &2u32.to_be_bytes())
            .delete(Table::Meta, &meta_key(2));
        vault.store.commit(b).await.unwrap();
        let found = check().await.unwrap_or_default();
        assert!(
            found.contains("1 supporter keys are wrapped under key epoch 2"),
            "{found}"
        );
        vault.access_log().close().await.unwrap();
    }
}
