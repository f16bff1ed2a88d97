//! The access log kept in the store: append with sequence numbers, Merkle frontier and hash
//! links; signed checkpoints; proofs; export; retention.
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

pub mod subjects;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::checkpoint::{Checkpoint, SignedCheckpoint, SignedCut, SigningKey};
use super::entry::{AuditEntry, ENTRY_VERSION, entry_hash, zero_hash};
use super::file::{self, Start};
use super::mark::{Mark, MarkFile};
use super::merkle::{self, Frontier, Hash, NodeRecorder};
use crate::access_log::{AccessEntry, Outcome};
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

fn ring_jitter() -> u32 {
    let mut b = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u32::from_be_bytes(b)
}

fn parse_seq(key: &[u8]) -> Result<u64> {
    let arr: [u8; 8] = key.try_into().map_err(|_| corrupt("audit key"))?;
    Ok(u64::from_be_bytes(arr))
}

/// What the access log checks against at open, kept outside the store (see [`mark`]).
///
/// [`mark`]: super::mark
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

/// SHA-256 (hex) of a public key: what the mark file records of the signing key.
pub fn key_fingerprint(public_key: &[u8; 32]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, public_key))
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
        let writer = tokio::spawn(writer(Arc::clone(&core), head, rx));
        Ok(Self {
            core,
            jobs,
            writer: std::sync::Mutex::new(Some(writer)),
        })
    }
}

impl Core {
    async fn restore_head(&self) -> Result<Head> {
        // Start from the newest checkpoint (or the anchor), then replay the leaves after it.
        let newest = match self.store.last(Table::AuditCheckpoints).await? {
            Some((_, raw)) => Some(self.parse_stored(&raw)?),
            None => self.anchor().await?,
        };
        let (mut frontier, last_checkpoint, mut prev) = match &newest {
            Some((cp, frontier)) => (frontier.clone(), Some(*cp), cp.last_leaf),
            None => (Frontier::new(), None, zero_hash()),
        };
        let mut next = frontier.size();
        loop {
            let rows = self
                .store
                .scan_range(Table::AuditLeaves, &seq_key(next), None, SCAN_CHUNK)
                .await?;
            if rows.is_empty() {
                break;
            }
            for (k, v) in rows {
                let seq = parse_seq(&k)?;
                if seq != next {
                    return Err(corrupt("audit leaves (gap in the log)"));
                }
                let leaf: Hash = v.as_slice().try_into().map_err(|_| corrupt("audit leaf"))?;
                // No checkpoint covers these entries yet: re-hash each against its leaf
                // (leaves carry row tags, so a rewritten entry cannot bring its own).
                let entry = self.store.get(Table::AuditEntries, &k).await?;
                if entry.as_deref().map(entry_hash) != Some(leaf) {
                    return Err(rolled_back(format!(
                        "entry {seq}, after the last checkpoint, is missing or does not hash to \
                         its leaf: it was rewritten in the store; investigate before starting \
                         (export the log with the daemon stopped: vaultctl audit verify)"
                    )));
                }
                frontier.push(leaf).map_err(|_| corrupt("audit log size"))?;
                prev = leaf;
                next += 1;
            }
        }
        Ok(Head {
            frontier,
            prev,
            last_checkpoint,
        })
    }

    /// Refuses a log behind `mark` or with another root at its size.
    async fn check_against_mark(&self, head: &Head, mark: &Mark) -> Result<()> {
        if mark.size == 0 {
            return Ok(());
        }
        let newest = head.last_checkpoint.map_or(0, |c| c.size);
        if newest < mark.size {
            return Err(rolled_back(format!(
                "its newest checkpoint is at size {newest}, but a checkpoint at size {} was \
                 made durable before (the high-water mark beside the root key file, written \
                 {}): checkpoints or entries were deleted from the store, or an older copy \
                 of it was put in place; investigate before starting. After a deliberate \
                 restore, vaultctl restore resets the mark",
                mark.size, mark.at_us
            )));
        }
        let at_mark = match self
            .store
            .get(Table::AuditCheckpoints, &seq_key(mark.size))
            .await?
        {
            Some(raw) => self.parse_stored(&raw)?.0.root,
            // Pruned since: the leaves and subtrees are kept, recompute the root there.
            None => {
                if head.frontier.size() < mark.size {
                    return Err(rolled_back(format!(
                        "the log holds {} entries, fewer than the high-water mark's size {}",
                        head.frontier.size(),
                        mark.size
                    )));
                }
                self.root_at(mark.size).await?
            }
        };
        if hex::encode(at_mark) != mark.root {
            return Err(rolled_back(format!(
                "its root at size {} is not the one the high-water mark beside the root key \
                 file records: the log was rewritten; investigate before starting",
                mark.size
            )));
        }
        Ok(())
    }

    /// Moves the mark file to the newest checkpoint once it is durable, off the writer task
    /// (two fsyncs; the writer must not wait for them).
    fn note_durable(&self, head: &Head) {
        if let Some(cp) = head.last_checkpoint {
            // Signing is deterministic (Ed25519): this is the stored checkpoint's signature.
            self.durable.send_if_modified(|known| {
                let newer = known.as_ref().is_none_or(|k| k.size < cp.size);
                if newer {
                    *known = Some(self.key.sign(&cp));
                }
                newer
            });
        }
        let (Some(file), Some(cp)) = (&self.outside, head.last_checkpoint) else {
            return;
        };
        // Most groups bring no new checkpoint: nothing to hand off.
        if self
            .marked
            .fetch_max(cp.size, std::sync::atomic::Ordering::Relaxed)
            >= cp.size
        {
            return;
        }
        let file = Arc::clone(file);
        tokio::task::spawn_blocking(move || advance_mark(&file, &cp));
    }

    /// Parses and checks a stored checkpoint: signature, and frontier against the root.
    fn parse_stored(&self, raw: &[u8]) -> Result<(Checkpoint, Frontier)> {
        let stored: StoredCheckpoint =
            serde_json::from_slice(raw).map_err(|_| corrupt("audit checkpoint"))?;
        let cp = stored
            .signed
            .verify(&self.key.public_key())
            .ok_or(corrupt("audit checkpoint signature"))?;
        let frontier = hex::decode(&stored.frontier)
            .ok()
            .and_then(|b| Frontier::from_bytes(&b).ok())
            .ok_or(corrupt("audit checkpoint frontier"))?;
        if frontier.size() != cp.size || frontier.root() != cp.root {
            return Err(corrupt("audit checkpoint frontier"));
        }
        Ok((cp, frontier))
    }

    /// Stores the log's perfect subtrees once, for a store written before they were kept
    /// (marked in `Meta`, [`meta::AUDIT_NODES_BUILT`]): reads the leaves a page at a time, commits the
    /// nodes each page completes, and checks the tree they build against the head restored
    /// from the signed checkpoint. Idempotent (a node's hash depends on its leaves alone),
    /// so a crash midway or replicas racing through it are harmless; it starts over.
    async fn build_nodes(&self, head: &Head) -> Result<()> {
        if self
            .store
            .get(Table::Meta, meta::AUDIT_NODES_BUILT)
            .await?
            .as_deref()
            == Some(NODES_VERSION)
        {
            return Ok(());
        }
        let total = head.frontier.size();
        if total > 0 {
            tracing::info!(
                target: "vault::audit",
                entries = total,
                "storing the access log's Merkle subtrees (once, for proofs and roots from \
                 O(log n) rows)"
            );
        }
        let mut frontier = Frontier::new();
        let mut pages = 0u64;
        loop {
            let rows = self
                .store
                .scan_range(
                    Table::AuditLeaves,
                    &seq_key(frontier.size()),
                    None,
                    SCAN_CHUNK,
                )
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut b = Batch::new();
            for (k, v) in rows {
                if parse_seq(&k)? != frontier.size() {
                    return Err(corrupt("audit leaves (gap in the log)"));
                }
                let leaf: Hash = v.as_slice().try_into().map_err(|_| corrupt("audit leaf"))?;
                frontier
                    .push_completing(leaf, |level, index, hash| {
                        if level >= STORED_FROM_LEVEL {
                            b.put(Table::AuditNodes, &node_key(level, index), hash.to_vec());
                        }
                    })
                    .map_err(|_| corrupt("audit log size"))?;
                if frontier.size() == total && frontier.root() != head.frontier.root() {
                    return Err(rolled_back(format!(
                        "the stored leaves do not hash to the signed root at size {total}: \
                         leaves were altered in the store; investigate before starting"
                    )));
                }
            }
            self.store.commit(b).await?;
            pages += 1;
            if pages.is_multiple_of(BUILD_PROGRESS_EVERY) {
                tracing::info!(
                    target: "vault::audit",
                    done = frontier.size(),
                    entries = total,
                    "storing the access log's Merkle subtrees"
                );
            }
        }
        if frontier.size() < total {
            return Err(corrupt("audit leaves (gap in the log)"));
        }
        let mut b = Batch::new();
        b.put(Table::Meta, meta::AUDIT_NODES_BUILT, NODES_VERSION.to_vec());
        self.store.commit(b).await?;
        if total > 0 {
            tracing::info!(
                target: "vault::audit",
                entries = frontier.size(),
                "stored the access log's Merkle subtrees"
            );
        }
        Ok(())
    }

    /// The hash of node `(level, index)`: the leaf row at level 0, the stored subtree above.
    /// A subtree missing from the store (deleted, or written by a build that did not keep
    /// them) is recomputed from its halves: slower, never wrong, as leaves are
    /// authenticated rows too. A row that fails authentication is an error, not a gap.
    fn node(
        &self,
        level: u8,
        index: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Hash>> + Send + '_>> {
        Box::pin(async move {
            if level == 0 {
                let raw = self
                    .store
                    .get(Table::AuditLeaves, &seq_key(index))
                    .await?
                    .ok_or(corrupt("audit leaves (gap in the log)"))?;
                return raw.as_slice().try_into().map_err(|_| corrupt("audit leaf"));
            }
            if level < STORED_FROM_LEVEL {
                // Not stored: hashed from its (at most 2^(STORED_FROM_LEVEL - 1)) leaves,
                // read in one range.
                let (first, width) = (index << level, 1u64 << level);
                let rows = self
                    .store
                    .scan_range(
                        Table::AuditLeaves,
                        &seq_key(first),
                        Some(&seq_key(first.saturating_add(width))),
                        SCAN_CHUNK,
                    )
                    .await?;
                let mut leaves = Vec::with_capacity(rows.len());
                for (k, v) in rows {
                    if parse_seq(&k)? != first + leaves.len() as u64 {
                        return Err(corrupt("audit leaves (gap in the log)"));
                    }
                    let leaf: Hash = v.as_slice().try_into().map_err(|_| corrupt("audit leaf"))?;
                    leaves.push(leaf);
                }
                return merkle::root(&leaves, width)
                    .map_err(|_| corrupt("audit leaves (gap in the log)"));
            }
            match self
                .store
                .get(Table::AuditNodes, &node_key(level, index))
                .await?
            {
                Some(raw) => raw.as_slice().try_into().map_err(|_| corrupt("audit node")),
                None => {
                    // `index < 2^(64 - level)`, so the children's indexes fit a u64.
                    let left = self.node(level - 1, index << 1).await?;
                    let right = self.node(level - 1, (index << 1) | 1).await?;
                    Ok(merkle::node_hash(&left, &right))
                }
            }
        })
    }

    /// The nodes a generator asked a [`NodeRecorder`] for, read from the store.
    async fn fetch_nodes(
        &self,
        asked: Vec<(u8, u64)>,
    ) -> Result<std::collections::HashMap<(u8, u64), Hash>> {
        let mut nodes = std::collections::HashMap::with_capacity(asked.len());
        for (level, index) in asked {
            nodes.insert((level, index), self.node(level, index).await?);
        }
        Ok(nodes)
    }

    /// The root of the tree of the first `size` entries, from O(log size) stored nodes.
    async fn root_at(&self, size: u64) -> Result<Hash> {
        let recorder = NodeRecorder::new();
        let _ = merkle::root_from_nodes(&recorder, size);
        let nodes = self.fetch_nodes(recorder.into_asked()).await?;
        merkle::root_from_nodes(&nodes, size).map_err(|_| corrupt("audit node"))
    }

    /// The signed retention cut, if retention ever removed entries (and the anchor it names
    /// is the one stored).
    async fn cut(&self) -> Result<Option<SignedCut>> {
        let Some(raw) = self.store.get(Table::Meta, meta::AUDIT_CUT).await? else {
            return Ok(None);
        };
        let cut: SignedCut = serde_json::from_slice(&raw).map_err(|_| corrupt("audit cut"))?;
        cut.verify(&self.key.public_key())
            .ok_or(corrupt("audit cut signature"))?;
        Ok(Some(cut))
    }

    async fn anchor(&self) -> Result<Option<(Checkpoint, Frontier)>> {
        match self.store.get(Table::Meta, meta::AUDIT_ANCHOR).await? {
            Some(raw) => Ok(Some(self.parse_stored(&raw)?)),
            None => Ok(None),
        }
    }

    /// The Ed25519 public key, 32 raw bytes.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.public_key()
    }

    /// The signing key, for the C2SP form of checkpoints (`audit::witness`).
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The newest checkpoint made durable by this process (or found in the store at open),
    /// updated after every flush that made a newer one durable.
    pub fn durable_checkpoints(&self) -> tokio::sync::watch::Receiver<Option<SignedCheckpoint>> {
        self.durable.subscribe()
    }

    fn head(&self) -> Head {
        self.head.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn publish(&self, head: &Head) {
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = head.clone();
    }

    /// The latencies of the writer's flushes so far: each makes a group of calls and their
    /// entries durable, so this is the store's share of a call's latency.
    pub fn flush_latency(&self) -> crate::latency::HistogramSnapshot {
        self.flushes.snapshot()
    }

    /// Time since the newest durable signed checkpoint was made (`None` before the first;
    /// zero if the clock stepped back past it).
    pub fn checkpoint_age(&self) -> Option<Duration> {
        let at = self.durable.borrow().as_ref().map(|c| c.at_us)?;
        let micros = now_us().saturating_sub(at).max(0);
        Some(Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
    }

    /// Flushes the store, timing it.
    async fn timed_sync(&self) -> std::result::Result<(), StoreError> {
        let started = std::time::Instant::now();
        let synced = self.store.sync().await;
        self.flushes.record(started.elapsed());
        synced
    }

    /// Number of entries appended (as of the last applied batch).
    pub async fn size(&self) -> u64 {
        self.head().frontier.size()
    }

    fn stored_checkpoint(
        &self,
        cp: &Checkpoint,
        frontier: &Frontier,
    ) -> Result<(SignedCheckpoint, Vec<u8>)> {
        let signed = self.key.sign(cp);
        let raw = serde_json::to_vec(&StoredCheckpoint {
            signed: signed.clone(),
            frontier: hex::encode(frontier.to_bytes()),
        })
        .map_err(|e| Error::Codec(e.to_string()))?;
        Ok((signed, raw))
    }

    /// Encodes `entry` at the head's next position into `batch` (with the checkpoint that
    /// falls due there), and returns the head as it will be once the batch is applied.
    fn stage(&self, head: &Head, batch: &mut Batch, entry: &AccessEntry) -> Result<Head> {
        let seq = head.frontier.size();
        let (outcome, reason) = match entry.outcome {
            Outcome::Allowed => ("allowed", None),
            Outcome::Denied(code) => ("denied", Some(code.to_owned())),
        };
        let bytes = AuditEntry {
            v: ENTRY_VERSION,
            seq,
            prev: hex::encode(head.prev),
            at_us: entry.at_us,
            request_id: entry.request_id.clone(),
            client: entry.client_id.clone(),
            role: entry.role.to_owned(),
            rpc: entry.rpc.clone(),
            purpose: entry.purpose.clone(),
            subjects: entry.subjects.clone(),
            fields: entry.fields.iter().map(|f| (*f).to_owned()).collect(),
            outcome: outcome.to_owned(),
            reason,
            request_ref: entry.request_ref.clone(),
        }
        .encode()?;
        let leaf = entry_hash(&bytes);
        batch
            .check(Table::AuditEntries, &seq_key(seq), None)
            .put(Table::AuditEntries, &seq_key(seq), bytes)
            .put(Table::AuditLeaves, &seq_key(seq), leaf.to_vec());
        self.subjects.stage(batch, seq, &entry.subjects);
        for (index, change) in entry.changes.iter().enumerate() {
            let cursor = crate::changes::Cursor {
                seq,
                index: u16::try_from(index)
                    .map_err(|_| corrupt("too many changes in one write"))?,
            };
            batch.put(
                Table::Changes,
                &cursor.key(),
                crate::changes::encode(change, entry.at_us)?,
            );
        }
        let mut next = head.clone();
        // The subtrees this leaf completes ride in its batch (see `Table::AuditNodes`).
        next.frontier
            .push_completing(leaf, |level, index, hash| {
                if level >= STORED_FROM_LEVEL {
                    batch.put(Table::AuditNodes, &node_key(level, index), hash.to_vec());
                }
            })
            .map_err(|_| corrupt("audit log size"))?;
        next.prev = leaf;
        // Every N entries, the checkpoint rides in the same batch.
        if next
            .frontier
            .size()
            .is_multiple_of(self.options.checkpoint_every.max(1))
        {
            let cp = Checkpoint {
                size: next.frontier.size(),
                root: next.frontier.root(),
                last_leaf: leaf,
                at_us: now_us(),
            };
            let (_, raw) = self.stored_checkpoint(&cp, &next.frontier)?;
            batch.put(Table::AuditCheckpoints, &seq_key(cp.size), raw);
            next.last_checkpoint = Some(cp);
        }
        Ok(next)
    }

    /// Brings `head` up to date with entries other daemons sharing the store appended.
    async fn catch_up(&self, head: &mut Head) -> Result<()> {
        loop {
            let next = head.frontier.size();
            let rows = self
                .store
                .scan_range(Table::AuditLeaves, &seq_key(next), None, SCAN_CHUNK)
                .await?;
            if rows.is_empty() {
                return Ok(());
            }
            for (k, v) in rows {
                if parse_seq(&k)? != head.frontier.size() {
                    return Err(corrupt("audit leaves (gap in the log)"));
                }
                let leaf: Hash = v.as_slice().try_into().map_err(|_| corrupt("audit leaf"))?;
                head.frontier
                    .push(leaf)
                    .map_err(|_| corrupt("audit log size"))?;
                head.prev = leaf;
            }
        }
    }

    /// Applies `entries` (with the write `data`, if any) at the head, retrying at the new
    /// head when another daemon took the sequence numbers. Returns their sequence numbers.
    async fn apply_at_head(
        &self,
        head: &mut Head,
        data: Option<&Batch>,
        entries: &[&AccessEntry],
    ) -> Result<Vec<u64>> {
        // Daemons sharing a database race for the log's head; the loser catches up and
        // goes again. Bounded by time rather than by a count: a busy peer can win many
        // rounds in a row, and an access must not fail for that.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut attempt = 0u32;
        while tokio::time::Instant::now() < deadline {
            attempt += 1;
            let mut batch = data.cloned().unwrap_or_default();
            let mut next = head.clone();
            let mut seqs = Vec::with_capacity(entries.len());
            for e in entries {
                seqs.push(next.frontier.size());
                next = self.stage(&next, &mut batch, e)?;
            }
            match self.store.apply(batch).await {
                Ok(()) => {
                    *head = next;
                    self.publish(head);
                    return Ok(seqs);
                }
                Err(StoreError::Conflict(t)) if t == Table::AuditEntries.name() => {
                    self.catch_up(head).await?;
                    self.publish(head);
                    // Spread the replicas out a little so they stop colliding.
                    let jitter = u64::from(ring_jitter()) % (50 << attempt.min(7));
                    tokio::time::sleep(Duration::from_micros(jitter)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contention("the access log".into()))
    }

    /// Signs and applies a checkpoint at the head (unless one is there, or it is not due).
    async fn checkpoint_at_head(
        &self,
        head: &mut Head,
        only_if_due: bool,
    ) -> Result<Option<SignedCheckpoint>> {
        let size = head.frontier.size();
        let due = match head.last_checkpoint {
            Some(c) if c.size == size => false,
            Some(c) if only_if_due => {
                now_us().saturating_sub(c.at_us)
                    >= self.options.checkpoint_interval.as_micros() as i64
            }
            _ => size > 0,
        };
        if !due {
            return Ok(None);
        }
        let cp = Checkpoint {
            size,
            root: head.frontier.root(),
            last_leaf: head.prev,
            at_us: now_us(),
        };
        let (signed, raw) = self.stored_checkpoint(&cp, &head.frontier)?;
        let mut b = Batch::new();
        b.put(Table::AuditCheckpoints, &seq_key(size), raw);
        self.store.apply(b).await?;
        head.last_checkpoint = Some(cp);
        self.publish(head);
        Ok(Some(signed))
    }
}

fn advance_mark(file: &MarkFile, cp: &Checkpoint) {
    if let Err(e) = file.advance(cp.size, &cp.root, cp.at_us) {
        tracing::warn!(target: "vault::audit", error = %e, "cannot move the access log's high-water mark");
    }
}

fn store_err(e: &StoreError) -> Error {
    Error::from(e.clone())
}

/// The same failure for each of several waiters (`Error` is not `Clone`): its kind is
/// kept where a client's status depends on it, the rest travels as text.
fn for_each_waiter(e: &Error) -> Error {
    match e {
        Error::StoreUnavailable { cause } => Error::StoreUnavailable { cause: *cause },
        other => Error::Storage(StoreError::Engine(other.to_string())),
    }
}

/// The writer task: takes every job waiting, applies the lone entries together in one
/// batch (and each write in its own, in arrival order), flushes once, then answers. A
/// [`Job::Hold`] splits the group: the jobs before it are finished first, the ones after it
/// wait until its task is done.
async fn writer(core: Arc<Core>, mut head: Head, mut rx: mpsc::UnboundedReceiver<Job>) {
    const MAX_GROUP: usize = 4096;
    // Jobs that arrived while writes were held, or after a hold in the same group.
    let mut backlog: VecDeque<Job> = VecDeque::new();
    loop {
        let first = match backlog.pop_front() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            if let Some(job) = backlog.pop_front() {
                jobs.push(job);
                continue;
            }
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut held = None;
        if let Some(at) = jobs.iter().position(|j| matches!(j, Job::Hold { .. })) {
            let mut after = jobs.split_off(at).into_iter();
            held = after.next();
            for job in after.rev() {
                backlog.push_front(job);
            }
        }
        if !jobs.is_empty() && run_group(&core, &mut head, jobs).await == Flow::Stop {
            return;
        }
        if let Some(Job::Hold { task }) = held {
            hold(&core, &mut head, &mut rx, &mut backlog, task).await;
        }
    }
}

/// Runs `task` with writes held back: jobs arriving meanwhile that carry a write (and
/// checkpoints, holds, stop) wait in `backlog`; entries alone (reads, denials) are still
/// appended, after the size the task was given, so reads keep being served.
async fn hold(
    core: &Core,
    head: &mut Head,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    backlog: &mut VecDeque<Job>,
    task: HeldTask,
) {
    let mut running = task(head.frontier.size());
    let mut senders_alive = true;
    loop {
        tokio::select! {
            () = &mut running => return,
            job = rx.recv(), if senders_alive => {
                let Some(first) = job else {
                    senders_alive = false;
                    continue;
                };
                let mut lone = Vec::new();
                let mut next = Some(first);
                while let Some(job) = next {
                    match job {
                        job @ Job::Append { batch: None, .. } => lone.push(job),
                        other => backlog.push_back(other),
                    }
                    next = rx.try_recv().ok();
                }
                if !lone.is_empty() {
                    // Entries alone never stop the writer.
                    let _ = run_group(core, head, lone).await;
                }
            }
        }
    }
}

/// Applies and flushes one group of jobs (none of them a hold), then answers them.
async fn run_group(core: &Core, head: &mut Head, jobs: Vec<Job>) -> Flow {
    let jobs = match apply_together(core, head, jobs).await {
        Ok(flow) => return flow,
        Err(jobs) => jobs,
    };
    let mut done: Vec<(oneshot::Sender<Result<u64>>, u64)> = Vec::new();
    let mut checkpoints: Vec<(CheckpointReply, Option<SignedCheckpoint>)> = Vec::new();
    let mut stop: Option<oneshot::Sender<Result<()>>> = None;
    let mut lone: Vec<(AccessEntry, oneshot::Sender<Result<u64>>)> = Vec::new();
    for job in jobs {
        match job {
            Job::Append {
                batch: None,
                entry,
                reply,
            } => lone.push((*entry, reply)),
            Job::Stop { reply } => stop = Some(reply),
            Job::Append {
                batch: Some(batch),
                entry,
                reply,
            } => {
                flush_lone(core, head, &mut lone, &mut done).await;
                match core.apply_at_head(head, Some(&batch), &[&entry]).await {
                    Ok(seqs) => done.push((reply, seqs[0])),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Job::Checkpoint { only_if_due, reply } => {
                flush_lone(core, head, &mut lone, &mut done).await;
                match core.checkpoint_at_head(head, only_if_due).await {
                    Ok(cp) => checkpoints.push((reply, cp)),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            // The writer splits groups at holds; a hold never reaches here. Run it anyway
            // rather than drop it: its caller would wait forever.
            Job::Hold { task } => task(head.frontier.size()).await,
        }
    }
    flush_lone(core, head, &mut lone, &mut done).await;
    let synced = core.timed_sync().await;
    if synced.is_ok() {
        core.note_durable(head);
    }
    for (reply, seq) in done {
        let _ = reply.send(synced.as_ref().map(|()| seq).map_err(store_err));
    }
    for (reply, cp) in checkpoints {
        let _ = reply.send(synced.as_ref().map(|()| cp).map_err(store_err));
    }
    if let Some(reply) = stop {
        let _ = reply.send(synced.as_ref().copied().map_err(store_err));
        return Flow::Stop;
    }
    Flow::Continue
}

/// Applies a group of appends carrying two writes or more in one engine transaction, each
/// write's checks after the writes before it, then flushes once and answers them. Any
/// failure (a check that no longer holds, another daemon at the head) applies nothing and
/// hands the jobs back, to be applied one at a time, where each gets its own outcome.
async fn apply_together(
    core: &Core,
    head: &mut Head,
    jobs: Vec<Job>,
) -> std::result::Result<Flow, Vec<Job>> {
    let appends_only = jobs.iter().all(|j| matches!(j, Job::Append { .. }));
    let writes = jobs
        .iter()
        .filter(|j| matches!(j, Job::Append { batch: Some(_), .. }))
        .count();
    if !appends_only || writes < 2 {
        return Err(jobs);
    }
    let mut next = head.clone();
    let mut staged: Vec<Batch> = Vec::with_capacity(jobs.len());
    let mut seqs = Vec::with_capacity(jobs.len());
    for job in &jobs {
        if let Job::Append { entry, .. } = job {
            let mut b = Batch::new();
            seqs.push(next.frontier.size());
            next = match core.stage(&next, &mut b, entry) {
                Ok(n) => n,
                Err(_) => return Err(jobs),
            };
            staged.push(b);
        }
    }
    let mut batches: Vec<&Batch> = Vec::with_capacity(2 * jobs.len());
    for (job, entry_batch) in jobs.iter().zip(&staged) {
        if let Job::Append {
            batch: Some(data), ..
        } = job
        {
            batches.push(data);
        }
        batches.push(entry_batch);
    }
    if core.store.apply_all(&batches).await.is_err() {
        return Err(jobs);
    }
    *head = next;
    core.publish(head);
    let synced = core.timed_sync().await;
    if synced.is_ok() {
        core.note_durable(head);
    }
    for (job, seq) in jobs.into_iter().zip(seqs) {
        if let Job::Append { reply, .. } = job {
            let _ = reply.send(synced.as_ref().map(|()| seq).map_err(store_err));
        }
    }
    Ok(Flow::Continue)
}

async fn flush_lone(
    core: &Core,
    head: &mut Head,
    lone: &mut Vec<(AccessEntry, oneshot::Sender<Result<u64>>)>,
    done: &mut Vec<(oneshot::Sender<Result<u64>>, u64)>,
) {
    if lone.is_empty() {
        return;
    }
    let entries: Vec<&AccessEntry> = lone.iter().map(|(e, _)| e).collect();
    match core.apply_at_head(head, None, &entries).await {
        Ok(seqs) => {
            for ((_, reply), seq) in lone.drain(..).zip(seqs) {
                done.push((reply, seq));
            }
        }
        Err(e) => {
            for (_, reply) in lone.drain(..) {
                let _ = reply.send(Err(for_each_waiter(&e)));
            }
        }
    }
}

impl AuditLog {
    async fn submit<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(job(tx)).map_err(|_| {
            Error::Storage(StoreError::NotDurable(
                "the access-log writer stopped".into(),
            ))
        })?;
        rx.await.map_err(|_| {
            Error::Storage(StoreError::NotDurable(
                "the access-log writer stopped".into(),
            ))
        })?
    }

    /// Appends `entry` in `batch` (the write it logs; an empty batch for an entry alone),
    /// and returns once both are durable. Returns the entry's sequence number. A batch whose
    /// checks fail is not applied and consumes no sequence number.
    pub async fn append(&self, batch: Batch, entry: &AccessEntry) -> Result<u64> {
        let batch = (!batch.checks.is_empty() || !batch.ops.is_empty()).then(|| Box::new(batch));
        let entry = Box::new(entry.clone());
        let seq = self
            .submit(|reply| Job::Append {
                batch,
                entry: entry.clone(),
                reply,
            })
            .await?;
        tracing::debug!(target: "vault::access", seq, rpc = %entry.rpc, client = %entry.client_id, "logged");
        Ok(seq)
    }

    /// Runs `task` while no write can apply, and returns its result.
    ///
    /// The writer finishes (applies and flushes) every job queued before this call, then
    /// calls `task` with the log's size at that moment: every write acknowledged so far is
    /// in the store, together with its entry, below that size. Until `task` completes,
    /// writes (and checkpoints) wait; entries alone, which reads and refused calls append,
    /// are still added, at or after that size, so reads go on being served. `task` must
    /// therefore read the access-log tables only below the size it is given. Writes that do
    /// not go through this log (another daemon sharing a database, start-up housekeeping,
    /// pruning) are not held.
    pub async fn hold_writes<T, F, Fut>(&self, task: F) -> Result<T>
    where
        F: FnOnce(u64) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let task: HeldTask = Box::new(move |size| {
            Box::pin(async move {
                let _ = tx.send(task(size).await);
            })
        });
        let stopped = || {
            Error::Storage(StoreError::NotDurable(
                "the access-log writer stopped".into(),
            ))
        };
        self.jobs.send(Job::Hold { task }).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Finishes the queued work and stops the writer task, so the store can be released
    /// (reopening the same embedded store in one process needs it). Later appends fail.
    pub async fn close(&self) -> Result<()> {
        let flushed = self.submit(|reply| Job::Stop { reply }).await;
        // The writer answers the stop, then returns and drops its handle on the store. Wait
        // for that too, so a caller that reopens the store at once finds it released.
        let task = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        // The last checkpoint into the mark before the store is let go, here and now.
        if let (Ok(()), Some(file), Some(cp)) =
            (&flushed, &self.outside, self.head().last_checkpoint)
        {
            advance_mark(file, &cp);
        }
        flushed
    }

    /// Signs and stores a checkpoint at the current size, unless one exists there already.
    pub async fn checkpoint(&self) -> Result<Option<SignedCheckpoint>> {
        self.submit(|reply| Job::Checkpoint {
            only_if_due: false,
            reply,
        })
        .await
    }

    /// Makes a checkpoint if entries were added and the last checkpoint is older than the
    /// configured interval (the daemon calls this every second).
    pub async fn checkpoint_if_due(&self) -> Result<Option<SignedCheckpoint>> {
        self.submit(|reply| Job::Checkpoint {
            only_if_due: true,
            reply,
        })
        .await
    }

    /// Signed checkpoints with size at least `since_size`, oldest first (the anchor
    /// included when it qualifies).
    pub async fn checkpoints(&self, since_size: u64) -> Result<Vec<SignedCheckpoint>> {
        let mut out = Vec::new();
        if let Some(raw) = self.store.get(Table::Meta, meta::AUDIT_ANCHOR).await? {
            let stored: StoredCheckpoint =
                serde_json::from_slice(&raw).map_err(|_| corrupt("audit anchor"))?;
            if stored.signed.size >= since_size {
                out.push(stored.signed);
            }
        }
        let mut from = since_size;
        loop {
            let rows = self
                .store
                .scan_range(Table::AuditCheckpoints, &seq_key(from), None, SCAN_CHUNK)
                .await?;
            let Some((last_key, _)) = rows.last() else {
                break;
            };
            from = parse_seq(last_key)? + 1;
            for (_, raw) in rows {
                let stored: StoredCheckpoint =
                    serde_json::from_slice(&raw).map_err(|_| corrupt("audit checkpoint"))?;
                if out.last().is_none_or(|c| c.size != stored.signed.size) {
                    out.push(stored.signed);
                }
            }
        }
        Ok(out)
    }

    /// Entries with `from <= seq < to`, oldest first, as stored bytes and parsed.
    pub async fn entries(&self, from: u64, to: u64) -> Result<Vec<(Vec<u8>, AuditEntry)>> {
        let mut out = Vec::new();
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
            let Some((last_key, _)) = rows.last() else {
                break;
            };
            next = parse_seq(last_key)? + 1;
            for (_, bytes) in rows {
                let e = AuditEntry::decode(&bytes).ok_or(corrupt("audit entry"))?;
                out.push((bytes, e));
            }
        }
        Ok(out)
    }

    /// Every leaf hash below `size` (tests compare proofs from nodes with these).
    #[cfg(test)]
    async fn leaves(&self, size: u64) -> Result<Vec<Hash>> {
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        while (out.len() as u64) < size {
            let rows = self
                .store
                .scan_range(
                    Table::AuditLeaves,
                    &seq_key(out.len() as u64),
                    Some(&seq_key(size)),
                    SCAN_CHUNK,
                )
                .await?;
            if rows.is_empty() {
                return Err(corrupt("audit leaves (gap in the log)"));
            }
            for (_, v) in rows {
                out.push(v.as_slice().try_into().map_err(|_| corrupt("audit leaf"))?);
            }
        }
        Ok(out)
    }

    /// Proof that entry `seq` is in the tree of `size` entries (RFC 9162 §2.1.3), from
    /// O(log size) stored subtrees.
    pub async fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>> {
        self.check_size(size).await?;
        let recorder = NodeRecorder::new();
        merkle::inclusion_proof_from_nodes(&recorder, seq, size).map_err(|e| {
            crate::error::Error::from(crate::error::InvalidInput::new(
                "seq",
                format!("no inclusion proof: {e}"),
            ))
        })?;
        let nodes = self.fetch_nodes(recorder.into_asked()).await?;
        merkle::inclusion_proof_from_nodes(&nodes, seq, size).map_err(|_| corrupt("audit node"))
    }

    /// Proof that the tree of `new_size` entries extends the one of `old_size`
    /// (RFC 9162 §2.1.4), from O(log new_size) stored subtrees.
    pub async fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
        self.check_size(new_size).await?;
        let recorder = NodeRecorder::new();
        merkle::consistency_proof_from_nodes(&recorder, old_size, new_size).map_err(|e| {
            crate::error::Error::from(crate::error::InvalidInput::new(
                "from_size",
                format!("no consistency proof: {e}"),
            ))
        })?;
        let nodes = self.fetch_nodes(recorder.into_asked()).await?;
        merkle::consistency_proof_from_nodes(&nodes, old_size, new_size)
            .map_err(|_| corrupt("audit node"))
    }

    async fn check_size(&self, size: u64) -> Result<()> {
        let current = self.size().await;
        if size > current {
            return Err(crate::error::InvalidInput::new(
                "size",
                format!("the log has {current} entries; ask for a size up to that"),
            )
            .into());
        }
        Ok(())
    }

    /// The offline-verifiable file for entries `from_seq..=to_seq` (widened to the
    /// enclosing signed checkpoints; `None` means from the start / up to the head, which is
    /// checkpointed first), whole. Prefer [`AuditLog::export_stream`], which never holds
    /// more than a page of it.
    pub async fn export(&self, from_seq: Option<u64>, to_seq: Option<u64>) -> Result<Vec<u8>> {
        self.export_stream(from_seq, to_seq).await?.collect().await
    }

    /// The file of [`AuditLog::export`], produced a page of entries at a time: the header
    /// and the signed end are decided here (O(log n) reads), the entries and the
    /// checkpoints between them are read as [`Export::next_chunk`] is called.
    pub async fn export_stream(
        &self,
        from_seq: Option<u64>,
        to_seq: Option<u64>,
    ) -> Result<Export> {
        // The head gets a checkpoint first, so the export can end there.
        self.checkpoint().await?;
        let anchor = self.anchor().await?;
        let anchor_size = anchor.as_ref().map(|(c, _)| c.size).unwrap_or(0);
        // The head as of the newest checkpoint: entries appended since have none to end at.
        let head_size = match self.store.last(Table::AuditCheckpoints).await? {
            Some((_, raw)) => self.parse_stored(&raw)?.0.size,
            None => anchor_size,
        };
        let from = from_seq.unwrap_or(0).max(anchor_size);
        let want_end = to_seq
            .map(|t| t.saturating_add(1))
            .unwrap_or(head_size)
            .min(head_size);
        // Start: the newest checkpoint at or before `from`, not before the anchor (or the
        // beginning).
        let start_cp = match self.newest_checkpoint_in(anchor_size, from).await? {
            Some(found) => Some(found),
            None => anchor.clone().filter(|(c, _)| c.size <= from),
        };
        let start = match &start_cp {
            Some((c, frontier)) if c.size > 0 => Start {
                checkpoint: Some(self.key.sign(c)),
                frontier: Some(hex::encode(frontier.to_bytes())),
                cut: self.cut().await?,
            },
            _ if anchor_size > 0 => return Err(corrupt("audit anchor")),
            _ => Start::default(),
        };
        let start_size = start_cp.map(|(c, _)| c.size).unwrap_or(0);
        // End: the oldest checkpoint at or after the wanted end.
        let target = want_end.max(start_size);
        let stored_end = self
            .store
            .scan_range(Table::AuditCheckpoints, &seq_key(target), None, 1)
            .await?;
        let end = match stored_end.first() {
            Some((_, raw)) => Some(self.parse_stored(raw)?.0),
            None => anchor.map(|(c, _)| c).filter(|c| c.size >= target),
        };
        let end = match end {
            Some(c) => c,
            None if head_size == 0 => Checkpoint {
                size: 0,
                root: merkle::empty_root(),
                last_leaf: zero_hash(),
                at_us: now_us(),
            },
            None => return Err(corrupt("audit head checkpoint")),
        };
        let end_signed = self.key.sign(&end);
        Ok(Export {
            core: Arc::clone(&self.core),
            header: Some(file::header_line(&start, &end_signed)),
            end: end_signed,
            start_size,
            end_size: end.size,
            next: start_size,
            page: SCAN_CHUNK,
            trailer: Vec::new(),
            done: false,
        })
    }

    /// Verifies the stored log between the checkpoints enclosing `from_seq..=to_seq`, as an
    /// auditor would verify an export: the paged export fed to the streaming verifier, so
    /// memory stays at a page and the Merkle frontier whatever the log's length.
    pub async fn verify(
        &self,
        from_seq: Option<u64>,
        to_seq: Option<u64>,
    ) -> Result<std::result::Result<file::Verified, file::VerifyError>> {
        let mut export = self.export_stream(from_seq, to_seq).await?;
        let public_key = self.key.public_key();
        let mut verifier =
            file::StreamVerifier::new(&public_key, file::Requirements::default(), &[], 0);
        while let Some(chunk) = export.next_chunk().await? {
            if let Err(e) = verifier.push(&chunk) {
                return Ok(Err(e));
            }
        }
        Ok(verifier.finish())
    }

    /// The newest stored checkpoint with `lo <= size <= at`, verified, with its frontier.
    /// Searches back from `at` in windows that double, so the cost follows the distance to
    /// that checkpoint (one window of `checkpoint_every` entries, normally), not the log.
    async fn newest_checkpoint_in(
        &self,
        lo: u64,
        at: u64,
    ) -> Result<Option<(Checkpoint, Frontier)>> {
        let end = at.saturating_add(1);
        let mut width = self.options.checkpoint_every.max(1);
        let mut window_end = end;
        while window_end > lo {
            let window_start = window_end.saturating_sub(width).max(lo);
            // The last row of the window: page through it (a window holds a few rows).
            let mut newest = None;
            let mut from = window_start;
            loop {
                let rows = self
                    .store
                    .scan_range(
                        Table::AuditCheckpoints,
                        &seq_key(from),
                        Some(&seq_key(window_end)),
                        SCAN_CHUNK,
                    )
                    .await?;
                let full = rows.len() == SCAN_CHUNK;
                let Some((last_key, raw)) = rows.into_iter().next_back() else {
                    break;
                };
                from = parse_seq(&last_key)? + 1;
                newest = Some(raw);
                if !full {
                    break;
                }
            }
            if let Some(raw) = newest {
                return Ok(Some(self.parse_stored(&raw)?));
            }
            window_end = window_start;
            width = width.saturating_mul(2);
        }
        Ok(None)
    }

    /// Removes whole segments of entries older than the retention, keeping the checkpoint
    /// at the cut as the signed anchor (leaf hashes are kept, for proofs).
    pub async fn prune_older_than(&self, cutoff_us: i64) -> Result<PruneReport> {
        let anchor_size = self.anchor().await?.map(|(c, _)| c.size).unwrap_or(0);
        let mut cut: Option<(u64, Vec<u8>)> = None;
        for signed in self.checkpoints(anchor_size + 1).await? {
            let last = self.entries(signed.size - 1, signed.size).await?;
            match last.first() {
                Some((_, e)) if e.at_us < cutoff_us => {
                    if let Some(raw) = self
                        .store
                        .get(Table::AuditCheckpoints, &seq_key(signed.size))
                        .await?
                    {
                        cut = Some((signed.size, raw));
                    }
                }
                _ => break,
            }
        }
        let Some((size, raw)) = cut else {
            return Ok(PruneReport {
                removed: 0,
                anchor_size,
            });
        };
        // The anchor first, with the signed statement of the cut: a crash mid-way leaves
        // entries before it, which exports skip.
        let (anchor, _) = self.parse_stored(&raw)?;
        let retention_us = i64::try_from(self.options.retention.as_micros()).unwrap_or(i64::MAX);
        let cut = self.key.sign_cut(&anchor, now_us(), retention_us.max(1));
        let mut b = Batch::new();
        b.put(Table::Meta, meta::AUDIT_ANCHOR, raw).put(
            Table::Meta,
            meta::AUDIT_CUT,
            serde_json::to_vec(&cut).map_err(|e| Error::Codec(e.to_string()))?,
        );
        self.store.commit(b).await?;
        let mut removed = 0;
        let mut next = anchor_size;
        while next < size {
            let upto = (next + SCAN_CHUNK as u64).min(size);
            let mut b = Batch::new();
            self.stage_prune_rows(&mut b, next, upto).await?;
            for seq in next..upto {
                b.delete(Table::AuditEntries, &seq_key(seq));
                b.delete(Table::AuditCheckpoints, &seq_key(seq));
            }
            self.store.commit(b).await?;
            removed += upto - next;
            next = upto;
        }
        Ok(PruneReport {
            removed,
            anchor_size: size,
        })
    }

    /// Prunes by the configured retention.
    pub async fn prune(&self) -> Result<PruneReport> {
        let cutoff = now_us().saturating_sub(self.options.retention.as_micros() as i64);
        self.prune_older_than(cutoff).await
    }
}

/// An export being produced ([`AuditLog::export_stream`]): the header, then the entries a
/// page at a time with the signed checkpoints that fall between them, then any trailer
/// (witnessed lines). Holds the log's core, not the file: a page of entries at most.
pub struct Export {
    core: Arc<Core>,
    /// The header line, until the first chunk takes it.
    header: Option<Vec<u8>>,
    end: SignedCheckpoint,
    start_size: u64,
    end_size: u64,
    /// The next entry to read.
    next: u64,
    /// Entries per chunk.
    page: usize,
    trailer: Vec<u8>,
    done: bool,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("start_size", &self.start_size)
            .field("end_size", &self.end_size)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Export {
    /// The signed checkpoint the file ends at.
    pub fn signed_end(&self) -> &SignedCheckpoint {
        &self.end
    }

    /// The size the file starts at (its first entry's sequence number).
    pub fn start_size(&self) -> u64 {
        self.start_size
    }

    /// Entries per chunk from now on (at least one).
    #[must_use]
    pub fn with_page(mut self, entries: usize) -> Self {
        self.page = entries.max(1);
        self
    }

    /// Lines to write after the last entry (the witnessed lines of the signed end).
    pub fn push_trailer(&mut self, lines: &[u8]) {
        self.trailer.extend_from_slice(lines);
    }

    /// The next piece of the file, `None` once it is all out. The first holds the header;
    /// each holds at most a page of entries; the pieces concatenated are the file.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let mut out = self.header.take().unwrap_or_default();
        if self.next >= self.end_size {
            out.append(&mut self.trailer);
            self.done = true;
            return Ok((!out.is_empty()).then_some(out));
        }
        let upto = self
            .next
            .saturating_add(self.page as u64)
            .min(self.end_size);
        let store = &self.core.store;
        // The checkpoints strictly between start and end, each after the entry that brings
        // the log to its size: sizes `next + 1 ..= upto` for this page's entries.
        let mut between = std::collections::BTreeMap::new();
        let mut from = self.next + 1;
        let cp_end = upto.min(self.end_size - 1) + 1;
        while from < cp_end {
            let rows = store
                .scan_range(
                    Table::AuditCheckpoints,
                    &seq_key(from),
                    Some(&seq_key(cp_end)),
                    SCAN_CHUNK,
                )
                .await?;
            let Some((last_key, _)) = rows.last() else {
                break;
            };
            from = parse_seq(last_key)? + 1;
            for (_, raw) in rows {
                let stored: StoredCheckpoint =
                    serde_json::from_slice(&raw).map_err(|_| corrupt("audit checkpoint"))?;
                let cp = stored
                    .signed
                    .verify(&self.core.key.public_key())
                    .ok_or(corrupt("audit checkpoint signature"))?;
                if cp.size > self.start_size && cp.size < self.end_size {
                    between.insert(cp.size, stored.signed);
                }
            }
        }
        let rows = store
            .scan_range(
                Table::AuditEntries,
                &seq_key(self.next),
                Some(&seq_key(upto)),
                self.page,
            )
            .await?;
        for (_, bytes) in rows {
            let e = AuditEntry::decode(&bytes).ok_or(corrupt("audit entry"))?;
            out.extend(file::entry_line(&bytes));
            if let Some(cp) = between.get(&(e.seq + 1)) {
                out.extend(file::checkpoint_line(cp));
            }
        }
        self.next = upto;
        Ok(Some(out))
    }

    /// The whole file in memory (tests and small ranges).
    pub async fn collect(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            out.extend(chunk);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::Outcome;
    use crate::audit::file::{self, Problem};
    use crate::crypto::Key256;
    use crate::storage::sled_store::{SledOptions, SledStore};

    fn root() -> RootKey {
        RootKey::from_key(Key256::from_bytes(&[9; 32]))
    }

    fn entry(i: u64, at_us: i64) -> AccessEntry {
        AccessEntry {
            at_us,
            request_id: format!("r{i}"),
            client_id: "c".into(),
            role: "campaign-tool",
            rpc: "Supporters.Get".into(),
            purpose: Some("membership".into()),
            subjects: vec![format!("s{i}")],
            fields: vec!["email"],
            outcome: Outcome::Allowed,
            request_ref: None,
            changes: Vec::new(),
        }
    }

    async fn open(dir: &std::path::Path, every: u64) -> (Arc<dyn Store>, AuditLog) {
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(dir, &SledOptions::default()).unwrap());
        let options = AuditOptions {
            checkpoint_every: every,
            ..AuditOptions::default()
        };
        let log = AuditLog::open(Arc::clone(&store), &root(), options)
            .await
            .unwrap();
        (store, log)
    }

    #[tokio::test]
    async fn a_failed_write_consumes_no_sequence_number() {
        let dir = tempfile::tempdir().unwrap();
        let (store, log) = open(dir.path(), 4).await;
        log.append(Batch::new(), &entry(0, 1)).await.unwrap();
        let mut failing = Batch::new();
        failing.check(Table::Records, b"absent", Some(b"expected"));
        assert!(log.append(failing, &entry(1, 2)).await.is_err());
        assert_eq!(log.append(Batch::new(), &entry(2, 3)).await.unwrap(), 1);
        assert_eq!(log.size().await, 2);
        assert!(
            store
                .get(Table::AuditEntries, &seq_key(2))
                .await
                .unwrap()
                .is_none()
        );
        let exported = log.export(None, None).await.unwrap();
        assert_eq!(
            file::verify(&exported, &log.public_key()).unwrap().entries,
            2
        );
    }

    #[tokio::test]
    async fn a_hold_keeps_writes_back_but_lets_lone_entries_through() {
        let dir = tempfile::tempdir().unwrap();
        let (store, log) = open(dir.path(), 3).await;
        let log = Arc::new(log);
        log.append(Batch::new(), &entry(0, 1)).await.unwrap();
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let holder = {
            let (log, store) = (Arc::clone(&log), Arc::clone(&store));
            tokio::spawn(async move {
                log.hold_writes(move |size| async move {
                    let _ = started_tx.send(size);
                    let _ = release_rx.await;
                    Ok(store.get(Table::Records, b"k").await?)
                })
                .await
            })
        };
        assert_eq!(started_rx.await.unwrap(), 1, "the size at the hold");
        let write = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut b = Batch::new();
                b.put(Table::Records, b"k", b"v".to_vec());
                log.append(b, &entry(1, 2)).await
            })
        };
        // Entries alone (reads) still go through, after the held size.
        assert_eq!(log.append(Batch::new(), &entry(2, 3)).await.unwrap(), 1);
        assert_eq!(log.append(Batch::new(), &entry(3, 4)).await.unwrap(), 2);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!write.is_finished(), "the write waits for the hold");
        assert_eq!(store.get(Table::Records, b"k").await.unwrap(), None);
        release_tx.send(()).unwrap();
        assert_eq!(
            holder.await.unwrap().unwrap(),
            None,
            "the task saw no write"
        );
        assert_eq!(write.await.unwrap().unwrap(), 3);
        assert_eq!(
            store.get(Table::Records, b"k").await.unwrap(),
            Some(b"v".to_vec())
        );
        let v = file::verify(&log.export(None, None).await.unwrap(), &log.public_key()).unwrap();
        assert_eq!(v.entries, 4);
        // A failing task reports its error, and the writer goes on.
        let e = log
            .hold_writes(|_| async { Err::<(), _>(Error::Codec("boom".into())) })
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Codec(_)));
        assert_eq!(log.append(Batch::new(), &entry(4, 5)).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn a_group_of_writes_applies_together_and_a_losing_claim_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (store, log) = open(dir.path(), 5).await;
        let log = Arc::new(log);
        // Holding writes makes every write below wait, so they reach the writer as one group.
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let holder = {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                log.hold_writes(move |_| async move {
                    let _ = release_rx.await;
                    Ok(())
                })
                .await
            })
        };
        let writes: Vec<_> = (0..40u64)
            .map(|i| {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut b = Batch::new();
                    if i == 7 || i == 23 {
                        // Two claims of one key: whichever comes second must fail.
                        b.check(Table::EmailIndex, b"dup", None).put(
                            Table::EmailIndex,
                            b"dup",
                            i.to_be_bytes().to_vec(),
                        );
                    }
                    b.put(Table::Records, &i.to_be_bytes(), b"v".to_vec());
                    (i, log.append(b, &entry(i, i as i64)).await)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        release_tx.send(()).unwrap();
        holder.await.unwrap().unwrap();
        let mut seqs = Vec::new();
        let mut failed = Vec::new();
        for w in writes {
            match w.await.unwrap() {
                (_, Ok(seq)) => seqs.push(seq),
                (i, Err(_)) => failed.push(i),
            }
        }
        assert_eq!(failed.len(), 1, "exactly one claim loses: {failed:?}");
        let loser = failed[0];
        assert!(loser == 7 || loser == 23);
        seqs.sort_unstable();
        assert_eq!(seqs, (0..39).collect::<Vec<_>>(), "no sequence number lost");
        let winner = if loser == 7 { 23u64 } else { 7 };
        assert_eq!(
            store.get(Table::EmailIndex, b"dup").await.unwrap(),
            Some(winner.to_be_bytes().to_vec())
        );
        assert_eq!(
            store
                .get(Table::Records, &loser.to_be_bytes())
                .await
                .unwrap(),
            None,
            "the losing write left nothing"
        );
        let v = file::verify(&log.export(None, None).await.unwrap(), &log.public_key()).unwrap();
        assert_eq!(v.entries, 39);
    }

    #[tokio::test]
    async fn concurrent_appends_form_one_verifiable_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (_, log) = open(dir.path(), 7).await;
        let log = Arc::new(log);
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let log = Arc::clone(&log);
                tokio::spawn(async move { log.append(Batch::new(), &entry(i, i as i64)).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..200).collect::<Vec<_>>());
        let v = file::verify(&log.export(None, None).await.unwrap(), &log.public_key()).unwrap();
        assert_eq!((v.entries, v.end.size), (200, 200));
        assert!(v.checkpoints > 200 / 7);
    }

    #[tokio::test]
    async fn restart_resumes_the_chain_and_proofs_hold_across_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let (_, log) = open(dir.path(), 5).await;
            for i in 0..13 {
                log.append(Batch::new(), &entry(i, 1)).await.unwrap();
            }
            let cp = log.checkpoint().await.unwrap().unwrap();
            log.close().await.unwrap();
            cp
        };
        let (_, log) = open(dir.path(), 5).await;
        assert_eq!(log.size().await, 13);
        for i in 13..31 {
            log.append(Batch::new(), &entry(i, 1)).await.unwrap();
        }
        let second = log.checkpoint().await.unwrap().unwrap();
        let (a, b) = (
            first.verify(&log.public_key()).unwrap(),
            second.verify(&log.public_key()).unwrap(),
        );
        let proof = log.consistency_proof(a.size, b.size).await.unwrap();
        merkle::verify_consistency(a.size, b.size, &a.root, &b.root, &proof).unwrap();
        // And every entry is provably in the new tree.
        let leaves = log.leaves(b.size).await.unwrap();
        for seq in [0, 12, 13, 30] {
            let proof = log.inclusion_proof(seq, b.size).await.unwrap();
            merkle::verify_inclusion(&leaves[seq as usize], seq, b.size, &proof, &b.root).unwrap();
        }
        let v = file::verify(&log.export(None, None).await.unwrap(), &log.public_key()).unwrap();
        assert_eq!(v.entries, 31);
        // A partial export verifies too, from the checkpoint before it.
        let part = log.export(Some(12), Some(20)).await.unwrap();
        let v = file::verify(&part, &log.public_key()).unwrap();
        assert_eq!((v.first_seq, v.end.size), (10, 25));
    }

    #[tokio::test]
    async fn pruning_keeps_a_signed_anchor_and_exports_still_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (store, log) = open(dir.path(), 4).await;
        for i in 0..10 {
            log.append(Batch::new(), &entry(i, 100)).await.unwrap(); // old
        }
        for i in 10..14 {
            log.append(Batch::new(), &entry(i, 10_000)).await.unwrap(); // recent
        }
        let report = log.prune_older_than(5_000).await.unwrap();
        // Checkpoints at 4, 8, 12: the segment up to 8 is entirely old; 12 holds recent ones.
        assert_eq!(
            report,
            PruneReport {
                removed: 8,
                anchor_size: 8
            }
        );
        assert!(
            store
                .get(Table::AuditEntries, &seq_key(7))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .get(Table::AuditEntries, &seq_key(8))
                .await
                .unwrap()
                .is_some()
        );
        let exported = log.export(None, None).await.unwrap();
        let v = file::verify(&exported, &log.public_key()).unwrap();
        assert_eq!((v.first_seq, v.entries), (8, 6));
        // The cut is the log's signed statement: the file is the whole retained log.
        let cut = v.cut.clone().unwrap();
        assert_eq!(cut.size, 8);
        assert_eq!(
            cut.retention_us,
            AuditOptions::default().retention.as_micros() as i64
        );
        let whole = file::Requirements {
            whole: true,
            ..file::Requirements::default()
        };
        assert!(file::verify_with(&exported, &log.public_key(), whole).is_ok());
        // A range export that starts later is sound, but not the whole log.
        let range = log.export(Some(12), None).await.unwrap();
        assert_eq!(
            file::verify(&range, &log.public_key()).unwrap().first_seq,
            12
        );
        let e = file::verify_with(&range, &log.public_key(), whole).unwrap_err();
        assert_eq!((e.problem, e.seq), (Problem::Missing, Some(12)));
        // The cut moved to a later size (re-signed by nobody): refused.
        let text = String::from_utf8(exported.clone()).unwrap();
        let moved = text.replacen("\"cut\":{\"size\":8,", "\"cut\":{\"size\":12,", 1);
        assert_ne!(moved, text);
        let e = file::verify(moved.as_bytes(), &log.public_key()).unwrap_err();
        assert_eq!(e.problem, Problem::BadSignature, "{e}");
        // The cut dropped from the file (a version 1 header): sound, but not the whole log.
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let mut header: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        header["version"] = 1.into();
        header["start"].as_object_mut().unwrap().remove("cut");
        lines[0] = header.to_string();
        let v1 = lines.join("\n") + "\n";
        assert!(file::verify(v1.as_bytes(), &log.public_key()).is_ok());
        let e = file::verify_with(v1.as_bytes(), &log.public_key(), whole).unwrap_err();
        assert_eq!(e.problem, Problem::Missing);
        // Tampering after the anchor is still caught.
        let text = String::from_utf8(exported)
            .unwrap()
            .replacen("\"s9\"", "\"s0\"", 1);
        let e = file::verify(text.as_bytes(), &log.public_key()).unwrap_err();
        assert_eq!((e.problem, e.seq), (Problem::Edited, Some(9)));
        // Proofs still reach back before the anchor (leaf hashes and subtrees are kept),
        // and every one verifies against the signed root.
        let proof = log.inclusion_proof(2, 14).await.unwrap();
        assert!(!proof.is_empty());
        log.checkpoint().await.unwrap();
        let head = log.checkpoints(14).await.unwrap().pop().unwrap();
        let head = head.verify(&log.public_key()).unwrap();
        assert_eq!(head.size, 14);
        let leaves = log.leaves(14).await.unwrap();
        for seq in 0..14 {
            let proof = log.inclusion_proof(seq, 14).await.unwrap();
            merkle::verify_inclusion(&leaves[seq as usize], seq, 14, &proof, &head.root).unwrap();
        }
        let anchor = log.anchor().await.unwrap().unwrap().0;
        let proof = log.consistency_proof(anchor.size, 14).await.unwrap();
        merkle::verify_consistency(anchor.size, 14, &anchor.root, &head.root, &proof).unwrap();
        proofs_match_leaves(&log, [8, 9, 13, 14].into_iter()).await;
        // After a restart, the head comes back and appends continue the chain.
        log.close().await.unwrap();
        drop(log);
        drop(store);
        let (_, log) = open(dir.path(), 4).await;
        log.append(Batch::new(), &entry(14, 20_000)).await.unwrap();
        let v = file::verify(&log.export(None, None).await.unwrap(), &log.public_key()).unwrap();
        assert_eq!((v.first_seq, v.end.size), (8, 15));
    }

    /// The subtrees a log of `n` entries stores: those of level `STORED_FROM_LEVEL` up.
    fn stored_nodes(n: u64) -> usize {
        (STORED_FROM_LEVEL..64).map(|l| (n >> l) as usize).sum()
    }

    async fn count(store: &Arc<dyn Store>, table: Table) -> usize {
        store
            .scan_range(table, &[], None, usize::MAX)
            .await
            .unwrap()
            .len()
    }

    /// Every proof the log gives up to its size equals the one computed from all leaves.
    async fn proofs_match_leaves(log: &AuditLog, sizes: impl Iterator<Item = u64>) {
        let size = log.size().await;
        let leaves = log.leaves(size).await.unwrap();
        for n in sizes {
            for seq in 0..n {
                assert_eq!(
                    log.inclusion_proof(seq, n).await.unwrap(),
                    merkle::inclusion_proof(&leaves, seq, n).unwrap(),
                    "inclusion of {seq} in {n}"
                );
            }
            for old in 0..=n {
                assert_eq!(
                    log.consistency_proof(old, n).await.unwrap(),
                    merkle::consistency_proof(&leaves, old, n).unwrap(),
                    "consistency {old} -> {n}"
                );
            }
            assert_eq!(
                log.root_at(n).await.unwrap(),
                merkle::root(&leaves, n).unwrap()
            );
        }
    }

    #[tokio::test]
    async fn proofs_from_stored_subtrees_equal_proofs_from_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let (store, log) = open(dir.path(), 5).await;
        for i in 0..70 {
            log.append(Batch::new(), &entry(i, 1)).await.unwrap();
        }
        // One node per completed perfect subtree of a stored level.
        assert_eq!(count(&store, Table::AuditNodes).await, stored_nodes(70));
        proofs_match_leaves(&log, 1..=70).await;
        // Past the head: refused, as before.
        assert!(matches!(
            log.inclusion_proof(0, 71).await,
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            log.inclusion_proof(70, 70).await,
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            log.consistency_proof(9, 8).await,
            Err(Error::InvalidInput(_))
        ));
    }

    #[tokio::test]
    async fn a_store_written_without_subtrees_gets_them_once_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, log) = open(dir.path(), 6).await;
            for i in 0..45 {
                log.append(Batch::new(), &entry(i, 1)).await.unwrap();
            }
            log.close().await.unwrap();
            // What a build that kept no subtrees leaves: no nodes, no marker.
            let mut b = Batch::new();
            for (k, _) in store
                .scan_range(Table::AuditNodes, &[], None, usize::MAX)
                .await
                .unwrap()
            {
                b.delete(Table::AuditNodes, &k);
            }
            b.delete(Table::Meta, meta::AUDIT_NODES_BUILT);
            store.commit(b).await.unwrap();
            assert_eq!(count(&store, Table::AuditNodes).await, 0);
        }
        let (store, log) = open(dir.path(), 6).await;
        assert_eq!(count(&store, Table::AuditNodes).await, stored_nodes(45));
        assert_eq!(
            store
                .get(Table::Meta, meta::AUDIT_NODES_BUILT)
                .await
                .unwrap()
                .as_deref(),
            Some(NODES_VERSION)
        );
        proofs_match_leaves(&log, [1, 16, 31, 32, 33, 45].into_iter()).await;
        // Appends go on storing theirs.
        for i in 45..64 {
            log.append(Batch::new(), &entry(i, 1)).await.unwrap();
        }
        assert_eq!(count(&store, Table::AuditNodes).await, stored_nodes(64));
        proofs_match_leaves(&log, [64].into_iter()).await;
    }

    #[tokio::test]
    async fn leaves_that_do_not_hash_to_the_signed_root_stop_the_build() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, log) = open(dir.path(), 4).await;
            for i in 0..8 {
                log.append(Batch::new(), &entry(i, 1)).await.unwrap();
            }
            log.close().await.unwrap();
            let mut b = Batch::new();
            b.delete(Table::Meta, meta::AUDIT_NODES_BUILT).put(
                Table::AuditLeaves,
                &seq_key(2),
                vec![7; 32],
            );
            store.commit(b).await.unwrap();
        }
        let store: Arc<dyn Store> =
            Arc::new(SledStore::open(dir.path(), &SledOptions::default()).unwrap());
        let e = AuditLog::open(store, &root(), AuditOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Integrity(_)), "{e}");
    }

    #[tokio::test]
    async fn a_tampered_subtree_fails_and_a_missing_one_is_recomputed() {
        use crate::crypto::row_mac::RowKey;
        use crate::storage::AuthenticatedStore;
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn Store> =
            Arc::new(SledStore::open(dir.path(), &SledOptions::default()).unwrap());
        let store: Arc<dyn Store> = Arc::new(AuthenticatedStore::new(
            Arc::clone(&raw),
            RowKey::derive(&root()),
        ));
        let options = AuditOptions {
            checkpoint_every: 8,
            ..AuditOptions::default()
        };
        let log = AuditLog::open(Arc::clone(&store), &root(), options)
            .await
            .unwrap();
        for i in 0..40 {
            log.append(Batch::new(), &entry(i, 1)).await.unwrap();
        }
        log.checkpoint().await.unwrap();
        let cp = log.checkpoints(40).await.unwrap().pop().unwrap();
        let cp = cp.verify(&log.public_key()).unwrap();
        let leaves = log.leaves(40).await.unwrap();
        let good = log.inclusion_proof(3, 40).await.unwrap();
        merkle::verify_inclusion(&leaves[3], 3, 40, &good, &cp.root).unwrap();
        // The path of leaf 3 in 40 reads the stored node (4, 1), leaves 16..32.
        let key = node_key(4, 1);
        let stored = raw.get(Table::AuditNodes, &key).await.unwrap().unwrap();
        // Deleted (a store writer can always delete): recomputed, the same proof.
        let mut b = Batch::new();
        b.delete(Table::AuditNodes, &key);
        raw.commit(b).await.unwrap();
        assert_eq!(log.inclusion_proof(3, 40).await.unwrap(), good);
        // Altered: refused, never a proof.
        let mut altered = stored.clone();
        altered[0] ^= 1;
        let mut b = Batch::new();
        b.put(Table::AuditNodes, &key, altered);
        raw.commit(b).await.unwrap();
        let e = log.inclusion_proof(3, 40).await.unwrap_err();
        assert!(matches!(e, Error::Integrity(_)), "{e}");
        assert!(log.consistency_proof(16, 40).await.is_err());
        // Another node's valid row moved here: refused too (the tag covers the key).
        let other = raw
            .get(Table::AuditNodes, &node_key(4, 0))
            .await
            .unwrap()
            .unwrap();
        let mut b = Batch::new();
        b.put(Table::AuditNodes, &key, other);
        raw.commit(b).await.unwrap();
        assert!(log.inclusion_proof(3, 40).await.is_err());
        // Put back: proofs are whole again.
        let mut b = Batch::new();
        b.put(Table::AuditNodes, &key, stored);
        raw.commit(b).await.unwrap();
        assert_eq!(log.inclusion_proof(3, 40).await.unwrap(), good);
    }

    /// The export as the single-buffer code before paging built it (frontiers from the
    /// leaves): the paged export must equal it byte for byte.
    async fn reference_export(
        log: &AuditLog,
        from_seq: Option<u64>,
        to_seq: Option<u64>,
    ) -> Vec<u8> {
        log.checkpoint().await.unwrap();
        let anchor = log.anchor().await.unwrap();
        let anchor_size = anchor.as_ref().map(|(c, _)| c.size).unwrap_or(0);
        let all = log.checkpoints(0).await.unwrap();
        let stored: Vec<(Checkpoint, SignedCheckpoint)> = all
            .iter()
            .map(|s| (s.verify(&log.public_key()).unwrap(), s.clone()))
            .collect();
        let head_size = log.size().await;
        let from = from_seq.unwrap_or(0).max(anchor_size);
        let want_end = to_seq
            .map(|t| t.saturating_add(1))
            .unwrap_or(head_size)
            .min(head_size);
        let start_cp = stored
            .iter()
            .rev()
            .find(|(c, _)| c.size <= from && c.size >= anchor_size);
        let start = match start_cp {
            Some((c, signed)) if c.size > 0 => {
                let mut frontier = Frontier::new();
                for leaf in log.leaves(c.size).await.unwrap() {
                    frontier.push(leaf).unwrap();
                }
                Start {
                    checkpoint: Some(signed.clone()),
                    frontier: Some(hex::encode(frontier.to_bytes())),
                    cut: log.cut().await.unwrap(),
                }
            }
            _ => Start::default(),
        };
        let start_size = start_cp.map(|(c, _)| c.size).unwrap_or(0);
        let (end_cp, end_signed) = stored
            .iter()
            .find(|(c, _)| c.size >= want_end.max(start_size))
            .unwrap()
            .clone();
        let mut out = file::header_line(&start, &end_signed);
        let between: std::collections::BTreeMap<u64, SignedCheckpoint> = stored
            .iter()
            .filter(|(c, _)| c.size > start_size && c.size < end_cp.size)
            .map(|(c, s)| (c.size, s.clone()))
            .collect();
        for (bytes, e) in log.entries(start_size, end_cp.size).await.unwrap() {
            out.extend(file::entry_line(&bytes));
            if let Some(cp) = between.get(&(e.seq + 1)) {
                out.extend(file::checkpoint_line(cp));
            }
        }
        out
    }

    /// The paged export, in pages of several sizes, equals the reference byte for byte,
    /// and the streamed verification says what the offline verifier says of it.
    async fn check_export(log: &AuditLog, from: Option<u64>, to: Option<u64>) {
        let reference = reference_export(log, from, to).await;
        for page in [1usize, 3, 4, 5, 4096] {
            let mut paged = log.export_stream(from, to).await.unwrap().with_page(page);
            let mut out = Vec::new();
            while let Some(c) = paged.next_chunk().await.unwrap() {
                out.extend(c);
            }
            assert!(out == reference, "{from:?}..{to:?} in pages of {page}");
        }
        let v = file::verify(&reference, &log.public_key()).unwrap();
        assert_eq!(log.verify(from, to).await.unwrap().unwrap(), v);
    }

    #[tokio::test]
    async fn the_paged_export_is_the_single_buffer_file_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (_, log) = open(dir.path(), 4).await;
        for i in 0..10 {
            log.append(Batch::new(), &entry(i, 100)).await.unwrap();
        }
        for i in 10..37 {
            log.append(Batch::new(), &entry(i, 10_000)).await.unwrap();
        }
        let ranges = [
            (None, None),
            (Some(0), Some(0)),
            (Some(5), None),
            (Some(12), Some(20)),
            (Some(16), Some(16)),
            (None, Some(35)),
            (Some(36), None),
            (Some(1000), None),
        ];
        for (from, to) in ranges {
            check_export(&log, from, to).await;
        }
        // After pruning, from the anchor and its cut.
        let report = log.prune_older_than(5_000).await.unwrap();
        assert_eq!(report.anchor_size, 8);
        for (from, to) in ranges {
            check_export(&log, from, to).await;
        }
        // An entry edited in the store: the streamed verification finds it where it is.
        let mut e = AuditEntry::decode(
            &log.store
                .get(Table::AuditEntries, &seq_key(21))
                .await
                .unwrap()
                .unwrap(),
        )
        .unwrap();
        e.subjects = vec!["someone-else".into()];
        let mut b = Batch::new();
        b.put(Table::AuditEntries, &seq_key(21), e.encode().unwrap());
        log.store.commit(b).await.unwrap();
        let found = log.verify(None, None).await.unwrap().unwrap_err();
        assert_eq!(
            (found.problem, found.seq),
            (Problem::Edited, Some(21)),
            "{found}"
        );
    }

    #[tokio::test]
    async fn an_empty_log_exports_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (_, log) = open(dir.path(), 4).await;
        let v = log.verify(None, None).await.unwrap().unwrap();
        assert_eq!((v.entries, v.end.size), (0, 0));
        assert_eq!(count(&log.store, Table::AuditNodes).await, 0);
    }
}
