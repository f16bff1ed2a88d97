//! The AEAD envelope every ciphertext of the vault uses.
//!
//! Layout: `version (1 byte) || nonce (12 bytes) || AES-256-GCM ciphertext and tag`.
//! Nonces are 96 random bits from the OS CSPRNG; each key seals few messages (a data key
//! seals one supporter's records, a key epoch one data key per supporter), far below the
//! 2^32 messages per key that random GCM nonces allow.
//!
//! Every envelope is bound by its associated data ([`Aad`]) to where it belongs: the kind of
//! object and its owner (subject id, epoch). A ciphertext copied to another row, another
//! subject or another kind fails to open, exactly like a ciphertext whose bytes were altered.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::secret::{Key256, random_bytes};
use crate::error::Result;

/// Envelope format version written by this build.
pub const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Why an envelope did not open. Deliberately coarse: callers map it to an integrity error
/// naming the object, and never learn (or leak) which byte was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Too short, or an unknown format version.
    #[error("malformed envelope")]
    Malformed,
    /// Authentication failed: wrong key, wrong associated data, or altered bytes.
    #[error("envelope failed authentication")]
    Unauthentic,
}

/// Associated data: an unambiguous, length-prefixed encoding of the context an envelope
/// belongs to. Start with [`Aad::new`] naming the kind, then add the owner's fields.
#[derive(Clone)]
pub struct Aad(Vec<u8>);

impl Aad {
    /// Associated data for an object of `kind` (for example `"record/supporter"`).
    pub fn new(kind: &str) -> Self {
        let mut aad = Self(Vec::with_capacity(64));
        aad = aad.with(b"vault.v1").with(kind.as_bytes());
        aad
    }

    /// Appends one field; the length prefix keeps `("ab","c")` distinct from `("a","bc")`.
    pub fn with(mut self, field: &[u8]) -> Self {
        self.0
            .extend_from_slice(&(field.len() as u32).to_be_bytes());
        self.0.extend_from_slice(field);
        self
    }

    /// Appends a number field.
    pub fn with_u32(self, n: u32) -> Self {
        self.with(&n.to_be_bytes())
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A cipher with its key schedule expanded once, for keys used many times (key epochs).
/// The schedule is wiped on drop (`aes-gcm`'s `zeroize` feature).
pub struct Sealer(Aes256Gcm);

impl Sealer {
    /// Expands `key`.
    pub fn new(key: &Key256) -> Self {
        Self(Aes256Gcm::new(key.expose().into()))
    }

    /// Seals `plaintext` bound to `aad`.
    pub fn seal(&self, aad: &Aad, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        let ct = self
            .0
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            // Encryption only fails for plaintexts over GCM's 64 GiB limit.
            .map_err(|_| {
                crate::error::Error::InvalidInput(crate::error::InvalidInput::new(
                    "record",
                    "is too large to encrypt",
                ))
            })?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens an envelope sealed with the same key and `aad`.
    pub fn open(&self, aad: &Aad, envelope: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if envelope.len() < OVERHEAD {
            return Err(OpenError::Malformed);
        }
        let (version, rest) = envelope.split_at(1);
        if version[0] != VERSION {
            return Err(OpenError::Malformed);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| OpenError::Unauthentic)
    }
}

/// Seals once under `key` (expands the key schedule for this one call).
pub fn seal(key: &Key256, aad: &Aad, plaintext: &[u8]) -> Result<Vec<u8>> {
    Sealer::new(key).seal(aad, plaintext)
}

/// Opens once under `key`.
pub fn open(key: &Key256, aad: &Aad, envelope: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    Sealer::new(key).open(aad, envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> Key256 {
        Key256::from_bytes(&[b; 32])
    }

    #[test]
    fn round_trip() -> Result<()> {
        let aad = Aad::new("test").with(b"owner");
        let env = seal(&key(1), &aad, b"hello")?;
        assert_eq!(env.len(), 5 + OVERHEAD);
        assert_eq!(
            open(&key(1), &aad, &env).as_deref().map(|v| v.as_slice()),
            Ok(&b"hello"[..])
        );
        Ok(())
    }

    #[test]
    fn nonces_are_fresh() -> Result<()> {
        let aad = Aad::new("test");
        assert_ne!(seal(&key(1), &aad, b"x")?, seal(&key(1), &aad, b"x")?);
        Ok(())
    }

    #[test]
    fn wrong_key_owner_or_kind_fails() -> Result<()> {
        let aad = Aad::new("record/supporter").with(b"subject-a");
        let env = seal(&key(1), &aad, b"secret")?;
        assert_eq!(open(&key(2), &aad, &env), Err(OpenError::Unauthentic));
        let other_owner = Aad::new("record/supporter").with(b"subject-b");
        assert_eq!(
            open(&key(1), &other_owner, &env),
            Err(OpenError::Unauthentic)
        );
        let other_kind = Aad::new("record/consent").with(b"subject-a");
        assert_eq!(
            open(&key(1), &other_kind, &env),
            Err(OpenError::Unauthentic)
        );
        Ok(())
    }

    #[test]
    fn aad_fields_are_unambiguous() -> Result<()> {
        let env = seal(&key(1), &Aad::new("k").with(b"ab").with(b"c"), b"m")?;
        assert_eq!(
            open(&key(1), &Aad::new("k").with(b"a").with(b"bc"), &env),
            Err(OpenError::Unauthentic)
        );
        Ok(())
    }

    #[test]
    fn short_or_unknown_version_is_malformed() -> Result<()> {
        let aad = Aad::new("t");
        assert_eq!(open(&key(1), &aad, &[1; 10]), Err(OpenError::Malformed));
        let mut env = seal(&key(1), &aad, b"m")?;
        env[0] = 2;
        assert_eq!(open(&key(1), &aad, &env), Err(OpenError::Malformed));
        Ok(())
    }

    proptest! {
        #[test]
        fn any_single_byte_change_fails(msg in proptest::collection::vec(any::<u8>(), 0..256),
                                        pos in any::<proptest::sample::Index>(),
                                        flip in 1u8..=255) {
            let aad = Aad::new("prop").with(b"owner");
            let mut env = seal(&key(7), &aad, &msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let i = pos.index(env.len());
            env[i] ^= flip;
            prop_assert!(open(&key(7), &aad, &env).is_err());
        }

        #[test]
        fn truncation_fails(msg in proptest::collection::vec(any::<u8>(), 0..128), cut in 1usize..64) {
            let aad = Aad::new("prop");
            let env = seal(&key(7), &aad, &msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let keep = env.len().saturating_sub(cut);
            prop_assert!(open(&key(7), &aad, &env[..keep]).is_err());
        }

        #[test]
        fn round_trips(msg in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let aad = Aad::new("prop");
            let env = seal(&key(9), &aad, &msg).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = open(&key(9), &aad, &env).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back.as_slice(), msg.as_slice());
        }
    }
}
