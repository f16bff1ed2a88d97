//! `vault-server`: the daemon and the command line around `vault-core`, one folder per
//! audience.
//!
//! - [`daemon`]: the vault daemon (bin `vault-server`), a thin adapter that authenticates
//!   the caller, maps gRPC requests to `vault-core` calls and library errors to gRPC status
//!   codes (once, in [`daemon::status`]). It decides no policy of its own.
//! - [`client`]: the client library of `vaultctl`, `vault-load` and the end-to-end tests
//!   (credentials, connection, session, CSV import, output).
//! - [`cli`]: `vaultctl` itself (the clap tree, its typed error, one module per command
//!   group), over [`client`].

#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod daemon;
