//! Normalization and validation of the supporter fields a client sends.
//!
//! Every function here is pure: it takes the raw value of one field, checks it against the
//! field's rules and returns the canonical form the vault stores, or an [`InvalidInput`]
//! naming the field and the broken rule.
//!
//! Normalization is what makes dedupe by blind index work. The blind index of an email or a
//! phone number is an HMAC of the *normalized* value, so two spellings of the same address
//! (`Alice@Example.org ` and `alice@example.org`) or of the same number (`06 12 34 56 78`
//! and `+33612345678`) must normalize to the same bytes, or the vault would store the same
//! person twice without noticing. For the same reason every normalizer is idempotent:
//! normalizing an already normalized value returns it unchanged.
//!
//! Error reasons state the rule in words a client developer can act on and never contain
//! the rejected value: that value is personal data, and errors are logged.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::InvalidInput;
use unicode_normalization::UnicodeNormalization;

/// Longest email address accepted, in bytes of the normalized address (RFC 5321 path limit
/// less the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest given or family name accepted, in characters.
pub const MAX_NAME_LEN: usize = 200;
/// Longest postal address line accepted, in characters.
pub const MAX_ADDRESS_LINE_LEN: usize = 200;
/// Longest city name accepted, in characters.
pub const MAX_CITY_LEN: usize = 100;
/// Longest postcode accepted, in characters, after whitespace is collapsed.
pub const MAX_POSTCODE_LEN: usize = 16;
/// Longest `source` (where the supporter was collected) accepted, in characters.
pub const MAX_SOURCE_LEN: usize = 200;
/// Longest tag accepted, in characters.
pub const MAX_TAG_LEN: usize = 64;
/// Most distinct tags one supporter may carry.
pub const MAX_TAGS: usize = 100;
/// Most custom fields one supporter may carry.
pub const MAX_CUSTOM_ENTRIES: usize = 32;
/// Longest custom-field key accepted, in characters.
pub const MAX_CUSTOM_KEY_LEN: usize = 64;
/// Longest custom-field value accepted, in characters.
pub const MAX_CUSTOM_VALUE_LEN: usize = 1024;
/// Longest raw phone number accepted, in characters, before parsing. A phone number with
/// punctuation fits comfortably; anything longer is not a phone number.
pub const MAX_PHONE_INPUT_LEN: usize = 64;

/// How many tags a request may send (duplicates included) before [`tags`] gives up without
/// looking at the rest. Bounds the work a hostile request can cause.
const MAX_TAG_INPUTS: usize = 4 * MAX_TAGS;

/// Region used to read phone numbers written without a country code.
const DEFAULT_PHONE_REGION: phonenumber::country::Id = phonenumber::country::Id::FR;

/// Field name of email errors.
const EMAIL_FIELD: &str = "email";
/// Field name of phone errors.
const PHONE_FIELD: &str = "phone";
/// Field name of postcode errors.
const POSTCODE_FIELD: &str = "address.postcode";
/// Field name of country errors.
const COUNTRY_FIELD: &str = "address.country";
/// Field name of tag errors.
const TAGS_FIELD: &str = "tags";
/// Field name of custom-field errors when the key itself cannot be named.
const CUSTOM_FIELD: &str = "custom";

/// Normalizes an email address: trims surrounding whitespace and lower-cases the whole
/// address (the vault treats emails case-insensitively, local part included).
///
/// Accepts a plain `local@domain` address (no display name, no quoted local part, no
/// whitespace) whose domain has at least one dot and is not an IP address, at most
/// [`MAX_EMAIL_LEN`] bytes once normalized.
pub fn email(raw: &str) -> Result<String, InvalidInput> {
    let err = |reason: &str| InvalidInput::new(EMAIL_FIELD, reason);
    let too_long = || err(&format!("must be at most {MAX_EMAIL_LEN} bytes long"));

    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(err("must not be empty"));
    }
    // Lower-casing can shrink a string at most threefold (U+212A KELVIN SIGN is 3 bytes,
    // its lower case 'k' is 1), so anything this long stays too long: reject it before
    // allocating.
    if trimmed.len() > 4 * MAX_EMAIL_LEN {
        return Err(too_long());
    }
    if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(err("must not contain spaces or control characters"));
    }
    let lowered = trimmed.to_lowercase();
    if lowered.len() > MAX_EMAIL_LEN {
        return Err(too_long());
    }

    let options = email_address::Options::default()
        .with_required_tld()
        .without_domain_literal()
        .without_display_text();
    let parsed = email_address::EmailAddress::parse_with_options(&lowered, options)
        .map_err(|e| err(email_reason(&e)))?;

    if parsed.local_part().starts_with('"') {
        return Err(err(
            "must not use a quoted local part; send a plain address such as name@example.org",
        ));
    }
    let domain = parsed.domain();
    // Domain literals (`[192.0.2.1]`) are refused by the parser options; a bare dotted IP
    // address parses as a text domain, but no top-level domain is all digits.
    let tld = domain.rsplit('.').next().unwrap_or(domain);
    if tld.is_empty() || tld.chars().all(|c| c.is_ascii_digit()) {
        return Err(err(
            "must have a domain name, not an IP address, after the '@' (such as example.org)",
        ));
    }
    Ok(lowered)
}

/// The rule behind an email parse error, in words a client developer can act on.
fn email_reason(e: &email_address::Error) -> &'static str {
    use email_address::Error as E;
    match e {
        E::MissingSeparator => "must contain an '@' between the local part and the domain",
        E::LocalPartEmpty => "must have a non-empty local part before the '@'",
        E::LocalPartTooLong => "must have a local part of at most 64 bytes before the '@'",
        E::DomainEmpty => "must have a domain after the '@'",
        E::DomainTooLong => "must have a domain of at most 254 bytes",
        E::SubDomainEmpty | E::DomainInvalidSeparator => {
            "must have a domain made of non-empty labels separated by single dots"
        }
        E::SubDomainTooLong => "must have domain labels of at most 63 characters each",
        E::DomainTooFew => {
            "must have a domain with at least one dot after the '@' (such as example.org)"
        }
        E::UnsupportedDomainLiteral | E::InvalidIPAddress => {
            "must have a domain name, not an IP address, after the '@' (such as example.org)"
        }
        E::UnsupportedDisplayName | E::MissingDisplayName | E::MissingEndBracket => {
            "must be a bare address such as name@example.org, without a display name or angle brackets"
        }
        E::UnbalancedQuotes | E::InvalidComment | E::InvalidCharacter => {
            "is not a valid email address: it contains a character not allowed where it appears"
        }
    }
}

/// Normalizes a phone number to E.164 (`+33612345678`).
///
/// Numbers without a country code are read as French (`06 12 34 56 78`, `06.12.34.56.78`);
/// others must start with `+` or the international prefix `00` (`+32 470 12 34 56`,
/// `0033612345678`). Only digits, spaces, `+`, `-`, `.`, `(` and `)` are accepted, with at
/// most one `+`, placed first; the number must be valid for its country (right length and
/// an allocated range).
///
/// The errors tell two cases apart: a string that cannot be read as a phone number at all
/// (written for the default region FR, or wanting international format), and a number that
/// reads fine but that its country's numbering plan does not hold (an unallocated range, a
/// wrong length, an unknown country code).
pub fn phone(raw: &str) -> Result<String, InvalidInput> {
    let err = |reason: &str| InvalidInput::new(PHONE_FIELD, reason);
    let unreadable = || {
        err("is not a phone number written for the default region FR; \
             use international format such as +33612345678")
    };

    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(err("must not be empty"));
    }
    if trimmed.chars().nth(MAX_PHONE_INPUT_LEN).is_some() {
        return Err(err(&format!(
            "must be at most {MAX_PHONE_INPUT_LEN} characters long"
        )));
    }
    // The phonenumber crate has panicked on odd input in the past (an unwrap in its
    // natural-format parser, whisperfish/rust-phonenumber#43). Only let through the plain
    // shapes people type: no letters, no `tel:` URIs, no extensions, no non-ASCII.
    if !trimmed
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '.' | '(' | ')'))
    {
        return Err(err(
            "may contain only digits, spaces, '+', '-', '.', '(' and ')'",
        ));
    }
    if trimmed.rfind('+').is_some_and(|i| i != 0) {
        return Err(err(
            "may contain a '+' only as its first character, before the country code",
        ));
    }
    let digits = trimmed.chars().filter(char::is_ascii_digit).count();
    if digits == 0 {
        return Err(err("must contain digits"));
    }

    let number = phonenumber::parse(Some(DEFAULT_PHONE_REGION), trimmed).map_err(|e| match e {
        phonenumber::ParseError::InvalidCountryCode => err(UNKNOWN_COUNTRY_CODE),
        _ => unreadable(),
    })?;
    if !phonenumber::is_valid(&number) {
        return Err(err(&invalid_number(&number)));
    }
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    // E.164: '+' then at most 15 digits. Anything else means the parser went astray.
    let well_formed = e164.len() <= 16
        && e164
            .strip_prefix('+')
            .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
    if !well_formed {
        return Err(unreadable());
    }
    Ok(e164)
}

/// The reason for a number whose country code no country uses.
const UNKNOWN_COUNTRY_CODE: &str =
    "has a country code no country uses; check the digits after '+' (or '00')";

/// Why a number that parses is not valid: no country uses its country code, its length is
/// not one its country's numbers have, or (the right length) its range is not allocated, as
/// `+33 7 12 34 56 78` (French mobiles start 06 or 073 to 079). It names the region (`FR`),
/// never a digit of the number.
fn invalid_number(number: &phonenumber::PhoneNumber) -> String {
    use phonenumber::metadata::DATABASE;
    let Some(meta) = number.metadata(&DATABASE) else {
        return UNKNOWN_COUNTRY_CODE.to_owned();
    };
    let region = meta.id();
    let national = number.national().value().to_string();
    let length = u16::try_from(national.len()).unwrap_or(u16::MAX);
    // The lengths of every kind of number the plan holds (the general descriptor alone
    // often lists none).
    let d = meta.descriptors();
    let kinds = [
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ];
    let possible = std::iter::once(d.general())
        .chain(kinds.into_iter().flatten())
        .any(|kind| kind.possible_length().contains(&length));
    if possible {
        format!("is not a valid number for {region} (unallocated range)")
    } else {
        format!("is not a valid number for {region} (wrong length for its numbers)")
    }
}

/// Normalizes a free-text field (`given_name`, `family_name`, address lines, `city`,
/// `source`, custom values): trims surrounding whitespace, rejects control characters
/// (line breaks and tabs included) and values longer than `max_chars` characters (counted
/// as Unicode scalar values, not bytes). An empty value stays empty: these fields are
/// optional.
///
/// Case is kept: names are stored as the supporter wrote them.
pub fn text(field: &str, raw: &str, max_chars: usize) -> Result<String, InvalidInput> {
    let trimmed = raw.trim();
    // Stops counting at the first character over the limit.
    if trimmed.chars().nth(max_chars).is_some() {
        return Err(InvalidInput::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(InvalidInput::new(
            field,
            "must not contain control characters such as line breaks or tabs",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Normalizes a postcode: trims, collapses each internal run of whitespace to one space and
/// upper-cases. Accepts ASCII letters and digits, spaces and `-`, at most
/// [`MAX_POSTCODE_LEN`] characters once collapsed. An empty value stays empty.
pub fn postcode(raw: &str) -> Result<String, InvalidInput> {
    let err = |reason: String| InvalidInput::new(POSTCODE_FIELD, reason);
    let too_long = || err(format!("must be at most {MAX_POSTCODE_LEN} characters"));

    // Built word by word so a huge input is rejected without being copied.
    let mut collapsed = String::new();
    for word in raw.split_whitespace() {
        if !word.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(err(
                "may contain only ASCII letters, digits, spaces and '-'".to_owned(),
            ));
        }
        // All ASCII from here: bytes are characters.
        let separator = usize::from(!collapsed.is_empty());
        if collapsed.len() + separator + word.len() > MAX_POSTCODE_LEN {
            return Err(too_long());
        }
        if separator == 1 {
            collapsed.push(' ');
        }
        collapsed.push_str(word);
    }
    Ok(collapsed.to_ascii_uppercase())
}

/// Normalizes a country code: trims and upper-cases. Accepts exactly two ASCII letters, the
/// form of an ISO 3166-1 alpha-2 code (`FR`, `BE`), or an empty value (optional field).
/// Only the form is checked, not that the code is assigned.
pub fn country(raw: &str) -> Result<String, InvalidInput> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed.len() != 2 || !trimmed.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(InvalidInput::new(
            COUNTRY_FIELD,
            "must be an ISO 3166-1 alpha-2 code of exactly two letters, such as FR or BE",
        ));
    }
    Ok(trimmed.to_ascii_uppercase())
}

/// Normalizes one tag: trims, composes (Unicode NFC) and lower-cases. Accepts 1 to
/// [`MAX_TAG_LEN`] characters from `a-z`, the accented Latin letters (`é`, `ç`, `œ`...:
/// Latin-1 Supplement and Latin Extended-A/B), `0-9`, `-`, `_`, `:` and `.`, starting with
/// a letter or digit.
///
/// Why letters and not a fold to ASCII: a campaign's tags are words (`bénévole`, `élu`),
/// shown back in exports and segments as written; folding would print `benevole`. NFC makes
/// `é` typed as one character or as `e` + combining accent the same tag. Other scripts stay
/// refused, so that no tag can look like another (Cyrillic `а` beside Latin `a`); signs that
/// are canonically a letter (the KELVIN SIGN) become that letter.
pub fn tag(raw: &str) -> Result<String, InvalidInput> {
    let err = |reason: String| InvalidInput::new(TAGS_FIELD, reason);

    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(err("must not be empty".to_owned()));
    }
    // Bound the work before normalizing: NFC never makes a string longer in characters
    // than 3× (and a valid tag is at most MAX_TAG_LEN characters).
    if trimmed.chars().nth(4 * MAX_TAG_LEN).is_some() {
        return Err(err(format!("must be at most {MAX_TAG_LEN} characters")));
    }
    let lowered: String = trimmed.nfc().flat_map(char::to_lowercase).nfc().collect();
    if lowered.chars().nth(MAX_TAG_LEN).is_some() {
        return Err(err(format!("must be at most {MAX_TAG_LEN} characters")));
    }
    if !lowered.chars().all(|c| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || matches!(c, '-' | '_' | ':' | '.')
            || is_accented_latin_letter(c)
    }) {
        return Err(err(
            "may contain only letters (a-z and accented Latin letters such as é, ç, œ), \
             digits, '-', '_', ':' and '.'"
                .to_owned(),
        ));
    }
    if !lowered
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || is_accented_latin_letter(c))
    {
        return Err(err("must start with a letter or a digit".to_owned()));
    }
    Ok(lowered)
}

/// A lower-case letter (Unicode `Ll`) of the Latin-1 Supplement or Latin Extended-A/B
/// blocks (`à`-`ÿ`, `œ`, `ŝ`...), once composed: the accented letters of French and its
/// neighbours; not the other letters of those blocks (`ǀ`, a click letter, looks like `|`).
fn is_accented_latin_letter(c: char) -> bool {
    ('\u{00C0}'..='\u{024F}').contains(&c) && c.is_lowercase()
}

/// Normalizes a list of tags with [`tag`] and removes duplicates.
///
/// Fails if there are more than [`MAX_TAGS`] distinct tags. To bound the work a hostile
/// request causes, it stops at the first tag past the limit, and stops reading after
/// `4 × MAX_TAGS` inputs even if they are duplicates.
pub fn tags<'a>(raw: impl IntoIterator<Item = &'a str>) -> Result<BTreeSet<String>, InvalidInput> {
    let mut out = BTreeSet::new();
    for (index, value) in raw.into_iter().enumerate() {
        if index >= MAX_TAG_INPUTS {
            return Err(InvalidInput::new(
                TAGS_FIELD,
                format!("must list at most {MAX_TAG_INPUTS} tags, duplicates included"),
            ));
        }
        let normalized = tag(value).map_err(|e| {
            InvalidInput::new(TAGS_FIELD, format!("tag at index {index} {}", e.reason))
        })?;
        out.insert(normalized);
        if out.len() > MAX_TAGS {
            return Err(InvalidInput::new(
                TAGS_FIELD,
                format!("must hold at most {MAX_TAGS} distinct tags"),
            ));
        }
    }
    Ok(out)
}

/// Normalizes custom fields.
///
/// Keys are trimmed and must be 1 to [`MAX_CUSTOM_KEY_LEN`] characters from `a-z`, `0-9`,
/// `_` and `-`, starting with a letter. Keys are not lower-cased for the caller: an
/// upper-case letter is an error, so that two clients never write the same field under two
/// spellings. A key may appear only once (after trimming). Values go through [`text`] with
/// [`MAX_CUSTOM_VALUE_LEN`]; an empty value is allowed. At most [`MAX_CUSTOM_ENTRIES`]
/// entries; reading stops at the first one past the limit.
///
/// Errors name the field `custom.<key>` when the key is valid, `custom` otherwise.
pub fn custom<'a>(
    raw: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<BTreeMap<String, String>, InvalidInput> {
    let mut out = BTreeMap::new();
    for (index, (raw_key, raw_value)) in raw.into_iter().enumerate() {
        if index >= MAX_CUSTOM_ENTRIES {
            return Err(InvalidInput::new(
                CUSTOM_FIELD,
                format!("must hold at most {MAX_CUSTOM_ENTRIES} entries"),
            ));
        }
        let key = custom_key(raw_key).map_err(|reason| {
            InvalidInput::new(CUSTOM_FIELD, format!("key at position {index} {reason}"))
        })?;
        let field = format!("{CUSTOM_FIELD}.{key}");
        if out.contains_key(key) {
            return Err(InvalidInput::new(
                field,
                "key appears more than once (keys are compared after trimming whitespace)",
            ));
        }
        let value = text(&field, raw_value, MAX_CUSTOM_VALUE_LEN)?;
        out.insert(key.to_owned(), value);
    }
    Ok(out)
}

/// Checks one custom-field key; returns it trimmed, or the broken rule.
fn custom_key(raw: &str) -> Result<&str, String> {
    let key = raw.trim();
    if key.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if key.chars().nth(MAX_CUSTOM_KEY_LEN).is_some() {
        return Err(format!("must be at most {MAX_CUSTOM_KEY_LEN} characters"));
    }
    if key.chars().any(|c| c.is_uppercase()) {
        return Err("must not contain upper-case letters: custom keys are lower-case".to_owned());
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    {
        return Err("may contain only letters a-z, digits, '_' and '-'".to_owned());
    }
    if !key.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a letter a-z".to_owned());
    }
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ---- email ----------------------------------------------------------------------

    #[test]
    fn email_trims_and_lowercases() {
        assert_eq!(
            email("  Alice.Martin@Example.ORG \t").unwrap(),
            "alice.martin@example.org"
        );
        assert_eq!(email("ALICE@EXAMPLE.FR").unwrap(), "alice@example.fr");
        assert_eq!(
            email("a+tag@sub.example.co.uk").unwrap(),
            "a+tag@sub.example.co.uk"
        );
    }

    #[test]
    fn email_rejects_bad_syntax() {
        for bad in [
            "",
            "   ",
            "alice",
            "alice@",
            "@example.org",
            "a@b",
            "alice@localhost",
            "alice martin@example.org",
            "alice@exa mple.org",
            "alice@@example.org",
            "alice@example..org",
            "alice@.example.org",
            "alice@example.org.",
            "alice@[192.0.2.1]",
            "alice@[IPv6:2001:db8::1]",
            "alice@192.0.2.1",
            "Alice <alice@example.org>",
            "<alice@example.org>",
            "\"alice\"@example.org",
            "\"alice martin\"@example.org",
            "ali\u{7}ce@example.org",
        ] {
            let e = email(bad).unwrap_err();
            assert_eq!(e.field, "email", "{bad:?}");
        }
        // Trailing newline is surrounding whitespace, so it is trimmed, not rejected.
        assert!(email("alice@example.org\n").is_ok());
    }

    #[test]
    fn email_rejects_oversize() {
        // Each label under 63 bytes, the whole over 254.
        let domain = format!(
            "{}.{}.{}.{}.org",
            "d".repeat(60),
            "e".repeat(60),
            "f".repeat(60),
            "g".repeat(60)
        );
        let long = format!("{}@{domain}", "l".repeat(20));
        assert!(long.len() > MAX_EMAIL_LEN);
        let e = email(&long).unwrap_err();
        assert_eq!(e.reason, "must be at most 254 bytes long");
        assert!(email(&"a".repeat(1_000_000)).is_err());
        let local = format!("{}@example.org", "l".repeat(65));
        assert!(email(&local).is_err());
    }

    // ---- phone ----------------------------------------------------------------------

    #[test]
    fn phone_french_variants_normalize_to_e164() {
        for ok in [
            "06 12 34 56 78",
            "+33 6 12 34 56 78",
            "0033612345678",
            "06.12.34.56.78",
            "0612345678",
            "06-12-34-56-78",
            "+33 (0)6 12 34 56 78",
            "  +33612345678  ",
            "+33612345678",
        ] {
            assert_eq!(phone(ok).unwrap(), "+33612345678", "{ok:?}");
        }
        assert_eq!(phone("01 23 45 67 89").unwrap(), "+33123456789");
    }

    #[test]
    fn phone_foreign_numbers() {
        assert_eq!(phone("+32 470 12 34 56").unwrap(), "+32470123456");
        assert_eq!(phone("0032 470 12 34 56").unwrap(), "+32470123456");
        assert_eq!(phone("+44 20 7946 0958").unwrap(), "+442079460958");
    }

    #[test]
    fn phone_rejects_bad() {
        for bad in [
            "",
            "   ",
            "06 12 34",
            "06 12 34 56 78 90 12",
            "00 00 00 00 00",
            "+999 123456789",
            "+",
            "++33612345678",
            "06+12345678",
            "tel:+33612345678",
            "+33612345678;ext=12",
            "06 12 34 56 78 ext 12",
            "06/12/34/56/78",
            "０６１２３４５６７８",
            "abc",
            "()-. ",
        ] {
            let e = phone(bad).unwrap_err();
            assert_eq!(e.field, "phone", "{bad:?}");
        }
        let long = "0".repeat(MAX_PHONE_INPUT_LEN + 1);
        assert_eq!(
            phone(&long).unwrap_err().reason,
            "must be at most 64 characters long"
        );
        assert_eq!(
            phone("06 12 34").unwrap_err().reason,
            "is not a valid number for FR (wrong length for its numbers)"
        );
    }

    #[test]
    fn phone_errors_say_the_real_reason() {
        // Reads as a French mobile, but 071 is not an allocated range.
        for unallocated in ["+33712345678", "07 12 34 56 78", "0033 7 12 34 56 78"] {
            assert_eq!(
                phone(unallocated).unwrap_err().reason,
                "is not a valid number for FR (unallocated range)",
                "{unallocated:?}"
            );
        }
        assert_eq!(
            phone("+32 470 12 34").unwrap_err().reason,
            "is not a valid number for BE (wrong length for its numbers)"
        );
        assert_eq!(
            phone("+999 123456789").unwrap_err().reason,
            "has a country code no country uses; check the digits after '+' (or '00')"
        );
        // Only a string that cannot be read as a number at all is told to use international
        // format.
        for unreadable in ["()-. ", "+", "++33612345678"] {
            let reason = phone(unreadable).unwrap_err().reason;
            assert!(!reason.contains("unallocated"), "{unreadable:?}: {reason}");
        }
        assert!(
            phone("06")
                .unwrap_err()
                .reason
                .contains("use international format such as +33612345678")
        );
    }

    // ---- text -----------------------------------------------------------------------

    #[test]
    fn text_trims_and_keeps_case() {
        assert_eq!(
            text("given_name", "  Élodie  ", MAX_NAME_LEN).unwrap(),
            "Élodie"
        );
        assert_eq!(text("city", "", MAX_CITY_LEN).unwrap(), "");
        assert_eq!(text("city", "   ", MAX_CITY_LEN).unwrap(), "");
        assert_eq!(
            text("source", " Fête de l'Huma 2024 ", MAX_SOURCE_LEN).unwrap(),
            "Fête de l'Huma 2024"
        );
    }

    #[test]
    fn text_counts_chars_not_bytes() {
        let ok = "é".repeat(MAX_NAME_LEN);
        assert!(ok.len() > MAX_NAME_LEN);
        assert_eq!(text("family_name", &ok, MAX_NAME_LEN).unwrap(), ok);
        let too_long = "é".repeat(MAX_NAME_LEN + 1);
        let e = text("family_name", &too_long, MAX_NAME_LEN).unwrap_err();
        assert_eq!(e.field, "family_name");
        assert_eq!(e.reason, "must be at most 200 characters");
    }

    #[test]
    fn text_rejects_control_characters() {
        for bad in [
            "Ali\nce",
            "Ali\tce",
            "Ali\u{0}ce",
            "Ali\u{1b}[31mce",
            "Ali\u{85}ce",
            "A\rB",
        ] {
            let e = text("given_name", bad, MAX_NAME_LEN).unwrap_err();
            assert_eq!(e.field, "given_name", "{bad:?}");
        }
    }

    // ---- postcode / country -----------------------------------------------------------

    #[test]
    fn postcode_normalizes() {
        assert_eq!(postcode(" 75011 ").unwrap(), "75011");
        assert_eq!(postcode("sw1a   1aa").unwrap(), "SW1A 1AA");
        assert_eq!(postcode("sw1a\t1aa").unwrap(), "SW1A 1AA");
        assert_eq!(postcode("1234-567").unwrap(), "1234-567");
        assert_eq!(postcode("").unwrap(), "");
        assert_eq!(postcode("  ").unwrap(), "");
    }

    #[test]
    fn postcode_rejects_bad() {
        for bad in [
            "75011!",
            "750_11",
            "ß1",
            "７５０１１",
            "12345678901234567",
            &"1 ".repeat(100),
        ] {
            let e = postcode(bad).unwrap_err();
            assert_eq!(e.field, "address.postcode", "{bad:?}");
        }
        assert!(postcode("1234567890123456").is_ok());
        assert_eq!(postcode("12345678 1234567").unwrap(), "12345678 1234567");
        // Whitespace runs count as one space, however long they are.
        let spaced = format!("ab{}12", "\t".repeat(1000));
        assert_eq!(postcode(&spaced).unwrap(), "AB 12");
        assert_eq!(
            postcode("ＡＢＣＤＥＦＧ").unwrap_err().reason,
            "may contain only ASCII letters, digits, spaces and '-'"
        );
    }

    #[test]
    fn country_normalizes() {
        assert_eq!(country(" fr ").unwrap(), "FR");
        assert_eq!(country("Be").unwrap(), "BE");
        assert_eq!(country("").unwrap(), "");
        for bad in ["F", "FRA", "F1", "é1", "ÉÉ", "F R", "12"] {
            let e = country(bad).unwrap_err();
            assert_eq!(e.field, "address.country", "{bad:?}");
        }
    }

    // ---- tags -----------------------------------------------------------------------

    #[test]
    fn tag_normalizes() {
        assert_eq!(tag(" Volunteer ").unwrap(), "volunteer");
        assert_eq!(
            tag("event:2024.rally_paris-11").unwrap(),
            "event:2024.rally_paris-11"
        );
        assert_eq!(tag("9th").unwrap(), "9th");
        // French words keep their accents; composed and decomposed input are one tag.
        assert_eq!(tag("Bénévole").unwrap(), "bénévole");
        assert_eq!(tag("Be\u{0301}ne\u{0301}vole").unwrap(), "bénévole");
        assert_eq!(tag("ÉLU:Œuvre").unwrap(), "élu:œuvre");
        assert_eq!(tag("Ça-va").unwrap(), "ça-va");
        // NFC maps the KELVIN SIGN to K: one tag, not a look-alike of another.
        assert_eq!(tag("\u{212A}elvin").unwrap(), "kelvin");
        assert_eq!(
            tag(&"a".repeat(MAX_TAG_LEN)).unwrap(),
            "a".repeat(MAX_TAG_LEN)
        );
    }

    #[test]
    fn tag_rejects_bad() {
        for bad in [
            "",
            " ",
            "-lead",
            ".x",
            ":x",
            "_x",
            "two words",
            "caf\u{0435}",
            "\u{0430}dmin",
            "a\u{01C0}b",
            "é\u{0300}\u{0300}",
            "a/b",
            &"a".repeat(MAX_TAG_LEN + 1),
        ] {
            let e = tag(bad).unwrap_err();
            assert_eq!(e.field, "tags", "{bad:?}");
        }
    }

    #[test]
    fn tags_dedupes_and_sorts() {
        let got = tags(["b", "A", "a", " B ", "c"]).unwrap();
        assert_eq!(got.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(tags([]).unwrap().is_empty());
        let e = tags(["ok", "not ok"]).unwrap_err();
        assert_eq!(e.field, "tags");
        assert!(e.reason.starts_with("tag at index 1 "), "{}", e.reason);
    }

    #[test]
    fn tags_limits() {
        let names: Vec<String> = (0..MAX_TAGS).map(|i| format!("t{i}")).collect();
        assert_eq!(
            tags(names.iter().map(String::as_str)).unwrap().len(),
            MAX_TAGS
        );

        let names: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
        let e = tags(names.iter().map(String::as_str)).unwrap_err();
        assert_eq!(e.reason, "must hold at most 100 distinct tags");

        // Many duplicates are fine up to the input cap...
        assert_eq!(
            tags(std::iter::repeat_n("x", MAX_TAG_INPUTS))
                .unwrap()
                .len(),
            1
        );
        // ...and past it, reading stops early: an endless iterator terminates.
        let e = tags(std::iter::repeat("x")).unwrap_err();
        assert_eq!(e.field, "tags");
        let e = tags((0..).map(|_| "bad tag")).unwrap_err();
        assert_eq!(e.field, "tags");
    }

    // ---- custom ---------------------------------------------------------------------

    #[test]
    fn custom_normalizes() {
        let got = custom([
            (" shirt_size ", " M "),
            ("ward-2", ""),
            ("z9", "Quartier\u{a0}Nord"),
        ])
        .unwrap();
        assert_eq!(got.get("shirt_size").map(String::as_str), Some("M"));
        assert_eq!(got.get("ward-2").map(String::as_str), Some(""));
        assert_eq!(
            got.get("z9").map(String::as_str),
            Some("Quartier\u{a0}Nord")
        );
        assert!(custom([]).unwrap().is_empty());
    }

    #[test]
    fn custom_rejects_bad_keys() {
        for bad in [
            "",
            " ",
            "Shirt",
            "shirt size",
            "9lives",
            "_x",
            "-x",
            "clé",
            &"k".repeat(MAX_CUSTOM_KEY_LEN + 1),
        ] {
            let e = custom([(bad, "v")]).unwrap_err();
            assert_eq!(e.field, "custom", "{bad:?}");
        }
        let e = custom([("Shirt", "v")]).unwrap_err();
        assert!(e.reason.contains("lower-case"), "{}", e.reason);
        assert!(custom([(&*"k".repeat(MAX_CUSTOM_KEY_LEN), "v")]).is_ok());
    }

    #[test]
    fn custom_rejects_bad_values_and_duplicates() {
        let e = custom([("notes", "line\nbreak")]).unwrap_err();
        assert_eq!(e.field, "custom.notes");
        let long = "v".repeat(MAX_CUSTOM_VALUE_LEN + 1);
        let e = custom([("notes", long.as_str())]).unwrap_err();
        assert_eq!(e.field, "custom.notes");
        assert_eq!(e.reason, "must be at most 1024 characters");
        let e = custom([("notes", "a"), (" notes", "b")]).unwrap_err();
        assert_eq!(e.field, "custom.notes");
    }

    #[test]
    fn custom_limits() {
        let keys: Vec<String> = (0..MAX_CUSTOM_ENTRIES).map(|i| format!("k{i}")).collect();
        assert_eq!(
            custom(keys.iter().map(|k| (k.as_str(), "v")))
                .unwrap()
                .len(),
            MAX_CUSTOM_ENTRIES
        );
        let keys: Vec<String> = (0..=MAX_CUSTOM_ENTRIES).map(|i| format!("k{i}")).collect();
        let e = custom(keys.iter().map(|k| (k.as_str(), "v"))).unwrap_err();
        assert_eq!(e.field, "custom");
        assert_eq!(e.reason, "must hold at most 32 entries");
        // Stops early on an endless iterator.
        assert!(custom(std::iter::repeat(("k", "v"))).is_err());
    }

    // ---- errors never echo the value -----------------------------------------------

    #[test]
    fn error_reasons_never_contain_the_input() {
        fn check(input: &str, e: &InvalidInput) {
            assert!(
                !e.reason.contains(input),
                "reason {:?} echoes the input",
                e.reason
            );
            assert!(
                !e.to_string().contains(input),
                "message {e} echoes the input"
            );
        }
        let emails = [
            "zorglub.secret@",
            "zorglub secret@example.org",
            "zorglub@secret",
            "Zorglub <zorglub@secret.example>",
            "\"zorglub\"@secret.example",
            "zorglub@[10.0.0.1]",
            "zorglub@10.0.0.1",
        ];
        for input in emails {
            check(input, &email(input).unwrap_err());
        }
        let long_email = format!("{}@secret.example", "zorglub".repeat(40));
        check(&long_email, &email(&long_email).unwrap_err());

        for input in [
            "06 99 99 9",
            "+999 7777777",
            "06x12345678",
            "+33 6 77 77 77 77 77 77",
        ] {
            check(input, &phone(input).unwrap_err());
        }
        for input in ["Zorglub\nSecret", &"Zorglub".repeat(40)] {
            check(input, &text("given_name", input, MAX_NAME_LEN).unwrap_err());
        }
        for input in ["ZRG!99", "ZORGLUB-SECRET-POSTCODE"] {
            check(input, &postcode(input).unwrap_err());
        }
        for input in ["ZRG", "Z9"] {
            check(input, &country(input).unwrap_err());
        }
        for input in ["zorglub secret", "-zorglub"] {
            check(input, &tag(input).unwrap_err());
            check(input, &tags([input]).unwrap_err());
        }
        for input in ["Zorglub", "zorglub secret"] {
            check(input, &custom([(input, "v")]).unwrap_err());
        }
        check(
            "zorglub\nsecret",
            &custom([("notes", "zorglub\nsecret")]).unwrap_err(),
        );
    }

    // ---- properties -----------------------------------------------------------------

    /// Valid-looking ASCII email addresses in any case.
    fn email_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z0-9][A-Za-z0-9._+-]{0,20}@[A-Za-z0-9][A-Za-z0-9-]{0,10}\\.[A-Za-z]{2,6}"
    }

    /// Random ASCII case flips, driven by a bit mask.
    fn recase(s: &str, mask: &[bool]) -> String {
        s.chars()
            .zip(mask.iter().cycle())
            .map(|(c, &up)| {
                if up {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }

    proptest! {
        #[test]
        fn email_is_idempotent(raw in prop_oneof![email_strategy(), ".*"]) {
            if let Ok(n) = email(&raw) {
                prop_assert_eq!(email(&n), Ok(n.clone()));
            }
        }

        #[test]
        fn email_is_case_insensitive(
            raw in email_strategy(),
            mask in proptest::collection::vec(any::<bool>(), 1..16),
        ) {
            let recased = recase(&raw, &mask);
            prop_assert_eq!(email(&raw), email(&recased));
            prop_assert_eq!(email(&raw.to_uppercase()), email(&raw.to_lowercase()));
        }

        #[test]
        fn phone_is_idempotent(
            raw in prop_oneof![
                "0[1-9]( ?[0-9]{2}){4}",
                "\\+[1-9][0-9]{6,14}",
                "(\\+|00)3[23] ?[1-9]([ .-]?[0-9]){7,9}",
            ],
        ) {
            if let Ok(n) = phone(&raw) {
                prop_assert_eq!(phone(&n), Ok(n.clone()));
            }
        }

        #[test]
        fn phone_never_panics_on_any_string(raw in ".*") {
            let _ = phone(&raw);
        }

        #[test]
        fn phone_never_panics_on_phone_like_strings(raw in "[0-9 +().-]{0,70}") {
            let _ = phone(&raw);
        }

        #[test]
        fn phone_never_panics_on_digit_strings(raw in "[0-9 +-]{0,70}") {
            let _ = phone(&raw);
        }

        #[test]
        fn tag_is_idempotent(raw in prop_oneof![
            "[A-Za-z0-9][A-Za-z0-9._:-]{0,70}",
            "[A-Za-zÀ-ÿŒœ0-9][A-Za-zÀ-ÿŒœ\u{0300}-\u{0308}0-9._:-]{0,70}",
            ".*"
        ]) {
            if let Ok(n) = tag(&raw) {
                prop_assert_eq!(tag(&n), Ok(n.clone()));
            }
        }

        #[test]
        fn postcode_is_idempotent(raw in prop_oneof!["[A-Za-z0-9 \t-]{0,20}", ".*"]) {
            if let Ok(n) = postcode(&raw) {
                prop_assert_eq!(postcode(&n), Ok(n.clone()));
            }
        }

        #[test]
        fn country_is_idempotent(raw in ".{0,4}") {
            if let Ok(n) = country(&raw) {
                prop_assert_eq!(country(&n), Ok(n.clone()));
            }
        }

        #[test]
        fn text_is_idempotent(raw in ".{0,220}", max in 0usize..250) {
            if let Ok(n) = text("given_name", &raw, max) {
                prop_assert_eq!(text("given_name", &n, max), Ok(n.clone()));
            }
        }

        #[test]
        fn tags_never_exceed_the_limit(
            raw in proptest::collection::vec("[a-z0-9]{1,3}", 0..500),
        ) {
            if let Ok(set) = tags(raw.iter().map(String::as_str)) {
                prop_assert!(set.len() <= MAX_TAGS);
            }
        }
    }
}
