//! Signed checkpoints and the log's signing key.
//!
//! A checkpoint commits to the log at a size: the Merkle root, the last leaf hash and the
//! time, signed with Ed25519 (RFC 8032). Signing checkpoints rather than entries keeps the
//! append path cheap (a SHA-256 per entry; one ~27 µs signature per checkpoint). The signing
//! key is generated once, stored wrapped by the root key, and its public half is what
//! auditors verify with.

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::merkle::Hash;
use crate::crypto::envelope::{Aad, Sealer};
use crate::crypto::root_key::RootKey;
use crate::error::{Error, IntegrityObject, Result};

const KEY_KIND: &str = "audit-signing-key";

/// What a checkpoint commits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Number of entries in the log.
    pub size: u64,
    /// Merkle root of those entries (RFC 9162).
    pub root: Hash,
    /// Leaf hash of the entry at `size - 1` (zeros for an empty log).
    pub last_leaf: Hash,
    /// When it was made, microseconds since the Unix epoch.
    pub at_us: i64,
}

impl Checkpoint {
    /// The exact bytes that are signed.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "vault-audit-checkpoint/v1\nsize {}\nroot {}\nlast_leaf {}\nat_us {}\n",
            self.size,
            hex::encode(self.root),
            hex::encode(self.last_leaf),
            self.at_us
        )
        .into_bytes()
    }
}

/// A checkpoint with its signature, as stored and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCheckpoint {
    /// Number of entries.
    pub size: u64,
    /// Merkle root, hex.
    pub root: String,
    /// Last leaf hash, hex.
    pub last_leaf: String,
    /// Time, microseconds since the Unix epoch.
    pub at_us: i64,
    /// Ed25519 signature of [`Checkpoint::message`], hex.
    pub signature: String,
}

/// Decodes lower-case hexadecimal only: the form the vault writes. Accepting upper case too
/// would let an exported file be altered (a letter's case flipped) and still verify.
pub(crate) fn lower_hex(s: &str) -> Option<Vec<u8>> {
    if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    hex::decode(s).ok()
}

/// A 32-byte hash in lower-case hexadecimal.
pub(crate) fn hash_from_hex(s: &str) -> Option<Hash> {
    lower_hex(s)?.try_into().ok()
}

impl SignedCheckpoint {
    /// The checkpoint, if its hashes are well formed.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        Some(Checkpoint {
            size: self.size,
            root: hash_from_hex(&self.root)?,
            last_leaf: hash_from_hex(&self.last_leaf)?,
            at_us: self.at_us,
        })
    }

    /// Verifies the signature with `public_key` (32 raw bytes); returns the checkpoint.
    pub fn verify(&self, public_key: &[u8]) -> Option<Checkpoint> {
        let cp = self.checkpoint()?;
        let sig = lower_hex(&self.signature)?;
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&cp.message(), &sig)
            .ok()?;
        Some(cp)
    }
}

/// A retention cut: the log's own signed statement that entries below `size` were removed
/// because they were older than the retention, and when. An exported file that starts after
/// entry 0 carries it (format version 2), so the offline verifier can tell a pruned prefix
/// from one cut off by someone else: the anchor must be the cut's size, and the cut's
/// arithmetic must hold (the anchor checkpoint is older than `cut_at_us - retention_us`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCut {
    /// Entries `0..size` were removed; the anchor checkpoint is at `size`.
    pub size: u64,
    /// Merkle root at `size` (the anchor checkpoint's), hex.
    pub root: String,
    /// When the cut was made, microseconds since the Unix epoch.
    pub cut_at_us: i64,
    /// The retention in force then, microseconds.
    pub retention_us: i64,
    /// Ed25519 signature of [`SignedCut::message`], hex.
    pub signature: String,
}

impl SignedCut {
    /// The exact bytes that are signed (domain-separated from checkpoints).
    pub fn message(size: u64, root: &Hash, cut_at_us: i64, retention_us: i64) -> Vec<u8> {
        format!(
            "vault-audit-cut/v1\nsize {size}\nroot {}\ncut_at_us {cut_at_us}\nretention_us {retention_us}\n",
            hex::encode(root)
        )
        .into_bytes()
    }

    /// Verifies the signature with `public_key`; returns the root.
    pub fn verify(&self, public_key: &[u8]) -> Option<Hash> {
        let root = hash_from_hex(&self.root)?;
        let sig = lower_hex(&self.signature)?;
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(
                &Self::message(self.size, &root, self.cut_at_us, self.retention_us),
                &sig,
            )
            .ok()?;
        Some(root)
    }
}

/// The log's Ed25519 key pair.
pub struct SigningKey(Ed25519KeyPair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public={})", hex::encode(self.public_key()))
    }
}

fn aad() -> Aad {
    Aad::new(KEY_KIND)
}

impl SigningKey {
    /// A new key, and its PKCS#8 form wrapped by the root key (to store).
    pub fn generate(root: &RootKey) -> Result<(Self, Vec<u8>)> {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| Error::Random)?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        let wrapped = Sealer::new(root.key()).seal(&aad(), &pkcs8)?;
        Ok((Self::from_pkcs8(&pkcs8)?, wrapped))
    }

    /// Unwraps a stored key.
    pub fn unwrap(root: &RootKey, wrapped: &[u8]) -> Result<Self> {
        let pkcs8 = Sealer::new(root.key())
            .open(&aad(), wrapped)
            .map_err(|_| Error::Integrity(IntegrityObject::Metadata("audit signing key")))?;
        Self::from_pkcs8(&pkcs8)
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        Ed25519KeyPair::from_pkcs8(pkcs8)
            .map(Self)
            .map_err(|_| Error::Integrity(IntegrityObject::Metadata("audit signing key")))
    }

    /// The public key, 32 raw bytes.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.public_key().as_ref());
        out
    }

    /// Signs a retention cut at `anchor`.
    pub fn sign_cut(&self, anchor: &Checkpoint, cut_at_us: i64, retention_us: i64) -> SignedCut {
        let message = SignedCut::message(anchor.size, &anchor.root, cut_at_us, retention_us);
        SignedCut {
            size: anchor.size,
            root: hex::encode(anchor.root),
            cut_at_us,
            retention_us,
            signature: hex::encode(self.0.sign(&message)),
        }
    }

    /// Signs `message` as it is: only for the C2SP note of a checkpoint
    /// (`audit::witness`), whose text cannot be mistaken for [`Checkpoint::message`] (its
    /// second line is a bare number, never `size …`).
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.0.sign(message).as_ref());
        out
    }

    /// Signs `cp`.
    pub fn sign(&self, cp: &Checkpoint) -> SignedCheckpoint {
        SignedCheckpoint {
            size: cp.size,
            root: hex::encode(cp.root),
            last_leaf: hex::encode(cp.last_leaf),
            at_us: cp.at_us,
            signature: hex::encode(self.0.sign(&cp.message())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key256;

    #[test]
    fn sign_verify_and_tamper() {
        let root = RootKey::from_key(Key256::from_bytes(&[1; 32]));
        let (key, wrapped) = SigningKey::generate(&root).unwrap();
        let again = SigningKey::unwrap(&root, &wrapped).unwrap();
        assert_eq!(key.public_key(), again.public_key());
        let other_root = RootKey::from_key(Key256::from_bytes(&[2; 32]));
        assert!(SigningKey::unwrap(&other_root, &wrapped).is_err());

        let cp = Checkpoint {
            size: 3,
            root: [7; 32],
            last_leaf: [8; 32],
            at_us: 99,
        };
        let signed = key.sign(&cp);
        assert_eq!(signed.verify(&key.public_key()), Some(cp));
        let mut bad = signed.clone();
        bad.size = 4;
        assert_eq!(bad.verify(&key.public_key()), None);
        let mut bad = signed.clone();
        bad.root = hex::encode([9u8; 32]);
        assert_eq!(bad.verify(&key.public_key()), None);
        assert_eq!(signed.verify(&[0u8; 32]), None);
    }
}
