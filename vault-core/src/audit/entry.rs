//! One access-log entry and its stored encoding.
//!
//! The stored form is one line of compact JSON (no newline inside). Its Merkle leaf hash is
//! SHA-256(0x00 ‖ the exact stored bytes), so the verifier never re-serializes anything.
//! `prev` is the leaf hash of the entry before (zeros for the first entry of the log), which
//! lets a verifier name the entry that was edited rather than just the range.

use serde::{Deserialize, Serialize};

use super::merkle::{Hash, leaf_hash};
use crate::error::{Error, Result};

/// Entry format version written by this build.
pub const ENTRY_VERSION: u32 = 1;

/// One entry. Holds ids and names only: no field value, email, phone or name of a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Format version.
    pub v: u32,
    /// Position in the log, from 0, without gaps.
    pub seq: u64,
    /// Leaf hash (hex) of the entry at `seq - 1`; 64 zeros for the first entry.
    pub prev: String,
    /// When, microseconds since the Unix epoch.
    pub at_us: i64,
    /// Request id.
    pub request_id: String,
    /// Client id of the actor (`-` when no client was identified).
    pub client: String,
    /// The actor's role (`none` when unidentified).
    pub role: String,
    /// The call, `Service.Method`.
    pub rpc: String,
    /// The declared purpose.
    pub purpose: Option<String>,
    /// Subject ids concerned.
    pub subjects: Vec<String>,
    /// Field names read or written.
    pub fields: Vec<String>,
    /// `allowed` or `denied`.
    pub outcome: String,
    /// Why a call was denied (`no-consent`, `role`, ...).
    pub reason: Option<String>,
    /// The rights request a DPO action answers (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_ref: Option<String>,
}

impl AuditEntry {
    /// The stored bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Codec(e.to_string()))
    }

    /// Parses stored bytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }

    /// Whether the call was allowed.
    pub fn allowed(&self) -> bool {
        self.outcome == "allowed"
    }
}

/// The `prev` of the first entry.
pub fn zero_hash() -> Hash {
    [0u8; 32]
}

/// Leaf hash of stored entry bytes.
pub fn entry_hash(bytes: &[u8]) -> Hash {
    leaf_hash(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_one_line_and_round_trips() {
        let e = AuditEntry {
            v: ENTRY_VERSION,
            seq: 7,
            prev: hex::encode(zero_hash()),
            at_us: 1,
            request_id: "r\nwith newline".into(),
            client: "c".into(),
            role: "campaign-tool".into(),
            rpc: "Supporters.Get".into(),
            purpose: Some("newsletter".into()),
            subjects: vec!["s".into()],
            fields: vec!["email".into()],
            outcome: "allowed".into(),
            reason: None,
            request_ref: None,
        };
        let bytes = e.encode().unwrap();
        assert!(!bytes.contains(&b'\n'));
        assert_eq!(AuditEntry::decode(&bytes).unwrap(), e);
        assert!(e.allowed());
    }
}
