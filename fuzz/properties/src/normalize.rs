//! Supporter normalization (`vault_core::supporter::normalize` and
//! `Supporter::normalized`).
//!
//! Properties: every normalizer is idempotent (the blind index of an email or a phone is an
//! HMAC of the normalized value, so normalizing twice must not change it, or the vault would
//! store the same person twice); each output has the canonical shape its doc promises; an
//! error names the field it is about and its reason never repeats the rejected value (errors
//! are logged, values are personal data); a whole supporter normalizes idempotently.

use std::collections::{BTreeMap, BTreeSet};

use vault_core::InvalidInput;
use vault_core::supporter::normalize;
use vault_core::{Address, Supporter};

/// Runs every normalizer on `data` (read as UTF-8, invalid bytes replaced), then on a
/// supporter whose fields are the `\n`-separated parts of `data`.
pub fn check(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let raw = raw.as_ref();

    idempotent("email", raw, normalize::email, |v| {
        assert_eq!(v, v.trim());
        assert_eq!(v, v.to_lowercase(), "an email must be lower-case");
        assert!(v.len() <= normalize::MAX_EMAIL_LEN);
        assert_eq!(v.matches('@').count(), 1, "a plain address has one '@'");
    });
    idempotent("phone", raw, normalize::phone, |v| {
        let digits = v.strip_prefix('+').expect("E.164 starts with '+'");
        assert!(
            !digits.is_empty() && digits.len() <= 15,
            "E.164 has 1 to 15 digits"
        );
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    });
    idempotent("address.postcode", raw, normalize::postcode, |v| {
        assert!(v.len() <= normalize::MAX_POSTCODE_LEN);
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b' ' || b == b'-')
        );
        assert!(
            !v.contains("  ") && v == v.trim(),
            "whitespace is collapsed"
        );
    });
    idempotent("address.country", raw, normalize::country, |v| {
        assert!(v.is_empty() || (v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase())));
    });
    idempotent("tags", raw, normalize::tag, |v| {
        assert!(!v.is_empty() && v.chars().count() <= normalize::MAX_TAG_LEN);
        // a-z, digits, `- _ : .`, and lower-case accented Latin letters (U+00C0 to U+024F).
        assert!(v.chars().all(|c| c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '-' | '_' | ':' | '.')
            || (('\u{00C0}'..='\u{024F}').contains(&c) && c.is_lowercase())));
    });
    idempotent(
        "given_name",
        raw,
        |s| normalize::text("given_name", s, normalize::MAX_NAME_LEN),
        |v| {
            assert_eq!(v, raw.trim(), "text keeps the value, trimmed");
            assert!(!v.chars().any(char::is_control));
        },
    );

    supporter_normalizes_idempotently(raw);
}

/// `f` accepts `raw` as `out` with `f(out) == out` and `shape(out)`, or refuses it with an
/// error about `field` that does not repeat `raw`.
fn idempotent(
    field: &str,
    raw: &str,
    f: impl Fn(&str) -> Result<String, InvalidInput>,
    shape: impl Fn(&str),
) {
    match f(raw) {
        Ok(out) => {
            shape(&out);
            assert_eq!(
                f(&out).as_ref(),
                Ok(&out),
                "{field}: normalizing a normalized value changed it"
            );
        }
        Err(e) => {
            assert_eq!(e.field, field, "the error names the wrong field");
            assert_no_leak(&e, raw);
        }
    }
}

/// The reasons are fixed ASCII wording, so an ASCII value may be a piece of it ("FR", "at
/// most"): only a value with a non-ASCII character is a leak for sure when a reason holds it.
/// A reason that formats the value in is caught all the same: most inputs have one.
fn assert_no_leak(e: &InvalidInput, raw: &str) {
    let value = raw.trim();
    if !value.is_ascii() {
        assert!(
            !e.reason.contains(value),
            "an error repeats the rejected value: {e}"
        );
    }
}

/// The supporter made of `raw`'s lines: given name, family name, email, phone, line 1,
/// line 2, postcode, city, country, source, tags (comma-separated), custom (`key=value`,
/// comma-separated).
fn supporter_from(raw: &str) -> Supporter {
    let mut parts = raw.split('\n');
    let mut next = || parts.next().unwrap_or_default().to_owned();
    let given_name = next();
    let family_name = next();
    let email = next();
    let phone = next();
    let address = Address {
        line1: next(),
        line2: next(),
        postcode: next(),
        city: next(),
        country: next(),
    };
    let source = next();
    let tags: BTreeSet<String> = next()
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let custom: BTreeMap<String, String> = next()
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Supporter {
        id: "00000000-0000-4000-8000-000000000000".into(),
        given_name,
        family_name,
        email,
        phone,
        address,
        tags,
        custom,
        source,
        created_at_us: 1,
        updated_at_us: 2,
    }
}

fn supporter_normalizes_idempotently(raw: &str) {
    let s = supporter_from(raw);
    if let Ok(n) = s.normalized() {
        assert_eq!(
            n.normalized().as_ref(),
            Ok(&n),
            "normalizing a normalized supporter changed it"
        );
        assert_eq!((n.id.as_str(), n.created_at_us), (s.id.as_str(), 1));
    }
}
