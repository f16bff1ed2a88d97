//! Who is calling, and the access decision seam.
//!
//! Every operation on personal data takes a [`Caller`] and asks [`authorize`] before it
//! touches the store, so that policy lives here, in the library, and an embedded user gets
//! the same checks as the daemon. This first version knows roles only; purposes, consent
//! and per-client grants extend [`authorize`] without changing its callers.

use std::fmt;

use crate::error::{Error, Result};

/// A client's role (API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Campaign tools: supporters and consent, within their purposes.
    CampaignTool,
    /// The data protection officer: rights requests on every subject.
    Dpo,
    /// Auditors: the access log only, never personal data.
    Auditor,
    /// Administrators: clients, purposes, keys, backups.
    Admin,
}

impl Role {
    /// The API name of the role.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::CampaignTool => "campaign-tool",
            Role::Dpo => "dpo",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operation does to personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Create or merge a supporter.
    SupporterUpsert,
    /// Read a supporter by id.
    SupporterGet,
    /// Find a supporter by email or phone.
    SupporterLookup,
    /// Change a supporter's fields.
    SupporterUpdate,
    /// Add or remove tags.
    SupporterTag,
}

impl Action {
    /// A stable name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::SupporterUpsert => "supporter.upsert",
            Action::SupporterGet => "supporter.get",
            Action::SupporterLookup => "supporter.lookup",
            Action::SupporterUpdate => "supporter.update",
            Action::SupporterTag => "supporter.tag",
        }
    }
}

/// The authenticated caller of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Stable client identifier (never the token).
    pub client_id: String,
    /// The client's role.
    pub role: Role,
    /// The purpose declared for the call, when one was.
    pub purpose: Option<String>,
    /// Request id, for correlating logs.
    pub request_id: String,
}

impl Caller {
    /// The bootstrap administrator: the only credential before client management exists.
    pub fn bootstrap_admin(request_id: impl Into<String>) -> Self {
        Self {
            client_id: BOOTSTRAP_ADMIN_ID.to_owned(),
            role: Role::Admin,
            purpose: None,
            request_id: request_id.into(),
        }
    }
}

/// Client id of the bootstrap administrator.
pub const BOOTSTRAP_ADMIN_ID: &str = "bootstrap-admin";

/// Decides whether `caller` may perform `action`.
///
/// Until per-client purposes exist, the bootstrap administrator runs the supporter
/// operations so that the vault is usable from a zero-configuration start; auditors never
/// touch personal data.
pub fn authorize(caller: &Caller, action: Action) -> Result<()> {
    match caller.role {
        Role::Auditor => Err(Error::PermissionDenied(format!(
            "role {} may not call {}: auditors read the access log only",
            caller.role,
            action.as_str()
        ))),
        Role::CampaignTool | Role::Dpo | Role::Admin => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auditor_never_touches_supporters() {
        let mut c = Caller::bootstrap_admin("r1");
        assert!(authorize(&c, Action::SupporterGet).is_ok());
        c.role = Role::Auditor;
        let e = authorize(&c, Action::SupporterGet)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "permission denied: role auditor may not call supporter.get: auditors read the access log only"
            )
        );
    }
}
