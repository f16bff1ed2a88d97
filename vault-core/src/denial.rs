//! Why a call was refused, as the access log records it.
//!
//! Every refused call's entry carries one of these reasons (`reason` in
//! docs/audit-log-format.md). The codes are part of the log's format: an auditor filters on
//! them and an exported log from years ago still says them, so a code is never renamed or
//! reused; a new refusal gets a new variant. They were string literals written at each
//! refusal; as an enum the list is written once, and a test holds the documentation to it.

use std::fmt;

use crate::error::Error;

/// Declares [`DenialReason`] with each variant's stable code, and [`DenialReason::ALL`].
macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, )*) => {
        /// Why a call was refused. [`DenialReason::code`] is what the access log stores.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum DenialReason {
            $( $(#[$doc])* $variant, )*
        }

        impl DenialReason {
            /// Every reason, in declaration order.
            pub const ALL: [DenialReason; [$($code),*].len()] = [$(DenialReason::$variant),*];

            /// The stable code stored in the access log.
            pub fn code(self) -> &'static str {
                match self {
                    $( DenialReason::$variant => $code, )*
                }
            }
        }
    };
}

reasons! {
    /// No client was identified: no, a malformed, an unknown or a revoked credential.
    Unauthenticated = "unauthenticated",
    /// The caller's role may not make this call.
    Role = "role",
    /// The call touches personal data and declares no purpose.
    PurposeMissing = "purpose-missing",
    /// The declared purpose is not in the registry.
    PurposeUnknown = "purpose-unknown",
    /// The client was not registered with the declared purpose (or the DPO's purpose is
    /// declared by another role, or another purpose by the DPO).
    PurposeNotAllowed = "purpose-not-allowed",
    /// The purpose needs consent and the person has none for it.
    NoConsent = "no-consent",
    /// The purpose's basis needs the data collected for it, and it was not.
    NotCollected = "not-collected",
    /// A consent read or withdrawal for a purpose the person never had a basis or consent
    /// for.
    NoBasis = "no-basis",
    /// The person restricted processing (art. 18).
    Restricted = "restricted",
    /// The person objected to the purpose's channels (art. 21).
    Objected = "objected",
    /// A consent grant without the proof the purpose asks for.
    NoProof = "no-proof",
    /// A write of a field the purpose may not write.
    FieldNotAllowed = "field-not-allowed",
    /// An email or phone on the suppression list (erased on request, never re-added).
    Suppressed = "suppressed",
    /// An admin approving their own proposal.
    OwnProposal = "own-proposal",
    /// A change that takes a second admin, made by one.
    NeedsSecondAdmin = "needs-second-admin",
    /// The request was malformed (the caller's error, named in the reply).
    InvalidArgument = "invalid-argument",
    /// What the call names does not exist (or is outside the caller's basis).
    NotFound = "not-found",
    /// The call would create what exists.
    AlreadyExists = "already-exists",
    /// Refused for a reason of its own, given in the reply.
    PermissionDenied = "permission-denied",
    /// The vault is not in the state the call needs.
    FailedPrecondition = "failed-precondition",
    /// Stored data failed its integrity check; nothing was returned.
    Integrity = "integrity",
    /// The call failed inside the vault (storage, a bug); nothing was returned.
    Error = "error",
}

impl DenialReason {
    /// The reason of a call that failed with `error` without a refusal of its own.
    pub fn of_error(error: &Error) -> Self {
        match error {
            Error::InvalidInput(_) => DenialReason::InvalidArgument,
            Error::NotFound(_) => DenialReason::NotFound,
            Error::AlreadyExists(_) => DenialReason::AlreadyExists,
            Error::PermissionDenied(_) => DenialReason::PermissionDenied,
            Error::Unauthenticated(_) => DenialReason::Unauthenticated,
            Error::FailedPrecondition(_) => DenialReason::FailedPrecondition,
            Error::Integrity(_) => DenialReason::Integrity,
            _ => DenialReason::Error,
        }
    }
}

impl fmt::Display for DenialReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// So tests and callers can compare a reason with the code they expect in the log.
impl PartialEq<&str> for DenialReason {
    fn eq(&self, other: &&str) -> bool {
        self.code() == *other
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// The codes are the log's format: unique, and each listed where auditors read them.
    #[test]
    fn codes_are_unique_and_all_documented() {
        let codes: HashSet<&str> = DenialReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), DenialReason::ALL.len(), "a code is used twice");
        let doc = include_str!("../../docs/audit-log-format.md");
        let row = doc
            .lines()
            .find(|l| l.starts_with("| `reason` |"))
            .expect("docs/audit-log-format.md has the `reason` row of the entry table");
        // Every `code` of the row that looks like one (the cell's own name and `null` aside).
        let listed: HashSet<&str> = row
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| t.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            .filter(|t| !["reason", "null"].contains(t))
            .collect();
        let missing: Vec<_> = codes.difference(&listed).collect();
        let unknown: Vec<_> = listed.difference(&codes).collect();
        assert!(
            missing.is_empty(),
            "docs/audit-log-format.md does not list {missing:?}"
        );
        assert!(
            unknown.is_empty(),
            "docs/audit-log-format.md lists reasons the vault does not give: {unknown:?}"
        );
    }

    #[test]
    fn codes_never_change() {
        // Exported logs from earlier versions carry these: written out here, not derived
        // from the declaration, so a renamed code fails.
        use DenialReason::*;
        let pinned = [
            (Unauthenticated, "unauthenticated"),
            (Role, "role"),
            (PurposeMissing, "purpose-missing"),
            (PurposeUnknown, "purpose-unknown"),
            (PurposeNotAllowed, "purpose-not-allowed"),
            (NoConsent, "no-consent"),
            (NotCollected, "not-collected"),
            (NoBasis, "no-basis"),
            (Restricted, "restricted"),
            (Objected, "objected"),
            (NoProof, "no-proof"),
            (FieldNotAllowed, "field-not-allowed"),
            (Suppressed, "suppressed"),
            (OwnProposal, "own-proposal"),
            (NeedsSecondAdmin, "needs-second-admin"),
            (InvalidArgument, "invalid-argument"),
            (NotFound, "not-found"),
            (AlreadyExists, "already-exists"),
            (PermissionDenied, "permission-denied"),
            (FailedPrecondition, "failed-precondition"),
            (Integrity, "integrity"),
            (Error, "error"),
        ];
        assert_eq!(
            pinned.len(),
            DenialReason::ALL.len(),
            "a reason is not pinned"
        );
        for (reason, code) in pinned {
            assert_eq!(reason.code(), code);
        }
        assert_eq!(
            DenialReason::of_error(&crate::error::Error::NotFound("x".into())),
            NotFound
        );
    }
}
