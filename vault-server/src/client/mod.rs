//! The client library shared by `vaultctl`, `vault-load` and the end-to-end tests: how to
//! reach the daemon and call it, and what to make of its replies.
//!
//! - [`credentials`]: the bearer token as a secret type, and the metadata every request
//!   carries ([`CallMetadata`]: the token, and the purpose of calls on personal data).
//! - [`connection`]: the channel to the daemon, plaintext on loopback, TLS or mutual TLS.
//! - [`session`]: a connection with its metadata, the service clients, and the calls made
//!   of several requests (search across pages, watch until caught up).
//! - [`csv_import`]: CSV files as supporters (header mapping, rows, the summary) and their
//!   upload in batches.
//! - [`output`]: replies as the JSON or readable lines `vaultctl` prints.
//! - [`error`]: what can fail, each message the line the user reads.
//!
//! The wire's names (metadata keys, the DPO's purpose) come from `vault_proto::metadata`.

pub mod connection;
pub mod credentials;
pub mod csv_import;
pub mod error;
pub mod output;
pub mod session;

pub use connection::{TlsFiles, connect, daemon_url};
pub use credentials::{CallMetadata, Token};
pub use error::{Error, cause_chain, status_line};
pub use session::{SearchOutcome, Session, WatchOutcome};

#[cfg(test)]
mod tests;
