//! Conversions between the generated protobuf types and `vault-core`'s model.

use prost_types::Timestamp;
use vault_core::consent::{ConsentEvent as CoreConsentEvent, ConsentStatus};
use vault_core::proposal::{Change, Proposal, ProposalState, ProposalStatus};
use vault_core::supporter::normalize::MAX_TAGS;
use vault_core::{Address, FieldSet, InvalidInput, LookupKey, Supporter};
use vault_core::{Channel, Client, ConsentChange, ConsentKind, ConsentSource, Purpose};
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

/// Microseconds since the Unix epoch as a protobuf timestamp (`None` for 0: unset).
pub fn timestamp(us: i64) -> Option<Timestamp> {
    (us != 0).then(|| Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: (us.rem_euclid(1_000_000) * 1000) as i32,
    })
}

/// A protobuf timestamp as microseconds since the Unix epoch (saturating).
pub fn micros(t: &Timestamp) -> i64 {
    t.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(t.nanos) / 1000)
}

/// The library's supporter as protobuf, carrying `fields` (the fields the caller may see),
/// named in `visible_fields` so a client tells a hidden field from an empty one.
pub fn supporter_to_pb(s: Supporter, fields: FieldSet) -> pb::Supporter {
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
        consents: Vec::new(),
        visible_fields: Some(prost_types::FieldMask {
            paths: fields.iter().map(|f| f.path().to_owned()).collect(),
        }),
    }
}

// ---- consent ------------------------------------------------------------------------

/// A consent request as the library's change.
pub fn consent_change(r: &pb::ConsentRequest) -> Result<ConsentChange, InvalidInput> {
    let channel = match r.channel.trim() {
        "" => None,
        c => Some(
            c.parse::<Channel>()
                .map_err(|rule| InvalidInput::new("channel", rule))?,
        ),
    };
    let through = match (r.contact_email.trim(), r.contact_phone.trim()) {
        ("", "") => None,
        (e, "") => Some(LookupKey::Email(e.to_owned())),
        ("", p) => Some(LookupKey::Phone(p.to_owned())),
        _ => {
            return Err(InvalidInput::new(
                "contact_email",
                "name the email or the phone the consent came through, not both",
            ));
        }
    };
    Ok(ConsentChange {
        purpose: r.purpose.clone(),
        channel,
        source: ConsentSource::parse(&r.source)?,
        notice_version: r.notice_version.clone(),
        through,
    })
}

/// A consent event as protobuf.
pub fn consent_event_to_pb(e: CoreConsentEvent) -> pb::ConsentEvent {
    pb::ConsentEvent {
        subject_id: e.subject_id,
        seq: e.seq,
        purpose: e.purpose,
        channel: e.channel.to_string(),
        kind: match e.kind {
            ConsentKind::Grant => "grant",
            ConsentKind::Withdraw => "withdraw",
        }
        .to_owned(),
        at: timestamp(e.at_us),
        source: e.source.as_str().to_owned(),
        notice_version: e.notice_version,
        client_id: e.client_id,
    }
}

/// A consent status as protobuf.
pub fn consent_state_to_pb(s: ConsentStatus) -> pb::ConsentState {
    pb::ConsentState {
        purpose: s.purpose,
        channel: s.channel.to_string(),
        active: s.active,
        last_event_seq: s.last_event.0,
        since: timestamp(s.last_event.1),
    }
}

// ---- admin --------------------------------------------------------------------------

/// A client as protobuf.
pub fn client_to_pb(c: Client) -> pb::Client {
    pb::Client {
        id: c.id,
        name: c.name,
        role: c.role.to_string(),
        purposes: c.purposes.into_iter().collect(),
        created_at: timestamp(c.created_at_us),
        revoked_at: c.revoked_at_us.and_then(timestamp),
        cert_sha256: c.cert_sha256.unwrap_or_default(),
        expires_at: c.expires_at_us.and_then(timestamp),
    }
}

/// A purpose as protobuf.
pub fn purpose_to_pb(p: Purpose) -> pb::Purpose {
    pb::Purpose {
        id: p.id,
        description: p.description,
        lawful_basis: p.lawful_basis.to_string(),
        special_category_basis: p.special_category_basis.to_string(),
        channels: p.channels.iter().map(|c| c.to_string()).collect(),
        retention_days: p.retention_days,
        fields: p.fields.iter().map(|f| f.path().to_owned()).collect(),
        reaches_collected_for: p.reaches_collected_for.into_iter().collect(),
    }
}

/// A protobuf purpose as the library's (validated by the library).
pub fn purpose_from_pb(p: pb::Purpose) -> Result<Purpose, InvalidInput> {
    fn field(name: &'static str) -> impl Fn(String) -> InvalidInput {
        move |rule| InvalidInput::new(format!("purpose.{name}"), rule)
    }
    Ok(Purpose {
        id: p.id,
        description: p.description,
        lawful_basis: p.lawful_basis.parse().map_err(field("lawful_basis"))?,
        special_category_basis: p
            .special_category_basis
            .parse()
            .map_err(field("special_category_basis"))?,
        channels: p
            .channels
            .iter()
            .map(|c| c.parse::<Channel>())
            .collect::<Result<_, _>>()
            .map_err(field("channels"))?,
        retention_days: p.retention_days,
        fields: vault_core::FieldSet::parse("purpose.fields", p.fields.iter().map(String::as_str))?,
        reaches_collected_for: p
            .reaches_collected_for
            .iter()
            .map(|r| r.trim().to_owned())
            .collect(),
    })
}

/// A proposal as protobuf, with its status.
pub fn proposal_to_pb(p: Proposal, status: ProposalStatus) -> pb::Proposal {
    let (approved_by, approved_at) = match &p.state {
        ProposalState::Approved { by, at_us } => (by.clone(), timestamp(*at_us)),
        ProposalState::Pending => (String::new(), None),
    };
    let summary = p.change.summary();
    let (change, previous_purpose) = match p.change {
        Change::CreateClient(c) => (
            Some(pb::proposal::Change::CreateClient(client_to_pb(c.client))),
            None,
        ),
        Change::PutPurpose { purpose, previous } => (
            Some(pb::proposal::Change::PutPurpose(purpose_to_pb(purpose))),
            previous.map(purpose_to_pb),
        ),
    };
    pb::Proposal {
        id: p.id,
        status: status.as_str().to_owned(),
        proposed_by: p.proposed_by,
        proposed_at: timestamp(p.proposed_at_us),
        expires_at: timestamp(p.expires_at_us),
        approved_by,
        approved_at,
        change_sha256: p.change_sha256,
        widens: p.widens,
        summary,
        change,
        previous_purpose,
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
        let shown = FieldSet::parse("fields", ["email", "tags", "address.postcode"])?;
        let back = supporter_to_pb(supporter_from_pb(pb_in.clone())?, shown);
        // The reply names the fields it carries, so a hidden field is told from an empty one.
        let named = back.visible_fields.clone().unwrap_or_default().paths;
        assert_eq!(named, ["email", "address.postcode", "tags"]);
        assert_eq!(
            pb::Supporter {
                visible_fields: None,
                ..back
            },
            pb_in
        );
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
