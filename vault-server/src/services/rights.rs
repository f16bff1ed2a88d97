//! The `vault.v1.Rights` service: the DPO's data-subject rights calls.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vault_core::{Channel, ErasureReceipt, ExportKey, InvalidInput, RightsState, Vault};
use vault_proto::v1 as pb;
use vault_proto::v1::rights_server::Rights;

use super::finish;
use crate::auth::caller;
use crate::convert::timestamp;

/// The Rights service over a vault.
pub struct RightsService {
    vault: Arc<Vault>,
}

impl RightsService {
    /// The service for `vault`.
    pub fn new(vault: Arc<Vault>) -> Self {
        Self { vault }
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
            if !matches!(req.format.trim(), "" | "json") {
                return Err(InvalidInput::new("format", "must be json (the default)").into());
            }
            let key = match req.subject {
                Some(pb::export_request::Subject::SubjectId(id)) => ExportKey::Id(id),
                Some(pb::export_request::Subject::Email(e)) => ExportKey::Email(e),
                None => {
                    return Err(InvalidInput::new("subject", "set subject_id or email").into());
                }
            };
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
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self
            .vault
            .restrict(&caller, &req.subject_id, &req.request_ref, true)
            .await;
        finish(&caller, "Rights.Restrict", result).map(|s| Response::new(state_to_pb(s)))
    }

    async fn unrestrict(
        &self,
        request: Request<pb::RestrictRequest>,
    ) -> Result<Response<pb::SubjectState>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self
            .vault
            .restrict(&caller, &req.subject_id, &req.request_ref, false)
            .await;
        finish(&caller, "Rights.Unrestrict", result).map(|s| Response::new(state_to_pb(s)))
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
                .collect::<Result<Vec<_>, _>>()?;
            self.vault
                .object(&caller, &req.subject_id, &channels, &req.request_ref)
                .await
        }
        .await;
        finish(&caller, "Rights.Object", result).map(|s| Response::new(state_to_pb(s)))
    }

    async fn open_request(
        &self,
        _request: Request<pb::OpenRequestRequest>,
    ) -> Result<Response<pb::RightsRequest>, Status> {
        Err(Status::unimplemented("Rights.OpenRequest: not yet"))
    }

    async fn list_requests(
        &self,
        _request: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        Err(Status::unimplemented("Rights.ListRequests: not yet"))
    }

    async fn close_request(
        &self,
        _request: Request<pb::CloseRequestRequest>,
    ) -> Result<Response<pb::RightsRequest>, Status> {
        Err(Status::unimplemented("Rights.CloseRequest: not yet"))
    }
}
