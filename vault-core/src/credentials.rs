//! Bearer tokens: generation, hashing, constant-time verification.
//!
//! A token is 256 random bits, shown once (written to the admin token file) and stored only
//! as its SHA-256 hash. Verification hashes the presented token and compares hashes in
//! constant time, so neither the stored form nor the timing of a comparison helps an
//! attacker guess a token.

use ring::digest;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::crypto::secret::random_bytes;
use crate::error::Result;

/// Prefix of every token, so secret scanners recognize a leaked one.
pub const TOKEN_PREFIX: &str = "vault_";

/// The stored form of a token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

impl TokenHash {
    /// Hash of `token`.
    pub fn of(token: &str) -> Self {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// Whether `token` hashes to this value, compared in constant time.
    pub fn matches(&self, token: &str) -> bool {
        Self::of(token).0.ct_eq(&self.0).into()
    }
}

/// A fresh token: the prefix and 64 hexadecimal characters.
pub fn new_token() -> Result<Zeroizing<String>> {
    let mut raw = Zeroizing::new([0u8; 32]);
    random_bytes(raw.as_mut_slice())?;
    let mut token = Zeroizing::new(String::with_capacity(TOKEN_PREFIX.len() + 64));
    token.push_str(TOKEN_PREFIX);
    token.push_str(&hex::encode(raw.as_slice()));
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_against_their_hash_only() -> Result<()> {
        let a = new_token()?;
        let b = new_token()?;
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        let h = TokenHash::of(&a);
        assert!(h.matches(&a));
        assert!(!h.matches(&b));
        assert!(!h.matches(""));
        assert!(!format!("{h:?}").contains(&hex::encode(h.0)[..8]));
        Ok(())
    }
}
