//! The `vault.v1.Admin` service: clients, purposes, the proposals and approvals of what
//! takes two admins, key rotation, backups and the erasure journal exported for their
//! restore, the retention sweep and the record of processing activities.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use vault_core::proposal::ProposalStatus;
use vault_core::report::Controller;
use vault_core::{InvalidInput, Role, Rpc, Vault};
use vault_proto::v1 as pb;
use vault_proto::v1::admin_server::Admin;

use super::{accepted, finish};
use crate::daemon::convert::{
    client_to_pb, proposal_to_pb, purpose_from_pb, purpose_to_pb, timestamp,
};
use crate::daemon::layers::auth::caller;

/// The reply of `Admin.Backup`.
fn manifest_to_pb(m: vault_core::backup::BackupManifest) -> pb::BackupManifest {
    pb::BackupManifest {
        path: m.path,
        taken_at: timestamp(m.taken_at_us),
        audit_size: m.audit_size,
        supporters: m.supporters,
        epochs: m.epochs,
        format_version: m.format_version,
        erasures: m.erasures,
    }
}

/// Chunk size of `ExportErasureJournal` replies.
const JOURNAL_CHUNK: usize = 64 * 1024;

type JournalStream =
    Pin<Box<dyn Stream<Item = Result<pb::ErasureJournalChunk, Status>> + Send + 'static>>;

/// The Admin service over a vault.
pub struct AdminService {
    vault: Arc<Vault>,
    controller: Controller,
    storage: String,
}

impl AdminService {
    /// The service for `vault`; `controller` and `storage` (where the data lives) feed the
    /// record of processing activities.
    pub fn new(vault: Arc<Vault>, controller: Controller, storage: String) -> Self {
        Self {
            vault,
            controller,
            storage,
        }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_client(
        &self,
        request: Request<pb::CreateClientRequest>,
    ) -> Result<Response<pb::CreateClientResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let role = req.role.parse::<Role>();
            let role = accepted(&self.vault, &caller, Rpc::AdminCreateClient, role).await?;
            let cert = (!req.cert_sha256.is_empty()).then_some(req.cert_sha256.as_str());
            let expires_at_us = req.expires_at.as_ref().map(crate::daemon::convert::micros);
            self.vault
                .create_client(
                    &caller,
                    req.name.trim(),
                    role,
                    &req.purposes,
                    cert,
                    expires_at_us,
                )
                .await
        }
        .await;
        finish(&caller, "Admin.CreateClient", result).map(|(client, token)| {
            Response::new(pb::CreateClientResponse {
                client: Some(client_to_pb(client)),
                token: token.to_string(),
            })
        })
    }

    async fn revoke_client(
        &self,
        request: Request<pb::RevokeClientRequest>,
    ) -> Result<Response<pb::Client>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self.vault.revoke_client(&caller, &req.id).await;
        finish(&caller, "Admin.RevokeClient", result).map(|c| Response::new(client_to_pb(c)))
    }

    async fn list_clients(
        &self,
        request: Request<pb::ListClientsRequest>,
    ) -> Result<Response<pb::ListClientsResponse>, Status> {
        let caller = caller(&request)?;
        let result = self.vault.list_clients(&caller).await;
        finish(&caller, "Admin.ListClients", result).map(|clients| {
            Response::new(pb::ListClientsResponse {
                clients: clients.into_iter().map(client_to_pb).collect(),
            })
        })
    }

    async fn list_purposes(
        &self,
        request: Request<pb::ListPurposesRequest>,
    ) -> Result<Response<pb::ListPurposesResponse>, Status> {
        let caller = caller(&request)?;
        let result = self.vault.list_purposes(&caller).await;
        finish(&caller, "Admin.ListPurposes", result).map(|purposes| {
            Response::new(pb::ListPurposesResponse {
                purposes: purposes.into_iter().map(purpose_to_pb).collect(),
            })
        })
    }

    async fn put_purpose(
        &self,
        request: Request<pb::PutPurposeRequest>,
    ) -> Result<Response<pb::Purpose>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let purpose = req
                .purpose
                .ok_or_else(|| vault_core::InvalidInput::new("purpose", "is required"))
                .and_then(purpose_from_pb);
            let purpose = accepted(&self.vault, &caller, Rpc::AdminPutPurpose, purpose).await?;
            self.vault.put_purpose(&caller, &purpose).await
        }
        .await;
        finish(&caller, "Admin.PutPurpose", result).map(|p| Response::new(purpose_to_pb(p)))
    }

    async fn processing_report(
        &self,
        request: Request<pb::ProcessingReportRequest>,
    ) -> Result<Response<pb::ProcessingReportResponse>, Status> {
        let caller = caller(&request)?;
        let format = request.into_inner().format.trim().to_ascii_lowercase();
        let result = async {
            let json = match format.as_str() {
                "" | "markdown" | "md" => false,
                "json" => true,
                _ => return Err(InvalidInput::new("format", "must be markdown or json").into()),
            };
            let report = self
                .vault
                .processing_report(&caller, &self.controller, &self.storage)
                .await?;
            Ok(if json {
                ("json", report.to_json())
            } else {
                ("markdown", report.to_markdown().into_bytes())
            })
        }
        .await;
        finish(&caller, "Admin.ProcessingReport", result).map(|(format, document)| {
            Response::new(pb::ProcessingReportResponse {
                format: format.to_owned(),
                document,
            })
        })
    }

    async fn rotate_keys(
        &self,
        request: Request<pb::RotateKeysRequest>,
    ) -> Result<Response<pb::RotateKeysResponse>, Status> {
        let caller = caller(&request)?;
        let result = self.vault.rotate_keys(&caller).await;
        finish(&caller, "Admin.RotateKeys", result).map(|r| {
            Response::new(pb::RotateKeysResponse {
                epoch: r.epoch,
                rewrapped: r.rewrapped,
                destroyed_epochs: r.destroyed,
                epochs: r.epochs,
            })
        })
    }

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<pb::BackupManifest>, Status> {
        let caller = caller(&request)?;
        let path = std::path::PathBuf::from(request.into_inner().path.trim());
        let result = self.vault.backup(&caller, &path).await;
        finish(&caller, "Admin.Backup", result).map(|m| Response::new(manifest_to_pb(m)))
    }

    async fn retention_sweep(
        &self,
        request: Request<pb::RetentionSweepRequest>,
    ) -> Result<Response<pb::RetentionSweepResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self.vault.retention_sweep(&caller, req.dry_run).await;
        finish(&caller, "Admin.RetentionSweep", result).map(|r| {
            Response::new(pb::RetentionSweepResponse {
                dry_run: r.dry_run,
                subject_ids: r.subjects,
                examined: r.examined,
                kept_restricted: r.kept_restricted,
            })
        })
    }

    async fn propose_change(
        &self,
        request: Request<pb::ProposeChangeRequest>,
    ) -> Result<Response<pb::ProposeChangeResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            match req.change {
                Some(pb::propose_change_request::Change::CreateClient(c)) => {
                    let role = c.role.parse::<Role>();
                    let role =
                        accepted(&self.vault, &caller, Rpc::AdminProposeChange, role).await?;
                    let cert = (!c.cert_sha256.is_empty()).then_some(c.cert_sha256.as_str());
                    let expires_at_us = c.expires_at.as_ref().map(crate::daemon::convert::micros);
                    let (p, token) = self
                        .vault
                        .propose_client(
                            &caller,
                            c.name.trim(),
                            role,
                            &c.purposes,
                            cert,
                            expires_at_us,
                        )
                        .await?;
                    Ok((p, Some(token)))
                }
                Some(pb::propose_change_request::Change::PutPurpose(p)) => {
                    let purpose = purpose_from_pb(p);
                    let purpose =
                        accepted(&self.vault, &caller, Rpc::AdminProposeChange, purpose).await?;
                    let p = self.vault.propose_purpose(&caller, &purpose).await?;
                    Ok((p, None))
                }
                None => {
                    let missing = Err(InvalidInput::new(
                        "change",
                        "is required: create_client or put_purpose",
                    ));
                    accepted(&self.vault, &caller, Rpc::AdminProposeChange, missing).await
                }
            }
        }
        .await;
        finish(&caller, "Admin.ProposeChange", result).map(|(p, token)| {
            Response::new(pb::ProposeChangeResponse {
                proposal: Some(proposal_to_pb(p, ProposalStatus::Pending)),
                token: token.map(|t| t.to_string()).unwrap_or_default(),
            })
        })
    }

    async fn approve_proposal(
        &self,
        request: Request<pb::ApproveProposalRequest>,
    ) -> Result<Response<pb::Proposal>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let expected = (!req.change_sha256.trim().is_empty()).then_some(req.change_sha256.as_str());
        let result = self
            .vault
            .approve_proposal(&caller, &req.id, expected)
            .await;
        finish(&caller, "Admin.ApproveProposal", result)
            .map(|p| Response::new(proposal_to_pb(p, ProposalStatus::Approved)))
    }

    async fn list_proposals(
        &self,
        request: Request<pb::ListProposalsRequest>,
    ) -> Result<Response<pb::ListProposalsResponse>, Status> {
        let caller = caller(&request)?;
        let all = request.into_inner().all;
        let result = self.vault.list_proposals(&caller, all).await;
        finish(&caller, "Admin.ListProposals", result).map(|list| {
            Response::new(pb::ListProposalsResponse {
                proposals: list
                    .into_iter()
                    .map(|(p, status)| proposal_to_pb(p, status))
                    .collect(),
            })
        })
    }

    type ExportErasureJournalStream = JournalStream;

    async fn export_erasure_journal(
        &self,
        request: Request<pb::ExportErasureJournalRequest>,
    ) -> Result<Response<Self::ExportErasureJournalStream>, Status> {
        let caller = caller(&request)?;
        let result = async {
            self.vault
                .export_erasure_journal(&caller)
                .await?
                .to_file_bytes()
        }
        .await;
        let bytes = finish(&caller, "Admin.ExportErasureJournal", result)?;
        let chunks: Vec<Result<pb::ErasureJournalChunk, Status>> = bytes
            .chunks(JOURNAL_CHUNK)
            .map(|c| Ok(pb::ErasureJournalChunk { data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}
