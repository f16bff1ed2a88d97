//! `vaultctl client ...` (register, revoke, list clients) and `vaultctl admin ...` (the
//! separation of duties: propose what widens access, list proposals, approve another
//! admin's). Admin role; no purpose.

use std::path::PathBuf;

use clap::Subcommand;
use vault_proto::v1 as pb;

use super::CtlError;
use super::purpose::read_purpose;
use crate::client::Session;
use crate::client::output::{client_json, proposal_json};

#[derive(Debug, Subcommand)]
pub(crate) enum ClientCommand {
    /// Register a client and print its token (shown once).
    Create {
        /// Name, e.g. mailer.
        #[arg(long)]
        name: String,
        /// campaign-tool, dpo, auditor or admin.
        #[arg(long)]
        role: String,
        /// Comma-separated purposes (campaign-tool).
        #[arg(long, value_delimiter = ',')]
        purposes: Vec<String>,
        /// SHA-256 fingerprint of the client's TLS certificate, for mutual TLS.
        #[arg(long)]
        cert_sha256: Option<String>,
        /// Hours after which the client's token (and certificate) stop working. Without
        /// it, the client works until revoked.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        expires_in_hours: Option<u32>,
    },
    /// Revoke a client: its token is refused from the next call on.
    Revoke {
        /// Client id.
        id: String,
    },
    /// List clients.
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Propose a client for another admin to approve: a dpo, a campaign tool (any client that
    /// reads personal data), or a third admin. Prints the proposal and the client's token
    /// (shown once; it works once the proposal is approved).
    ProposeClient {
        /// Name, e.g. mailer.
        #[arg(long)]
        name: String,
        /// campaign-tool, dpo, auditor or admin.
        #[arg(long)]
        role: String,
        /// Comma-separated purposes (campaign-tool).
        #[arg(long, value_delimiter = ',')]
        purposes: Vec<String>,
        /// SHA-256 fingerprint of the client's TLS certificate, for mutual TLS.
        #[arg(long)]
        cert_sha256: Option<String>,
        /// Hours after which the client's token (and certificate) stop working.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        expires_in_hours: Option<u32>,
    },
    /// Propose a purpose for another admin to approve (a new one, or a change that adds
    /// fields or channels, changes a basis or shortens the retention), from a JSON file with
    /// the keys `purpose list` prints.
    ProposePurpose {
        /// The purpose as JSON (`-` for standard input).
        #[arg(long)]
        file: PathBuf,
    },
    /// List the proposals waiting for a second admin, newest first, with their changes.
    Proposals {
        /// Every proposal kept, approved and expired ones too.
        #[arg(long)]
        all: bool,
    },
    /// Approve another admin's proposal: its change is applied at once.
    Approve {
        /// Proposal id.
        id: String,
        /// The change_sha256 you reviewed (from `admin proposals`): the approval is refused
        /// if the proposal's differs.
        #[arg(long)]
        sha256: Option<String>,
    },
}

/// The expiry `hours` from now, whole seconds.
fn expiry_in_hours(hours: Option<u32>) -> Option<prost_types::Timestamp> {
    hours.map(|h| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        prost_types::Timestamp {
            seconds: i64::try_from(now + u64::from(h) * 3600).unwrap_or(i64::MAX),
            nanos: 0,
        }
    })
}

/// Runs a `client` command.
pub(crate) async fn clients(session: &Session, command: ClientCommand) -> Result<String, CtlError> {
    let mut admin = session.admin();
    let json = match command {
        ClientCommand::Create {
            name,
            role,
            purposes,
            cert_sha256,
            expires_in_hours,
        } => {
            let expires_at = expiry_in_hours(expires_in_hours);
            let r = admin
                .create_client(session.request(pb::CreateClientRequest {
                    name,
                    role,
                    purposes,
                    cert_sha256: cert_sha256.unwrap_or_default(),
                    expires_at,
                })?)
                .await?
                .into_inner();
            let client = r.client.as_ref().map(client_json).unwrap_or_default();
            serde_json::json!({ "client": client, "token": r.token })
        }
        ClientCommand::Revoke { id } => client_json(
            &admin
                .revoke_client(session.request(pb::RevokeClientRequest { id })?)
                .await?
                .into_inner(),
        ),
        ClientCommand::List => {
            let r = admin
                .list_clients(session.request(pb::ListClientsRequest {})?)
                .await?
                .into_inner();
            serde_json::Value::from(r.clients.iter().map(client_json).collect::<Vec<_>>())
        }
    };
    Ok(json.to_string())
}

/// Runs an `admin` command.
pub(crate) async fn run(session: &Session, command: AdminCommand) -> Result<String, CtlError> {
    use pb::propose_change_request::Change;
    let mut admin = session.admin();
    let propose = |change| pb::ProposeChangeRequest {
        change: Some(change),
    };
    let json = match command {
        AdminCommand::ProposeClient {
            name,
            role,
            purposes,
            cert_sha256,
            expires_in_hours,
        } => {
            let r = admin
                .propose_change(session.request(propose(Change::CreateClient(
                    pb::CreateClientRequest {
                        name,
                        role,
                        purposes,
                        cert_sha256: cert_sha256.unwrap_or_default(),
                        expires_at: expiry_in_hours(expires_in_hours),
                    },
                )))?)
                .await?
                .into_inner();
            serde_json::json!({
                "proposal": r.proposal.as_ref().map(proposal_json),
                "token": r.token,
            })
        }
        AdminCommand::ProposePurpose { file } => {
            let purpose = read_purpose(&file)?;
            let r = admin
                .propose_change(session.request(propose(Change::PutPurpose(purpose)))?)
                .await?
                .into_inner();
            serde_json::json!({ "proposal": r.proposal.as_ref().map(proposal_json) })
        }
        AdminCommand::Proposals { all } => {
            let r = admin
                .list_proposals(session.request(pb::ListProposalsRequest { all })?)
                .await?
                .into_inner();
            serde_json::Value::from(r.proposals.iter().map(proposal_json).collect::<Vec<_>>())
        }
        AdminCommand::Approve { id, sha256 } => proposal_json(
            &admin
                .approve_proposal(session.request(pb::ApproveProposalRequest {
                    id,
                    change_sha256: sha256.unwrap_or_default(),
                })?)
                .await?
                .into_inner(),
        ),
    };
    Ok(json.to_string())
}
