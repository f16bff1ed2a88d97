//! The change feed: what happened to which subject, for tools that follow the vault
//! (a mailer learning of a withdrawal at once).
//!
//! A change is written in the batch of the write it reports, keyed by the access-log
//! sequence number of that write's entry and its index within it. The access log's order is
//! global (replicas sharing a database race for its head), so the feed's cursor is global
//! too, and a reconnecting reader that resumes from its last cursor misses nothing. Events
//! carry ids, kinds and, for consent, the purpose and channel: never personal data.

use serde::{Deserialize, Serialize};

use crate::error::{InvalidInput, Result};
use crate::purpose::Channel;

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
}

impl Change {
    /// A change without purpose or channel.
    pub fn new(subject_id: &str, kind: ChangeKind) -> Self {
        Self {
            subject_id: subject_id.to_owned(),
            kind,
            purpose: None,
            channel: None,
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
        };
        let bytes = encode(&c, 42).unwrap_or_default();
        let e = decode(&Cursor { seq: 1, index: 0 }.key(), &bytes);
        assert_eq!(e.map(|e| (e.change, e.at_us)), Some((c, 42)));
    }
}
