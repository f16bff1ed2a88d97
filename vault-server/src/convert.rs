//! Conversions between the generated protobuf types and `vault-core`'s model.

use prost_types::Timestamp;
use vault_core::supporter::normalize::MAX_TAGS;
use vault_core::{Address, InvalidInput, Supporter};
use vault_proto::v1 as pb;

/// A protobuf supporter as the library's model (not yet normalized).
pub fn supporter_from_pb(s: pb::Supporter) -> Result<Supporter, InvalidInput> {
    // Refuse absurd tag lists before building a set from them.
    if s.tags.len() > MAX_TAGS * 4 {
        return Err(InvalidInput::new(
            "tags",
            format!("a supporter may carry at most {MAX_TAGS} tags"),
        ));
    }
    let address = s.address.unwrap_or_default();
    Ok(Supporter {
        id: s.id,
        given_name: s.given_name,
        family_name: s.family_name,
        email: s.email,
        phone: s.phone,
        address: Address {
            line1: address.line1,
            line2: address.line2,
            postcode: address.postcode,
            city: address.city,
            country: address.country,
        },
        tags: s.tags.into_iter().collect(),
        custom: s.custom.into_iter().collect(),
        source: s.source,
        created_at_us: 0,
        updated_at_us: 0,
    })
}

fn timestamp(us: i64) -> Option<Timestamp> {
    (us != 0).then(|| Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
    })
}

/// The library's supporter as protobuf.
pub fn supporter_to_pb(s: Supporter) -> pb::Supporter {
    let a = s.address;
    let has_address = !(a.line1.is_empty()
        && a.line2.is_empty()
        && a.postcode.is_empty()
        && a.city.is_empty()
        && a.country.is_empty());
    pb::Supporter {
        id: s.id,
        given_name: s.given_name,
        family_name: s.family_name,
        email: s.email,
        phone: s.phone,
        address: has_address.then_some(pb::Address {
            line1: a.line1,
            line2: a.line2,
            postcode: a.postcode,
            city: a.city,
            country: a.country,
        }),
        tags: s.tags.into_iter().collect(),
        custom: s.custom.into_iter().collect(),
        source: s.source,
        created_at: timestamp(s.created_at_us),
        updated_at: timestamp(s.updated_at_us),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_split_micros() {
        let t = timestamp(1_700_000_000_123_456).unwrap_or_default();
        assert_eq!((t.seconds, t.nanos), (1_700_000_000, 123_456_000));
        assert_eq!(timestamp(0), None);
    }

    #[test]
    fn round_trip() -> Result<(), InvalidInput> {
        let pb_in = pb::Supporter {
            email: "a@b.fr".into(),
            tags: vec!["x".into()],
            address: Some(pb::Address {
                postcode: "75001".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let back = supporter_to_pb(supporter_from_pb(pb_in.clone())?);
        assert_eq!(back, pb_in);
        Ok(())
    }

    #[test]
    fn huge_tag_lists_refused_early() {
        let s = pb::Supporter {
            tags: vec!["t".into(); MAX_TAGS * 4 + 1],
            ..Default::default()
        };
        assert!(supporter_from_pb(s).is_err());
    }
}
