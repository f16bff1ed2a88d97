//! Who is calling, and the one access decision point.
//!
//! [`decide`] rules on every call from (client, role, rpc, purpose, subject): the role may
//! call the rpc; the client may use the declared purpose; the subject has a basis for it (a
//! consent-based purpose needs the person's active consent, on the channel when the call
//! targets one); and the reply may carry only the purpose's fields. Policy lives here, in
//! the library, so an embedded user gets exactly the daemon's checks. Every decision, allow
//! or deny, is handed to the access log by the caller of [`decide`] ([`crate::Vault`]).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::consent::ConsentState;
use crate::error::{Error, InvalidInput};
use crate::purpose::{Channel, DPO_PURPOSE, Purpose, Registry};
use crate::supporter::FieldSet;

/// A client's role (API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Campaign tools: supporters and consent, within their purposes.
    CampaignTool,
    /// The data protection officer: rights requests on every subject.
    Dpo,
    /// Auditors: the access log only, never personal data.
    Auditor,
    /// Administrators: clients, purposes, keys, backups; no personal data.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::CampaignTool, Role::Dpo, Role::Auditor, Role::Admin];

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

impl FromStr for Role {
    type Err = InvalidInput;
    fn from_str(s: &str) -> Result<Self, InvalidInput> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s.trim())
            .ok_or_else(|| {
                InvalidInput::new("role", "must be one of: campaign-tool, dpo, auditor, admin")
            })
    }
}

/// Every call the vault serves, by service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rpc {
    /// `Supporters.Upsert`
    SupportersUpsert,
    /// `Supporters.Get`
    SupportersGet,
    /// `Supporters.Lookup`
    SupportersLookup,
    /// `Supporters.Update`
    SupportersUpdate,
    /// `Supporters.Tag`
    SupportersTag,
    /// `Supporters.Untag`
    SupportersUntag,
    /// `Consent.Grant`
    ConsentGrant,
    /// `Consent.Withdraw`
    ConsentWithdraw,
    /// `Consent.Status`
    ConsentStatus,
    /// `Consent.History`
    ConsentHistory,
    /// `Admin.CreateClient`
    AdminCreateClient,
    /// `Admin.RevokeClient`
    AdminRevokeClient,
    /// `Admin.ListClients`
    AdminListClients,
    /// `Admin.ListPurposes`
    AdminListPurposes,
    /// `Admin.PutPurpose`
    AdminPutPurpose,
    /// `Admin.ProcessingReport`
    AdminProcessingReport,
    /// `Audit.Query`
    AuditQuery,
    /// `Audit.Checkpoints`
    AuditCheckpoints,
    /// `Audit.Verify`
    AuditVerify,
    /// `Audit.ExportLog`
    AuditExportLog,
    /// `Audit.PublicKey`
    AuditPublicKey,
    /// `Audit.InclusionProof`
    AuditInclusionProof,
    /// `Audit.ConsistencyProof`
    AuditConsistencyProof,
    /// `Supporters.Search`
    SupportersSearch,
    /// `Supporters.Import`
    SupportersImport,
    /// `Supporters.Watch`
    SupportersWatch,
    /// `Rights.Export`
    RightsExport,
    /// `Rights.Erase`
    RightsErase,
    /// `Rights.Restrict`
    RightsRestrict,
    /// `Rights.Unrestrict`
    RightsUnrestrict,
    /// `Rights.Object`
    RightsObject,
    /// `Rights.OpenRequest`
    RightsOpenRequest,
    /// `Rights.ListRequests`
    RightsListRequests,
    /// `Rights.CloseRequest`
    RightsCloseRequest,
    /// `Admin.RotateKeys`
    AdminRotateKeys,
    /// `Admin.Backup`
    AdminBackup,
    /// `Admin.RetentionSweep`
    AdminRetentionSweep,
    /// `Admin.ExportErasureJournal`
    AdminExportErasureJournal,
    /// `Admin.ProposeChange`
    AdminProposeChange,
    /// `Admin.ApproveProposal`
    AdminApproveProposal,
    /// `Admin.ListProposals`
    AdminListProposals,
}

impl Rpc {
    /// Every rpc.
    pub const ALL: [Rpc; 41] = [
        Rpc::SupportersUpsert,
        Rpc::SupportersGet,
        Rpc::SupportersLookup,
        Rpc::SupportersUpdate,
        Rpc::SupportersTag,
        Rpc::SupportersUntag,
        Rpc::ConsentGrant,
        Rpc::ConsentWithdraw,
        Rpc::ConsentStatus,
        Rpc::ConsentHistory,
        Rpc::AdminCreateClient,
        Rpc::AdminRevokeClient,
        Rpc::AdminListClients,
        Rpc::AdminListPurposes,
        Rpc::AdminPutPurpose,
        Rpc::AdminProcessingReport,
        Rpc::AuditQuery,
        Rpc::AuditCheckpoints,
        Rpc::AuditVerify,
        Rpc::AuditExportLog,
        Rpc::AuditPublicKey,
        Rpc::AuditInclusionProof,
        Rpc::AuditConsistencyProof,
        Rpc::SupportersSearch,
        Rpc::SupportersImport,
        Rpc::SupportersWatch,
        Rpc::RightsExport,
        Rpc::RightsErase,
        Rpc::RightsRestrict,
        Rpc::RightsUnrestrict,
        Rpc::RightsObject,
        Rpc::RightsOpenRequest,
        Rpc::RightsListRequests,
        Rpc::RightsCloseRequest,
        Rpc::AdminRotateKeys,
        Rpc::AdminBackup,
        Rpc::AdminRetentionSweep,
        Rpc::AdminExportErasureJournal,
        Rpc::AdminProposeChange,
        Rpc::AdminApproveProposal,
        Rpc::AdminListProposals,
    ];

    /// The gRPC name, `Service.Method`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rpc::SupportersUpsert => "Supporters.Upsert",
            Rpc::SupportersGet => "Supporters.Get",
            Rpc::SupportersLookup => "Supporters.Lookup",
            Rpc::SupportersUpdate => "Supporters.Update",
            Rpc::SupportersTag => "Supporters.Tag",
            Rpc::SupportersUntag => "Supporters.Untag",
            Rpc::ConsentGrant => "Consent.Grant",
            Rpc::ConsentWithdraw => "Consent.Withdraw",
            Rpc::ConsentStatus => "Consent.Status",
            Rpc::ConsentHistory => "Consent.History",
            Rpc::AdminCreateClient => "Admin.CreateClient",
            Rpc::AdminRevokeClient => "Admin.RevokeClient",
            Rpc::AdminListClients => "Admin.ListClients",
            Rpc::AdminListPurposes => "Admin.ListPurposes",
            Rpc::AdminPutPurpose => "Admin.PutPurpose",
            Rpc::AdminProcessingReport => "Admin.ProcessingReport",
            Rpc::AuditQuery => "Audit.Query",
            Rpc::AuditCheckpoints => "Audit.Checkpoints",
            Rpc::AuditVerify => "Audit.Verify",
            Rpc::AuditExportLog => "Audit.ExportLog",
            Rpc::AuditPublicKey => "Audit.PublicKey",
            Rpc::AuditInclusionProof => "Audit.InclusionProof",
            Rpc::AuditConsistencyProof => "Audit.ConsistencyProof",
            Rpc::SupportersSearch => "Supporters.Search",
            Rpc::SupportersImport => "Supporters.Import",
            Rpc::SupportersWatch => "Supporters.Watch",
            Rpc::RightsExport => "Rights.Export",
            Rpc::RightsErase => "Rights.Erase",
            Rpc::RightsRestrict => "Rights.Restrict",
            Rpc::RightsUnrestrict => "Rights.Unrestrict",
            Rpc::RightsObject => "Rights.Object",
            Rpc::RightsOpenRequest => "Rights.OpenRequest",
            Rpc::RightsListRequests => "Rights.ListRequests",
            Rpc::RightsCloseRequest => "Rights.CloseRequest",
            Rpc::AdminRotateKeys => "Admin.RotateKeys",
            Rpc::AdminBackup => "Admin.Backup",
            Rpc::AdminRetentionSweep => "Admin.RetentionSweep",
            Rpc::AdminExportErasureJournal => "Admin.ExportErasureJournal",
            Rpc::AdminProposeChange => "Admin.ProposeChange",
            Rpc::AdminApproveProposal => "Admin.ApproveProposal",
            Rpc::AdminListProposals => "Admin.ListProposals",
        }
    }

    /// Whether the call reads or writes personal data (and so needs a purpose). The access
    /// log holds ids and field names only, so reading it does not.
    pub fn touches_personal_data(self) -> bool {
        !matches!(
            self,
            Rpc::AdminCreateClient
                | Rpc::AdminRevokeClient
                | Rpc::AdminListClients
                | Rpc::AdminListPurposes
                | Rpc::AdminPutPurpose
                | Rpc::AdminProcessingReport
                | Rpc::AuditQuery
                | Rpc::AuditCheckpoints
                | Rpc::AuditVerify
                | Rpc::AuditExportLog
                | Rpc::AuditPublicKey
                | Rpc::AuditInclusionProof
                | Rpc::AuditConsistencyProof
                | Rpc::RightsOpenRequest
                | Rpc::RightsListRequests
                | Rpc::RightsCloseRequest
                | Rpc::AdminRotateKeys
                | Rpc::AdminBackup
                | Rpc::AdminRetentionSweep
                | Rpc::AdminExportErasureJournal
                | Rpc::AdminProposeChange
                | Rpc::AdminApproveProposal
                | Rpc::AdminListProposals
        )
    }

    /// Whether the purpose's consent is required to make the call. Consent calls
    /// themselves are how consent is given, withdrawn and checked, so they need the
    /// purpose but not an existing consent.
    fn needs_basis(self) -> bool {
        self.touches_personal_data()
            && !matches!(
                self,
                Rpc::ConsentGrant | Rpc::ConsentWithdraw | Rpc::ConsentStatus | Rpc::ConsentHistory
            )
    }

    /// The roles that may make the call.
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            // Creating and tagging supporters is campaign work; the DPO rectifies (Update)
            // and reads to answer requests.
            Rpc::SupportersUpsert | Rpc::SupportersTag | Rpc::SupportersUntag => &[CampaignTool],
            Rpc::SupportersGet | Rpc::SupportersLookup | Rpc::SupportersUpdate => {
                &[CampaignTool, Dpo]
            }
            Rpc::ConsentGrant => &[CampaignTool],
            // Withdrawal must be as easy as granting, including through the DPO.
            Rpc::ConsentWithdraw | Rpc::ConsentStatus | Rpc::ConsentHistory => &[CampaignTool, Dpo],
            Rpc::AdminCreateClient
            | Rpc::AdminRevokeClient
            | Rpc::AdminListClients
            | Rpc::AdminListPurposes
            | Rpc::AdminPutPurpose => &[Admin],
            // Separation of duties: one admin proposes what widens access to personal
            // data, another approves it (`crate::proposal`).
            Rpc::AdminProposeChange | Rpc::AdminApproveProposal | Rpc::AdminListProposals => {
                &[Admin]
            }
            // The record of processing activities is the DPO's document as much as the admin's.
            Rpc::AdminProcessingReport => &[Admin, Dpo],
            // The log is for auditors and the DPO (who answers "who saw my data?").
            Rpc::AuditQuery
            | Rpc::AuditCheckpoints
            | Rpc::AuditVerify
            | Rpc::AuditExportLog
            | Rpc::AuditPublicKey
            | Rpc::AuditInclusionProof
            | Rpc::AuditConsistencyProof => &[Auditor, Dpo],
            // Segments, bulk imports and the change feed are campaign work.
            Rpc::SupportersSearch | Rpc::SupportersImport | Rpc::SupportersWatch => &[CampaignTool],
            Rpc::RightsExport
            | Rpc::RightsErase
            | Rpc::RightsRestrict
            | Rpc::RightsUnrestrict
            | Rpc::RightsObject
            | Rpc::RightsOpenRequest
            | Rpc::RightsListRequests
            | Rpc::RightsCloseRequest => &[Dpo],
            // The erasure journal holds ids, times and request references, no personal
            // data: it is the backups' companion, kept by whoever keeps the backups.
            Rpc::AdminRotateKeys | Rpc::AdminBackup | Rpc::AdminExportErasureJournal => &[Admin],
            // The sweep erases by rule and reports ids only: the operator may schedule it,
            // the DPO answers for it.
            Rpc::AdminRetentionSweep => &[Admin, Dpo],
        }
    }
}

impl fmt::Display for Rpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller of an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Stable client identifier (never the token).
    pub client_id: String,
    /// The client's role.
    pub role: Role,
    /// Purposes the client may use.
    pub allowed_purposes: BTreeSet<String>,
    /// The purpose declared for the call (`x-vault-purpose`), if any.
    pub purpose: Option<String>,
    /// Request id, for correlating logs.
    pub request_id: String,
}

/// Client id of the bootstrap administrator written on first start.
pub const BOOTSTRAP_ADMIN_ID: &str = "bootstrap-admin";

/// The subject a call concerns, as far as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// Subject id.
    pub id: &'a str,
    /// The subject's consent state.
    pub consent: &'a ConsentState,
    /// Processing of the subject's data is restricted (art. 18): only the DPO may act.
    pub restricted: bool,
}

/// What an allowed call may do.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The declared purpose, resolved (absent for calls without personal data).
    pub purpose: Option<Purpose>,
    /// The fields the call may read or write.
    pub fields: FieldSet,
}

/// Why a call was refused: a short code for the access log, and the error for the caller.
#[derive(Debug)]
pub struct Denied {
    /// Stable reason code (`role`, `purpose-missing`, `purpose-unknown`,
    /// `purpose-not-allowed`, `no-consent`).
    pub code: &'static str,
    /// The error returned to the caller.
    pub error: Error,
}

fn deny(code: &'static str, error: Error) -> Denied {
    Denied { code, error }
}

/// Decides a call. With `subject: None`, only the checks that do not depend on the subject
/// run (role and purpose); call again with the subject once it is loaded.
pub fn decide(
    caller: &Caller,
    rpc: Rpc,
    registry: &Registry,
    subject: Option<Subject<'_>>,
    channel: Option<Channel>,
) -> Result<Decision, Denied> {
    if !rpc.roles().contains(&caller.role) {
        let allowed: Vec<&str> = rpc.roles().iter().map(|r| r.as_str()).collect();
        let why = match caller.role {
            Role::Auditor if rpc.touches_personal_data() => {
                "auditors read the access log only, never personal data".to_owned()
            }
            Role::Admin if rpc.touches_personal_data() => {
                "administrators manage clients, purposes and keys, never personal data".to_owned()
            }
            _ => format!("it is for role {}", allowed.join(" or ")),
        };
        return Err(deny(
            "role",
            Error::PermissionDenied(format!("role {} may not call {rpc}: {why}", caller.role)),
        ));
    }
    if !rpc.touches_personal_data() {
        return Ok(Decision {
            purpose: None,
            fields: FieldSet::empty(),
        });
    }
    let Some(purpose_id) = caller
        .purpose
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
    else {
        return Err(deny(
            "purpose-missing",
            InvalidInput::new(
                "x-vault-purpose",
                format!("{rpc} touches personal data: declare why with metadata `x-vault-purpose: <purpose id>`"),
            )
            .into(),
        ));
    };
    let Some(purpose) = registry.get(purpose_id) else {
        let shown: String = purpose_id.chars().take(64).collect();
        return Err(deny(
            "purpose-unknown",
            InvalidInput::new(
                "x-vault-purpose",
                format!(
                    "unknown purpose {shown:?}; known purposes: {}",
                    registry.ids()
                ),
            )
            .into(),
        ));
    };
    let dpo_purpose = purpose.id == DPO_PURPOSE;
    let allowed = if caller.role == Role::Dpo {
        dpo_purpose
    } else {
        !dpo_purpose && caller.allowed_purposes.contains(&purpose.id)
    };
    if !allowed {
        let detail = if caller.role == Role::Dpo {
            format!("the dpo role acts under purpose {DPO_PURPOSE} only")
        } else if dpo_purpose {
            format!("purpose {DPO_PURPOSE} is reserved for the dpo role")
        } else {
            let mut mine: Vec<&str> = caller.allowed_purposes.iter().map(String::as_str).collect();
            if mine.is_empty() {
                mine.push("none");
            }
            format!("this client may use: {}", mine.join(", "))
        };
        return Err(deny(
            "purpose-not-allowed",
            Error::PermissionDenied(format!(
                "client {} may not use purpose {}: {detail}",
                caller.client_id, purpose.id
            )),
        ));
    }
    // Restriction keeps the data but stops every use of it except the DPO's; withdrawing
    // consent stays possible (it only reduces processing).
    if let Some(subject) =
        subject.filter(|s| s.restricted && caller.role != Role::Dpo && rpc != Rpc::ConsentWithdraw)
    {
        return Err(deny(
            "restricted",
            Error::FailedPrecondition(format!(
                "processing of supporter {}'s data is restricted (GDPR art. 18) while a rights \
                 request is examined; only the DPO may act on it",
                subject.id
            )),
        ));
    }
    let lacks_consent = |s: &Subject<'_>| {
        rpc.needs_basis() && purpose.needs_consent() && !s.consent.is_active(&purpose.id, channel)
    };
    if let Some(subject) = subject.filter(lacks_consent) {
        {
            let on = channel
                .map(|c| format!(" on channel {c}"))
                .unwrap_or_default();
            return Err(deny(
                "no-consent",
                Error::PermissionDenied(format!(
                    "supporter {} has no active consent for purpose {}{on}; it rests on consent, \
                     so the data may not be used for it",
                    subject.id, purpose.id
                )),
            ));
        }
    }
    Ok(Decision {
        fields: purpose.fields,
        purpose: Some(purpose.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ledger::{ConsentEvent, ConsentKind, ConsentSource};
    use crate::purpose::default_registry;
    use crate::supporter::Field;

    fn caller(role: Role, purposes: &[&str], purpose: Option<&str>) -> Caller {
        Caller {
            client_id: "c1".into(),
            role,
            allowed_purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
            purpose: purpose.map(str::to_owned),
            request_id: "r".into(),
        }
    }

    fn consented(purpose: &str, channel: Channel) -> ConsentState {
        ConsentState::from_events(&[ConsentEvent {
            subject_id: "s".into(),
            seq: 0,
            purpose: purpose.into(),
            channel,
            kind: ConsentKind::Grant,
            at_us: 1,
            source: ConsentSource::Form,
            notice_version: "v1".into(),
            client_id: "c1".into(),
        }])
    }

    #[test]
    fn roles_purposes_and_consent() {
        let reg = Registry::new(default_registry());
        let none = ConsentState::default();
        let subject = |c| {
            Some(Subject {
                id: "s",
                consent: c,
                restricted: false,
            })
        };
        let tool = caller(
            Role::CampaignTool,
            &["newsletter", "canvassing"],
            Some("newsletter"),
        );

        // Without consent: refused, naming the missing consent.
        let d = decide(&tool, Rpc::SupportersGet, &reg, subject(&none), None).unwrap_err();
        assert_eq!(d.code, "no-consent");
        assert!(
            d.error
                .to_string()
                .contains("no active consent for purpose newsletter")
        );
        // With consent: allowed, fields of the purpose only.
        let yes = consented("newsletter", Channel::Email);
        let ok = decide(&tool, Rpc::SupportersGet, &reg, subject(&yes), None).unwrap();
        assert!(ok.fields.contains(Field::Email) && !ok.fields.contains(Field::Phone));
        // Channel-targeted: consent on another channel does not count.
        let d = decide(
            &tool,
            Rpc::SupportersGet,
            &reg,
            subject(&yes),
            Some(Channel::Sms),
        )
        .unwrap_err();
        assert_eq!(d.code, "no-consent");
        // A basis other than consent needs no consent.
        let canvass = caller(Role::CampaignTool, &["canvassing"], Some("canvassing"));
        assert!(decide(&canvass, Rpc::SupportersGet, &reg, subject(&none), None).is_ok());
        // Consent calls need the purpose, not the consent.
        assert!(decide(&tool, Rpc::ConsentGrant, &reg, subject(&none), None).is_ok());
    }

    #[test]
    fn purpose_statuses() {
        let reg = Registry::new(default_registry());
        let missing = caller(Role::CampaignTool, &["newsletter"], None);
        let d = decide(&missing, Rpc::SupportersGet, &reg, None, None).unwrap_err();
        assert_eq!(d.code, "purpose-missing");
        assert!(matches!(d.error, Error::InvalidInput(_)));
        let unknown = caller(Role::CampaignTool, &["newsletter"], Some("spam"));
        let d = decide(&unknown, Rpc::SupportersGet, &reg, None, None).unwrap_err();
        assert_eq!(d.code, "purpose-unknown");
        assert!(matches!(d.error, Error::InvalidInput(_)));
        let forbidden = caller(Role::CampaignTool, &["newsletter"], Some("membership"));
        let d = decide(&forbidden, Rpc::SupportersGet, &reg, None, None).unwrap_err();
        assert_eq!(d.code, "purpose-not-allowed");
        assert!(matches!(d.error, Error::PermissionDenied(_)));
        let sneaky = caller(Role::CampaignTool, &[DPO_PURPOSE], Some(DPO_PURPOSE));
        assert_eq!(
            decide(&sneaky, Rpc::SupportersGet, &reg, None, None)
                .unwrap_err()
                .code,
            "purpose-not-allowed"
        );
        let dpo = caller(Role::Dpo, &[], Some(DPO_PURPOSE));
        assert!(decide(&dpo, Rpc::SupportersGet, &reg, None, None).is_ok());
        let dpo_wrong = caller(Role::Dpo, &[], Some("newsletter"));
        assert!(decide(&dpo_wrong, Rpc::SupportersGet, &reg, None, None).is_err());
    }

    #[test]
    fn auditors_and_admins_never_touch_personal_data() {
        let reg = Registry::new(default_registry());
        for role in [Role::Auditor, Role::Admin] {
            let c = caller(role, &["membership"], Some("membership"));
            for rpc in Rpc::ALL.into_iter().filter(|r| r.touches_personal_data()) {
                let d = decide(&c, rpc, &reg, None, None).unwrap_err();
                assert_eq!(d.code, "role", "{role} {rpc}");
            }
        }
        let admin = caller(Role::Admin, &[], None);
        assert!(decide(&admin, Rpc::AdminCreateClient, &reg, None, None).is_ok());
        let tool = caller(Role::CampaignTool, &["membership"], None);
        assert_eq!(
            decide(&tool, Rpc::AdminListClients, &reg, None, None)
                .unwrap_err()
                .code,
            "role"
        );
    }
}
