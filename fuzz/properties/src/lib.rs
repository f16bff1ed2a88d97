//! The properties the fuzz targets assert, one module per target.
//!
//! Each module has a `check(data: &[u8])` that feeds one arbitrary input to the code under
//! test and panics when a property that matters breaks: not only "does not panic", but
//! what the code promises (a normalizer is idempotent, an envelope never opens unless it is
//! a real seal, the audit verifier never accepts a file whose entries differ from the
//! signed log...). The fuzz targets in `fuzz/fuzz_targets/` are one line each around these
//! functions, and `tests/corpus.rs` replays the committed seeds of `fuzz/corpus/<target>/`
//! through them, so `cargo test` exercises every property on the stable toolchain.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
// This crate is assertions: an `expect` that fails is a property that broke, reported by the
// fuzzer or the test like any other failed assert.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod audit_verify;
pub mod csv_import;
pub mod envelope_open;
pub mod normalize;

/// The properties of one fuzz target: panics on an input that breaks one.
pub type Check = fn(&[u8]);

/// The fuzz targets, by name: the directory names under `fuzz/corpus/` and the binaries
/// of `fuzz/fuzz_targets/`.
pub const TARGETS: [(&str, Check); 4] = [
    ("audit_verify", audit_verify::check),
    ("csv_import", csv_import::check),
    ("envelope_open", envelope_open::check),
    ("normalize", normalize::check),
];
