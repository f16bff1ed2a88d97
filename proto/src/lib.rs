//! Generated Rust code for the vault's gRPC API (`vault.v1`).
//!
//! The code is generated at build time from `proto/vault/v1/*.proto` by protox and
//! tonic-prost-build; it sits in its own crate with relaxed lints so strict lints stay on
//! for the project's own code. [`metadata`] holds the wire constants both sides name.

#![forbid(unsafe_code)]

pub mod metadata;

/// Package `vault.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("vault.v1");
}

/// Encoded `FileDescriptorSet` of every vault proto file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("vault_descriptor");
