//! `vault-core`: the vault as a library.
//!
//! It keeps supporter records encrypted at rest (envelope encryption under a root key, key
//! epochs and one data key per supporter), finds them by blind index, and decides access
//! in one place. It has no network code: `vault-server` maps gRPC onto [`Vault`], and an
//! embedded user gets the same guarantees by calling it directly.

#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
mod backoff;
pub mod changes;
pub mod client;
pub mod clock;
pub mod consent;
pub mod credentials;
pub mod crypto;
pub mod denial;
pub mod error;
pub mod fsutil;
pub mod journal;
pub mod latency;
pub mod postings;
pub mod proposal;
pub mod purpose;
pub mod report;
pub mod rights_requests;
pub mod storage;
pub mod subject_state;
pub mod supporter;
mod txn;
mod vault;

pub use access::{Caller, Role, Rpc};
pub use client::Client;
pub use consent::ledger::{ConsentChange, ConsentEvent, ConsentKind, ConsentSource};
pub use error::{Error, IntegrityObject, InvalidInput, Result};
pub use purpose::{Channel, Purpose};
pub use supporter::{Address, Field, FieldSet, LookupKey, Shown, Supporter, UpsertOutcome};
pub use vault::backup;
pub use vault::{
    AuditQuery, ErasureReceipt, ExportKey, KeyOptions, LogPruneReport, OpenReport, RightsState,
    RotationReport, SearchPage, SearchQuery, StorageChoice, SweepReport, Vault, VaultOptions,
    WatchBatch, WatchSession, WitnessedNote,
};
