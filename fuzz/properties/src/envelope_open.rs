//! Envelope decoding (`vault_core::crypto::envelope`) and the sealed supporter record on top
//! of it (`vault_core::supporter::record`).
//!
//! Properties, with a fixed key and fixed associated data: arbitrary bytes open only if they
//! are one of the real seals committed as seeds, and then to their plaintext; a refusal is
//! `Malformed` exactly when the bytes are too short or carry an unknown version, and
//! `Unauthentic` otherwise; a real seal never opens under other associated data or another
//! key; sealing any input opens back to it. A sealed record opens only if it is the real
//! sealed record committed as a seed.

use vault_core::crypto::envelope::{self, OVERHEAD, VERSION};
use vault_core::crypto::{Aad, Key256, OpenError};
use vault_core::supporter::record;

/// The key the seeds were sealed with.
pub const KEY: [u8; 32] = [0x42; 32];
/// The subject the seeds are bound to.
pub const SUBJECT: &str = "6f1c2a3e-4b5d-4e6f-8a9b-0c1d2e3f4a5b";
/// The kind in the seeds' associated data.
pub const KIND: &str = "fuzz/envelope";
/// Plaintext of the real envelope seed.
pub const PLAINTEXT: &[u8] = b"marianne@example.fr";

/// A real envelope: `PLAINTEXT` sealed under `KEY` and [`aad`].
pub const REAL_SEAL: &[u8] = include_bytes!("../../corpus/envelope_open/real-seal");
/// A real sealed supporter record of `SUBJECT` under `KEY`.
pub const REAL_RECORD: &[u8] = include_bytes!("../../corpus/envelope_open/real-record");

/// The associated data of the seeds.
pub fn aad() -> Aad {
    Aad::new(KIND).with(SUBJECT.as_bytes())
}

/// Opens `data` as an envelope and as a sealed record; seals it and opens it back.
pub fn check(data: &[u8]) {
    let key = Key256::from_bytes(&KEY);
    let opened = envelope::open(&key, &aad(), data);
    let malformed = data.len() < OVERHEAD || data[0] != VERSION;
    match opened {
        Ok(plain) => {
            assert!(
                data == REAL_SEAL,
                "bytes that are not a real seal opened as an envelope"
            );
            assert_eq!(plain.as_slice(), PLAINTEXT);
        }
        Err(OpenError::Malformed) => assert!(malformed, "a well-formed envelope said malformed"),
        Err(OpenError::Unauthentic) => assert!(!malformed, "a malformed envelope was decrypted"),
    }
    // The real seal is bound to its context: another owner, kind or key never opens it.
    let other_owner = Aad::new(KIND).with(b"another-subject");
    assert!(envelope::open(&key, &other_owner, data).is_err());
    let other_kind = Aad::new("record/supporter").with(SUBJECT.as_bytes());
    assert!(envelope::open(&key, &other_kind, data).is_err());
    assert!(envelope::open(&Key256::from_bytes(&[0x43; 32]), &aad(), data).is_err());

    match record::open(&key, SUBJECT, data) {
        Ok(s) => {
            assert!(
                data == REAL_RECORD,
                "bytes that are not a real record opened"
            );
            assert_eq!(s.id, SUBJECT);
        }
        Err(e) => assert!(
            matches!(e, vault_core::Error::Integrity(_)),
            "a record that does not open is an integrity error, not {e:?}"
        ),
    }

    let sealed = envelope::seal(&key, &aad(), data).expect("sealing a small input");
    assert_eq!(sealed.len(), data.len() + OVERHEAD);
    let back = envelope::open(&key, &aad(), &sealed).expect("a fresh seal opens");
    assert_eq!(back.as_slice(), data);
}
