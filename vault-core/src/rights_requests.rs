//! Rights request tickets: when a data subject's request arrived, and when it must be answered.
//!
//! GDPR art. 12(3): the controller answers a rights request (access, portability,
//! rectification, erasure, restriction, objection) "without undue delay and in any event
//! within one month of receipt". The DPO opens a [`RightsRequest`] when a request arrives,
//! the vault computes its due date with [`due_date`], lists the open and overdue ones, and
//! the DPO closes each with what was done. The tickets are the controller's evidence that
//! requests were answered in time.
//!
//! "One month" is read as the calendar rule the EU uses for periods expressed in months
//! (Regulation 1182/71, art. 3(2)(c)): the same day of the next month, or that month's last
//! day when it is shorter (31 January → 28 or 29 February, 31 March → 30 April), at the same
//! time of day, in UTC. The period thus lasts 28 to 31 days.
//!
//! Tickets are stored as JSON in [`crate::storage::Table::RightsRequests`], keyed by ticket
//! id. They hold no personal data: the kind, the dates, the subject's id (a random UUID,
//! when the person is already known), a reference (the ticket or letter number, never the
//! person's name or address) and what was done.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};

use crate::error::{Error, InvalidInput, Result};

/// Longest `reference` and `action`, in characters.
pub const MAX_TEXT_CHARS: usize = 200;

/// What the data subject asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    /// Right of access (art. 15).
    Access,
    /// Right to data portability (art. 20).
    Portability,
    /// Right to rectification (art. 16).
    Rectification,
    /// Right to erasure (art. 17).
    Erasure,
    /// Right to restriction of processing (art. 18).
    Restriction,
    /// Right to object (art. 21).
    Objection,
}

impl RequestKind {
    /// Every kind.
    pub const ALL: [RequestKind; 6] = [
        RequestKind::Access,
        RequestKind::Portability,
        RequestKind::Rectification,
        RequestKind::Erasure,
        RequestKind::Restriction,
        RequestKind::Objection,
    ];

    /// The API name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Access => "access",
            RequestKind::Portability => "portability",
            RequestKind::Rectification => "rectification",
            RequestKind::Erasure => "erasure",
            RequestKind::Restriction => "restriction",
            RequestKind::Objection => "objection",
        }
    }

    /// The GDPR article granting the right.
    pub fn article(self) -> u8 {
        match self {
            RequestKind::Access => 15,
            RequestKind::Rectification => 16,
            RequestKind::Erasure => 17,
            RequestKind::Restriction => 18,
            RequestKind::Portability => 20,
            RequestKind::Objection => 21,
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestKind {
    type Err = InvalidInput;
    fn from_str(s: &str) -> std::result::Result<Self, InvalidInput> {
        let wanted = s.trim().to_ascii_lowercase();
        RequestKind::ALL
            .into_iter()
            .find(|k| k.as_str() == wanted)
            .ok_or_else(|| {
                let names: Vec<&str> = RequestKind::ALL.iter().map(|k| k.as_str()).collect();
                InvalidInput::new("kind", format!("must be one of: {}", names.join(", ")))
            })
    }
}

/// Whether a ticket still awaits its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Received, not answered yet.
    Open,
    /// Answered (see `action`).
    Closed,
}

impl RequestStatus {
    /// The API name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Open => "open",
            RequestStatus::Closed => "closed",
        }
    }
}

/// A rights request ticket. Holds no personal data (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RightsRequest {
    /// Ticket id (a UUID).
    pub id: String,
    /// What the person asked for.
    pub kind: RequestKind,
    /// When the request was received, microseconds since the Unix epoch.
    pub received_at_us: i64,
    /// When the answer is due: [`due_date`] of `received_at_us`.
    pub due_at_us: i64,
    /// The supporter concerned, when known.
    pub subject_id: Option<String>,
    /// The controller's reference of the request (ticket or letter number).
    pub reference: String,
    /// Open or closed.
    pub status: RequestStatus,
    /// When it was closed.
    pub closed_at_us: Option<i64>,
    /// What was done to answer it (set when closed).
    pub action: Option<String>,
    /// Client id of who opened it.
    pub opened_by: String,
    /// Client id of who closed it.
    pub closed_by: Option<String>,
}

impl RightsRequest {
    /// Whether the ticket is open and its due date has passed at `as_of_us`.
    pub fn is_overdue(&self, as_of_us: i64) -> bool {
        self.status == RequestStatus::Open && as_of_us > self.due_at_us
    }

    /// The stored form.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Codec(e.to_string()))
    }

    /// Parses the stored form.
    pub fn from_json(raw: &[u8]) -> Result<Self> {
        serde_json::from_slice(raw).map_err(|_| {
            Error::Integrity(crate::error::IntegrityObject::Metadata(
                "rights request ticket",
            ))
        })
    }
}

fn datetime(field: &str, us: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map_err(|_| InvalidInput::new(field, "is outside the supported range of dates").into())
}

/// When a request received at `received_at_us` (microseconds since the Unix epoch) must be
/// answered: one calendar month later, same day of the month clamped to the month's last
/// day, same time of day, UTC. See the module documentation.
pub fn due_date(received_at_us: i64) -> Result<i64> {
    let received = datetime("received_at", received_at_us)?;
    let (year, month) = match received.month() {
        time::Month::December => (received.year() + 1, time::Month::January),
        m => (received.year(), m.next()),
    };
    let day = received.day().min(month.length(year));
    let out_of_range = || Error::from(InvalidInput::new("received_at", "is too far in the future"));
    let date = Date::from_calendar_date(year, month, day).map_err(|_| out_of_range())?;
    let due = received.replace_date(date);
    let nanos = due.unix_timestamp_nanos() / 1000;
    i64::try_from(nanos).map_err(|_| out_of_range())
}

/// Longest reference, in characters.
pub const MAX_REFERENCE_CHARS: usize = 64;

/// Checks a reference (a rights request's `reference`, a DPO action's `request_ref`): a
/// ticket or letter number, not free text, since it is kept in clear (in the ticket, the
/// access log and the erasure journal) after the person is erased. Either a ticket id (a
/// UUID), or an optional word of up to 16 ASCII letters (`REQ`, `letter`, `CNIL`) followed
/// by digits and separators (`-_./:#` and spaces), with at least one digit:
/// `REQ-2026-017`, `letter 2026-01-31`, `ticket#42`. A name, an email or a sentence does not
/// fit ("Letter from Bob Durand" is refused). Returns the trimmed reference.
pub fn validate_reference(field: &str, text: &str) -> Result<String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(InvalidInput::new(
            field,
            "is required: name the rights request (its ticket id, or a number such as REQ-2026-017)",
        )
        .into());
    }
    if uuid::Uuid::try_parse(t).is_ok() {
        return Ok(t.to_owned());
    }
    let word = t.chars().take_while(char::is_ascii_alphabetic).count();
    let rest = &t[word..];
    let ok = word <= 16
        && t.chars().count() <= MAX_REFERENCE_CHARS
        && rest.chars().any(|c| c.is_ascii_digit())
        && rest
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '_' | '.' | '/' | ':' | '#' | ' '));
    if ok {
        Ok(t.to_owned())
    } else {
        Err(InvalidInput::new(
            field,
            format!(
                "must be a ticket id, or a number with an optional prefix word (REQ-2026-017, \
                 letter 2026-01-31), at most {MAX_REFERENCE_CHARS} characters: it stays in \
                 clear after the person is erased, so it may hold no name or address"
            ),
        )
        .into())
    }
}

/// What the DPO did to close a request: a code, not free text (it stays in clear after the
/// person is erased). Several may be given, separated by commas.
pub const ACTIONS: [&str; 14] = [
    "answered",
    "exported",
    "erased",
    "rectified",
    "restricted",
    "unrestricted",
    "objection-recorded",
    "consent-withdrawn",
    "no-data-held",
    "extended",
    "refused-unfounded",
    "refused-excessive",
    "refused-identity-unverified",
    "withdrawn-by-person",
];

/// Checks a ticket's closing `action`: one or more of [`ACTIONS`], comma-separated.
/// Returns them normalized (trimmed, `, `-joined).
pub fn validate_action(text: &str) -> Result<String> {
    let codes: Vec<&str> = text.split(',').map(str::trim).collect();
    if codes.iter().all(|c| ACTIONS.contains(c)) && !text.trim().is_empty() {
        return Ok(codes.join(", "));
    }
    Err(InvalidInput::new(
        "action",
        format!(
            "must be one or more of: {} (comma-separated); it stays in clear after the \
             person is erased, so it is a code, not free text",
            ACTIONS.join(", ")
        ),
    )
    .into())
}

/// Checks a free-text field (`reference`, `action`): trimmed, non-empty, at most
/// [`MAX_TEXT_CHARS`] characters, no control characters. Returns the trimmed text.
pub fn validate_text(field: &str, text: &str) -> Result<String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(InvalidInput::new(field, "is required").into());
    }
    if t.chars().count() > MAX_TEXT_CHARS {
        return Err(InvalidInput::new(
            field,
            format!("must be at most {MAX_TEXT_CHARS} characters"),
        )
        .into());
    }
    if t.chars().any(char::is_control) {
        return Err(InvalidInput::new(field, "must not contain control characters").into());
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;
    use time::{Month, PrimitiveDateTime, Time};

    /// `y-m-d h:min:s.micro` UTC.
    fn at(y: i32, m: u8, d: u8, h: u8, min: u8, sec: u8, micro: u32) -> OffsetDateTime {
        let date = Date::from_calendar_date(y, Month::try_from(m).unwrap(), d).unwrap();
        let time = Time::from_hms_micro(h, min, sec, micro).unwrap();
        PrimitiveDateTime::new(date, time).assume_utc()
    }

    fn us(t: OffsetDateTime) -> i64 {
        i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap()
    }

    fn due(t: OffsetDateTime) -> OffsetDateTime {
        datetime_of(due_date(us(t)).unwrap())
    }

    fn datetime_of(us: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).unwrap()
    }

    #[test]
    fn references_are_numbers_and_actions_are_codes() {
        for ok in [
            "REQ-2026-017",
            "letter 2026-01-31",
            "ticket#42",
            "17",
            "CNIL/2026/44",
            "7f3e2a10-1b2c-4d5e-8f90-0123456789ab",
        ] {
            assert_eq!(validate_reference("r", ok).unwrap(), ok);
        }
        for bad in [
            "",
            "Durand",
            "Letter from Bob Durand bob.durand@example.fr",
            "REQ-12 Bob",
            "bob@example.fr 12",
            "REQ-R1",
            &"1".repeat(65),
        ] {
            assert!(validate_reference("r", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            validate_action(" erased,exported ").unwrap(),
            "erased, exported"
        );
        assert!(validate_action("export sent to Bob Durand").is_err());
        assert!(validate_action("").is_err());
    }

    #[test]
    fn one_calendar_month_clamped_to_the_last_day() {
        let cases = [
            (at(2025, 1, 15, 10, 30, 0, 0), at(2025, 2, 15, 10, 30, 0, 0)),
            (
                at(2025, 1, 31, 23, 59, 59, 999999),
                at(2025, 2, 28, 23, 59, 59, 999999),
            ),
            (at(2024, 1, 31, 8, 0, 0, 0), at(2024, 2, 29, 8, 0, 0, 0)),
            (at(2024, 1, 29, 8, 0, 0, 0), at(2024, 2, 29, 8, 0, 0, 0)),
            (at(2025, 1, 29, 8, 0, 0, 0), at(2025, 2, 28, 8, 0, 0, 0)),
            (at(2000, 1, 30, 0, 0, 0, 0), at(2000, 2, 29, 0, 0, 0, 0)),
            (at(2100, 1, 31, 0, 0, 0, 0), at(2100, 2, 28, 0, 0, 0, 0)),
            (at(2025, 3, 31, 12, 0, 0, 0), at(2025, 4, 30, 12, 0, 0, 0)),
            (at(2025, 5, 31, 12, 0, 0, 0), at(2025, 6, 30, 12, 0, 0, 0)),
            (at(2025, 8, 31, 12, 0, 0, 0), at(2025, 9, 30, 12, 0, 0, 0)),
            (at(2025, 10, 31, 12, 0, 0, 0), at(2025, 11, 30, 12, 0, 0, 0)),
            (
                at(2025, 12, 31, 17, 45, 0, 0),
                at(2026, 1, 31, 17, 45, 0, 0),
            ),
            (at(2025, 12, 1, 0, 0, 0, 0), at(2026, 1, 1, 0, 0, 0, 0)),
            (at(2024, 2, 29, 9, 0, 0, 0), at(2024, 3, 29, 9, 0, 0, 0)),
            (at(2025, 2, 28, 9, 0, 0, 0), at(2025, 3, 28, 9, 0, 0, 0)),
            (at(2025, 4, 30, 9, 0, 0, 0), at(2025, 5, 30, 9, 0, 0, 0)),
            (at(1970, 1, 1, 0, 0, 0, 0), at(1970, 2, 1, 0, 0, 0, 0)),
        ];
        for (received, expected) in cases {
            assert_eq!(due(received), expected, "received {received}");
        }
    }

    #[test]
    fn overdue_only_when_open_and_past_due() {
        let received = us(at(2025, 1, 31, 10, 0, 0, 0));
        let mut t = RightsRequest {
            id: "00000000-0000-4000-8000-000000000000".into(),
            kind: RequestKind::Access,
            received_at_us: received,
            due_at_us: due_date(received).unwrap(),
            subject_id: None,
            reference: "REF-1".into(),
            status: RequestStatus::Open,
            closed_at_us: None,
            action: None,
            opened_by: "c".into(),
            closed_by: None,
        };
        assert!(!t.is_overdue(t.due_at_us), "due at, not yet overdue");
        assert!(t.is_overdue(t.due_at_us + 1));
        t.status = RequestStatus::Closed;
        assert!(!t.is_overdue(t.due_at_us + 1));
        let back = RightsRequest::from_json(&t.to_json().unwrap()).unwrap();
        assert_eq!(back, t);
        assert!(RightsRequest::from_json(b"{").is_err());
    }

    #[test]
    fn kinds_parse_and_unknown_ones_name_the_accepted_kinds() {
        for k in RequestKind::ALL {
            assert_eq!(k.as_str().parse::<RequestKind>().unwrap(), k);
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        assert_eq!(
            " Erasure ".parse::<RequestKind>().unwrap(),
            RequestKind::Erasure
        );
        let e = "deletion".parse::<RequestKind>().unwrap_err();
        assert_eq!(e.field, "kind");
        for k in RequestKind::ALL {
            assert!(e.reason.contains(k.as_str()), "{}", e.reason);
        }
    }

    #[test]
    fn text_fields_are_bounded() {
        assert_eq!(validate_text("reference", "  REF-7 ").unwrap(), "REF-7");
        assert!(validate_text("reference", " ").is_err());
        assert!(validate_text("reference", "a\nb").is_err());
        assert!(validate_text("action", &"é".repeat(MAX_TEXT_CHARS)).is_ok());
        assert!(validate_text("action", &"é".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }

    #[test]
    fn dates_out_of_range_are_refused_not_panicking() {
        assert!(due_date(i64::MAX).is_err());
        assert!(due_date(i64::MIN).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// From 1900 to 2200: due is after receipt, 28 to 31 days later, at the same time
        /// of day, in the next calendar month, on the same day or that month's last day.
        #[test]
        fn due_is_one_calendar_month_later(
            received in -2_208_988_800_000_000i64..7_258_118_400_000_000i64
        ) {
            let due_us = due_date(received).unwrap();
            prop_assert!(due_us > received);
            let days = (due_us - received) / 86_400_000_000;
            let rest = (due_us - received) % 86_400_000_000;
            prop_assert!((28..=31).contains(&days), "{} days", days);
            prop_assert_eq!(rest, 0, "same time of day");
            let (r, d) = (datetime_of(received), datetime_of(due_us));
            prop_assert_eq!(r.time(), d.time());
            prop_assert_eq!(d.month(), r.month().next());
            let last = d.month().length(d.year());
            prop_assert!(d.day() == r.day() || (d.day() == last && r.day() > last));
        }
    }
}
