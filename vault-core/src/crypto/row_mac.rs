//! Row authentication: an HMAC over a stored row, bound to its table and key.
//!
//! The store is untrusted for integrity (DESIGN.md, trust model). Records and consent events
//! are sealed under a person's data key, but the rows that decide who may do what (clients,
//! the token index, purposes, key-epoch metadata, the access log's leaves, checkpoints and
//! anchor...) are configuration, not secrets: they are stored readable, and were once
//! writable by anyone with write access to the store. Each such row now carries a tag,
//! HMAC-SHA256 under a key derived from the root key, over the table's name, the row's key
//! and its value. Without the root key nobody can make a row that verifies, and a row copied
//! to another key or table fails, because both are inside the tag.

use ring::{hkdf, hmac};
use subtle::ConstantTimeEq;

use super::root_key::RootKey;

/// Length of the tag appended to an authenticated row's value.
pub const TAG_LEN: usize = 32;

/// The row-authentication key, derived once from the root key with HKDF-SHA256.
pub struct RowKey(hmac::Key);

impl std::fmt::Debug for RowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RowKey(<redacted>)")
    }
}

impl RowKey {
    /// Derives the key: HKDF-SHA256(salt = "vault.v1 row-mac", ikm = root key,
    /// info = "vault.v1/row-mac/hmac-sha256"). Domain-separated from the blind-index key.
    pub fn derive(root: &RootKey) -> Self {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"vault.v1 row-mac");
        let prk = salt.extract(root.key().expose());
        let key = match prk.expand(&[b"vault.v1/row-mac/hmac-sha256"], hmac::HMAC_SHA256) {
            Ok(okm) => hmac::Key::from(okm),
            // One HMAC key is one hash block, far within HKDF's limit of 255 blocks.
            Err(_) => unreachable_hkdf(),
        };
        Self(key)
    }

    /// The tag of `value` stored at `key` of the table named `table`. Every part is
    /// length-prefixed, so no two (table, key, value) triples share an input.
    pub fn tag(&self, table: &str, key: &[u8], value: &[u8]) -> [u8; TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.0);
        for part in [table.as_bytes(), key] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        ctx.update(value);
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// `value` with its tag appended: what is stored.
    pub fn seal(&self, table: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(value.len() + TAG_LEN);
        out.extend_from_slice(value);
        out.extend_from_slice(&self.tag(table, key, value));
        out
    }

    /// The value of a stored row, if its tag verifies (compared in constant time).
    pub fn open<'a>(&self, table: &str, key: &[u8], stored: &'a [u8]) -> Option<&'a [u8]> {
        let split = stored.len().checked_sub(TAG_LEN)?;
        let (value, tag) = stored.split_at(split);
        let expected = self.tag(table, key, value);
        bool::from(expected.ct_eq(tag)).then_some(value)
    }
}

#[cold]
fn unreachable_hkdf() -> ! {
    panic!("HKDF-SHA256 refused a 32-byte output")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Key256;
    use proptest::prelude::*;

    fn key() -> RowKey {
        RowKey::derive(&RootKey::from_key(Key256::from_bytes(&[7u8; 32])))
    }

    #[test]
    fn a_row_opens_only_where_it_was_written() {
        let k = key();
        let sealed = k.seal("clients", b"a", b"{\"role\":\"dpo\"}");
        assert_eq!(
            k.open("clients", b"a", &sealed),
            Some(&b"{\"role\":\"dpo\"}"[..])
        );
        assert_eq!(
            k.open("clients", b"b", &sealed),
            None,
            "moved to another key"
        );
        assert_eq!(
            k.open("purposes", b"a", &sealed),
            None,
            "moved to another table"
        );
        assert_eq!(k.open("clients", b"a", b"short"), None);
        let other = RowKey::derive(&RootKey::from_key(Key256::from_bytes(&[8u8; 32])));
        assert_eq!(
            other.open("clients", b"a", &sealed),
            None,
            "another root key"
        );
        assert!(!format!("{k:?}").contains('7'));
    }

    proptest! {
        #[test]
        fn any_change_to_a_sealed_row_is_refused(
            value in proptest::collection::vec(any::<u8>(), 0..64),
            at in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let k = key();
            let mut sealed = k.seal("meta", b"k", &value);
            prop_assert_eq!(k.open("meta", b"k", &sealed), Some(&value[..]));
            let i = at.index(sealed.len());
            sealed[i] ^= flip;
            prop_assert_eq!(k.open("meta", b"k", &sealed), None);
            // Tables and keys are length-prefixed: shifting a byte between them changes the tag.
            prop_assert_ne!(k.tag("ab", b"c", &value), k.tag("a", b"bc", &value));
        }
    }
}
