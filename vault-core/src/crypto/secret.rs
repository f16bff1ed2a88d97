//! Secret key material.
//!
//! [`Key256`] holds 32 key bytes in a zeroizing box: the bytes are wiped when the value is
//! dropped, the type is neither `Clone` nor printable, and its bytes are only reachable
//! through a short borrow ([`Key256::expose`]).

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A 256-bit secret key (root key, key epoch, subject data key).
pub struct Key256(Box<Zeroizing<[u8; 32]>>);

impl Key256 {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut bytes = Box::new(Zeroizing::new([0u8; 32]));
        SystemRandom::new()
            .fill(bytes.as_mut_slice())
            .map_err(|_| Error::Random)?;
        Ok(Self(bytes))
    }

    /// Takes ownership of key bytes; the caller's buffer should itself be zeroizing.
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(Box::new(Zeroizing::new(*bytes)))
    }

    /// Borrow the key bytes for the shortest time possible.
    pub fn expose(&self) -> &[u8; 32] {
        self.0.as_ref()
    }
}

impl fmt::Debug for Key256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key256(<redacted>)")
    }
}

/// Fill `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<()> {
    SystemRandom::new().fill(buf).map_err(|_| Error::Random)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_key_bytes() {
        let k = Key256::from_bytes(&[0xAB; 32]);
        let shown = format!("{k:?}");
        assert_eq!(shown, "Key256(<redacted>)");
        assert!(!shown.to_lowercase().contains("ab"));
    }

    #[test]
    fn generated_keys_differ() -> Result<()> {
        let a = Key256::generate()?;
        let b = Key256::generate()?;
        assert_ne!(a.expose(), b.expose());
        Ok(())
    }
}
