//! The Merkle tree of RFC 9162 §2.1 (Certificate Transparency v2, same hashing as
//! RFC 6962), as pure functions, for the tamper-evident access log.
//!
//! # What this module holds
//!
//! - the Merkle Tree Hash (MTH) of the first `size` leaves: [`root`] (§2.1.1);
//! - inclusion proofs: [`inclusion_proof`] (§2.1.3.1) and [`verify_inclusion`]
//!   (the §2.1.3.2 algorithm);
//! - consistency proofs: [`consistency_proof`] (§2.1.4.1) and [`verify_consistency`]
//!   (the §2.1.4.2 algorithm);
//! - [`Frontier`], an append-only builder that keeps only the roots of the perfect
//!   subtrees on the tree's right edge (the "compact range"), O(log n) hashes, and can be
//!   serialized so the daemon resumes after a restart without rereading every leaf.
//!
//! The generators read leaf hashes through [`LeafSource`], so the log can keep them in its
//! store; `[Hash]` and `Vec<Hash>` implement it for in-memory use.
//!
//! The same generators also run over stored *perfect subtrees* ([`NodeSource`]): node
//! `(level, index)` is the MTH of the `2^level` leaves from `index * 2^level` (level 0 is the
//! leaf). Every subtree an RFC 9162 proof or root names is either such a node or the tree's
//! right edge, which splits into O(log n) of them, so [`root_from_nodes`],
//! [`inclusion_proof_from_nodes`] and [`consistency_proof_from_nodes`] read O(log n) nodes
//! instead of `n` leaves. [`Frontier::push_completing`] names the nodes each append
//! completes, which is how the log stores them as it grows. [`NodeRecorder`] answers with
//! placeholders and remembers what was asked, so a caller whose nodes sit behind an
//! asynchronous store fetches exactly those first (the nodes a proof needs depend on the
//! sizes and index alone, never on hash values).
//!
//! # Invariant
//!
//! With SHA-256 as the hash:
//!
//! - leaf hash = SHA-256(0x00 || entry) ([`leaf_hash`]);
//! - node hash = SHA-256(0x01 || left || right) ([`node_hash`]);
//! - the empty tree's hash = SHA-256 of the empty string, `e3b0c442…b855` ([`empty_root`]).
//!
//! The two prefixes separate the domains, so a leaf can never be passed off as an interior
//! node. A tree of `n > 1` leaves splits at `k`, the largest power of two smaller than
//! `n`: `MTH(D[0:n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))`. The shape depends on `n`
//! alone, so the tree of the first `m` entries sits inside every later tree.
//!
//! # Why
//!
//! The vault signs checkpoints (tree size and root hash), not entries. With these proofs an
//! auditor verifies offline, holding only checkpoints and the public key, that an entry is
//! in the log (an inclusion proof of O(log n) hashes) and that a later checkpoint extends an
//! earlier one (a consistency proof), so nothing logged before it was edited, removed or
//! reordered.
//!
//! # Errors and cost
//!
//! Nothing here panics, whatever the input.
//!
//! - Generators return [`TreeError`]: an argument out of range (index not below the size,
//!   old size above the new size) or a leaf the [`LeafSource`] could not supply (a size
//!   beyond the available leaves). For a tree of `n` leaves they compute at most `n - 1`
//!   node hashes and read each leaf at most twice; recursion depth is at most 64.
//! - Verifiers return [`ProofError`], which says what failed. They check the proof's
//!   length before hashing anything, so verification costs O(log n) hashes whatever proof
//!   is handed in.
//! - [`Frontier`] returns [`FrontierError`] for malformed serialized bytes, or when it is
//!   full (2^64 - 1 leaves).

use ring::digest::{Context, SHA256};

/// A SHA-256 hash: a leaf hash, an interior node hash or a tree root.
pub type Hash = [u8; 32];

/// Domain-separation prefix of leaf hashes (RFC 9162 §2.1.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of interior node hashes (RFC 9162 §2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// Version byte of [`Frontier::to_bytes`].
const FRONTIER_FORMAT: u8 = 1;
/// Serialized frontier header: version byte, then the size as a big-endian `u64`.
const FRONTIER_HEADER_LEN: usize = 1 + 8;

fn finish(ctx: Context) -> Hash {
    let digest = ctx.finish();
    let mut out = [0u8; 32];
    // SHA-256 yields exactly 32 bytes; zip keeps this free of any panic path.
    for (o, b) in out.iter_mut().zip(digest.as_ref()) {
        *o = *b;
    }
    out
}

/// The hash of a log entry as a leaf: SHA-256(0x00 || entry).
#[must_use]
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[LEAF_PREFIX]);
    ctx.update(entry);
    finish(ctx)
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[NODE_PREFIX]);
    ctx.update(left);
    ctx.update(right);
    finish(ctx)
}

/// The root hash of the empty tree: SHA-256 of the empty string.
#[must_use]
pub fn empty_root() -> Hash {
    finish(Context::new(&SHA256))
}

/// Random access to the log's leaf hashes, by 0-based index.
///
/// The generators ([`root`], [`inclusion_proof`], [`consistency_proof`]) read leaves only
/// through this trait, so the leaf hashes can live in the vault's store.
pub trait LeafSource {
    /// Why a leaf hash could not be read (for example: there is no leaf at that index).
    type Error;

    /// The leaf hash at `index`.
    ///
    /// # Errors
    ///
    /// When the source has no leaf at `index` or cannot read it.
    fn leaf(&self, index: u64) -> Result<Hash, Self::Error>;
}

/// An in-memory slice of leaf hashes was asked for an index past its end.
///
/// This is the only way a slice (or `Vec`) [`LeafSource`] can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("leaf {index} was requested but only {available} leaf hashes are available")]
pub struct LeafMissing {
    /// The index that was asked for.
    pub index: u64,
    /// How many leaf hashes the slice holds.
    pub available: u64,
}

impl LeafSource for [Hash] {
    type Error = LeafMissing;

    fn leaf(&self, index: u64) -> Result<Hash, LeafMissing> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.get(i))
            .copied()
            .ok_or(LeafMissing {
                index,
                available: u64::try_from(self.len()).unwrap_or(u64::MAX),
            })
    }
}

impl LeafSource for Vec<Hash> {
    type Error = LeafMissing;

    fn leaf(&self, index: u64) -> Result<Hash, LeafMissing> {
        self.as_slice().leaf(index)
    }
}

/// Random access to the hashes of perfect subtrees: node `(level, index)` is the MTH of
/// the `2^level` leaves starting at `index * 2^level`; level 0 is the leaf hash itself.
pub trait NodeSource {
    /// Why a node could not be read.
    type Error;

    /// The hash of node `(level, index)`.
    ///
    /// # Errors
    ///
    /// When the source has no such node or cannot read it.
    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error>;
}

/// A node a [`NodeSource`] map does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node (level {level}, index {index}) is not available")]
pub struct NodeMissing {
    /// The node's level (0: a leaf).
    pub level: u8,
    /// Its index within the level.
    pub index: u64,
}

impl NodeSource for std::collections::HashMap<(u8, u64), Hash> {
    type Error = NodeMissing;

    fn node(&self, level: u8, index: u64) -> Result<Hash, NodeMissing> {
        self.get(&(level, index))
            .copied()
            .ok_or(NodeMissing { level, index })
    }
}

/// A [`NodeSource`] that answers every node with a placeholder and remembers which were
/// asked for: run a generator over it to learn the nodes it needs, fetch them, then run it
/// again over the fetched nodes. The nodes asked for depend on sizes and indexes only.
#[derive(Debug, Default)]
pub struct NodeRecorder {
    asked: std::cell::RefCell<Vec<(u8, u64)>>,
}

impl NodeRecorder {
    /// A recorder that has seen nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The nodes asked for, each once, in the order first asked.
    #[must_use]
    pub fn into_asked(self) -> Vec<(u8, u64)> {
        let mut asked = self.asked.into_inner();
        let mut seen = std::collections::HashSet::new();
        asked.retain(|n| seen.insert(*n));
        asked
    }
}

impl NodeSource for NodeRecorder {
    type Error = std::convert::Infallible;

    fn node(&self, level: u8, index: u64) -> Result<Hash, Self::Error> {
        self.asked.borrow_mut().push((level, index));
        Ok([0; 32])
    }
}

/// Why a root or a proof could not be generated.
///
/// `E` is the [`LeafSource`]'s error type. Verification failures are a separate type,
/// [`ProofError`]: this one means the request or the store was wrong, not the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError<E> {
    /// An inclusion proof was asked for a leaf that is not in the tree.
    #[error("leaf index {index} is out of range for a tree of {size} leaves")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size; valid indexes are `0..size`.
        size: u64,
    },

    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldSizeExceedsNewSize {
        /// The requested old (earlier) tree size.
        old_size: u64,
        /// The requested new (later) tree size.
        new_size: u64,
    },

    /// The leaf source failed, typically because the requested size is beyond the leaves
    /// it holds.
    #[error("reading a leaf hash failed: {0}")]
    Leaf(#[source] E),
}

/// Why a proof did not verify.
///
/// Every variant is a rejection: the entry, the checkpoint or the proof must not be
/// trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not below the tree size, so no such leaf can be in the tree.
    #[error("leaf index {index} is out of range for a tree of {size} leaves")]
    IndexOutOfRange {
        /// The claimed leaf index.
        index: u64,
        /// The claimed tree size.
        size: u64,
    },

    /// The old tree is larger than the new one: a log only grows.
    #[error(
        "old tree size {old_size} is larger than new tree size {new_size}: a log never shrinks"
    )]
    OldSizeExceedsNewSize {
        /// The claimed old (earlier) tree size.
        old_size: u64,
        /// The claimed new (later) tree size.
        new_size: u64,
    },

    /// The proof does not have the number of hashes the index and sizes call for.
    #[error("the proof has {actual} hashes but these tree sizes call for {expected}")]
    WrongProofLength {
        /// How many hashes a proof for these sizes has.
        expected: usize,
        /// How many hashes were supplied.
        actual: usize,
    },

    /// The inclusion proof leads to another root: the entry is not at that index of the
    /// tree with that root (or the proof was altered).
    #[error(
        "the inclusion proof leads to a different root hash: the entry is not at that index of this tree"
    )]
    RootMismatch,

    /// The consistency proof does not reproduce the old root hash.
    #[error("the consistency proof does not reproduce the old root hash")]
    OldRootMismatch,

    /// The consistency proof does not reproduce the new root hash: the new tree does not
    /// extend the old one (or the proof was altered).
    #[error(
        "the consistency proof does not reproduce the new root hash: the new tree does not extend the old one"
    )]
    NewRootMismatch,

    /// A tree of size 0 was given a root other than the empty tree's hash.
    #[error(
        "a tree of 0 leaves must have the empty tree's root hash (SHA-256 of the empty string)"
    )]
    EmptyTreeRootMismatch,

    /// Two trees of the same size have different roots: the log was forked or rewritten.
    #[error(
        "two trees of the same size {size} have different root hashes: the log was forked or rewritten"
    )]
    EqualSizeRootsDiffer {
        /// The common tree size.
        size: u64,
    },
}

/// The largest power of two strictly smaller than `n`, the split point of a tree of `n`
/// leaves. Callers pass `n >= 2`; for smaller `n` there is no split and this returns 0.
fn split_point(n: u64) -> u64 {
    match n.saturating_sub(1).checked_ilog2() {
        Some(bit) => 1 << bit,
        None => 0,
    }
}

/// Where the generators get subtree hashes from: leaves (hashing every interior node) or
/// stored perfect subtrees.
trait Subtrees {
    type Error;
    /// MTH of the `n` leaves starting at `start`, where `start` is a multiple of the
    /// smallest power of two `>= n` (true of every subtree of an RFC 9162 tree).
    fn subtree(&self, start: u64, n: u64) -> Result<Hash, Self::Error>;
    /// Fails unless leaf `index` exists.
    fn has_leaf(&self, index: u64) -> Result<(), Self::Error>;
}

/// Subtrees hashed from their leaves.
struct FromLeaves<'a, S: ?Sized>(&'a S);

impl<S: LeafSource + ?Sized> Subtrees for FromLeaves<'_, S> {
    type Error = S::Error;

    fn subtree(&self, start: u64, n: u64) -> Result<Hash, S::Error> {
        subtree_root(self.0, start, n)
    }

    fn has_leaf(&self, index: u64) -> Result<(), S::Error> {
        self.0.leaf(index).map(|_| ())
    }
}

/// Subtrees read from stored perfect subtrees: a perfect one is one node, the right edge
/// splits into one per set bit of its size.
struct FromNodes<'a, N: ?Sized>(&'a N);

impl<N: NodeSource + ?Sized> Subtrees for FromNodes<'_, N> {
    type Error = N::Error;

    fn subtree(&self, start: u64, n: u64) -> Result<Hash, N::Error> {
        if n == 0 {
            return Ok(empty_root());
        }
        if n.is_power_of_two() {
            let level = n.trailing_zeros();
            // `level < 64`, so it fits a byte.
            return self.0.node(level as u8, start >> level);
        }
        let k = split_point(n);
        let left = self.subtree(start, k)?;
        let right = self.subtree(start + k, n - k)?;
        Ok(node_hash(&left, &right))
    }

    fn has_leaf(&self, index: u64) -> Result<(), N::Error> {
        self.0.node(0, index).map(|_| ())
    }
}

/// MTH of the `n` leaves starting at `start` (`start + n` must not overflow, which holds
/// for every subtree of a tree whose size is a `u64`).
fn subtree_root<S: LeafSource + ?Sized>(leaves: &S, start: u64, n: u64) -> Result<Hash, S::Error> {
    match n {
        0 => Ok(empty_root()),
        1 => leaves.leaf(start),
        _ => {
            let k = split_point(n);
            let left = subtree_root(leaves, start, k)?;
            let right = subtree_root(leaves, start + k, n - k)?;
            Ok(node_hash(&left, &right))
        }
    }
}

/// Fails unless the source holds a leaf at `size - 1` (so all of `0..size`, for a
/// contiguous store). `size` must be at least 1.
fn ensure_available<T: Subtrees>(tree: &T, size: u64) -> Result<(), TreeError<T::Error>> {
    tree.has_leaf(size.saturating_sub(1))
        .map_err(TreeError::Leaf)
}

/// The Merkle Tree Hash of the first `size` leaves (RFC 9162 §2.1.1).
///
/// `size == 0` gives [`empty_root`]. Costs `size - 1` node hashes.
///
/// # Errors
///
/// [`TreeError::Leaf`] when the source cannot supply one of the leaves `0..size`.
pub fn root<S: LeafSource + ?Sized>(leaves: &S, size: u64) -> Result<Hash, TreeError<S::Error>> {
    subtree_root(leaves, 0, size).map_err(TreeError::Leaf)
}

/// [`root`] from stored perfect subtrees: reads one node per set bit of `size`.
///
/// # Errors
///
/// [`TreeError::Leaf`] when the source cannot supply a node.
pub fn root_from_nodes<N: NodeSource + ?Sized>(
    nodes: &N,
    size: u64,
) -> Result<Hash, TreeError<N::Error>> {
    FromNodes(nodes).subtree(0, size).map_err(TreeError::Leaf)
}

/// The inclusion proof (audit path) of leaf `index` in the tree of the first `size`
/// leaves (RFC 9162 §2.1.3.1), ordered from the leaf's sibling up to the root's child.
///
/// Costs at most `size - 1` node hashes.
///
/// # Errors
///
/// [`TreeError::IndexOutOfRange`] when `index >= size`; [`TreeError::Leaf`] when the
/// source cannot supply the leaves `0..size`.
pub fn inclusion_proof<S: LeafSource + ?Sized>(
    leaves: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    inclusion_path(&FromLeaves(leaves), index, size)
}

/// [`inclusion_proof`] from stored perfect subtrees: O(log size) nodes read, the same
/// proof.
///
/// # Errors
///
/// As [`inclusion_proof`]; [`TreeError::Leaf`] when the source cannot supply a node.
pub fn inclusion_proof_from_nodes<N: NodeSource + ?Sized>(
    nodes: &N,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError<N::Error>> {
    inclusion_path(&FromNodes(nodes), index, size)
}

fn inclusion_path<T: Subtrees>(
    tree: &T,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, TreeError<T::Error>> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    ensure_available(tree, size)?;
    // Walk down from the root; each step records the MTH of the subtree beside the path.
    let mut path = Vec::new();
    let (mut start, mut n, mut m) = (0u64, size, index);
    while n > 1 {
        let k = split_point(n);
        if m < k {
            path.push(tree.subtree(start + k, n - k).map_err(TreeError::Leaf)?);
            n = k;
        } else {
            path.push(tree.subtree(start, k).map_err(TreeError::Leaf)?);
            start += k;
            m -= k;
            n -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The consistency proof between the tree of the first `old_size` leaves and the tree of
/// the first `new_size` leaves (RFC 9162 §2.1.4.1).
///
/// The proof is empty when `old_size` is 0 or equals `new_size` (nothing to prove).
/// Costs at most `new_size - 1` node hashes.
///
/// # Errors
///
/// [`TreeError::OldSizeExceedsNewSize`] when `old_size > new_size`; [`TreeError::Leaf`]
/// when the source cannot supply the leaves `0..new_size`.
pub fn consistency_proof<S: LeafSource + ?Sized>(
    leaves: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    consistency_path(&FromLeaves(leaves), old_size, new_size)
}

/// [`consistency_proof`] from stored perfect subtrees: O(log new_size) nodes read, the
/// same proof.
///
/// # Errors
///
/// As [`consistency_proof`]; [`TreeError::Leaf`] when the source cannot supply a node.
pub fn consistency_proof_from_nodes<N: NodeSource + ?Sized>(
    nodes: &N,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, TreeError<N::Error>> {
    consistency_path(&FromNodes(nodes), old_size, new_size)
}

fn consistency_path<T: Subtrees>(
    tree: &T,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash>, TreeError<T::Error>> {
    if old_size > new_size {
        return Err(TreeError::OldSizeExceedsNewSize { old_size, new_size });
    }
    if new_size > 0 {
        ensure_available(tree, new_size)?;
    }
    let mut proof = Vec::new();
    if old_size == 0 || old_size == new_size {
        return Ok(proof);
    }
    // SUBPROOF(m, D[start..start + n], whole), unrolled. `whole` stays true while the old
    // tree is a left-most subtree whose root the verifier already holds. Each step keeps
    // 1 <= m <= n and shrinks n, so the loop ends.
    let (mut start, mut n, mut m, mut whole) = (0u64, new_size, old_size, true);
    loop {
        if m == n {
            if !whole {
                proof.push(tree.subtree(start, n).map_err(TreeError::Leaf)?);
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            proof.push(tree.subtree(start + k, n - k).map_err(TreeError::Leaf)?);
            n = k;
        } else {
            proof.push(tree.subtree(start, k).map_err(TreeError::Leaf)?);
            start += k;
            m -= k;
            n -= k;
            whole = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Right-shifts both `f` and `s` until `f` is odd or zero (RFC 9162 §2.1.3.2 step 4).
fn shift_to_odd(f: &mut u64, s: &mut u64) {
    while *f & 1 == 0 && *f != 0 {
        *f >>= 1;
        *s >>= 1;
    }
}

/// How many proof hashes the §2.1.3.2 / §2.1.4.2 loop consumes from `(f, s)` until `s`
/// reaches 0: the same walk as verification, without hashing.
fn walk_len(mut f: u64, mut s: u64) -> usize {
    let mut len = 0;
    while s != 0 {
        if f & 1 == 1 || f == s {
            shift_to_odd(&mut f, &mut s);
        }
        f >>= 1;
        s >>= 1;
        len += 1;
    }
    len
}

/// Verifies that `leaf_hash` is leaf `index` of the tree of `size` leaves whose root is
/// `root`, with the algorithm of RFC 9162 §2.1.3.2. O(log size) hashes.
///
/// Take `size` and `root` from the same signed checkpoint: the proof binds the size only
/// through its shape, so a proof may also verify against a different size whose path has
/// the same shape (for example leaf 0 of 3 and of 4 leaves).
///
/// # Errors
///
/// [`ProofError::IndexOutOfRange`] when `index >= size`, [`ProofError::WrongProofLength`]
/// when the proof has the wrong number of hashes for `index` and `size`, and
/// [`ProofError::RootMismatch`] when it leads to another root.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let expected = walk_len(f, s);
    let wrong_length = ProofError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    let mut r = *leaf_hash;
    for p in proof {
        if s == 0 {
            return Err(wrong_length);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            shift_to_odd(&mut f, &mut s);
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(wrong_length);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root`, with the algorithm of RFC 9162 §2.1.4.2.
/// O(log new_size) hashes.
///
/// Trivial cases, where the proof must be empty: equal sizes (the roots must be equal) and
/// `old_size == 0` (`old_root` must be [`empty_root`]; any tree extends the empty one, so
/// `new_root` is not constrained unless `new_size` is also 0).
///
/// # Errors
///
/// [`ProofError::OldSizeExceedsNewSize`], [`ProofError::WrongProofLength`],
/// [`ProofError::EqualSizeRootsDiffer`], [`ProofError::EmptyTreeRootMismatch`],
/// [`ProofError::OldRootMismatch`] or [`ProofError::NewRootMismatch`], as named.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldSizeExceedsNewSize { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongProofLength {
                expected: 0,
                actual: proof.len(),
            });
        }
        if old_size == 0 && *old_root != empty_root() {
            return Err(ProofError::EmptyTreeRootMismatch);
        }
        if old_size == new_size && old_root != new_root {
            return Err(ProofError::EqualSizeRootsDiffer { size: old_size });
        }
        return Ok(());
    }

    // 0 < old_size < new_size.
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    // Step 4: skip the levels where the old tree's last node is a right child of a node
    // the old tree fully contains.
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Step 2: when the old tree is a perfect subtree, its root is the proof's seed.
    let seeded = old_size.is_power_of_two();
    let expected = walk_len(f, s) + usize::from(!seeded);
    let wrong_length = ProofError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    let (seed, rest) = if seeded {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (first, rest),
            None => return Err(wrong_length),
        }
    };

    let (mut fr, mut sr) = (*seed, *seed);
    for c in rest {
        if s == 0 {
            return Err(wrong_length);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            shift_to_odd(&mut f, &mut s);
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

/// Why a [`Frontier`] could not be restored or extended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrontierError {
    /// The frontier already holds 2^64 - 1 leaves; its size cannot grow.
    #[error("the frontier holds 2^64 - 1 leaves and cannot take another")]
    Full,

    /// The bytes are shorter than the header (version byte and 8-byte size).
    #[error("serialized frontier is truncated: {len} bytes, the header alone takes 9")]
    Truncated {
        /// The length of the bytes given.
        len: usize,
    },

    /// The bytes are in a format version this code does not know.
    #[error("serialized frontier has format version {version}; only version 1 is supported")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },

    /// The number of hashes does not match the size in the header (one 32-byte hash per
    /// set bit of the size).
    #[error("a serialized frontier of {size} leaves takes {expected} bytes, got {actual}")]
    WrongLength {
        /// The tree size in the header.
        size: u64,
        /// The length such a frontier serializes to.
        expected: usize,
        /// The length of the bytes given.
        actual: usize,
    },
}

/// Incremental Merkle tree builder for an append-only log: the roots of the perfect
/// subtrees along the tree's right edge (the Merkle frontier, or compact range `[0, size)`).
///
/// It holds one hash per set bit of `size`, at most 64, ordered from the largest (left-most)
/// subtree to the smallest. [`Frontier::push`] costs O(1) amortized hashes and at most 64;
/// [`Frontier::root`] costs at most 63. Its root always equals [`root`] over the same leaves.
///
/// [`Frontier::to_bytes`] / [`Frontier::from_bytes`] let a restarted daemon resume appending
/// without rereading every leaf. The bytes carry no integrity protection: after restoring,
/// compare [`Frontier::root`] with the last signed checkpoint of that size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    /// Number of leaves appended so far.
    size: u64,
    /// Invariant: `nodes.len() == size.count_ones()`; `nodes[i]` is the root of the
    /// subtree for the i-th highest set bit of `size`.
    nodes: Vec<Hash>,
}

impl Frontier {
    /// An empty frontier (size 0).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            size: 0,
            nodes: Vec::new(),
        }
    }

    /// The number of leaves appended so far.
    #[must_use]
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash (see [`leaf_hash`]).
    ///
    /// # Errors
    ///
    /// [`FrontierError::Full`] when the frontier already holds 2^64 - 1 leaves; it is then
    /// unchanged.
    pub fn push(&mut self, leaf_hash: Hash) -> Result<(), FrontierError> {
        self.push_completing(leaf_hash, |_, _, _| {})
    }

    /// Appends a leaf hash and calls `completed(level, index, hash)` for every perfect
    /// subtree of level 1 or more this leaf completes, smallest first: the nodes a
    /// [`NodeSource`] holds. Over a whole log, every such node is named exactly once.
    ///
    /// # Errors
    ///
    /// As [`Frontier::push`]; `completed` is then not called.
    pub fn push_completing(
        &mut self,
        leaf_hash: Hash,
        mut completed: impl FnMut(u8, u64, &Hash),
    ) -> Result<(), FrontierError> {
        let seq = self.size;
        let new_size = self.size.checked_add(1).ok_or(FrontierError::Full)?;
        // Each trailing set bit of `size` is a perfect subtree as large as the carry:
        // merge them, smallest first, like a binary increment.
        let mut carry = leaf_hash;
        let mut bits = self.size;
        let mut level = 0u8;
        while bits & 1 == 1 {
            // The invariant (one node per set bit) makes `pop` always return a node here.
            let Some(left) = self.nodes.pop() else {
                break;
            };
            carry = node_hash(&left, &carry);
            bits >>= 1;
            level += 1;
            completed(level, seq >> level, &carry);
        }
        self.nodes.push(carry);
        self.size = new_size;
        Ok(())
    }

    /// The root hash of the tree of all leaves appended so far (the empty tree's hash if
    /// none).
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut subtrees = self.nodes.iter().rev();
        match subtrees.next() {
            None => empty_root(),
            Some(smallest) => subtrees.fold(*smallest, |acc, left| node_hash(left, &acc)),
        }
    }

    /// Serializes the frontier: a version byte (1), the size as a big-endian `u64`, then
    /// the subtree roots from largest to smallest (32 bytes each, one per set bit of the
    /// size). At most 9 + 64 × 32 bytes.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FRONTIER_HEADER_LEN + 32 * self.nodes.len());
        out.push(FRONTIER_FORMAT);
        out.extend_from_slice(&self.size.to_be_bytes());
        for node in &self.nodes {
            out.extend_from_slice(node);
        }
        out
    }

    /// Restores a frontier written by [`Frontier::to_bytes`].
    ///
    /// Only the format is checked; compare [`Frontier::root`] with a signed checkpoint
    /// before trusting the result.
    ///
    /// # Errors
    ///
    /// [`FrontierError::Truncated`], [`FrontierError::UnsupportedVersion`] or
    /// [`FrontierError::WrongLength`] when the bytes are not a serialized frontier.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, FrontierError> {
        let truncated = FrontierError::Truncated { len: bytes.len() };
        let Some((&version, rest)) = bytes.split_first() else {
            return Err(truncated);
        };
        let Some((size_bytes, hashes)) = rest.split_first_chunk::<8>() else {
            return Err(truncated);
        };
        if version != FRONTIER_FORMAT {
            return Err(FrontierError::UnsupportedVersion { version });
        }
        let size = u64::from_be_bytes(*size_bytes);
        let count = usize::try_from(size.count_ones()).unwrap_or(usize::MAX);
        let (nodes, tail) = hashes.as_chunks::<32>();
        if nodes.len() != count || !tail.is_empty() {
            return Err(FrontierError::WrongLength {
                size,
                expected: count.saturating_mul(32).saturating_add(FRONTIER_HEADER_LEN),
                actual: bytes.len(),
            });
        }
        Ok(Self {
            size,
            nodes: nodes.to_vec(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use std::cell::Cell;

    // Reference vectors of RFC 6962 as published with the certificate-transparency C++
    // merkle_tree_test and google/trillian (merkle/testonly/constants.go,
    // merkle/log_verifier_test.go): the 8-leaf tree of these hex-encoded entries.
    const ENTRIES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    const EMPTY_ROOT: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// Roots of the trees of the first 1..=8 entries.
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// Hashes of every perfect subtree of the 8-leaf tree, by level (leaves first).
    const LEVEL0: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ];
    const LEVEL1: [&str; 4] = [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ];
    const LEVEL2: [&str; 2] = [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ];

    /// (index, size, inclusion proof).
    const INCLUSION: [(u64, u64, &[&str]); 5] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    /// (old size, new size, consistency proof).
    const CONSISTENCY: [(u64, u64, &[&str]); 4] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];

    fn unhex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2), "odd-length hex");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn h(s: &str) -> Hash {
        unhex(s).try_into().unwrap()
    }

    fn hashes(list: &[&str]) -> Vec<Hash> {
        list.iter().map(|s| h(s)).collect()
    }

    fn reference_leaves() -> Vec<Hash> {
        ENTRIES.iter().map(|e| leaf_hash(&unhex(e))).collect()
    }

    fn flip(hash: &Hash) -> Hash {
        let mut out = *hash;
        out[0] ^= 1;
        out
    }

    /// A leaf source that counts reads, to bound the generators' work.
    struct Counting<'a> {
        leaves: &'a [Hash],
        reads: Cell<u64>,
    }

    impl LeafSource for Counting<'_> {
        type Error = LeafMissing;

        fn leaf(&self, index: u64) -> Result<Hash, LeafMissing> {
            self.reads.set(self.reads.get() + 1);
            self.leaves.leaf(index)
        }
    }

    // ---- known answers ----------------------------------------------------------------

    #[test]
    fn empty_tree_root_is_sha256_of_empty_string() {
        assert_eq!(empty_root(), h(EMPTY_ROOT));
        assert_eq!(root(&Vec::<Hash>::new(), 0).unwrap(), h(EMPTY_ROOT));
        assert_eq!(Frontier::new().root(), h(EMPTY_ROOT));
    }

    #[test]
    fn leaf_and_node_hashes_match_reference() {
        let leaves = reference_leaves();
        assert_eq!(leaves, hashes(&LEVEL0));
        let level1: Vec<Hash> = leaves.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
        assert_eq!(level1, hashes(&LEVEL1));
        let level2: Vec<Hash> = level1.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
        assert_eq!(level2, hashes(&LEVEL2));
    }

    #[test]
    fn roots_match_reference_for_every_size() {
        let leaves = reference_leaves();
        let mut frontier = Frontier::new();
        for (i, want) in ROOTS.iter().enumerate() {
            let size = i as u64 + 1;
            assert_eq!(root(&leaves, size).unwrap(), h(want), "size {size}");
            frontier.push(leaves[i]).unwrap();
            assert_eq!(frontier.root(), h(want), "frontier size {size}");
        }
    }

    #[test]
    fn frontier_nodes_match_reference_compact_ranges() {
        let (l0, l1, l2) = (hashes(&LEVEL0), hashes(&LEVEL1), hashes(&LEVEL2));
        let want: [Vec<Hash>; 9] = [
            vec![],
            vec![l0[0]],
            vec![l1[0]],
            vec![l1[0], l0[2]],
            vec![l2[0]],
            vec![l2[0], l0[4]],
            vec![l2[0], l1[2]],
            vec![l2[0], l1[2], l0[6]],
            vec![h(ROOTS[7])],
        ];
        let mut frontier = Frontier::new();
        assert_eq!(frontier.nodes, want[0]);
        for (i, leaf) in reference_leaves().into_iter().enumerate() {
            frontier.push(leaf).unwrap();
            assert_eq!(frontier.nodes, want[i + 1], "size {}", i + 1);
        }
    }

    #[test]
    fn inclusion_proofs_match_reference() {
        let leaves = reference_leaves();
        for (index, size, want) in INCLUSION {
            let want = hashes(want);
            let proof = inclusion_proof(&leaves, index, size).unwrap();
            assert_eq!(proof, want, "index {index} size {size}");
            let root = h(ROOTS[size as usize - 1]);
            verify_inclusion(&leaves[index as usize], index, size, &want, &root).unwrap();
        }
    }

    #[test]
    fn consistency_proofs_match_reference() {
        let leaves = reference_leaves();
        for (old_size, new_size, want) in CONSISTENCY {
            let want = hashes(want);
            let proof = consistency_proof(&leaves, old_size, new_size).unwrap();
            assert_eq!(proof, want, "{old_size} -> {new_size}");
            let old_root = h(ROOTS[old_size as usize - 1]);
            let new_root = h(ROOTS[new_size as usize - 1]);
            verify_consistency(old_size, new_size, &old_root, &new_root, &want).unwrap();
        }
    }

    // ---- generator errors ---------------------------------------------------------------

    #[test]
    fn generators_reject_out_of_range_arguments() {
        let leaves = reference_leaves();
        assert_eq!(
            inclusion_proof(&leaves, 8, 8),
            Err(TreeError::IndexOutOfRange { index: 8, size: 8 })
        );
        assert_eq!(
            inclusion_proof(&leaves, 0, 0),
            Err(TreeError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            inclusion_proof(&leaves, u64::MAX, 3),
            Err(TreeError::IndexOutOfRange {
                index: u64::MAX,
                size: 3
            })
        );
        assert_eq!(
            consistency_proof(&leaves, 5, 4),
            Err(TreeError::OldSizeExceedsNewSize {
                old_size: 5,
                new_size: 4
            })
        );
    }

    #[test]
    fn generators_reject_sizes_beyond_the_leaves() {
        let leaves = reference_leaves();
        let missing = TreeError::Leaf(LeafMissing {
            index: 8,
            available: 8,
        });
        assert_eq!(root(&leaves, 9), Err(missing.clone()));
        // The leaf at the index itself is not on its own path: still an error.
        assert_eq!(inclusion_proof(&leaves, 8, 9), Err(missing.clone()));
        assert_eq!(inclusion_proof(&leaves, 0, 9), Err(missing.clone()));
        assert_eq!(consistency_proof(&leaves, 3, 9), Err(missing.clone()));
        assert_eq!(consistency_proof(&leaves, 0, 9), Err(missing.clone()));
        assert_eq!(consistency_proof(&leaves, 9, 9), Err(missing));
        assert!(matches!(
            root(&leaves, u64::MAX),
            Err(TreeError::Leaf(LeafMissing { .. }))
        ));
        assert!(matches!(
            inclusion_proof(leaves.as_slice(), 0, u64::MAX),
            Err(TreeError::Leaf(LeafMissing { .. }))
        ));
        let shown = root(&leaves, 9).unwrap_err().to_string();
        assert_eq!(
            shown,
            "reading a leaf hash failed: leaf 8 was requested but only 8 leaf hashes are available"
        );
    }

    #[test]
    fn trivial_consistency_proofs_are_empty() {
        let leaves = reference_leaves();
        for size in 0..=8 {
            assert!(consistency_proof(&leaves, 0, size).unwrap().is_empty());
            assert!(consistency_proof(&leaves, size, size).unwrap().is_empty());
        }
    }

    #[test]
    fn generators_read_each_leaf_a_bounded_number_of_times() {
        let leaves: Vec<Hash> = (0u32..1000).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let source = Counting {
            leaves: &leaves,
            reads: Cell::new(0),
        };
        for size in [1u64, 2, 3, 7, 8, 9, 513, 1000] {
            source.reads.set(0);
            root(&source, size).unwrap();
            assert_eq!(source.reads.get(), size);
            for index in [0, size / 3, size - 1] {
                source.reads.set(0);
                inclusion_proof(&source, index, size).unwrap();
                assert!(source.reads.get() <= size + 1, "inclusion {index}/{size}");
            }
            for old in [1, size / 2, size - 1] {
                source.reads.set(0);
                consistency_proof(&source, old.max(1), size).unwrap();
                assert!(source.reads.get() <= size + 1, "consistency {old}/{size}");
            }
        }
    }

    // ---- verifier edge cases ----------------------------------------------------------

    #[test]
    fn inclusion_verifier_rejects_impossible_positions() {
        let leaf = leaf_hash(b"x");
        assert_eq!(
            verify_inclusion(&leaf, 0, 0, &[], &empty_root()),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
        assert_eq!(
            verify_inclusion(&leaf, 2, 1, &[], &leaf),
            Err(ProofError::IndexOutOfRange { index: 2, size: 1 })
        );
        // A single-leaf tree: the root is the leaf hash and the proof is empty.
        verify_inclusion(&leaf, 0, 1, &[], &leaf).unwrap();
        assert_eq!(
            verify_inclusion(&leaf, 0, 1, &[leaf], &leaf),
            Err(ProofError::WrongProofLength {
                expected: 0,
                actual: 1
            })
        );
        assert_eq!(
            verify_inclusion(&leaf, 0, 1, &[], &empty_root()),
            Err(ProofError::RootMismatch)
        );
    }

    #[test]
    fn inclusion_verifier_rejects_huge_proofs_without_hashing_them() {
        let leaves = reference_leaves();
        let huge = vec![[7u8; 32]; 100_000];
        assert_eq!(
            verify_inclusion(&leaves[0], 0, 8, &huge, &h(ROOTS[7])),
            Err(ProofError::WrongProofLength {
                expected: 3,
                actual: 100_000
            })
        );
        assert_eq!(
            verify_consistency(3, 8, &h(ROOTS[2]), &h(ROOTS[7]), &huge),
            Err(ProofError::WrongProofLength {
                expected: 4,
                actual: 100_000
            })
        );
    }

    #[test]
    fn inclusion_proof_binds_the_size_only_through_its_shape() {
        // Documented in `verify_inclusion`: leaf 0 has a path of the same shape in trees
        // of 3 and 4 leaves, so the size must come from the signed checkpoint.
        let leaves = reference_leaves();
        let proof = inclusion_proof(&leaves, 0, 3).unwrap();
        let root3 = h(ROOTS[2]);
        verify_inclusion(&leaves[0], 0, 3, &proof, &root3).unwrap();
        verify_inclusion(&leaves[0], 0, 4, &proof, &root3).unwrap();
        assert!(verify_inclusion(&leaves[0], 0, 5, &proof, &root3).is_err());
    }

    #[test]
    fn consistency_verifier_trivial_cases() {
        let (r1, r2) = (h(ROOTS[0]), h(ROOTS[1]));
        let empty = empty_root();
        verify_consistency(0, 0, &empty, &empty, &[]).unwrap();
        verify_consistency(0, 5, &empty, &r1, &[]).unwrap();
        verify_consistency(1, 1, &r1, &r1, &[]).unwrap();
        assert_eq!(
            verify_consistency(2, 1, &r2, &r1, &[]),
            Err(ProofError::OldSizeExceedsNewSize {
                old_size: 2,
                new_size: 1
            })
        );
        assert_eq!(
            verify_consistency(1, 1, &r1, &r2, &[]),
            Err(ProofError::EqualSizeRootsDiffer { size: 1 })
        );
        assert_eq!(
            verify_consistency(0, 3, &r1, &r2, &[]),
            Err(ProofError::EmptyTreeRootMismatch)
        );
        assert_eq!(
            verify_consistency(0, 0, &empty, &r1, &[]),
            Err(ProofError::EqualSizeRootsDiffer { size: 0 })
        );
        for (old, new) in [(0, 0), (0, 1), (1, 1)] {
            let (a, b) = if old == 0 { (empty, r1) } else { (r1, r1) };
            let b = if new == 0 { empty } else { b };
            assert_eq!(
                verify_consistency(old, new, &a, &b, &[empty]),
                Err(ProofError::WrongProofLength {
                    expected: 0,
                    actual: 1
                })
            );
        }
        assert_eq!(
            verify_consistency(1, 2, &r1, &r2, &[]),
            Err(ProofError::WrongProofLength {
                expected: 1,
                actual: 0
            })
        );
    }

    // ---- frontier serialization ---------------------------------------------------------

    #[test]
    fn frontier_bytes_round_trip_and_resume() {
        let leaves = reference_leaves();
        let mut frontier = Frontier::new();
        for leaf in &leaves[..5] {
            frontier.push(*leaf).unwrap();
        }
        let bytes = frontier.to_bytes();
        assert_eq!(bytes.len(), 9 + 2 * 32);
        let mut restored = Frontier::from_bytes(&bytes).unwrap();
        assert_eq!(restored, frontier);
        for leaf in &leaves[5..] {
            restored.push(*leaf).unwrap();
        }
        assert_eq!(restored.size(), 8);
        assert_eq!(restored.root(), h(ROOTS[7]));
    }

    #[test]
    fn frontier_rejects_malformed_bytes() {
        assert_eq!(
            Frontier::from_bytes(&[]),
            Err(FrontierError::Truncated { len: 0 })
        );
        assert_eq!(
            Frontier::from_bytes(&[1, 0, 0]),
            Err(FrontierError::Truncated { len: 3 })
        );
        let mut bytes = Frontier::new().to_bytes();
        assert_eq!(bytes, [1, 0, 0, 0, 0, 0, 0, 0, 0]);
        bytes[0] = 2;
        assert_eq!(
            Frontier::from_bytes(&bytes),
            Err(FrontierError::UnsupportedVersion { version: 2 })
        );
        let mut frontier = Frontier::new();
        for leaf in reference_leaves().into_iter().take(3) {
            frontier.push(leaf).unwrap();
        }
        let bytes = frontier.to_bytes();
        let wrong = FrontierError::WrongLength {
            size: 3,
            expected: 73,
            actual: 72,
        };
        assert_eq!(Frontier::from_bytes(&bytes[..72]), Err(wrong));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            Frontier::from_bytes(&longer),
            Err(FrontierError::WrongLength { actual: 74, .. })
        ));
    }

    #[test]
    fn full_frontier_refuses_another_leaf() {
        let mut bytes = vec![1];
        bytes.extend_from_slice(&u64::MAX.to_be_bytes());
        bytes.extend(std::iter::repeat_n(9u8, 64 * 32));
        let mut frontier = Frontier::from_bytes(&bytes).unwrap();
        assert_eq!(frontier.size(), u64::MAX);
        let before = frontier.clone();
        assert_eq!(frontier.push([0; 32]), Err(FrontierError::Full));
        assert_eq!(frontier, before);
        // The root of 64 subtrees is still computable.
        let _ = frontier.root();
    }

    // ---- properties -------------------------------------------------------------------

    /// Distinct entries (the index is a prefix), hence distinct leaf hashes.
    fn entries(max: usize) -> impl Strategy<Value = Vec<Hash>> {
        vec(vec(any::<u8>(), 0..12), 1..max).prop_map(|tails| {
            tails
                .iter()
                .enumerate()
                .map(|(i, tail)| {
                    let mut entry = (i as u64).to_be_bytes().to_vec();
                    entry.extend_from_slice(tail);
                    leaf_hash(&entry)
                })
                .collect()
        })
    }

    proptest! {
        // Each case checks every index (or every old size) of a tree of up to 200 leaves,
        // so fewer cases than proptest's default still cover thousands of proofs.
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn inclusion_proofs_verify_and_catch_tampering(leaves in entries(200), pick in any::<u64>()) {
            let size = leaves.len() as u64;
            let root_hash = root(&leaves, size).unwrap();
            for index in 0..size {
                let leaf = leaves[index as usize];
                let proof = inclusion_proof(&leaves, index, size).unwrap();
                prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root_hash), Ok(()));

                // Another leaf, or a changed root.
                prop_assert!(verify_inclusion(&flip(&leaf), index, size, &proof, &root_hash).is_err());
                prop_assert!(verify_inclusion(&leaf, index, size, &proof, &flip(&root_hash)).is_err());
                let other = leaves[((index + 1) % size) as usize];
                if size > 1 {
                    prop_assert!(verify_inclusion(&other, index, size, &proof, &root_hash).is_err());
                }

                // Another index in the same tree (or out of range).
                let random = pick.wrapping_add(index) % (size + 1);
                for wrong in [index ^ 1, index + 1, index.wrapping_sub(1), index ^ 2, random] {
                    if wrong != index {
                        prop_assert!(verify_inclusion(&leaf, wrong, size, &proof, &root_hash).is_err(),
                            "index {} accepted as {}", index, wrong);
                    }
                }

                // Another size whose path has another shape: twice the size (the path gets
                // longer) or the tree where this leaf is the last one.
                prop_assert!(verify_inclusion(&leaf, index, size * 2, &proof, &root_hash).is_err());
                if index + 1 != size {
                    prop_assert!(verify_inclusion(&leaf, index, index + 1, &proof, &root_hash).is_err());
                }

                // Any element changed, or the proof truncated or padded.
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i] = flip(&bad[i]);
                    prop_assert!(verify_inclusion(&leaf, index, size, &bad, &root_hash).is_err());
                }
                let mut longer = proof.clone();
                longer.push(root_hash);
                prop_assert!(verify_inclusion(&leaf, index, size, &longer, &root_hash).is_err());
                let mut prefixed = vec![leaf];
                prefixed.extend_from_slice(&proof);
                prop_assert!(verify_inclusion(&leaf, index, size, &prefixed, &root_hash).is_err());
                if let Some((_, shorter)) = proof.split_last() {
                    prop_assert!(verify_inclusion(&leaf, index, size, shorter, &root_hash).is_err());
                }
            }
        }

        #[test]
        fn consistency_proofs_verify_and_catch_tampering(leaves in entries(200)) {
            let new_size = leaves.len() as u64;
            let new_root = root(&leaves, new_size).unwrap();
            for old_size in 0..=new_size {
                let old_root = root(&leaves, old_size).unwrap();
                let proof = consistency_proof(&leaves, old_size, new_size).unwrap();
                prop_assert_eq!(
                    verify_consistency(old_size, new_size, &old_root, &new_root, &proof),
                    Ok(())
                );

                // Either root changed. From the empty tree, any new root is consistent.
                prop_assert!(
                    verify_consistency(old_size, new_size, &flip(&old_root), &new_root, &proof).is_err()
                );
                if old_size > 0 {
                    prop_assert!(
                        verify_consistency(old_size, new_size, &old_root, &flip(&new_root), &proof).is_err()
                    );
                }
                if old_size > 0 && old_size < new_size {
                    prop_assert!(
                        verify_consistency(old_size, new_size, &new_root, &old_root, &proof).is_err()
                    );
                    prop_assert!(
                        verify_consistency(old_size, new_size * 2, &old_root, &new_root, &proof).is_err()
                    );
                }

                // Any element changed, or the proof truncated or padded.
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i] = flip(&bad[i]);
                    prop_assert!(
                        verify_consistency(old_size, new_size, &old_root, &new_root, &bad).is_err()
                    );
                }
                let mut longer = proof.clone();
                longer.push(new_root);
                prop_assert!(
                    verify_consistency(old_size, new_size, &old_root, &new_root, &longer).is_err()
                );
                if let Some((_, shorter)) = proof.split_last() {
                    prop_assert!(
                        verify_consistency(old_size, new_size, &old_root, &new_root, shorter).is_err()
                    );
                }
            }
        }

        #[test]
        fn frontier_root_equals_root_and_survives_bytes(leaves in entries(300), cut in any::<usize>()) {
            let cut = cut % (leaves.len() + 1);
            let mut frontier = Frontier::new();
            for (i, leaf) in leaves.iter().enumerate() {
                if i == cut {
                    let restored = Frontier::from_bytes(&frontier.to_bytes()).unwrap();
                    prop_assert_eq!(&restored, &frontier);
                    frontier = restored;
                }
                frontier.push(*leaf).unwrap();
                let size = i as u64 + 1;
                prop_assert_eq!(frontier.size(), size);
                prop_assert_eq!(frontier.nodes.len() as u32, size.count_ones());
                prop_assert_eq!(frontier.root(), root(&leaves, size).unwrap());
                let restored = Frontier::from_bytes(&frontier.to_bytes()).unwrap();
                prop_assert_eq!(restored.root(), frontier.root());
                prop_assert_eq!(&restored, &frontier);
            }
        }

    }

    proptest! {
        #[test]
        fn frontier_from_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..2200)) {
            if let Ok(frontier) = Frontier::from_bytes(&bytes) {
                prop_assert_eq!(frontier.to_bytes(), bytes);
                let _ = frontier.root();
            }
        }

        #[test]
        fn frontier_accepts_every_well_formed_encoding(size in any::<u64>(), fill in any::<u8>()) {
            let mut bytes = vec![1];
            bytes.extend_from_slice(&size.to_be_bytes());
            bytes.extend(std::iter::repeat_n(fill, 32 * size.count_ones() as usize));
            let mut frontier = Frontier::from_bytes(&bytes).unwrap();
            prop_assert_eq!(frontier.size(), size);
            prop_assert_eq!(frontier.to_bytes(), bytes);
            let pushed = frontier.push([fill; 32]);
            prop_assert_eq!(pushed.is_ok(), size < u64::MAX);
        }

        #[test]
        fn verifiers_never_panic(
            index in any::<u64>(),
            size in any::<u64>(),
            old_size in any::<u64>(),
            proof in vec(any::<[u8; 32]>(), 0..70),
            a in any::<[u8; 32]>(),
            b in any::<[u8; 32]>(),
        ) {
            let _ = verify_inclusion(&a, index, size, &proof, &b);
            let _ = verify_consistency(old_size, size, &a, &b, &proof);
            let _ = verify_consistency(old_size.min(size), size, &a, &b, &proof);
        }
    }

    /// The leaves `0..n` (distinct, deterministic) and every node a log of them stores:
    /// level 0 from the leaves, the rest as [`Frontier::push_completing`] names them.
    fn stored_tree(n: u64) -> (Vec<Hash>, std::collections::HashMap<(u8, u64), Hash>) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut nodes = std::collections::HashMap::new();
        let mut frontier = Frontier::new();
        for (i, leaf) in leaves.iter().enumerate() {
            nodes.insert((0u8, i as u64), *leaf);
            frontier
                .push_completing(*leaf, |level, index, hash| {
                    let fresh = nodes.insert((level, index), *hash).is_none();
                    assert!(fresh, "node ({level}, {index}) named twice");
                })
                .unwrap();
        }
        (leaves, nodes)
    }

    #[test]
    fn push_completing_names_every_perfect_subtree_with_its_hash() {
        let n = 70u64;
        let (leaves, nodes) = stored_tree(n);
        for level in 1..8u8 {
            let width = 1u64 << level;
            for index in 0..n / width {
                let expected = root(&leaves[(index * width) as usize..], width).unwrap();
                assert_eq!(
                    nodes.get(&(level, index)),
                    Some(&expected),
                    "({level}, {index})"
                );
            }
            // And no incomplete subtree.
            assert!(!nodes.contains_key(&(level, n / width)));
        }
    }

    #[test]
    fn proofs_from_nodes_equal_proofs_from_leaves_for_every_size_up_to_70() {
        let (leaves, nodes) = stored_tree(70);
        for size in 0..=70u64 {
            assert_eq!(
                root_from_nodes(&nodes, size).unwrap(),
                root(&leaves, size).unwrap(),
                "root at {size}"
            );
            for index in 0..size {
                assert_eq!(
                    inclusion_proof_from_nodes(&nodes, index, size).unwrap(),
                    inclusion_proof(&leaves, index, size).unwrap(),
                    "inclusion of {index} in {size}"
                );
            }
            for old in 0..=size {
                assert_eq!(
                    consistency_proof_from_nodes(&nodes, old, size).unwrap(),
                    consistency_proof(&leaves, old, size).unwrap(),
                    "consistency {old} -> {size}"
                );
            }
        }
        // Past the stored leaves: an error, as from leaves.
        assert!(inclusion_proof_from_nodes(&nodes, 0, 71).is_err());
        assert!(consistency_proof_from_nodes(&nodes, 1, 71).is_err());
    }

    #[test]
    fn proofs_from_nodes_read_logarithmically_many_nodes() {
        for size in [1u64, 2, 3, 1000, 1 << 20, (1 << 40) + 12345, u64::MAX] {
            for index in [0, size / 3, size - 1] {
                let recorder = NodeRecorder::new();
                inclusion_proof_from_nodes(&recorder, index, size).unwrap();
                assert!(
                    recorder.into_asked().len() <= 2 * 64 + 1,
                    "{index} of {size}"
                );
                let recorder = NodeRecorder::new();
                consistency_proof_from_nodes(&recorder, index.max(1), size).unwrap();
                assert!(
                    recorder.into_asked().len() <= 2 * 64 + 1,
                    "{index} -> {size}"
                );
            }
        }
    }

    #[test]
    fn a_proof_from_a_wrong_node_does_not_verify() {
        let (leaves, mut nodes) = stored_tree(37);
        let good = root(&leaves, 37).unwrap();
        for (key, value) in nodes.clone() {
            let recorder = NodeRecorder::new();
            inclusion_proof_from_nodes(&recorder, 5, 37).unwrap();
            if key.0 == 0 || !recorder.into_asked().contains(&key) {
                continue;
            }
            let mut wrong = value;
            wrong[0] ^= 1;
            nodes.insert(key, wrong);
            let proof = inclusion_proof_from_nodes(&nodes, 5, 37).unwrap();
            assert!(verify_inclusion(&leaves[5], 5, 37, &proof, &good).is_err());
            nodes.insert(key, value);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn proofs_from_nodes_equal_proofs_from_leaves_for_random_pairs(
            size in 1u64..600,
            a in any::<proptest::sample::Index>(),
            b in any::<proptest::sample::Index>(),
        ) {
            let (leaves, nodes) = stored_tree(size);
            let index = a.index(size as usize) as u64;
            let old = b.index(size as usize + 1) as u64;
            prop_assert_eq!(
                inclusion_proof_from_nodes(&nodes, index, size).unwrap(),
                inclusion_proof(&leaves, index, size).unwrap()
            );
            prop_assert_eq!(
                consistency_proof_from_nodes(&nodes, old, size).unwrap(),
                consistency_proof(&leaves, old, size).unwrap()
            );
            prop_assert_eq!(root_from_nodes(&nodes, size).unwrap(), root(&leaves, size).unwrap());
        }
    }
}
