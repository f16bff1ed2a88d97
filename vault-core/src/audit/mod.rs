//! The tamper-evident access log.
//!
//! Every call that touches personal data, and every refused call, appends one
//! [`entry::AuditEntry`]: ids, call, purpose, field names and outcome, never a value. Entries
//! are the leaves of an RFC 9162 Merkle tree ([`merkle`]) and each also carries the hash of
//! the entry before it, so an edit is located at the entry that was changed. Signed
//! [`checkpoint::Checkpoint`]s (Ed25519 over size, root, last leaf and time) are made every
//! N entries or T seconds and at shutdown. [`mod@file`] is the offline export format and its
//! verifier, which needs nothing but the file and the public key. [`witness`] gives every
//! checkpoint its C2SP form, so that independent witnesses can cosign it.

pub mod checkpoint;
pub mod entry;
pub mod file;
pub mod mark;
pub mod merkle;
pub mod witness;

pub use checkpoint::{Checkpoint, SignedCheckpoint};
pub use entry::AuditEntry;
