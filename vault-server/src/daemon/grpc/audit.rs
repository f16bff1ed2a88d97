//! The `vault.v1.Audit` service: the access log for auditors and the DPO.

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use vault_core::audit::SignedCheckpoint;
use vault_core::{AuditQuery, Vault};
use vault_proto::v1 as pb;
use vault_proto::v1::audit_server::Audit;

use super::finish;
use crate::daemon::convert::{micros, timestamp};
use crate::daemon::layers::auth::caller;

/// Chunk size of `ExportLog` replies.
const EXPORT_CHUNK: usize = 64 * 1024;

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Audit service over a vault.
pub struct AuditService {
    vault: Arc<Vault>,
    /// The origin of the log's C2SP checkpoints (the daemon's `audit_origin`).
    origin: String,
}

impl AuditService {
    /// The service for `vault`, its checkpoints under the default origin.
    pub fn new(vault: Arc<Vault>) -> Self {
        let origin = vault_core::audit::witness::default_origin(&vault.access_log().public_key());
        Self { vault, origin }
    }

    /// The same, under `origin`.
    pub fn with_origin(mut self, origin: String) -> Self {
        self.origin = origin;
        self
    }
}

fn range(from: u64, to: u64) -> (Option<u64>, Option<u64>) {
    if from == 0 && to == 0 {
        (None, None)
    } else {
        (Some(from), (to != 0).then_some(to))
    }
}

fn checkpoint_to_pb(c: SignedCheckpoint) -> pb::SignedCheckpoint {
    pb::SignedCheckpoint {
        size: c.size,
        root: hex::decode(&c.root).unwrap_or_default(),
        last_leaf: hex::decode(&c.last_leaf).unwrap_or_default(),
        at: timestamp(c.at_us),
        at_us: c.at_us,
        signature: hex::decode(&c.signature).unwrap_or_default(),
    }
}

fn nonempty(s: String) -> Option<String> {
    let s = s.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl Audit for AuditService {
    type QueryStream = Stream_<pb::AuditEntry>;
    type ExportLogStream = Stream_<pb::ExportChunk>;

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<Self::QueryStream>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let query = AuditQuery {
            subject_id: nonempty(r.subject_id),
            actor: nonempty(r.actor),
            action: nonempty(r.action),
            since_us: r.since.as_ref().map(micros),
            until_us: r.until.as_ref().map(micros),
        };
        let result = self.vault.audit_query(&caller, &query).await;
        let entries = finish(&caller, "Audit.Query", result)?;
        let items = entries.into_iter().map(|(raw, e)| {
            Ok(pb::AuditEntry {
                seq: e.seq,
                at: timestamp(e.at_us),
                request_id: e.request_id,
                actor: e.client,
                role: e.role,
                action: e.rpc,
                purpose: e.purpose.unwrap_or_default(),
                subject_ids: e.subjects,
                fields: e.fields,
                outcome: e.outcome,
                reason: e.reason.unwrap_or_default(),
                request_ref: e.request_ref.unwrap_or_default(),
                raw,
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn checkpoints(
        &self,
        request: Request<pb::CheckpointsRequest>,
    ) -> Result<Response<pb::CheckpointsResponse>, Status> {
        let caller = caller(&request)?;
        let since = request.into_inner().since_seq;
        let result = self.vault.audit_checkpoints(&caller, since).await;
        finish(&caller, "Audit.Checkpoints", result).map(|cps| {
            Response::new(pb::CheckpointsResponse {
                checkpoints: cps.into_iter().map(checkpoint_to_pb).collect(),
            })
        })
    }

    async fn verify(
        &self,
        request: Request<pb::VerifyRequest>,
    ) -> Result<Response<pb::VerifyResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let (from, to) = range(r.from_seq, r.to_seq);
        let result = self.vault.audit_verify(&caller, from, to).await;
        let outcome = finish(&caller, "Audit.Verify", result)?;
        Ok(Response::new(match outcome {
            Ok(v) => pb::VerifyResponse {
                ok: true,
                first_seq: v.first_seq,
                entries: v.entries,
                tree_size: v.end.size,
                ..Default::default()
            },
            Err(e) => pb::VerifyResponse {
                ok: false,
                bad_seq: e.seq.unwrap_or_default(),
                problem: e.problem.to_string(),
                detail: e.to_string(),
                ..Default::default()
            },
        }))
    }

    async fn export_log(
        &self,
        request: Request<pb::ExportLogRequest>,
    ) -> Result<Response<Self::ExportLogStream>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let (from, to) = range(r.from_seq, r.to_seq);
        let result = self
            .vault
            .audit_export_witnessed(&caller, from, to, r.min_cosignatures)
            .await;
        let mut export = finish(&caller, "Audit.ExportLog", result)?;
        // The file is read a page at a time as the client takes it: the channel holds two
        // chunks, so the daemon never holds more than a page and a little of the log.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            loop {
                let page = match export.next_chunk().await {
                    Ok(Some(page)) => page,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = tx.send(Err(crate::daemon::status::to_status(e))).await;
                        return;
                    }
                };
                for c in page.chunks(EXPORT_CHUNK) {
                    if tx
                        .send(Ok(pb::ExportChunk { data: c.to_vec() }))
                        .await
                        .is_err()
                    {
                        // The client went away: stop reading the log.
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn public_key(
        &self,
        request: Request<pb::PublicKeyRequest>,
    ) -> Result<Response<pb::PublicKeyResponse>, Status> {
        let caller = caller(&request)?;
        let result = self.vault.audit_public_key(&caller).await;
        finish(&caller, "Audit.PublicKey", result).map(|k| {
            Response::new(pb::PublicKeyResponse {
                public_key: k.to_vec(),
                vkey: vault_core::audit::witness::log_vkey(&self.origin, &k),
                origin: self.origin.clone(),
            })
        })
    }

    async fn inclusion_proof(
        &self,
        request: Request<pb::InclusionProofRequest>,
    ) -> Result<Response<pb::ProofResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = self
            .vault
            .audit_inclusion_proof(&caller, r.seq, r.tree_size)
            .await;
        finish(&caller, "Audit.InclusionProof", result).map(|hashes| {
            Response::new(pb::ProofResponse {
                hashes: hashes.into_iter().map(|h| h.to_vec()).collect(),
            })
        })
    }

    async fn consistency_proof(
        &self,
        request: Request<pb::ConsistencyProofRequest>,
    ) -> Result<Response<pb::ProofResponse>, Status> {
        let caller = caller(&request)?;
        let r = request.into_inner();
        let result = self
            .vault
            .audit_consistency_proof(&caller, r.from_size, r.to_size)
            .await;
        finish(&caller, "Audit.ConsistencyProof", result).map(|hashes| {
            Response::new(pb::ProofResponse {
                hashes: hashes.into_iter().map(|h| h.to_vec()).collect(),
            })
        })
    }
}
