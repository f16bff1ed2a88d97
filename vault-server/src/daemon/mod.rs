//! The daemon (`vault-server`): everything that runs on the server side of the wire.
//!
//! A thin adapter around `vault-core`: it authenticates the caller, maps gRPC requests to
//! `vault-core` calls and library errors to gRPC status codes (once, in [`status`]), and
//! decides no policy of its own. A call goes through, outermost first:
//!
//! - [`connections`]: the accept loop (connection caps, the TLS handshake and its deadline,
//!   idle deadlines), with the TLS settings read from the `[tls]` files by `tls.rs`;
//! - [`layers`]: the tower layers around every service (the per-call log and metrics, the
//!   daemon-wide and per-client limits, authentication);
//! - [`grpc`]: one service per file, each mapping its calls onto `vault-core` ([`convert`]
//!   for the messages, [`status`] for the errors).
//!
//! Around them: [`config`] (flags, environment, TOML), `serve.rs` ([`run`]: start, serve,
//! drain, stop), `bootstrap.rs` (the first start's admin token), `housekeeping.rs`
//! (checkpoints, pruning, the retention sweep, key epochs), [`health`] (`grpc.health.v1`
//! follows the store), [`metrics`] (the Prometheus listener), [`descriptors`] (the served
//! methods, from the compiled descriptors) and [`witness`] (checkpoints to witnesses).

mod bootstrap;
pub mod config;
pub mod connections;
pub mod convert;
pub mod descriptors;
pub mod grpc;
pub mod health;
mod housekeeping;
pub mod layers;
pub mod metrics;
mod serve;
pub mod status;
mod tls;
pub mod witness;

pub use serve::{DaemonError, run, shutdown_signal};
