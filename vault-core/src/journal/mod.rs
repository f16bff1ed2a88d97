//! The journal: the access log kept in the store, and the commit path every write takes.
//! Append with sequence numbers, Merkle frontier and hash links; signed checkpoints;
//! proofs; export; retention. [`record`] builds the one entry a call leaves; the writer
//! task (`writer.rs`) commits it, with the call's write when there is one.
//!
//! [`crate::audit`] holds the format and its verification only (entry, Merkle tree,
//! checkpoint, export file, mark) and imports nothing from here: an auditor's verifier
//! needs none of the machinery that writes the log.
//!
//! Proofs and roots read O(log n) rows: each append stores, in its own batch, the perfect
//! subtrees of level 4 and up it completes ([`Table::AuditNodes`], row-authenticated and so
//! bound to its (level, index)); lower subtrees are hashed from their few leaves. A store
//! written before subtrees were kept gets them once at open, checked against the signed
//! head (`Meta` row [`meta::AUDIT_NODES_BUILT`]). Exports are produced a page at a time ([`Export`])
//! and verification streams them through [`file::StreamVerifier`], so neither holds the log.
//!
//! Ordering: one lock serializes appends while the batch is *applied* (visible, in memory
//! for the embedded store) and releases it before waiting for durability, so concurrent
//! calls share one flush (group commit) and sequence numbers have no gaps: a batch whose
//! checks fail consumes no number. A write's entry rides in the write's own batch, so the
//! data and its entry commit together; a read's entry is durable before the read returns.

mod export;
mod head;
mod nodes;
mod prune;
mod reads;
pub mod record;
pub mod subjects;
#[cfg(test)]
mod tests;
mod writer;

pub use export::Export;
pub use record::{AccessEntry, AccessRecord, Outcome};

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::audit::checkpoint::{Checkpoint, SignedCheckpoint, SignedCut, SigningKey};
use crate::audit::entry::{AuditEntry, ENTRY_VERSION, entry_hash, zero_hash};
use crate::audit::file::{self, Start};
use crate::audit::mark::{Mark, MarkFile, key_fingerprint};
use crate::audit::merkle::{self, Frontier, Hash, NodeRecorder};
use crate::crypto::root_key::RootKey;
use crate::error::{Error, IntegrityObject, Result};
use crate::storage::schema::meta;
use crate::storage::{Batch, Store, StoreError, Table};

const SCAN_CHUNK: usize = 4096;
/// The node layout: level ‖ index, every complete perfect subtree of level
/// [`STORED_FROM_LEVEL`] and up.
const NODES_VERSION: &[u8] = b"1";
/// The lowest level of subtree stored. Lower ones are hashed from their at most 8 leaves,
/// one range read each, when a proof needs them (a proof needs at most this many). Storing
/// every level would add a row to almost every append (measured: appends ~40 % slower,
/// docs/benchmarks.md); from level 4 on it is one row per 16 entries.
const STORED_FROM_LEVEL: u8 = 4;
/// Pages between two progress lines of the one-time node build.
const BUILD_PROGRESS_EVERY: u64 = 16;

/// When checkpoints are made and how long entries are kept.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// A checkpoint every this many entries.
    pub checkpoint_every: u64,
    /// A checkpoint when entries were added and the last one is this old.
    pub checkpoint_interval: Duration,
    /// Entries older than this are pruned (whole segments between checkpoints).
    pub retention: Duration,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            retention: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

/// A checkpoint as stored: the signed checkpoint and the frontier at its size.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredCheckpoint {
    signed: SignedCheckpoint,
    frontier: String,
}

#[derive(Clone)]
struct Head {
    frontier: Frontier,
    prev: Hash,
    last_checkpoint: Option<Checkpoint>,
}

/// What pruning did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// Entries removed.
    pub removed: u64,
    /// The anchor the log now starts at.
    pub anchor_size: u64,
}

/// What the log and its writer task share.
pub struct Core {
    store: Arc<dyn Store>,
    key: SigningKey,
    /// The head as of the last applied batch, for readers; only the writer changes it.
    head: std::sync::Mutex<Head>,
    options: AuditOptions,
    /// The high-water mark outside the store, moved after every durable checkpoint.
    outside: Option<Arc<MarkFile>>,
    /// The newest checkpoint size handed to the mark file.
    marked: std::sync::atomic::AtomicU64,
    /// The newest checkpoint known durable, for whoever publishes checkpoints (witnesses):
    /// one that was only applied could still vanish in a crash, and a witness that cosigned
    /// it would then see this log fork.
    durable: tokio::sync::watch::Sender<Option<SignedCheckpoint>>,
    /// Keys the per-subject index rows ([`subjects`]).
    subjects: subjects::SubjectIndexKey,
    /// How long the writer's flushes take (the daemon's store flush metric).
    flushes: crate::latency::LatencyHistogram,
}

/// Work for the writer task.
enum Job {
    Append {
        /// The write this entry logs, or `None` for an entry alone.
        batch: Option<Box<Batch>>,
        entry: Box<AccessEntry>,
        reply: oneshot::Sender<Result<u64>>,
    },
    Checkpoint {
        only_if_due: bool,
        reply: CheckpointReply,
    },
    /// Stop the writer (the store is released once the log is dropped too).
    Stop { reply: oneshot::Sender<Result<()>> },
    /// Run a task while no write applies (see [`AuditLog::hold_writes`]).
    Hold { task: HeldTask },
}

type CheckpointReply = oneshot::Sender<Result<Option<SignedCheckpoint>>>;

/// A task the writer runs while it holds back writes; given the log's size at that moment.
type HeldTask = Box<dyn FnOnce(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Whether the writer goes on after a group of jobs.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// The store-backed access log. Appends go to one writer task, which applies every entry
/// that arrived together in one batch (writes each in its own) and makes them durable with
/// one flush: group commit at the log's level, so sequence numbers stay gapless and each
/// waiting call pays a share of one transaction and one flush.
pub struct AuditLog {
    core: Arc<Core>,
    jobs: mpsc::UnboundedSender<Job>,
    /// The writer task, awaited by [`AuditLog::close`]: the task holds the store until it
    /// has ended, not merely answered the stop.
    writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::ops::Deref for AuditLog {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn seq_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The [`Table::AuditNodes`] key of the perfect subtree `(level, index)`: the level, then
/// the index big-endian. The row tag covers the key, so a stored hash cannot be moved to
/// another node.
pub fn node_key(level: u8, index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = level;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

/// One past the last leaf the subtree stored at `key` covers (the tree size at which it
/// was complete), or `None` for a key that names no subtree of a `u64`-sized tree.
pub fn node_end(key: &[u8]) -> Option<u64> {
    let (&level, index) = key.split_first()?;
    let index = u64::from_be_bytes(index.try_into().ok()?);
    let width = 1u64.checked_shl(u32::from(level))?;
    index.checked_add(1)?.checked_mul(width)
}

fn corrupt(what: &'static str) -> Error {
    Error::Integrity(IntegrityObject::Metadata(what))
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn parse_seq(key: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = key.try_into().map_err(|_| corrupt("audit key"))?;
    Ok(u64::from_be_bytes(arr))
}

/// What the access log checks against at open, kept outside the store (see [`mark`]).
///
/// [`mark`]: crate::audit::mark
#[derive(Debug, Clone)]
pub struct Outside {
    /// The mark file beside the root key file.
    pub file: Arc<MarkFile>,
    /// What it said when the vault opened (`None`: no file yet).
    pub mark: Option<Mark>,
}

fn rolled_back(what: String) -> Error {
    Error::Integrity(IntegrityObject::AccessLog(what))
}

impl AuditLog {
    /// Opens the log in `store`, creating its signing key on first use, and restores the
    /// head (frontier, last hash) from the latest checkpoint and the leaves after it.
    pub async fn open(
        store: Arc<dyn Store>,
        root: &RootKey,
        options: AuditOptions,
    ) -> Result<Self> {
        Self::open_checked(store, root, options, None).await
    }

    /// As [`AuditLog::open`], and checks the store against the high-water mark kept outside
    /// it: a log behind the mark, a different root at the mark's size, a signing key that
    /// changed or went missing stop the open with an error that says what was found. Then
    /// moves the mark to the newest checkpoint.
    pub async fn open_checked(
        store: Arc<dyn Store>,
        root: &RootKey,
        options: AuditOptions,
        outside: Option<Outside>,
    ) -> Result<Self> {
        let mark = outside.as_ref().and_then(|o| o.mark.clone());
        let key = match store.get(Table::Meta, meta::AUDIT_SIGNING_KEY).await? {
            Some(wrapped) => SigningKey::unwrap(root, &wrapped)?,
            None => {
                // A new key only for a log that never had one: a store writer who deletes
                // the key (and the checkpoints) must not get everything re-signed.
                if let Some(fp) = mark.as_ref().and_then(|m| m.signing_key_sha256.as_deref()) {
                    return Err(rolled_back(format!(
                        "the signing key is missing from the store, but the high-water mark \
                         beside the root key file records key {fp}: the store was altered or \
                         replaced; investigate before starting (compare with a backup and with \
                         the checkpoints auditors hold)"
                    )));
                }
                let has_log = store.last(Table::AuditLeaves).await?.is_some()
                    || store.last(Table::AuditCheckpoints).await?.is_some();
                if has_log {
                    return Err(rolled_back(
                        "the store holds access-log entries but no signing key: the key was \
                         deleted; investigate before starting"
                            .into(),
                    ));
                }
                let (key, wrapped) = SigningKey::generate(root)?;
                let mut b = Batch::new();
                b.check(Table::Meta, meta::AUDIT_SIGNING_KEY, None).put(
                    Table::Meta,
                    meta::AUDIT_SIGNING_KEY,
                    wrapped,
                );
                match store.commit(b).await {
                    Ok(()) => key,
                    // Another daemon sharing the store made it first: use theirs.
                    Err(StoreError::Conflict(_)) => {
                        let wrapped = store
                            .get(Table::Meta, meta::AUDIT_SIGNING_KEY)
                            .await?
                            .ok_or(corrupt("audit signing key"))?;
                        SigningKey::unwrap(root, &wrapped)?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let fingerprint = key_fingerprint(&key.public_key());
        if let Some(expected) = mark.as_ref().and_then(|m| m.signing_key_sha256.as_deref())
            && expected != fingerprint
        {
            return Err(rolled_back(format!(
                "the store's signing key {fingerprint} is not the key {expected} the high-water \
                 mark beside the root key file records: the key was replaced; investigate \
                 before starting"
            )));
        }
        let core = Core {
            store,
            key,
            head: std::sync::Mutex::new(Head {
                frontier: Frontier::new(),
                prev: zero_hash(),
                last_checkpoint: None,
            }),
            options,
            outside: outside.as_ref().map(|o| Arc::clone(&o.file)),
            marked: std::sync::atomic::AtomicU64::new(0),
            durable: tokio::sync::watch::Sender::new(None),
            subjects: subjects::SubjectIndexKey::derive(root),
            flushes: crate::latency::LatencyHistogram::new(),
        };
        let head = core.restore_head().await?;
        core.build_nodes(&head).await?;
        // What the store holds at open is durable.
        core.durable
            .send_replace(head.last_checkpoint.map(|cp| core.key.sign(&cp)));
        if let Some(m) = &mark {
            core.check_against_mark(&head, m).await?;
        }
        if let Some(o) = &outside {
            let newest = head.last_checkpoint;
            let mut next = mark.clone().unwrap_or_default();
            next.rows_authenticated = true;
            next.signing_key_sha256 = Some(fingerprint);
            if let Some(cp) = newest.filter(|c| c.size >= next.size) {
                next.size = cp.size;
                next.root = hex::encode(cp.root);
            }
            next.at_us = now_us();
            o.file.write(&next)?;
        }
        *core.head.lock().unwrap_or_else(|p| p.into_inner()) = head.clone();
        let core = Arc::new(core);
        let (jobs, rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(writer::writer(Arc::clone(&core), head, rx));
        Ok(Self {
            core,
            jobs,
            writer: std::sync::Mutex::new(Some(writer)),
        })
    }
}

impl AuditLog {
    /// The C2SP signed note of a checkpoint this log signed, under `origin`. Refuses a
    /// checkpoint whose signature is not the log's: the key only ever vouches in this form
    /// for what it signed as a checkpoint.
    pub fn checkpoint_note(&self, origin: &str, signed: &SignedCheckpoint) -> Result<String> {
        let cp = signed.verify(&self.public_key()).ok_or(Error::Integrity(
            IntegrityObject::Metadata("audit checkpoint signature"),
        ))?;
        crate::audit::witness::sign_note(self.signing_key(), origin, cp.size, &cp.root)
    }
}
