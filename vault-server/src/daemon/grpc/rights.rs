//! The `vault.v1.Rights` service: the DPO's data-subject rights calls.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vault_core::rights_requests::RightsRequest;
use vault_core::{Channel, ErasureReceipt, ExportKey, InvalidInput, RightsState, Rpc, Vault};
use vault_proto::v1 as pb;
use vault_proto::v1::rights_server::Rights;

use super::{accepted, finish};
use crate::daemon::convert::timestamp;
use crate::daemon::layers::auth::caller;

/// The Rights service over a vault.
pub struct RightsService {
    vault: Arc<Vault>,
}

impl RightsService {
    /// The service for `vault`.
    pub fn new(vault: Arc<Vault>) -> Self {
        Self { vault }
    }

    /// Places (`restrict`) or lifts a restriction: one request type, two calls.
    async fn restriction(
        &self,
        request: Request<pb::RestrictRequest>,
        restrict: bool,
        rpc: &'static str,
    ) -> Result<Response<pb::SubjectState>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self
            .vault
            .restrict(&caller, &req.subject_id, &req.request_ref, restrict)
            .await;
        finish(&caller, rpc, result).map(|s| Response::new(state_to_pb(s)))
    }
}

fn receipt_to_pb(r: ErasureReceipt) -> pb::ErasureReceipt {
    pb::ErasureReceipt {
        receipt_id: r.receipt_id,
        subject_id: r.subject_id,
        erased_at: timestamp(r.erased_at_us),
        request_ref: r.request_ref,
        client_id: r.client_id,
        suppressed: r.suppressed,
    }
}

fn state_to_pb(s: RightsState) -> pb::SubjectState {
    pb::SubjectState {
        subject_id: s.subject_id,
        restricted: s.restricted,
        objected_channels: s.objected.iter().map(|c| c.as_str().to_owned()).collect(),
        suppressed: s.suppressed,
    }
}

#[tonic::async_trait]
impl Rights for RightsService {
    async fn export(
        &self,
        request: Request<pb::ExportRequest>,
    ) -> Result<Response<pb::ExportResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = match req.subject {
                _ if !matches!(req.format.trim(), "" | "json") => {
                    Err(InvalidInput::new("format", "must be json (the default)"))
                }
                Some(pb::export_request::Subject::SubjectId(id)) => Ok(ExportKey::Id(id)),
                Some(pb::export_request::Subject::Email(e)) => Ok(ExportKey::Email(e)),
                None => Err(InvalidInput::new("subject", "set subject_id or email")),
            };
            let key = accepted(&self.vault, &caller, Rpc::RightsExport, key).await?;
            self.vault.export(&caller, &key).await
        }
        .await;
        let (subject_id, document) = finish(&caller, "Rights.Export", result)?;
        Ok(Response::new(pb::ExportResponse {
            format: "json".to_owned(),
            document,
            subject_id,
        }))
    }

    async fn erase(
        &self,
        request: Request<pb::EraseRequest>,
    ) -> Result<Response<pb::ErasureReceipt>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self
            .vault
            .erase(&caller, &req.subject_id, &req.request_ref, req.suppress)
            .await;
        finish(&caller, "Rights.Erase", result).map(|r| Response::new(receipt_to_pb(r)))
    }

    async fn restrict(
        &self,
        request: Request<pb::RestrictRequest>,
    ) -> Result<Response<pb::SubjectState>, Status> {
        self.restriction(request, true, "Rights.Restrict").await
    }

    async fn unrestrict(
        &self,
        request: Request<pb::RestrictRequest>,
    ) -> Result<Response<pb::SubjectState>, Status> {
        self.restriction(request, false, "Rights.Unrestrict").await
    }

    async fn object(
        &self,
        request: Request<pb::ObjectRequest>,
    ) -> Result<Response<pb::SubjectState>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let channels = req
                .channels
                .iter()
                .map(|c| {
                    c.parse::<Channel>()
                        .map_err(|why| InvalidInput::new("channels", why))
                })
                .collect::<Result<Vec<_>, _>>();
            let channels = accepted(&self.vault, &caller, Rpc::RightsObject, channels).await?;
            self.vault
                .object(&caller, &req.subject_id, &channels, &req.request_ref)
                .await
        }
        .await;
        finish(&caller, "Rights.Object", result).map(|s| Response::new(state_to_pb(s)))
    }

    async fn open_request(
        &self,
        request: Request<pb::OpenRequestRequest>,
    ) -> Result<Response<pb::RightsRequest>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let subject = Some(req.subject_id.trim()).filter(|s| !s.is_empty());
        let received = req.received_at.as_ref().map(crate::daemon::convert::micros);
        let result = self
            .vault
            .open_request(&caller, &req.kind, received, subject, &req.reference)
            .await;
        finish(&caller, "Rights.OpenRequest", result)
            .map(|(r, overdue)| Response::new(request_to_pb(r, overdue)))
    }

    async fn list_requests(
        &self,
        request: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let as_of = req.as_of.as_ref().map(crate::daemon::convert::micros);
        let result = self
            .vault
            .list_requests(&caller, req.overdue_only, req.include_closed, as_of)
            .await;
        finish(&caller, "Rights.ListRequests", result).map(|list| {
            Response::new(pb::ListRequestsResponse {
                requests: list
                    .into_iter()
                    .map(|(r, overdue)| request_to_pb(r, overdue))
                    .collect(),
            })
        })
    }

    async fn close_request(
        &self,
        request: Request<pb::CloseRequestRequest>,
    ) -> Result<Response<pb::RightsRequest>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self
            .vault
            .close_request(&caller, &req.id, &req.action)
            .await;
        finish(&caller, "Rights.CloseRequest", result)
            .map(|(r, overdue)| Response::new(request_to_pb(r, overdue)))
    }
}

fn request_to_pb(r: RightsRequest, overdue: bool) -> pb::RightsRequest {
    pb::RightsRequest {
        id: r.id,
        kind: r.kind.as_str().to_owned(),
        received_at: timestamp(r.received_at_us),
        due_at: timestamp(r.due_at_us),
        subject_id: r.subject_id.unwrap_or_default(),
        status: r.status.as_str().to_owned(),
        closed_at: r.closed_at_us.and_then(timestamp),
        action: r.action.unwrap_or_default(),
        reference: r.reference,
        overdue,
        opened_by: r.opened_by,
        closed_by: r.closed_by.unwrap_or_default(),
    }
}
