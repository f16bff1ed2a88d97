//! The sealed supporter record: a versioned serialization, encrypted under the subject's
//! data key and bound by AAD to the subject id, the record kind and the format version.
//! A record copied to another supporter's row, or altered, fails to open.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::model::Supporter;
use crate::crypto::Key256;
use crate::crypto::envelope::{self, Aad};
use crate::error::{Error, IntegrityObject, Result};

/// Record format version written by this build. Version 2 is version 1's format written
/// by a build that pins every record from the person's state row
/// ([`crate::subject_state::Pins`]): a version-2 record is only accepted with a state that
/// pins it, so a state row put back from before pins existed is refused.
pub const RECORD_VERSION: u32 = 2;
/// The oldest record format this build opens.
const OLDEST_VERSION: u32 = 1;
const KIND: &str = "record/supporter";

#[derive(Serialize, Deserialize)]
struct StoredRecord {
    v: u32,
    supporter: Supporter,
}

fn aad(subject: &str, version: u32) -> Aad {
    Aad::new(KIND).with(subject.as_bytes()).with_u32(version)
}

/// Seals `supporter` under its data key. The prefix is the format version in clear, so a
/// reader knows which AAD to use; the AAD binds it, so it cannot be relabelled.
pub fn seal(dek: &Key256, supporter: &Supporter) -> Result<Vec<u8>> {
    let plain = Zeroizing::new(
        serde_json::to_vec(&StoredRecord {
            v: RECORD_VERSION,
            supporter: supporter.clone(),
        })
        .map_err(|e| Error::Codec(e.to_string()))?,
    );
    let env = envelope::seal(dek, &aad(&supporter.id, RECORD_VERSION), &plain)?;
    let mut out = Vec::with_capacity(4 + env.len());
    out.extend_from_slice(&RECORD_VERSION.to_be_bytes());
    out.extend_from_slice(&env);
    Ok(out)
}

/// Opens `subject`'s sealed record.
pub fn open(dek: &Key256, subject: &str, sealed: &[u8]) -> Result<Supporter> {
    open_versioned(dek, subject, sealed).map(|(s, _)| s)
}

/// Opens `subject`'s sealed record, and says which format version it was written in.
pub fn open_versioned(dek: &Key256, subject: &str, sealed: &[u8]) -> Result<(Supporter, u32)> {
    let bad = || Error::Integrity(IntegrityObject::Record(subject.to_owned()));
    let (version, env) = sealed.split_at_checked(4).ok_or_else(bad)?;
    let version = u32::from_be_bytes(version.try_into().map_err(|_| bad())?);
    if !(OLDEST_VERSION..=RECORD_VERSION).contains(&version) {
        return Err(bad());
    }
    let plain = envelope::open(dek, &aad(subject, version), env).map_err(|_| bad())?;
    let record: StoredRecord = serde_json::from_slice(&plain).map_err(|_| bad())?;
    if record.v != version || record.supporter.id != subject {
        return Err(bad());
    }
    Ok((record.supporter, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_supporter() -> impl Strategy<Value = Supporter> {
        (
            "[a-f0-9-]{36}",
            ".{0,40}",
            ".{0,40}",
            "[a-z]{1,10}@[a-z]{1,10}\\.fr",
            proptest::collection::btree_set("[a-z0-9]{1,10}", 0..5),
            proptest::collection::btree_map("[a-z]{1,8}", ".{0,20}", 0..4),
            any::<i64>(),
        )
            .prop_map(|(id, g, f, e, tags, custom, t)| Supporter {
                id,
                given_name: g,
                family_name: f,
                email: e,
                tags,
                custom,
                created_at_us: t,
                updated_at_us: t,
                ..Supporter::default()
            })
    }

    proptest! {
        #[test]
        fn round_trips(s in arb_supporter()) {
            let dek = Key256::from_bytes(&[3; 32]);
            let sealed = seal(&dek, &s).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let back = open(&dek, &s.id, &sealed).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(back, s);
        }

        #[test]
        fn other_subject_or_altered_byte_fails(s in arb_supporter(), pos in any::<proptest::sample::Index>()) {
            let dek = Key256::from_bytes(&[3; 32]);
            let sealed = seal(&dek, &s).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(open(&dek, "another-subject", &sealed).is_err());
            let mut altered = sealed.clone();
            let i = pos.index(altered.len());
            altered[i] ^= 0x01;
            prop_assert!(matches!(open(&dek, &s.id, &altered), Err(Error::Integrity(_))));
        }
    }
}
