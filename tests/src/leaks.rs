//! No secret and no personal data in a daemon's log (DESIGN.md, invariant 2), checked for
//! every daemon the suite starts.
//!
//! The harness captures each daemon's stderr; when the daemon stops ([`super::Daemon`]'s
//! `terminate`, `kill9` or drop) the captured log goes through [`scan`], and any finding
//! fails the test. What is looked for:
//!
//! - the secrets the suite handled, as exact strings registered with [`watch_secret`]:
//!   every token created or presented, bootstrap admin tokens, root keys, TLS private keys,
//!   the test database's password;
//! - secrets by shape: anything that looks like a vault token (`vault_` and 64 hex digits)
//!   or a PEM private key;
//! - personal data by shape: email addresses, French and E.164 phone numbers;
//! - the names and addresses the tests give supporters: those passed to
//!   [`super::supporter`] (registered with [`watch_name`] when capitalized) and
//!   [`KNOWN_PERSONAL`], matched as whole words, case-sensitively (so "Rosa" is found,
//!   "Rosary" and "rosa" are not).
//!
//! Supporter and client ids, request ids, sequence numbers, paths and addresses of the
//! daemon itself are not personal data and are allowed.

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use regex::Regex;

/// Names and free-text personal data the tests use outside [`super::supporter`] (CSV files,
/// `vaultctl` flags, structs of their own). A name found here in a log is a leak.
pub const KNOWN_PERSONAL: &[&str] = &[
    "Zéphyrine",
    "Quintavalle",
    "Barthélémy",
    "Onfroy-Kerguelen",
    "Olympe",
    "Gouges",
    "Jaurès",
    "Léna",
    "Lena",
    "Auditée",
    "Anatole",
    "Vercingetorix-Laplanche",
    "Hortense",
    "Quillebeuf",
    "Aimé",
    "Camille",
    "Sauvegarde",
    "Simone",
    "Moulin",
    "Michel-Updated",
    "Anne",
    "Martin",
    "Durand",
    "Moreau",
    "Léa",
    "Zoé",
    "Rue des Cerisiers Anonymes",
    "Trouville-sur-Secret",
    "Impasse des Secrets Partagés",
];

/// Names shorter than this are not registered: one- and two-letter test names ("A", "Me")
/// occur in any text.
const MIN_NAME_CHARS: usize = 3;
/// Presented credentials shorter than this are deliberately bogus ("nope") and would match
/// ordinary words.
const MIN_SECRET_CHARS: usize = 16;

#[derive(Default)]
struct Watched {
    secrets: BTreeSet<String>,
    names: BTreeSet<String>,
}

fn watched() -> &'static Mutex<Watched> {
    static WATCHED: OnceLock<Mutex<Watched>> = OnceLock::new();
    WATCHED.get_or_init(|| {
        let mut w = Watched::default();
        // The test database's password, when the suite runs on PostgreSQL.
        if let Some(password) = std::env::var("VAULT_TEST_DATABASE_URL")
            .ok()
            .and_then(|url| database_password(&url))
        {
            w.secrets.insert(password);
        }
        Mutex::new(w)
    })
}

/// The password in a `postgres://user:password@host/db` URL.
fn database_password(url: &str) -> Option<String> {
    let authority = url.split_once("://")?.1.split('/').next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_owned())
}

/// Registers a secret the suite handled (a token, key material): no log may contain it.
pub fn watch_secret(secret: &str) {
    let secret = secret.trim();
    if secret.chars().count() >= MIN_SECRET_CHARS {
        watched().lock().unwrap().secrets.insert(secret.to_owned());
    }
}

/// Registers a name the suite gave a supporter: no log may contain it as a word. Only
/// capitalized names count: tests also use labels such as "altered" or "source" as names,
/// and those are ordinary words of the daemon's messages.
pub fn watch_name(name: &str) {
    let name = name.trim();
    if name.chars().count() >= MIN_NAME_CHARS && name.chars().any(char::is_uppercase) {
        watched().lock().unwrap().names.insert(name.to_owned());
    }
}

/// Every PEM private key's base64 lines as secrets (a key printed whole or in part).
pub fn watch_pem_key(pem: &str) {
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        watch_secret(line);
    }
}

/// What a log must not hold, found at `line` (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The line number, 1-based.
    pub line: usize,
    /// What was found there.
    pub kind: &'static str,
    /// The whole line, so the leaking log statement is easy to find (test data is made up).
    pub text: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {} has {}: {}", self.line, self.kind, self.text)
    }
}

struct Patterns {
    email: Regex,
    phone: Regex,
    token: Regex,
    pem: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        email: Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}").unwrap(),
        // French numbers, national (06 12 34 56 78, 06.12…, 0612345678) or international
        // (+33 6 12 34 56 78), and any E.164 number. The boundaries keep digit runs inside
        // longer numbers, decimals and UUIDs out.
        phone: Regex::new(
            r"(?:^|[^0-9A-Za-z_+.:/-])(\+33[ .]?[1-9](?:[ .]?[0-9]{2}){4}|0[1-9](?:[ .]?[0-9]{2}){4}|\+[1-9][0-9]{7,14})(?:$|[^0-9A-Za-z_])",
        )
        .unwrap(),
        token: Regex::new(r"vault_[0-9a-f]{64}").unwrap(),
        pem: Regex::new(r"-----BEGIN [A-Z ]*PRIVATE KEY-----").unwrap(),
    })
}

/// Whether `needle` occurs in `hay` as a whole word (not inside a longer word).
fn contains_word(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(at, _)| {
        let before = hay[..at].chars().next_back();
        let after = hay[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Every secret or piece of personal data in `log`.
pub fn scan(log: &str) -> Vec<Finding> {
    let p = patterns();
    let watched = watched().lock().unwrap();
    let mut findings = Vec::new();
    for (i, text) in log.lines().enumerate() {
        let mut found = |kind| {
            findings.push(Finding {
                line: i + 1,
                kind,
                text: text.to_owned(),
            });
        };
        if watched.secrets.iter().any(|s| text.contains(s.as_str())) {
            found("a secret the tests handled (token or key material)");
        }
        if p.token.is_match(text) {
            found("a vault token");
        }
        if p.pem.is_match(text) {
            found("a PEM private key");
        }
        if p.email.is_match(text) {
            found("an email address");
        }
        if p.phone.is_match(text) {
            found("a phone number");
        }
        if watched
            .names
            .iter()
            .map(String::as_str)
            .chain(KNOWN_PERSONAL.iter().copied())
            .any(|n| contains_word(text, n))
        {
            found("a supporter's name or address");
        }
    }
    findings
}

/// Panics, naming the lines and what is on them, when `log` holds a secret or personal
/// data. `who` names the daemon.
pub fn assert_clean(who: &str, log: &str) {
    let findings = scan(log);
    assert!(
        findings.is_empty(),
        "{who}'s log holds secrets or personal data:\n{}",
        findings
            .iter()
            .map(Finding::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
