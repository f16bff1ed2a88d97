//! The offline audit-log verifier (`vault_core::audit::file::verify`, what
//! `vaultctl audit verify` runs on an exported log).
//!
//! The reference is a real export committed as a seed, with its public key. Properties: the
//! verifier accepts the reference; whatever it accepts carries exactly the reference's entry
//! lines, byte for byte and in order, for the range it reports, and ends at one of the
//! reference's signed checkpoints (dropping interleaved checkpoint lines, reformatting the
//! header's JSON or cutting the file at an earlier signed checkpoint still verify: each is
//! the same signed log, and the result says where it ends); a refusal names a line of the
//! file (or the one after its end).

use std::sync::OnceLock;

use vault_core::audit::file::{Verified, verify};
use vault_core::audit::{Checkpoint, SignedCheckpoint};

/// A real export: a vault that saw a few upserts, reads and denials.
pub const REAL_EXPORT: &[u8] = include_bytes!("../../corpus/audit_verify/real-export.log");
/// The Ed25519 public key of [`REAL_EXPORT`]'s log, in hex.
pub const PUBLIC_KEY_HEX: &str = include_str!("../data/audit-public-key.hex");

const CHECKPOINT_PREFIX: &[u8] = b"{\"checkpoint\":";

/// The reference, parsed once.
struct Reference {
    public_key: Vec<u8>,
    /// Entry lines, by sequence number (the reference starts at entry 0).
    entries: Vec<Vec<u8>>,
    /// Every checkpoint the reference signs: the end and the interleaved ones.
    checkpoints: Vec<Checkpoint>,
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let public_key = hex::decode(PUBLIC_KEY_HEX.trim()).expect("the public key is hex");
        let v = verify(REAL_EXPORT, &public_key).expect("the reference export verifies");
        assert_eq!(v.first_seq, 0, "the reference starts at entry 0");
        let lines = lines(REAL_EXPORT);
        let header: serde_json::Value =
            serde_json::from_slice(lines[0]).expect("the reference header is JSON");
        let mut checkpoints = vec![signed(&header["end"])];
        let mut entries = Vec::new();
        for line in &lines[1..] {
            if line.starts_with(CHECKPOINT_PREFIX) {
                let value: serde_json::Value = serde_json::from_slice(line).expect("JSON");
                checkpoints.push(signed(&value["checkpoint"]));
            } else {
                entries.push(line.to_vec());
            }
        }
        assert_eq!(entries.len() as u64, v.entries);
        assert!(
            checkpoints.len() >= 2,
            "the reference has interleaved checkpoints"
        );
        Reference {
            public_key,
            entries,
            checkpoints,
        }
    })
}

fn signed(value: &serde_json::Value) -> Checkpoint {
    serde_json::from_value::<SignedCheckpoint>(value.clone())
        .ok()
        .and_then(|s| s.checkpoint())
        .expect("a signed checkpoint")
}

/// The lines of a file that ends with a newline, without it.
fn lines(file: &[u8]) -> Vec<&[u8]> {
    let body = file.strip_suffix(b"\n").unwrap_or(file);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|b| *b == b'\n').collect()
}

/// Verifies `data` with the reference's public key.
pub fn check(data: &[u8]) {
    let reference = reference();
    match verify(data, &reference.public_key) {
        Ok(v) => accepted_is_the_signed_log(reference, data, &v),
        Err(e) => {
            let last = lines(data).len().max(1);
            assert!(
                (1..=last + 1).contains(&e.line),
                "the error points at line {} of a {last}-line file: {e}",
                e.line
            );
        }
    }
}

fn accepted_is_the_signed_log(reference: &Reference, data: &[u8], v: &Verified) {
    assert!(
        reference.checkpoints.contains(&v.end),
        "the file verified up to a checkpoint the log never signed"
    );
    assert_eq!(v.first_seq + v.entries, v.end.size);
    let entries: Vec<&[u8]> = lines(data)
        .into_iter()
        .skip(1)
        .filter(|l| !l.starts_with(CHECKPOINT_PREFIX))
        .collect();
    let first = usize::try_from(v.first_seq).expect("small");
    let end = usize::try_from(v.end.size).expect("small");
    let signed: Vec<&[u8]> = reference.entries[first..end]
        .iter()
        .map(Vec::as_slice)
        .collect();
    assert!(
        entries == signed,
        "the file verified with entries that differ from the signed log"
    );
}
