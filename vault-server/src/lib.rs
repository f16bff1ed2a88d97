//! `vault-server`: the daemon and the command line around `vault-core`.
//!
//! The daemon is a thin adapter: it authenticates the caller, maps gRPC requests to
//! `vault-core` calls and library errors to gRPC status codes (once, in [`status`]). It
//! decides no policy of its own.

#![forbid(unsafe_code)]

pub mod auth;
pub mod call_log;
pub mod cli;
pub mod client;
pub mod config;
pub mod connections;
pub mod convert;
pub mod daemon;
pub mod descriptors;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod services;
pub mod status;
pub mod witness;
