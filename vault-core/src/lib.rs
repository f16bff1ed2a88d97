//! `vault-core`: the vault as a library.
//!
//! It keeps supporter records encrypted at rest (envelope encryption under a root key, key
//! epochs and one data key per supporter), finds them by blind index, and decides access
//! in one place. It has no network code: `vault-server` maps gRPC onto [`Vault`], and an
//! embedded user gets the same guarantees by calling it directly.

#![forbid(unsafe_code)]

pub mod access;
pub mod credentials;
pub mod crypto;
pub mod error;
pub mod storage;
pub mod supporter;
mod vault;

pub use access::{Action, Caller, Role};
pub use error::{Error, IntegrityObject, InvalidInput, Result};
pub use supporter::{Address, Field, FieldSet, LookupKey, Supporter, UpsertOutcome};
pub use vault::{OpenReport, Vault, VaultOptions};
