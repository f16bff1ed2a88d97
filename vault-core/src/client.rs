//! Clients: the campaign tools, DPOs, auditors and administrators that call the vault.
//!
//! A client has a name, one role and the purposes it may use. Its token is shown once at
//! creation and stored only as a hash (see [`crate::credentials`]); revoking a client
//! deletes the hash's index entry, so the very next call with the token is refused.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::access::Role;
use crate::error::InvalidInput;

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Stable identifier (a UUID, or `bootstrap-admin`).
    pub id: String,
    /// Human name (`a-z 0-9 - _ .`, at most 64 characters), for example `mailer`.
    pub name: String,
    /// The client's role.
    pub role: Role,
    /// Purposes the client may declare.
    pub purposes: BTreeSet<String>,
    /// Creation time, microseconds since the Unix epoch.
    pub created_at_us: i64,
    /// Revocation time, if revoked.
    pub revoked_at_us: Option<i64>,
    /// SHA-256 fingerprint (hex) of the client's TLS certificate, for mutual TLS.
    pub cert_sha256: Option<String>,
    /// When its credentials stop being accepted, if they ever do (microseconds since the
    /// Unix epoch). Absent in records written before expiry existed: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_us: Option<i64>,
}

impl Client {
    /// Whether the client is not revoked. An expired client is still active in this sense
    /// (it is listed, counted and revocable); [`Client::has_expired`] refuses its calls.
    pub fn is_active(&self) -> bool {
        self.revoked_at_us.is_none()
    }

    /// Whether the client's credentials have expired at `now_us`.
    pub fn has_expired(&self, now_us: i64) -> bool {
        self.expires_at_us.is_some_and(|at| now_us >= at)
    }
}

/// Checks a client name.
pub fn validate_name(name: &str) -> Result<(), InvalidInput> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::new(
            "name",
            "must be 1 to 64 characters of a-z, 0-9, '-', '_' and '.'",
        ))
    }
}

/// Checks a certificate fingerprint: 64 hexadecimal characters, returned lower-cased.
pub fn normalize_fingerprint(fp: &str) -> Result<String, InvalidInput> {
    let fp = fp.trim().replace(':', "").to_ascii_lowercase();
    if fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(fp)
    } else {
        Err(InvalidInput::new(
            "cert_sha256",
            "must be the certificate's SHA-256 fingerprint: 64 hexadecimal characters",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_fingerprints() {
        assert!(validate_name("mailer-2026").is_ok());
        assert!(validate_name("Mailer").is_err());
        assert!(validate_name("").is_err());
        let fp = "AB:".repeat(31) + "AB";
        assert_eq!(normalize_fingerprint(&fp).unwrap(), "ab".repeat(32));
        assert!(normalize_fingerprint("abc").is_err());
    }
}
