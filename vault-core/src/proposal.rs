//! Separation of duties among administrators: changes that widen access to personal data
//! take two admins, one who proposes and another who approves.
//!
//! The admin role reads no personal data, but it decides who may: a dpo client exports
//! anyone, a campaign tool reads its purposes' fields, a purpose's fields, channels and
//! basis say what those tools see and on what ground, and a shorter retention makes the
//! next sweep crypto-shred whoever it no longer covers. One admin alone, or one stolen admin
//! token, must not be able to do any of that. So [`needs_second_admin`] names what widens
//! (a [`Change`] and what the store holds now), `Admin.CreateClient` and `Admin.PutPurpose`
//! refuse it, and `Admin.ProposeChange` stores it as a [`Proposal`] (an authenticated
//! security row) that a *different* admin approves by id with `Admin.ApproveProposal`,
//! which applies the change and marks the proposal approved in one batch. Narrowing
//! (fewer fields, a longer retention, revocations) stays one-admin: it never gives anyone
//! more.
//!
//! A proposal carries the SHA-256 of its change's canonical bytes ([`Change::canonical`]):
//! the approver may name the hash it reviewed, and the approval applies exactly that.
//! A proposal is pinned to the state it was made against (the purpose as it was, the
//! certificate not yet bound): if that changed before the approval, the approval is
//! refused and the change must be proposed again. Proposals expire after
//! [`PROPOSAL_LIFETIME_US`].

use serde::{Deserialize, Serialize};

use crate::access::Role;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::purpose::Purpose;

/// How long a proposal may be approved: 24 hours.
pub const PROPOSAL_LIFETIME_US: i64 = 24 * 3600 * 1_000_000;

/// A client as proposed: what it will be once approved. Its id is chosen at the proposal
/// and its token handed to the proposer then (it works only once the client exists).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposedClient {
    /// The client as it will be created (`created_at_us` is the proposal's time).
    pub client: Client,
    /// SHA-256 (hex) of its token.
    pub token_sha256: String,
}

/// A change an admin proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Change {
    /// `Admin.CreateClient`.
    CreateClient(ProposedClient),
    /// `Admin.PutPurpose`, with the purpose as it was when proposed (`None`: new).
    PutPurpose {
        /// The purpose to install.
        purpose: Purpose,
        /// The purpose of that id when the change was proposed; the approval requires it
        /// unchanged.
        previous: Option<Purpose>,
    },
}

impl Change {
    /// The change's canonical bytes: JSON with fields in declaration order and sets sorted
    /// (the types hold only structs, strings, numbers and ordered sets), so equal changes
    /// have equal bytes.
    pub fn canonical(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Codec(e.to_string()))
    }

    /// SHA-256 (hex) of [`Change::canonical`].
    pub fn sha256(&self) -> Result<String> {
        let bytes = self.canonical()?;
        Ok(hex::encode(
            ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref(),
        ))
    }

    /// A short description, for listings and logs (ids and names only).
    pub fn summary(&self) -> String {
        match self {
            Change::CreateClient(p) => {
                let purposes: Vec<&str> = p.client.purposes.iter().map(String::as_str).collect();
                format!(
                    "create client {} (role {}{})",
                    p.client.name,
                    p.client.role,
                    if purposes.is_empty() {
                        String::new()
                    } else {
                        format!(", purposes {}", purposes.join(", "))
                    }
                )
            }
            Change::PutPurpose { purpose, previous } => format!(
                "{} purpose {}",
                if previous.is_some() { "change" } else { "add" },
                purpose.id
            ),
        }
    }
}

/// Where a proposal is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ProposalState {
    /// Waiting for a second admin (until it expires).
    Pending,
    /// Approved and applied.
    Approved {
        /// The approving admin's client id.
        by: String,
        /// When, microseconds since the Unix epoch.
        at_us: i64,
    },
}

/// A proposed change, as stored in [`crate::storage::Table::Proposals`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// Proposal id (a UUID).
    pub id: String,
    /// The change.
    pub change: Change,
    /// SHA-256 (hex) of the change's canonical bytes.
    pub change_sha256: String,
    /// Why it needs a second admin (empty when proposed although one admin could have made
    /// it).
    pub widens: Vec<String>,
    /// The proposing admin's client id.
    pub proposed_by: String,
    /// When, microseconds since the Unix epoch.
    pub proposed_at_us: i64,
    /// After this it can no longer be approved.
    pub expires_at_us: i64,
    /// Pending or approved.
    pub state: ProposalState,
}

/// A proposal's status at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProposalStatus {
    /// Waiting for a second admin.
    Pending,
    /// Approved and applied.
    Approved,
    /// Not approved in time.
    Expired,
}

impl ProposalStatus {
    /// The API name: `pending`, `approved` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProposalStatus::Pending => "pending",
            ProposalStatus::Approved => "approved",
            ProposalStatus::Expired => "expired",
        }
    }
}

impl Proposal {
    /// Its status at `now_us`.
    pub fn status(&self, now_us: i64) -> ProposalStatus {
        match self.state {
            ProposalState::Approved { .. } => ProposalStatus::Approved,
            ProposalState::Pending if now_us >= self.expires_at_us => ProposalStatus::Expired,
            ProposalState::Pending => ProposalStatus::Pending,
        }
    }
}

/// Why `change` widens access to personal data, given what the store holds now (for a
/// client, `active_admins`: how many active admin clients there are). Empty: one admin may
/// make it.
pub fn needs_second_admin(change: &Change, active_admins: usize) -> Vec<String> {
    let mut why = Vec::new();
    match change {
        Change::CreateClient(p) => match p.client.role {
            Role::Dpo => why.push("a dpo client reads and exports every supporter".to_owned()),
            Role::CampaignTool => why.push(format!(
                "a campaign tool gains access to personal data under purposes {}",
                p.client
                    .purposes
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            // A new admin is a new vote: once two admins hold the vault, a third needs both
            // sides. A lone admin (the bootstrap) has nobody to ask.
            Role::Admin if active_admins >= 2 => why.push(
                "a new admin can approve the others' proposals; with two admins or more, \
                 adding one takes two"
                    .to_owned(),
            ),
            Role::Admin | Role::Auditor => {}
        },
        Change::PutPurpose {
            purpose,
            previous: None,
        } => why.push(format!("{} is a new purpose", purpose.id)),
        Change::PutPurpose {
            purpose: new,
            previous: Some(old),
        } => {
            let added: Vec<&str> = new
                .fields
                .iter()
                .filter(|f| !old.fields.contains(*f))
                .map(|f| f.path())
                .collect();
            if !added.is_empty() {
                why.push(format!("fields added: {}", added.join(", ")));
            }
            let channels: Vec<&str> = new
                .channels
                .difference(&old.channels)
                .map(|c| c.as_str())
                .collect();
            if !channels.is_empty() {
                why.push(format!("channels added: {}", channels.join(", ")));
            }
            let reaches: Vec<&str> = new
                .reaches_collected_for
                .difference(&old.reaches_collected_for)
                .map(String::as_str)
                .collect();
            if !reaches.is_empty() {
                why.push(format!(
                    "now also reaches the people collected for: {}",
                    reaches.join(", ")
                ));
            }
            if new.lawful_basis != old.lawful_basis {
                why.push(format!(
                    "lawful basis {} -> {}",
                    old.lawful_basis, new.lawful_basis
                ));
            }
            if new.special_category_basis != old.special_category_basis {
                why.push(format!(
                    "special-category basis {} -> {}",
                    old.special_category_basis, new.special_category_basis
                ));
            }
            if new.retention_days < old.retention_days {
                why.push(format!(
                    "retention shortened from {} to {} days (the sweep erases whoever it no \
                     longer covers)",
                    old.retention_days, new.retention_days
                ));
            }
        }
    }
    why
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::purpose::{Channel, default_registry};
    use crate::supporter::{Field, FieldSet};

    fn put(new: &Purpose, old: &Purpose) -> Vec<String> {
        needs_second_admin(
            &Change::PutPurpose {
                purpose: new.clone(),
                previous: Some(old.clone()),
            },
            1,
        )
    }

    #[test]
    fn widening_and_narrowing_purposes() {
        let old = default_registry()[0].clone();
        assert!(put(&old, &old).is_empty(), "the same purpose again");
        let mut p = old.clone();
        p.description = "Reworded".into();
        p.retention_days += 1;
        p.fields = FieldSet::empty().with(Field::Email);
        assert!(put(&p, &old).is_empty(), "fewer fields, longer retention");
        let mut p = old.clone();
        p.fields = p.fields.with(Field::Phone);
        assert_eq!(put(&p, &old), ["fields added: phone"]);
        let mut p = old.clone();
        p.channels.insert(Channel::Sms);
        assert_eq!(put(&p, &old), ["channels added: sms"]);
        let mut r = old.clone();
        r.reaches_collected_for.insert("membership".into());
        assert_eq!(
            put(&r, &old),
            ["now also reaches the people collected for: membership"]
        );
        let mut p = old.clone();
        p.lawful_basis = crate::purpose::LawfulBasis::LegitimateInterest;
        assert_eq!(put(&p, &old).len(), 1);
        let mut p = old.clone();
        p.retention_days -= 1;
        assert!(put(&p, &old)[0].starts_with("retention shortened"));
        let new = Change::PutPurpose {
            purpose: old.clone(),
            previous: None,
        };
        assert_eq!(needs_second_admin(&new, 1).len(), 1);
    }

    fn client(role: Role, purposes: &[&str]) -> Change {
        Change::CreateClient(ProposedClient {
            client: Client {
                id: "c".into(),
                name: "n".into(),
                role,
                purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
                created_at_us: 1,
                revoked_at_us: None,
                cert_sha256: None,
                expires_at_us: None,
            },
            token_sha256: "00".repeat(32),
        })
    }

    #[test]
    fn clients_that_read_personal_data_need_two() {
        assert!(!needs_second_admin(&client(Role::Dpo, &[]), 1).is_empty());
        assert!(!needs_second_admin(&client(Role::CampaignTool, &["newsletter"]), 5).is_empty());
        assert!(needs_second_admin(&client(Role::Auditor, &[]), 5).is_empty());
        assert!(needs_second_admin(&client(Role::Admin, &[]), 1).is_empty());
        assert!(!needs_second_admin(&client(Role::Admin, &[]), 2).is_empty());
    }

    #[test]
    fn canonical_bytes_and_hash_are_stable() {
        let a = client(Role::Dpo, &[]);
        let b = client(Role::Dpo, &[]);
        assert_eq!(a.canonical().unwrap(), b.canonical().unwrap());
        assert_eq!(a.sha256().unwrap(), b.sha256().unwrap());
        assert_ne!(
            a.sha256().unwrap(),
            client(Role::Auditor, &[]).sha256().unwrap()
        );
        assert_eq!(a.sha256().unwrap().len(), 64);
    }
}
