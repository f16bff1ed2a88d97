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
        };
        let sealed = seal(&dek, "a", &s)?;
        assert_eq!(open(&dek, "a", &sealed)?, s);
        assert!(open(&dek, "b", &sealed).is_err());
        Ok(())
    }
}
