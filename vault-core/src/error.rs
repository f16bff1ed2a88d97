//! Typed errors of the vault library.
//!
//! Every variant says what went wrong in words a client developer can act on. Messages
//! never carry a personal-data value (an email, a name, a phone number) or key bytes: they
//! name the field and the rule that was broken, so they are safe to log and to return to
//! a caller. The server maps each variant once to a gRPC status code.

use std::fmt;

/// A field of a request that failed validation, and why.
///
/// `reason` describes the rule, never the rejected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidInput {
    /// The field path, as named in the API (`email`, `address.postcode`, `custom.<key>`...).
    pub field: String,
    /// The rule that was broken, phrased so the caller can fix the request.
    pub reason: String,
}

impl InvalidInput {
    /// A new validation error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Which stored object failed its integrity check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntegrityObject {
    /// A key epoch (KEK) wrapped by the root key.
    KeyEpoch(u32),
    /// A supporter's wrapped data key.
    SubjectKey(String),
    /// A supporter's record.
    Record(String),
    /// A supporter's consent event.
    ConsentEvent(String, u64),
    /// Store metadata.
    Metadata(&'static str),
    /// The access log as a whole: behind its high-water mark, a changed signing key, a tail
    /// that does not hash to its leaves. The text says what was found.
    AccessLog(String),
    /// A row of an authenticated table (clients, purposes, token index, key-epoch dates,
    /// access-log leaves...) that does not carry its tag.
    Row {
        /// The table.
        table: &'static str,
        /// The row's key, printable (an id, a metadata name, or the first bytes in hex).
        key: String,
    },
}

impl fmt::Display for IntegrityObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyEpoch(n) => write!(f, "key epoch {n}"),
            Self::SubjectKey(id) => write!(f, "data key of supporter {id}"),
            Self::Record(id) => write!(f, "record of supporter {id}"),
            Self::ConsentEvent(id, seq) => write!(f, "consent event {seq} of supporter {id}"),
            Self::Metadata(what) => write!(f, "store metadata ({what})"),
            Self::AccessLog(what) => write!(f, "access log ({what})"),
            Self::Row { table, key } => write!(f, "row {key} of table {table}"),
        }
    }
}

/// Everything the vault library can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed: fix the named field and retry.
    #[error("invalid argument: {0}")]
    InvalidInput(#[from] InvalidInput),

    /// The named object does not exist (or was erased).
    #[error("not found: {0}")]
    NotFound(String),

    /// The request conflicts with an existing object (for example an email that already
    /// belongs to another supporter).
    #[error("already exists: {0}")]
    AlreadyExists(String),

    /// The caller's credentials are missing, unknown or revoked.
    #[error("{0}")]
    Unauthenticated(String),

    /// The caller is not allowed to do this.
    #[error("permission denied: {0}")]
    PermissionDenied(String),

    /// The operation cannot run in the current state of the object.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),

    /// A stored ciphertext failed authentication: it was altered, truncated, or moved
    /// from where it was written. The vault never returns data from such a ciphertext.
    #[error("integrity check failed for the {0}: the stored bytes were altered or moved")]
    Integrity(IntegrityObject),

    /// The root key file does not open this data directory's key epochs.
    #[error(
        "the root key does not match this store: key epoch {0} cannot be unwrapped; \
         check --root-key points at the key file this store was created with"
    )]
    WrongRootKey(u32),

    /// The root key file is unusable (permissions, length, format).
    #[error("root key file {path}: {reason}")]
    RootKeyFile {
        /// Where the key file is.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The storage engine failed.
    #[error("storage error: {0}")]
    Storage(crate::storage::StoreError),

    /// The store refuses writes for a reason the operator must fix (a full disk, a
    /// read-only file system, an I/O error, a database out of space). Nothing of the call
    /// was acknowledged. The cause's text names the remedy.
    #[error("the vault's store refused a write: {cause}")]
    StoreUnavailable {
        /// What happened.
        cause: crate::storage::Unavailable,
    },

    /// Concurrent writers kept changing the same rows; the operation gave up after retrying.
    #[error("too much contention on {0}; retry the call")]
    Contention(String),

    /// A record could not be encoded (a bug, not a user error).
    #[error("internal encoding error: {0}")]
    Codec(String),

    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

impl From<crate::storage::StoreError> for Error {
    /// A row that failed its authentication is an integrity failure like a ciphertext that
    /// does not open (`DATA_LOSS` on the wire); a store refusing writes for an operator's
    /// reason is [`Error::StoreUnavailable`] (`UNAVAILABLE`); every other store failure
    /// stays a storage error.
    fn from(e: crate::storage::StoreError) -> Self {
        match e {
            crate::storage::StoreError::Tampered { table, key } => {
                Error::Integrity(IntegrityObject::Row { table, key })
            }
            crate::storage::StoreError::Unavailable { cause, .. } => {
                Error::StoreUnavailable { cause }
            }
            other => Error::Storage(other),
        }
    }
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_input_names_field_and_rule() {
        let e = Error::from(InvalidInput::new("email", "is missing an '@'"));
        assert_eq!(e.to_string(), "invalid argument: email: is missing an '@'");
    }

    #[test]
    fn a_full_disk_is_unavailable_with_its_remedy() {
        let e = Error::from(crate::storage::StoreError::Unavailable {
            cause: crate::storage::Unavailable::NoSpace,
            detail: "IO error: No space left on device (os error 28)".into(),
        });
        assert!(matches!(e, Error::StoreUnavailable { .. }));
        assert_eq!(
            e.to_string(),
            "the vault's store refused a write: no space left on the data directory's file \
             system; free space and restart the daemon"
        );
    }

    #[test]
    fn integrity_names_object_not_content() {
        let e = Error::Integrity(IntegrityObject::Record("abc".into()));
        assert_eq!(
            e.to_string(),
            "integrity check failed for the record of supporter abc: the stored bytes were altered or moved"
        );
    }
}
