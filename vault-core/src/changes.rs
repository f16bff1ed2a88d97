//! The change feed: what happened to which subject, for tools that follow the vault
//! (a mailer learning of a withdrawal at once).
//!
//! A change is written in the batch of the write it reports, keyed by the access-log
//! sequence number of that write's entry and its index within it. The access log's order is
//! global (replicas sharing a database race for its head), so the feed's cursor is global
//! too, and a reconnecting reader that resumes from its last cursor misses nothing. Events
//! carry ids, kinds and, for consent, the purpose and channel: never personal data.
//!
//! # Who sees which change
//!
//! A tool following the feed sees it through the purpose it declared, as if it read each
//! person with `Supporters.Get` ([`crate::access::decide`]): only the changes of people it
//! has a basis for, and of consent events only those of its own purpose ([`Change::judge`]).
//! Most changes are judged by the person's state when the feed is read (conservative: an
//! old change of a person without a basis now is not shown). The change that *ends* a basis
//! (a withdrawal, an objection, a restriction, an erasure) cannot be: after it the state no
//! longer says who had the basis, and after an erasure there is no state at all (the data
//! key is destroyed). So the write that makes such a change records, on it, the purposes
//! the person had a basis for just before the write ([`Change::basis_before`],
//! [`crate::access::basis_purposes`]): the mailer that had the basis learns of the
//! withdrawal at once, and nothing about the person follows for it. The list holds
//! purpose ids only, and says nothing the feed did not already say (the consent events and
//! restrictions of the person are in it). Rows written before the list existed have none;
//! their ending changes are judged by the state at read time like the others.

use serde::{Deserialize, Serialize};

use crate::error::{InvalidInput, Result};
use crate::purpose::{Channel, Purpose};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A supporter was created.
    Created,
    /// Fields other than tags changed.
    Updated,
    /// Tags were added.
    Tagged,
    /// Tags were removed.
    Untagged,
    /// Consent was granted (purpose and channel given).
    ConsentGranted,
    /// Consent was withdrawn (purpose and channel given).
    ConsentWithdrawn,
    /// Processing was restricted (art. 18).
    Restricted,
    /// A restriction was lifted.
    Unrestricted,
    /// The person objected (channel given per event).
    Objected,
    /// The person was erased.
    Erased,
}

impl ChangeKind {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Tagged => "tagged",
            ChangeKind::Untagged => "untagged",
            ChangeKind::ConsentGranted => "consent-granted",
            ChangeKind::ConsentWithdrawn => "consent-withdrawn",
            ChangeKind::Restricted => "restricted",
            ChangeKind::Unrestricted => "unrestricted",
            ChangeKind::Objected => "objected",
            ChangeKind::Erased => "erased",
        }
    }

    /// Whether a change of this kind may end a basis for processing the person: a
    /// withdrawal of consent, an objection, a restriction, an erasure. Such a change carries
    /// the purposes that had a basis just before it ([`Change::basis_before`]).
    pub fn may_end_basis(self) -> bool {
        matches!(
            self,
            ChangeKind::ConsentWithdrawn
                | ChangeKind::Objected
                | ChangeKind::Restricted
                | ChangeKind::Erased
        )
    }

    /// Whether a change of this kind may change who has a basis for the person (so a
    /// reader's remembered judgement of the person is stale after it).
    pub fn may_change_basis(self) -> bool {
        !matches!(
            self,
            ChangeKind::Created | ChangeKind::Updated | ChangeKind::Tagged | ChangeKind::Untagged
        )
    }
}

/// How a reader of the feed under one purpose sees a change ([`Change::judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Delivered.
    Shown,
    /// Not delivered.
    Hidden,
    /// Delivered if the reader has a basis for the person now (the person's current state,
    /// judged as [`crate::access::decide`] judges `Supporters.Get`).
    IfBasisNow,
}

/// One change, as a write reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The subject.
    #[serde(rename = "s")]
    pub subject_id: String,
    /// What happened.
    #[serde(rename = "k")]
    pub kind: ChangeKind,
    /// For consent events: the purpose.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// For consent and objection events: the channel.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// On a change that may end a basis ([`ChangeKind::may_end_basis`]): the purposes the
    /// person had a basis for just before the write that made it, sorted (absent on other
    /// changes, and on rows written before it was recorded).
    #[serde(rename = "b", default, skip_serializing_if = "Option::is_none")]
    pub basis_before: Option<Vec<String>>,
}

impl Change {
    /// A change without purpose or channel.
    pub fn new(subject_id: &str, kind: ChangeKind) -> Self {
        Self {
            subject_id: subject_id.to_owned(),
            kind,
            purpose: None,
            channel: None,
            basis_before: None,
        }
    }

    /// How a reader declaring `purpose` sees this change (the reader's role and its right
    /// to the purpose are checked by the caller, per call):
    ///
    /// - a consent event of another purpose: never;
    /// - an objection on a channel the purpose does not use: never;
    /// - a change that may end a basis, with the purposes recorded before it: shown to the
    ///   purposes that had the basis, never to the others;
    /// - anything else: if the reader has a basis for the person now.
    pub fn judge(&self, purpose: &Purpose) -> Visibility {
        let consent_event = matches!(
            self.kind,
            ChangeKind::ConsentGranted | ChangeKind::ConsentWithdrawn
        );
        if consent_event && self.purpose.as_deref() != Some(purpose.id.as_str()) {
            return Visibility::Hidden;
        }
        if self.kind == ChangeKind::Objected
            && self.channel.is_some_and(|c| !purpose.channels.contains(&c))
        {
            return Visibility::Hidden;
        }
        match &self.basis_before {
            Some(had) if self.kind.may_end_basis() => {
                if had.contains(&purpose.id) {
                    Visibility::Shown
                } else {
                    Visibility::Hidden
                }
            }
            _ => Visibility::IfBasisNow,
        }
    }
}

/// A stored change with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// Where to resume after this event.
    pub cursor: Cursor,
    /// When (the time of the access-log entry of the write).
    pub at_us: i64,
    /// The change.
    pub change: Change,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    change: Change,
    at: i64,
}

/// A position in the feed: access-log sequence and index within the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// Sequence number of the access-log entry of the write.
    pub seq: u64,
    /// Index of the change within that write.
    pub index: u16,
}

impl Cursor {
    /// The store key.
    pub fn key(self) -> [u8; 10] {
        let mut k = [0u8; 10];
        k[..8].copy_from_slice(&self.seq.to_be_bytes());
        k[8..].copy_from_slice(&self.index.to_be_bytes());
        k
    }

    /// Parses a store key.
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let seq = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
        let index = u16::from_be_bytes(key.get(8..10)?.try_into().ok()?);
        (key.len() == 10).then_some(Self { seq, index })
    }

    /// The opaque text form given to clients (`<seq>.<index>`).
    pub fn encode(self) -> String {
        format!("{}.{}", self.seq, self.index)
    }

    /// Parses a client's cursor.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            InvalidInput::new(
                "cursor",
                "must be the `cursor` of an event this feed sent (or empty to start at the oldest)",
            )
        };
        let (seq, index) = text.trim().split_once('.').ok_or_else(bad)?;
        Ok(Self {
            seq: seq.parse().map_err(|_| bad())?,
            index: index.parse().map_err(|_| bad())?,
        })
    }

    /// The store key just after this cursor.
    pub fn after_key(self) -> Vec<u8> {
        let mut k = self.key().to_vec();
        k.push(0);
        k
    }
}

/// Encodes a change for the store.
pub fn encode(change: &Change, at_us: i64) -> Result<Vec<u8>> {
    serde_json::to_vec(&Stored {
        change: change.clone(),
        at: at_us,
    })
    .map_err(|e| crate::error::Error::Codec(e.to_string()))
}

/// Decodes a stored change.
pub fn decode(key: &[u8], value: &[u8]) -> Option<ChangeEvent> {
    let cursor = Cursor::from_key(key)?;
    let stored: Stored = serde_json::from_slice(value).ok()?;
    Some(ChangeEvent {
        cursor,
        at_us: stored.at,
        change: stored.change,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_orders_like_keys() {
        let a = Cursor { seq: 5, index: 1 };
        let b = Cursor { seq: 256, index: 0 };
        assert_eq!(Cursor::parse(&a.encode()).ok(), Some(a));
        assert_eq!(Cursor::from_key(&a.key()), Some(a));
        assert!(a.key() < b.key());
        assert!(a.after_key().as_slice() > a.key().as_slice());
        assert!(a.after_key().as_slice() < Cursor { seq: 5, index: 2 }.key().as_slice());
        for bad in ["", "x", "1", "1.x", "-1.0", "1.70000"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_form_round_trips() {
        let c = Change {
            subject_id: "s1".into(),
            kind: ChangeKind::ConsentWithdrawn,
            purpose: Some("newsletter".into()),
            channel: Some(Channel::Email),
            basis_before: Some(vec!["membership".into(), "newsletter".into()]),
        };
        let bytes = encode(&c, 42).unwrap_or_default();
        let e = decode(&Cursor { seq: 1, index: 0 }.key(), &bytes);
        assert_eq!(e.map(|e| (e.change, e.at_us)), Some((c, 42)));
        // Other changes store no list, and rows written before it existed still decode.
        let plain = encode(&Change::new("s1", ChangeKind::Tagged), 1).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&plain).contains("\"b\""));
        let old = br#"{"s":"s1","k":"erased","at":7}"#;
        let e = decode(&Cursor { seq: 2, index: 0 }.key(), old).map(|e| e.change);
        assert_eq!(e, Some(Change::new("s1", ChangeKind::Erased)));
    }

    #[test]
    fn a_purpose_sees_its_consent_and_the_ends_of_its_basis() {
        let reg = crate::purpose::Registry::new(crate::purpose::default_registry());
        let news = reg.get("newsletter").cloned().unwrap();
        let member = reg.get("membership").cloned().unwrap();
        let consent = |kind, purpose: &str| Change {
            purpose: Some(purpose.into()),
            channel: Some(Channel::Email),
            ..Change::new("s", kind)
        };
        let had = |kind, purposes: &[&str]| Change {
            basis_before: Some(purposes.iter().map(|p| (*p).to_owned()).collect()),
            ..Change::new("s", kind)
        };
        // Consent events: the purpose's own only.
        let sms = consent(ChangeKind::ConsentGranted, "sms-mobilisation");
        assert_eq!(sms.judge(&news), Visibility::Hidden);
        assert_eq!(sms.judge(&member), Visibility::Hidden);
        let granted = consent(ChangeKind::ConsentGranted, "newsletter");
        assert_eq!(granted.judge(&news), Visibility::IfBasisNow);
        let withdrawn = Change {
            basis_before: Some(vec!["membership".into(), "newsletter".into()]),
            ..consent(ChangeKind::ConsentWithdrawn, "newsletter")
        };
        assert_eq!(withdrawn.judge(&news), Visibility::Shown);
        assert_eq!(withdrawn.judge(&member), Visibility::Hidden);
        // Ending changes: to the purposes that had the basis.
        for kind in [ChangeKind::Erased, ChangeKind::Restricted] {
            assert_eq!(had(kind, &["membership"]).judge(&news), Visibility::Hidden);
            assert_eq!(had(kind, &["membership"]).judge(&member), Visibility::Shown);
            assert_eq!(had(kind, &[]).judge(&member), Visibility::Hidden);
            // Without the list (an old row): by the state now.
            assert_eq!(Change::new("s", kind).judge(&news), Visibility::IfBasisNow);
        }
        // Objections: on the purpose's channels only.
        let objected = |c| Change {
            channel: Some(c),
            ..had(ChangeKind::Objected, &["newsletter", "membership"])
        };
        assert_eq!(objected(Channel::Email).judge(&news), Visibility::Shown);
        assert_eq!(objected(Channel::Sms).judge(&news), Visibility::Hidden);
        assert_eq!(objected(Channel::Sms).judge(&member), Visibility::Shown);
        // Everything else: by the state now, whatever a list says.
        for kind in [
            ChangeKind::Created,
            ChangeKind::Updated,
            ChangeKind::Tagged,
            ChangeKind::Untagged,
            ChangeKind::Unrestricted,
        ] {
            assert_eq!(
                had(kind, &["newsletter"]).judge(&news),
                Visibility::IfBasisNow
            );
        }
    }
}
