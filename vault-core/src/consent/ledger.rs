//! The consent ledger: append-only events per supporter, and the state derived from them.
//!
//! Events are never changed or removed (except with the whole person, on erasure): the
//! history is the proof of consent (GDPR art. 7(1)). The state (who consents to what, now)
//! is a fold over the history, so it can never disagree with it. Events are personal data
//! (they reveal that a person supports the campaign), so each is sealed under the
//! supporter's data key, bound to the supporter and its sequence number.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::Key256;
use crate::crypto::envelope::{self, Aad};
use crate::error::{Error, IntegrityObject, InvalidInput, Result};
use crate::purpose::{Channel, Purpose};
use crate::supporter::LookupKey;

const KIND: &str = "consent-event";

/// Grant or withdrawal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentKind {
    /// The person consents.
    Grant,
    /// The person withdraws consent.
    Withdraw,
}

/// Where a consent event was collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentSource {
    /// A web or paper form.
    Form,
    /// A file import.
    Import,
    /// In person (event, door to door).
    InPerson,
    /// A phone call.
    Phone,
    /// An email from the person (for example, replying "stop").
    Email,
    /// Anything else; say what in the notice version or your own records.
    Other,
}

impl ConsentSource {
    /// API names, for error messages.
    pub const NAMES: &'static str = "form, import, in-person, phone, email, other";

    /// Parses an API name.
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        Ok(match s.trim() {
            "form" => Self::Form,
            "import" => Self::Import,
            "in-person" => Self::InPerson,
            "phone" => Self::Phone,
            "email" => Self::Email,
            "other" => Self::Other,
            _ => {
                return Err(InvalidInput::new(
                    "source",
                    format!("must be one of: {}", Self::NAMES),
                ));
            }
        })
    }

    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Form => "form",
            Self::Import => "import",
            Self::InPerson => "in-person",
            Self::Phone => "phone",
            Self::Email => "email",
            Self::Other => "other",
        }
    }
}

/// One ledger event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEvent {
    /// The supporter.
    pub subject_id: String,
    /// Position in the supporter's ledger, from 0.
    pub seq: u64,
    /// Purpose consented to (or withdrawn from).
    pub purpose: String,
    /// Channel.
    pub channel: Channel,
    /// Grant or withdrawal.
    pub kind: ConsentKind,
    /// When, microseconds since the Unix epoch.
    pub at_us: i64,
    /// Where it was collected.
    pub source: ConsentSource,
    /// Version of the information notice the person saw (GDPR arts. 7 and 13).
    pub notice_version: String,
    /// The client that recorded it.
    pub client_id: String,
}

/// What a caller asks to record (the vault adds subject, sequence, time and client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentChange {
    /// Purpose.
    pub purpose: String,
    /// Channel; `None` when the purpose has a single channel.
    pub channel: Option<Channel>,
    /// Where it was collected.
    pub source: ConsentSource,
    /// Notice version (required for grants).
    pub notice_version: String,
    /// The email or phone the consent came through: required to grant consent to a person
    /// already in the file (`Consent.Grant`), where it must be that person's. It is the
    /// proof that the caller collected the consent; a bare id is not (anyone who saw an id
    /// could otherwise give itself a basis for the person). Ignored inside an upsert, which
    /// finds the person by the contact point it carries.
    pub through: Option<LookupKey>,
}

impl ConsentChange {
    /// Validates the change against its purpose; returns the channel it applies to.
    pub fn resolve(&self, purpose: &Purpose, kind: ConsentKind) -> Result<Channel, InvalidInput> {
        if !purpose.needs_consent() {
            return Err(InvalidInput::new(
                "purpose",
                format!(
                    "purpose {} rests on {}, not on consent; there is no consent to record",
                    purpose.id, purpose.lawful_basis
                ),
            ));
        }
        if kind == ConsentKind::Grant
            && (self.notice_version.trim().is_empty() || self.notice_version.len() > 64)
        {
            return Err(InvalidInput::new(
                "notice_version",
                "a grant must name the version of the information notice the person saw (1 to 64 characters)",
            ));
        }
        let channels: Vec<String> = purpose.channels.iter().map(|c| c.to_string()).collect();
        match self.channel {
            Some(c) if purpose.channels.contains(&c) => Ok(c),
            Some(c) => Err(InvalidInput::new(
                "channel",
                format!(
                    "purpose {} does not use channel {c}; its channels: {}",
                    purpose.id,
                    channels.join(", ")
                ),
            )),
            None if purpose.channels.len() == 1 => purpose
                .channels
                .iter()
                .next()
                .copied()
                .ok_or_else(|| InvalidInput::new("channel", "is required")),
            None => Err(InvalidInput::new(
                "channel",
                format!(
                    "purpose {} has several channels ({}); name one",
                    purpose.id,
                    channels.join(", ")
                ),
            )),
        }
    }
}

/// Current consent for one purpose and channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentStatus {
    /// Purpose.
    pub purpose: String,
    /// Channel.
    pub channel: Channel,
    /// Whether consent is active.
    pub active: bool,
    /// Sequence and time of the event that set this state.
    pub last_event: (u64, i64),
}

/// The state derived from a supporter's ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentState(BTreeMap<(String, Channel), ConsentStatus>);

impl ConsentState {
    /// Folds `events` (oldest first).
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a ConsentEvent>) -> Self {
        let mut state = Self::default();
        for e in events {
            state.apply(e);
        }
        state
    }

    /// Applies one more event.
    pub fn apply(&mut self, e: &ConsentEvent) {
        self.0.insert(
            (e.purpose.clone(), e.channel),
            ConsentStatus {
                purpose: e.purpose.clone(),
                channel: e.channel,
                active: e.kind == ConsentKind::Grant,
                last_event: (e.seq, e.at_us),
            },
        );
    }

    /// Whether consent for `purpose` is active on `channel`, or on any channel.
    pub fn is_active(&self, purpose: &str, channel: Option<Channel>) -> bool {
        self.0
            .values()
            .any(|s| s.active && s.purpose == purpose && channel.is_none_or(|c| c == s.channel))
    }

    /// Every purpose and channel with an event.
    pub fn statuses(&self) -> impl Iterator<Item = &ConsentStatus> {
        self.0.values()
    }
}

fn aad(subject: &str, seq: u64) -> Aad {
    Aad::new(KIND)
        .with(subject.as_bytes())
        .with(&seq.to_be_bytes())
}

/// Store key of a subject's event `seq`: `subject ‖ 0x00 ‖ seq (big-endian)`, so a prefix
/// scan returns one subject's events in order.
pub fn event_key(subject: &str, seq: u64) -> Vec<u8> {
    let mut k = subject_prefix(subject);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Prefix of every event key of `subject`.
pub fn subject_prefix(subject: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(subject.len() + 9);
    k.extend_from_slice(subject.as_bytes());
    k.push(0);
    k
}

/// Seals an event under the supporter's data key.
pub fn seal(dek: &Key256, event: &ConsentEvent) -> Result<Vec<u8>> {
    let plain = zeroize::Zeroizing::new(
        serde_json::to_vec(event).map_err(|e| Error::Codec(e.to_string()))?,
    );
    envelope::seal(dek, &aad(&event.subject_id, event.seq), &plain)
}

/// Opens `subject`'s event `seq`.
pub fn open(dek: &Key256, subject: &str, seq: u64, sealed: &[u8]) -> Result<ConsentEvent> {
    let bad = || Error::Integrity(IntegrityObject::ConsentEvent(subject.to_owned(), seq));
    let plain = envelope::open(dek, &aad(subject, seq), sealed).map_err(|_| bad())?;
    let e: ConsentEvent = serde_json::from_slice(&plain).map_err(|_| bad())?;
    if e.subject_id != subject || e.seq != seq {
        return Err(bad());
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purpose::default_registry;

    fn event(seq: u64, purpose: &str, channel: Channel, kind: ConsentKind) -> ConsentEvent {
        ConsentEvent {
            subject_id: "s".into(),
            seq,
            purpose: purpose.into(),
            channel,
            kind,
            at_us: seq as i64,
            source: ConsentSource::Form,
            notice_version: "v1".into(),
            client_id: "c".into(),
        }
    }

    #[test]
    fn state_follows_the_last_event_per_purpose_and_channel() {
        let events = [
            event(0, "newsletter", Channel::Email, ConsentKind::Grant),
            event(1, "event-invitations", Channel::Sms, ConsentKind::Grant),
            event(2, "newsletter", Channel::Email, ConsentKind::Withdraw),
        ];
        let s = ConsentState::from_events(&events);
        assert!(!s.is_active("newsletter", None));
        assert!(s.is_active("event-invitations", None));
        assert!(s.is_active("event-invitations", Some(Channel::Sms)));
        assert!(!s.is_active("event-invitations", Some(Channel::Email)));
        let s = ConsentState::from_events(&events[..1]);
        assert!(s.is_active("newsletter", Some(Channel::Email)));
    }

    #[test]
    fn sealed_events_are_bound_to_subject_and_seq() {
        let dek = Key256::from_bytes(&[5; 32]);
        let e = event(3, "newsletter", Channel::Email, ConsentKind::Grant);
        let sealed = seal(&dek, &e).unwrap();
        assert_eq!(open(&dek, "s", 3, &sealed).unwrap(), e);
        assert!(open(&dek, "s", 4, &sealed).is_err());
        assert!(open(&dek, "t", 3, &sealed).is_err());
        assert!(event_key("s", 1) > event_key("s", 0));
        assert!(event_key("s", 0).starts_with(&subject_prefix("s")));
        // "s" and "s1" never share a prefix thanks to the separator.
        assert!(!event_key("s1", 0).starts_with(&subject_prefix("s")));
    }

    #[test]
    fn changes_resolve_their_channel() {
        let reg = default_registry();
        let news = &reg[0];
        let events = &reg[2];
        let canvassing = &reg[3];
        let change = |channel| ConsentChange {
            purpose: String::new(),
            channel,
            source: ConsentSource::Form,
            notice_version: "2026-01".into(),
            through: None,
        };
        assert_eq!(
            change(None).resolve(news, ConsentKind::Grant).unwrap(),
            Channel::Email
        );
        assert!(change(None).resolve(events, ConsentKind::Grant).is_err());
        assert_eq!(
            change(Some(Channel::Sms))
                .resolve(events, ConsentKind::Grant)
                .unwrap(),
            Channel::Sms
        );
        assert!(
            change(Some(Channel::Sms))
                .resolve(news, ConsentKind::Grant)
                .is_err()
        );
        assert!(
            change(None)
                .resolve(canvassing, ConsentKind::Grant)
                .is_err()
        );
        let mut no_notice = change(None);
        no_notice.notice_version.clear();
        assert!(no_notice.resolve(news, ConsentKind::Grant).is_err());
        assert!(no_notice.resolve(news, ConsentKind::Withdraw).is_ok());
    }
}
