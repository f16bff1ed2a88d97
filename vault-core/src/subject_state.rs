//! What the vault knows about a person beyond their record: restriction (art. 18),
//! objections (art. 21), suppression of re-import, and the last positive contact that
//! retention counts from (art. 5(1)(e)).
//!
//! Sealed under the subject's data key like the record, so it disappears with the key on
//! erasure. The parts a segment needs without decrypting (restricted, objected channels)
//! are also reflected as posting-list terms (see [`crate::postings`]).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::Key256;
use crate::crypto::envelope::{self, Aad};
use crate::error::{Error, IntegrityObject, Result};
use crate::purpose::Channel;

const KIND: &str = "subject-state";
const VERSION: u32 = 1;

/// A subject's rights state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectState {
    /// Processing restricted: only the DPO may act on the data.
    #[serde(default)]
    pub restricted: bool,
    /// The rights request that restricted it.
    #[serde(default)]
    pub restricted_ref: Option<String>,
    /// Channels the person objected to.
    #[serde(default)]
    pub objected: BTreeSet<Channel>,
    /// Re-import of the email and phone is refused (objection to any contact).
    #[serde(default)]
    pub suppressed: bool,
    /// Last positive contact (sign-up, upsert from the person, consent given), µs.
    #[serde(default)]
    pub last_contact_us: i64,
    /// Purposes the data was collected or written for (the basis of the purposes that do
    /// not rest on consent, for retention).
    #[serde(default)]
    pub collected_for: BTreeSet<String>,
    /// What the rest of the person's rows looked like when this state was written, so that
    /// a row deleted or put back from an older copy is detected on load (see [`Pins`]).
    /// Absent in states written before pins existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pins: Option<Pins>,
}

/// The person's other rows as of this state: the record's ciphertext and the consent
/// ledger's length. Every write of a person re-seals the record (a fresh nonce, so a new
/// ciphertext) and writes the state with the new pins, so:
///
/// - a truncated ledger (the last withdrawal deleted) no longer has `consent_len` events;
/// - a record put back from an older copy no longer hashes to `record_sha256`;
/// - a state put back from an older copy (a restriction lifted) pins a record ciphertext
///   that has been replaced since.
///
/// What the pins cannot see: all of one person's rows put back together from one older
/// copy of the store (SECURITY.md, the store attacker).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pins {
    /// SHA-256 (hex) of the record row's stored bytes.
    pub record_sha256: String,
    /// Number of consent events in the ledger.
    pub consent_len: u64,
}

impl Pins {
    /// The pins of a record ciphertext and a ledger length.
    pub fn of(sealed_record: &[u8], consent_len: u64) -> Self {
        Self {
            record_sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, sealed_record)),
            consent_len,
        }
    }
}

impl SubjectState {
    /// The state without its pins: what a write compares to decide whether it changed.
    pub fn unpinned(&self) -> SubjectState {
        SubjectState {
            pins: None,
            ..self.clone()
        }
    }
}

fn aad(subject: &str) -> Aad {
    Aad::new(KIND).with(subject.as_bytes()).with_u32(VERSION)
}

/// Seals `state` for `subject` under its data key.
pub fn seal(dek: &Key256, subject: &str, state: &SubjectState) -> Result<Vec<u8>> {
    let plain = Zeroizing::new(serde_json::to_vec(state).map_err(|e| Error::Codec(e.to_string()))?);
    envelope::seal(dek, &aad(subject), &plain)
}

/// Opens `subject`'s sealed state.
pub fn open(dek: &Key256, subject: &str, sealed: &[u8]) -> Result<SubjectState> {
    let bad = || Error::Integrity(IntegrityObject::Record(subject.to_owned()));
    let plain = envelope::open(dek, &aad(subject), sealed).map_err(|_| bad())?;
    serde_json::from_slice(&plain).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() -> Result<()> {
        let dek = Key256::generate()?;
        let s = SubjectState {
            restricted: true,
            restricted_ref: Some("REQ-1".into()),
            objected: [Channel::Sms].into_iter().collect(),
            suppressed: false,
            last_contact_us: 7,
            collected_for: ["canvassing".to_owned()].into_iter().collect(),
            pins: Some(Pins::of(b"record", 2)),
        };
        let sealed = seal(&dek, "a", &s)?;
        assert_eq!(open(&dek, "a", &sealed)?, s);
        assert!(open(&dek, "b", &sealed).is_err());
        Ok(())
    }
}
