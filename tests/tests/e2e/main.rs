//! The end-to-end suite: one test binary, one module per area, every test against a real
//! `vault-server` on 127.0.0.1 port 0 driven through the generated gRPC client, the client
//! library (`vault_server::client`) and the `vaultctl` binary.
//!
//! The harness (starting and stopping daemons, credentials, the two storage engines, raw
//! store access, the log check) is this package's library, `vault_tests`, so it is compiled
//! once rather than once per test file. `cargo test -p vault-tests -- rights::` runs one
//! area; with `VAULT_TEST_BACKEND=postgres` and `VAULT_TEST_DATABASE_URL` every daemon uses
//! PostgreSQL (see the library's documentation).

// Test code unwraps: a failure is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod access_matrix;
mod approval;
mod at_rest;
mod audit;
mod backup;
mod bad_input;
mod cli;
mod cli_tools;
mod connections;
mod crash;
mod csv_import;
mod disk_full;
mod hostile_input;
mod integrity;
mod isolation;
mod keys;
mod log_hygiene;
mod migrate;
mod migration_from_v1;
mod operations;
mod readme_tour;
mod replicas;
mod rights;
mod segments;
mod standard;
mod store_attacker;
mod supporters;
mod tls;
mod watch;
mod witness;
