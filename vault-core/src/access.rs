//! Who is calling, and the one access decision point.
//!
//! [`decide`] rules on every call from (client, role, rpc, purpose, subject): the role may
//! call the rpc; the client may use the declared purpose; the subject has a basis for it (a
//! consent-based purpose needs the person's active consent, on the channel when the call
//! targets one; any other purpose reaches the people collected for it), is not restricted
//! and has not objected to it; and the reply may carry only the purpose's fields. A person
//! outside the caller's basis is answered exactly as an absent one ([`no_supporter`]). Policy lives here, in
//! the library, so an embedded user gets exactly the daemon's checks. Every decision, allow
//! or deny, is handed to the access log by the caller of [`decide`] ([`crate::Vault`]).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::consent::ConsentState;
pub use crate::denial::DenialReason;
use crate::error::{Error, InvalidInput};
use crate::purpose::{Channel, DPO_PURPOSE, Purpose, Registry};
use crate::supporter::FieldSet;

/// The request metadata key a call declares its purpose in (`x-vault-purpose: <purpose
/// id>`), and so the field a missing or unknown purpose is reported against. The wire's
/// constants are gathered in `vault_proto::metadata`; a test in `vault-server` pins the
/// two equal.
pub const PURPOSE_METADATA_KEY: &str = "x-vault-purpose";

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
    /// Channels the person objected to (art. 21).
    pub objected: &'a BTreeSet<Channel>,
    /// Purposes the data was collected for: the basis of a purpose that does not rest on
    /// consent.
    pub collected_for: &'a BTreeSet<String>,
}

/// The answer for a supporter id that names no one the caller may see. A person outside
/// the caller's basis gets exactly this answer, as an absent person does: being in the file
/// reveals a political opinion, and "restricted" or "objected" would reveal a rights request.
pub fn no_supporter(id: &str) -> Error {
    Error::NotFound(format!("no supporter with id {id}"))
}

/// Whether `purpose` holds for `subject` for an ordinary call (not counting restriction and
/// objection): a consent-based purpose needs an active consent (on `channel` when the call
/// targets one); any other purpose reaches the people whose data was collected for it, or
/// for a purpose it names in [`Purpose::reaches_collected_for`].
pub fn has_basis(purpose: &Purpose, subject: &Subject<'_>, channel: Option<Channel>) -> bool {
    if purpose.needs_consent() {
        subject.consent.is_active(&purpose.id, channel)
    } else {
        subject.collected_for.contains(&purpose.id)
            || purpose
                .reaches_collected_for
                .iter()
                .any(|p| subject.collected_for.contains(p))
    }
}

/// Whether the person objected to what a call under `purpose` would do: to the channel it
/// targets, or to every channel the purpose contacts people through.
pub fn objects_to(purpose: &Purpose, subject: &Subject<'_>, channel: Option<Channel>) -> bool {
    match channel {
        Some(c) => subject.objected.contains(&c),
        None => purpose
            .channels
            .iter()
            .all(|c| subject.objected.contains(c)),
    }
}

/// What an allowed call may do.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The declared purpose, resolved (absent for calls without personal data).
    pub purpose: Option<Purpose>,
    /// The fields the call may read or write.
    pub fields: FieldSet,
}

/// Why a call was refused: the reason for the access log, and the error for the caller.
#[derive(Debug)]
pub struct Denied {
    /// The reason the access log records (its stable code: [`DenialReason::code`]).
    pub code: DenialReason,
    /// The error returned to the caller.
    pub error: Error,
}

fn deny(code: DenialReason, error: Error) -> Denied {
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
            DenialReason::Role,
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
            DenialReason::PurposeMissing,
            InvalidInput::new(
                PURPOSE_METADATA_KEY,
                format!("{rpc} touches personal data: declare why with metadata `{PURPOSE_METADATA_KEY}: <purpose id>`"),
            )
            .into(),
        ));
    };
    let Some(purpose) = registry.get(purpose_id) else {
        let shown: String = purpose_id.chars().take(64).collect();
        return Err(deny(
            DenialReason::PurposeUnknown,
            InvalidInput::new(
                PURPOSE_METADATA_KEY,
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
            DenialReason::PurposeNotAllowed,
            Error::PermissionDenied(format!(
                "client {} may not use purpose {}: {detail}",
                caller.client_id, purpose.id
            )),
        ));
    }
    if let Some(subject) = subject.filter(|_| caller.role != Role::Dpo)
        && let Some(code) = subject_refusal(rpc, purpose, &subject, channel)
    {
        return Err(deny(code, no_supporter(subject.id)));
    }
    Ok(Decision {
        fields: purpose.fields,
        purpose: Some(purpose.clone()),
    })
}

/// Why a campaign tool may not act on `subject` under `purpose`, if it may not: the code
/// for the access log (the caller gets [`no_supporter`] whatever the code).
///
/// - Restriction (art. 18) keeps the data but stops every use of it but the DPO's;
///   withdrawing consent stays possible (it only reduces processing).
/// - An objection (art. 21) to the channel the call targets, or to every channel of the
///   purpose, stops the purpose (withdrawal excepted).
/// - Ordinary calls need the basis ([`has_basis`]). Consent calls are how a basis is made
///   or ended: Grant needs none (the operation asks for proof that the caller collected it:
///   the contact point it came through); Withdraw, Status and History need the person to be
///   known to the purpose: a basis now, or a consent event of the purpose on record.
fn subject_refusal(
    rpc: Rpc,
    purpose: &Purpose,
    subject: &Subject<'_>,
    channel: Option<Channel>,
) -> Option<DenialReason> {
    let withdrawal = rpc == Rpc::ConsentWithdraw;
    if subject.restricted && !withdrawal {
        return Some(DenialReason::Restricted);
    }
    // A grant's own check refuses consent on an objected channel, with the reason: the
    // caller proved it knows the person (the contact point the consent came through).
    if !withdrawal && rpc != Rpc::ConsentGrant && objects_to(purpose, subject, channel) {
        return Some(DenialReason::Objected);
    }
    let known = || {
        has_basis(purpose, subject, None)
            || subject.consent.statuses().any(|s| s.purpose == purpose.id)
    };
    match rpc {
        Rpc::ConsentGrant => None,
        Rpc::ConsentWithdraw | Rpc::ConsentStatus | Rpc::ConsentHistory => {
            (!known()).then_some(DenialReason::NoBasis)
        }
        _ if !has_basis(purpose, subject, channel) => Some(if purpose.needs_consent() {
            DenialReason::NoConsent
        } else {
            DenialReason::NotCollected
        }),
        _ => None,
    }
}

/// The purposes of `registry` a campaign tool allowed them would have a basis for on
/// `subject`: exactly those for which [`decide`] allows `Supporters.Get` of the subject
/// (see [`has_basis`]; not restricted, not objecting to every channel of the purpose). The DPO's purpose is left out: the DPO acts on everyone, restricted or not.
///
/// The change feed records this list on the event that ends a basis (a withdrawal, an
/// objection, a restriction, an erasure), since after it the person's state can no longer
/// say who had a basis just before (see [`crate::changes`]).
pub fn basis_purposes(registry: &Registry, subject: Subject<'_>) -> Vec<String> {
    let mut tool = Caller {
        client_id: String::new(),
        role: Role::CampaignTool,
        allowed_purposes: registry
            .iter()
            .filter(|p| p.id != DPO_PURPOSE)
            .map(|p| p.id.clone())
            .collect(),
        purpose: None,
        request_id: String::new(),
    };
    let mut out = Vec::new();
    for id in tool.allowed_purposes.clone() {
        tool.purpose = Some(id.clone());
        if decide(&tool, Rpc::SupportersGet, registry, Some(subject), None).is_ok() {
            out.push(id);
        }
    }
    out
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

    /// A person as the tests need one: consent, collected-for purposes, objections,
    /// restriction.
    struct Person {
        consent: ConsentState,
        collected_for: BTreeSet<String>,
        objected: BTreeSet<Channel>,
        restricted: bool,
    }

    impl Person {
        fn new(consent: ConsentState, collected_for: &[&str]) -> Self {
            Person {
                consent,
                collected_for: collected_for.iter().map(|p| (*p).to_owned()).collect(),
                objected: BTreeSet::new(),
                restricted: false,
            }
        }

        fn subject(&self) -> Option<Subject<'_>> {
            Some(Subject {
                id: "s",
                consent: &self.consent,
                restricted: self.restricted,
                objected: &self.objected,
                collected_for: &self.collected_for,
            })
        }
    }

    #[test]
    fn roles_purposes_and_consent() {
        let reg = Registry::new(default_registry());
        let none = Person::new(ConsentState::default(), &["newsletter"]);
        let tool = caller(
            Role::CampaignTool,
            &["newsletter", "canvassing"],
            Some("newsletter"),
        );

        // Without consent: refused, and answered as for an absent person.
        let d = decide(&tool, Rpc::SupportersGet, &reg, none.subject(), None).unwrap_err();
        assert_eq!(d.code, "no-consent");
        assert!(matches!(&d.error, Error::NotFound(m) if m == "no supporter with id s"));
        // With consent: allowed, fields of the purpose only.
        let yes = Person::new(consented("newsletter", Channel::Email), &["newsletter"]);
        let ok = decide(&tool, Rpc::SupportersGet, &reg, yes.subject(), None).unwrap();
        assert!(ok.fields.contains(Field::Email) && !ok.fields.contains(Field::Phone));
        // Channel-targeted: consent on another channel does not count.
        let d = decide(
            &tool,
            Rpc::SupportersGet,
            &reg,
            yes.subject(),
            Some(Channel::Sms),
        )
        .unwrap_err();
        assert_eq!(d.code, "no-consent");
        // Consent Grant needs the purpose, not the consent (the operation asks for proof).
        assert!(decide(&tool, Rpc::ConsentGrant, &reg, none.subject(), None).is_ok());
        // Withdraw, Status and History need a consent event of the purpose on record.
        for rpc in [
            Rpc::ConsentWithdraw,
            Rpc::ConsentStatus,
            Rpc::ConsentHistory,
        ] {
            assert_eq!(
                decide(&tool, rpc, &reg, none.subject(), None)
                    .unwrap_err()
                    .code,
                "no-basis"
            );
            assert!(decide(&tool, rpc, &reg, yes.subject(), None).is_ok());
        }
    }

    #[test]
    fn a_basis_other_than_consent_reaches_the_people_collected_for_it() {
        let reg = Registry::new(default_registry());
        let canvass = caller(Role::CampaignTool, &["canvassing"], Some("canvassing"));
        let theirs = Person::new(ConsentState::default(), &["canvassing"]);
        assert!(decide(&canvass, Rpc::SupportersGet, &reg, theirs.subject(), None).is_ok());
        // Collected for the newsletter only, even with its consent: not canvassing's.
        let other = Person::new(consented("newsletter", Channel::Email), &["newsletter"]);
        let d = decide(&canvass, Rpc::SupportersGet, &reg, other.subject(), None).unwrap_err();
        assert_eq!(d.code, "not-collected");
        assert!(matches!(d.error, Error::NotFound(_)));
        // The documented rule: canvassing also reaches members.
        let member = Person::new(ConsentState::default(), &["membership"]);
        assert!(decide(&canvass, Rpc::SupportersGet, &reg, member.subject(), None).is_ok());
        // Donations accounting reaches donors only.
        let books = caller(
            Role::CampaignTool,
            &["donations-accounting"],
            Some("donations-accounting"),
        );
        assert!(decide(&books, Rpc::SupportersGet, &reg, member.subject(), None).is_err());
    }

    #[test]
    fn objection_and_restriction_read_as_absence() {
        let reg = Registry::new(default_registry());
        let canvass = caller(Role::CampaignTool, &["canvassing"], Some("canvassing"));
        let dpo = caller(Role::Dpo, &[], Some(DPO_PURPOSE));
        let mut p = Person::new(ConsentState::default(), &["canvassing", "membership"]);
        p.objected.insert(Channel::InPerson);
        for rpc in [
            Rpc::SupportersGet,
            Rpc::SupportersLookup,
            Rpc::SupportersUpdate,
            Rpc::SupportersTag,
            Rpc::SupportersUntag,
        ] {
            let d = decide(&canvass, rpc, &reg, p.subject(), None).unwrap_err();
            assert_eq!(d.code, "objected", "{rpc}");
            assert!(matches!(&d.error, Error::NotFound(m) if m == "no supporter with id s"));
        }
        assert!(decide(&dpo, Rpc::SupportersGet, &reg, p.subject(), None).is_ok());
        // Membership contacts people on every channel: one objection leaves the others,
        // but a call targeting the objected channel is refused.
        let member = caller(Role::CampaignTool, &["membership"], Some("membership"));
        assert!(decide(&member, Rpc::SupportersGet, &reg, p.subject(), None).is_ok());
        assert_eq!(
            decide(
                &member,
                Rpc::SupportersGet,
                &reg,
                p.subject(),
                Some(Channel::InPerson)
            )
            .unwrap_err()
            .code,
            "objected"
        );
        // Restriction: nobody but the DPO, and it reads as absence too.
        let mut r = Person::new(consented("newsletter", Channel::Email), &["canvassing"]);
        r.restricted = true;
        let d = decide(&canvass, Rpc::SupportersGet, &reg, r.subject(), None).unwrap_err();
        assert_eq!(d.code, "restricted");
        assert!(matches!(&d.error, Error::NotFound(m) if m == "no supporter with id s"));
        assert!(decide(&dpo, Rpc::SupportersGet, &reg, r.subject(), None).is_ok());
        // Withdrawing stays possible during a restriction.
        let tool = caller(Role::CampaignTool, &["newsletter"], Some("newsletter"));
        assert!(decide(&tool, Rpc::ConsentWithdraw, &reg, r.subject(), None).is_ok());
    }

    #[test]
    fn basis_purposes_are_what_get_allows() {
        let reg = Registry::new(default_registry());
        let news = consented("newsletter", Channel::Email);
        let none = ConsentState::default();
        // Collected for membership (a contract), like a member signing up.
        let collected: BTreeSet<String> = ["membership".to_owned()].into_iter().collect();
        let objected = BTreeSet::new();
        let of = |consent: &ConsentState, restricted| {
            basis_purposes(
                &reg,
                Subject {
                    id: "s",
                    consent,
                    restricted,
                    objected: &objected,
                    collected_for: &collected,
                },
            )
        };
        let with_news = of(&news, false);
        assert!(with_news.contains(&"newsletter".to_owned()));
        assert!(with_news.contains(&"membership".to_owned()));
        assert!(!with_news.contains(&"sms-mobilisation".to_owned()));
        assert!(!with_news.contains(&DPO_PURPOSE.to_owned()));
        assert!(!of(&none, false).contains(&"newsletter".to_owned()));
        // Restricted: nobody but the DPO, whose purpose is not listed.
        assert!(of(&news, true).is_empty());
        // The same judgement as decide, purpose by purpose.
        for consent in [&news, &none] {
            for restricted in [false, true] {
                let listed = of(consent, restricted);
                for p in reg.iter().filter(|p| p.id != DPO_PURPOSE) {
                    let tool = caller(Role::CampaignTool, &[p.id.as_str()], Some(&p.id));
                    let subject = Subject {
                        id: "s",
                        consent,
                        restricted,
                        objected: &objected,
                        collected_for: &collected,
                    };
                    let allowed =
                        decide(&tool, Rpc::SupportersGet, &reg, Some(subject), None).is_ok();
                    assert_eq!(listed.contains(&p.id), allowed, "{}", p.id);
                }
            }
        }
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
