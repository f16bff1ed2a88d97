//! Cryptography of the vault: key types, the AEAD envelope, the root key file, the key
//! epochs (KEKs) and the blind-index HMAC.
//!
//! Everything here is synchronous, allocation-light and free of I/O except the root key
//! file. Key bytes live in [`secret::Key256`], which zeroizes on drop and never prints.

pub mod blind_index;
pub mod envelope;
pub mod keyring;
pub mod root_key;
pub mod row_mac;
pub mod secret;

pub use blind_index::{BlindIndexKey, IndexKind};
pub use envelope::{Aad, OpenError};
pub use keyring::Keyring;
pub use root_key::RootKey;
pub use secret::Key256;
