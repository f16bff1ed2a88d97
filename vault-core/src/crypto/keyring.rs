//! Key epochs (KEKs) and the wrapping of subject data keys.
//!
//! Each epoch is a random 256-bit key, stored wrapped by the root key with associated data
//! naming the epoch. The newest epoch is active: new subject keys are wrapped under it.
//! A wrapped subject key is `epoch (u32, big-endian) || envelope`, the envelope bound to
//! the subject id and the epoch, so a wrapped key moved to another subject fails to open.
//! Rotation (a later step) re-wraps live subject keys under a new epoch and destroys old
//! ones, which is what makes erasure hold for stale copies.

use std::collections::BTreeMap;

use super::envelope::{Aad, Sealer};
use super::root_key::RootKey;
use super::secret::Key256;
use crate::error::{Error, IntegrityObject, Result};

const KEK_KIND: &str = "key-epoch";
const SUBJECT_KEY_KIND: &str = "subject-key";

/// The unwrapped key epochs, each with its key schedule expanded once.
pub struct Keyring {
    epochs: BTreeMap<u32, Sealer>,
    active: u32,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("epochs", &self.epochs.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

fn kek_aad(epoch: u32) -> Aad {
    Aad::new(KEK_KIND).with_u32(epoch)
}

fn subject_key_aad(subject: &str, epoch: u32) -> Aad {
    Aad::new(SUBJECT_KEY_KIND)
        .with(subject.as_bytes())
        .with_u32(epoch)
}

/// Wraps a fresh epoch key under the root key; returns the bytes to store for `epoch`.
pub fn new_wrapped_epoch(root: &RootKey, epoch: u32) -> Result<Vec<u8>> {
    let kek = Key256::generate()?;
    Sealer::new(root.key()).seal(&kek_aad(epoch), kek.expose())
}

impl Keyring {
    /// Unwraps stored epochs (`epoch -> wrapped key`). The highest epoch is active.
    /// A wrong root key is reported as such, not as corruption: if no epoch opens, the
    /// key file is the likelier culprit.
    pub fn unwrap(root: &RootKey, wrapped: &BTreeMap<u32, Vec<u8>>) -> Result<Self> {
        let root_sealer = Sealer::new(root.key());
        let mut epochs = BTreeMap::new();
        let mut opened_any = false;
        let mut first_failure = None;
        for (&epoch, bytes) in wrapped {
            match root_sealer.open(&kek_aad(epoch), bytes) {
                Ok(raw) => {
                    let arr: [u8; 32] = raw
                        .as_slice()
                        .try_into()
                        .map_err(|_| Error::Integrity(IntegrityObject::KeyEpoch(epoch)))?;
                    let key = Key256::from_bytes(&arr);
                    let mut arr = arr;
                    zeroize::Zeroize::zeroize(&mut arr);
                    epochs.insert(epoch, Sealer::new(&key));
                    opened_any = true;
                }
                Err(_) => {
                    first_failure.get_or_insert(epoch);
                }
            }
        }
        match (first_failure, opened_any) {
            (Some(epoch), false) => return Err(Error::WrongRootKey(epoch)),
            (Some(epoch), true) => return Err(Error::Integrity(IntegrityObject::KeyEpoch(epoch))),
            (None, _) => {}
        }
        let active = *epochs
            .keys()
            .next_back()
            .ok_or(Error::Integrity(IntegrityObject::Metadata("no key epoch")))?;
        Ok(Self { epochs, active })
    }

    /// Whether `epoch` is loaded.
    pub fn has_epoch(&self, epoch: u32) -> bool {
        self.epochs.contains_key(&epoch)
    }

    /// The loaded epochs, oldest first.
    pub fn epochs(&self) -> Vec<u32> {
        self.epochs.keys().copied().collect()
    }

    /// The epoch new subject keys are wrapped under.
    pub fn active_epoch(&self) -> u32 {
        self.active
    }

    /// Wraps `dek` for `subject` under the active epoch.
    pub fn wrap_subject_key(&self, subject: &str, dek: &Key256) -> Result<Vec<u8>> {
        let sealer = self
            .epochs
            .get(&self.active)
            .ok_or(Error::Integrity(IntegrityObject::KeyEpoch(self.active)))?;
        let env = sealer.seal(&subject_key_aad(subject, self.active), dek.expose())?;
        let mut out = Vec::with_capacity(4 + env.len());
        out.extend_from_slice(&self.active.to_be_bytes());
        out.extend_from_slice(&env);
        Ok(out)
    }

    /// Unwraps `subject`'s data key.
    pub fn unwrap_subject_key(&self, subject: &str, wrapped: &[u8]) -> Result<Key256> {
        let bad = || Error::Integrity(IntegrityObject::SubjectKey(subject.to_owned()));
        let (epoch_bytes, env) = wrapped.split_at_checked(4).ok_or_else(bad)?;
        let epoch = u32::from_be_bytes(epoch_bytes.try_into().map_err(|_| bad())?);
        let sealer = self.epochs.get(&epoch).ok_or_else(bad)?;
        let raw = sealer
            .open(&subject_key_aad(subject, epoch), env)
            .map_err(|_| bad())?;
        let arr: &[u8; 32] = raw.as_slice().try_into().map_err(|_| bad())?;
        Ok(Key256::from_bytes(arr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(b: u8) -> RootKey {
        RootKey::from_key(Key256::from_bytes(&[b; 32]))
    }

    fn ring_with(root: &RootKey, epochs: &[u32]) -> Result<(Keyring, BTreeMap<u32, Vec<u8>>)> {
        let mut wrapped = BTreeMap::new();
        for &e in epochs {
            wrapped.insert(e, new_wrapped_epoch(root, e)?);
        }
        Ok((Keyring::unwrap(root, &wrapped)?, wrapped))
    }

    #[test]
    fn subject_key_round_trip_and_binding() -> Result<()> {
        let (ring, _) = ring_with(&root(1), &[1, 2])?;
        assert_eq!(ring.active_epoch(), 2);
        let dek = Key256::generate()?;
        let w = ring.wrap_subject_key("alice", &dek)?;
        assert_eq!(&w[..4], &2u32.to_be_bytes());
        assert_eq!(ring.unwrap_subject_key("alice", &w)?.expose(), dek.expose());
        // Moved to another subject: refused.
        assert!(matches!(
            ring.unwrap_subject_key("bob", &w),
            Err(Error::Integrity(IntegrityObject::SubjectKey(_)))
        ));
        // Relabelled to another epoch: refused.
        let mut relabelled = w.clone();
        relabelled[..4].copy_from_slice(&1u32.to_be_bytes());
        assert!(ring.unwrap_subject_key("alice", &relabelled).is_err());
        Ok(())
    }

    #[test]
    fn wrong_root_key_is_named() -> Result<()> {
        let (_, wrapped) = ring_with(&root(1), &[1])?;
        assert!(matches!(
            Keyring::unwrap(&root(2), &wrapped),
            Err(Error::WrongRootKey(1))
        ));
        Ok(())
    }

    #[test]
    fn swapped_epochs_are_integrity_errors() -> Result<()> {
        let (_, mut wrapped) = ring_with(&root(1), &[1, 2])?;
        let one = wrapped.remove(&1).unwrap_or_default();
        let two = wrapped.remove(&2).unwrap_or_default();
        wrapped.insert(1, two);
        wrapped.insert(2, one);
        assert!(Keyring::unwrap(&root(1), &wrapped).is_err());
        Ok(())
    }
}
