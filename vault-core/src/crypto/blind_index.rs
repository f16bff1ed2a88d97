//! Blind indexes: HMAC-SHA256 of normalized values under a key derived from the root key.
//!
//! They let the vault find a supporter by email or phone, and deduplicate, without storing
//! either in clear. Each kind of value is domain-separated, so the same string as an email
//! and as a tag gives unrelated index values. What they leak is equality: someone holding
//! the store sees that two rows share an email, never which email (see SECURITY.md).

use ring::{hkdf, hmac};

use super::root_key::RootKey;

/// What an index value was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexKind {
    /// A normalized (trimmed, lower-cased) email address.
    Email,
    /// A phone number in E.164.
    Phone,
    /// A normalized tag.
    Tag,
    /// A normalized postcode.
    Postcode,
    /// Another segment term (consent, restriction, objection), by its canonical text.
    Term,
}

impl IndexKind {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Email => b"email",
            Self::Phone => b"phone",
            Self::Tag => b"tag",
            Self::Postcode => b"postcode",
            Self::Term => b"term",
        }
    }
}

/// The HMAC key for blind indexes, derived once from the root key with HKDF-SHA256.
pub struct BlindIndexKey(hmac::Key);

impl std::fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlindIndexKey(<redacted>)")
    }
}

impl BlindIndexKey {
    /// Derives the key: HKDF-SHA256(salt = "vault.v1 blind-index", ikm = root key,
    /// info = "vault.v1/blind-index/hmac-sha256").
    pub fn derive(root: &RootKey) -> Self {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"vault.v1 blind-index");
        let prk = salt.extract(root.key().expose());
        // `expand` only fails when the requested length exceeds 255 hash blocks; one HMAC
        // key is a single block, so this branch is unreachable.
        let key = match prk.expand(&[b"vault.v1/blind-index/hmac-sha256"], hmac::HMAC_SHA256) {
            Ok(okm) => hmac::Key::from(okm),
            Err(_) => unreachable_hkdf(),
        };
        Self(key)
    }

    /// The index value of `normalized` as `kind`.
    pub fn index(&self, kind: IndexKind, normalized: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.0);
        let label = kind.label();
        ctx.update(&(label.len() as u32).to_be_bytes());
        ctx.update(label);
        ctx.update(normalized.as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

#[cold]
fn unreachable_hkdf() -> ! {
    // A single 32-byte output is always within HKDF-SHA256's limit (255 * 32 bytes).
    panic!("HKDF-SHA256 refused a 32-byte output")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key256;

    fn root(b: u8) -> RootKey {
        RootKey::from_key(Key256::from_bytes(&[b; 32]))
    }

    #[test]
    fn deterministic_and_keyed() {
        let a = BlindIndexKey::derive(&root(1));
        let b = BlindIndexKey::derive(&root(2));
        assert_eq!(
            a.index(IndexKind::Email, "x@y.fr"),
            a.index(IndexKind::Email, "x@y.fr")
        );
        assert_ne!(
            a.index(IndexKind::Email, "x@y.fr"),
            b.index(IndexKind::Email, "x@y.fr")
        );
    }

    #[test]
    fn kinds_are_separated() {
        let a = BlindIndexKey::derive(&root(1));
        assert_ne!(a.index(IndexKind::Email, "v"), a.index(IndexKind::Tag, "v"));
        assert_ne!(
            a.index(IndexKind::Phone, "v"),
            a.index(IndexKind::Postcode, "v")
        );
    }
}
