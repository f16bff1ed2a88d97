//! The `vault.v1.Supporters` service.
//!
//! Each call: take the authenticated caller, convert the request, call the vault, convert
//! the reply or map the error. The library decides and logs the access; nothing here
//! logs a field value.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vault_core::{FieldSet, LookupKey, Vault};
use vault_proto::v1 as pb;
use vault_proto::v1::supporters_server::Supporters;

use super::finish;
use crate::auth::caller;
use crate::convert::{consent_change, supporter_from_pb, supporter_to_pb};

/// The Supporters service over a vault.
pub struct SupportersService {
    vault: Arc<Vault>,
}

impl SupportersService {
    /// The service for `vault`.
    pub fn new(vault: Arc<Vault>) -> Self {
        Self { vault }
    }
}

fn mask(name: &str, mask: Option<prost_types::FieldMask>) -> vault_core::Result<FieldSet> {
    let paths = mask.map(|m| m.paths).unwrap_or_default();
    Ok(FieldSet::parse(name, paths.iter().map(String::as_str))?)
}

#[tonic::async_trait]
impl Supporters for SupportersService {
    async fn upsert(
        &self,
        request: Request<pb::UpsertRequest>,
    ) -> Result<Response<pb::UpsertResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let supporter = req
                .supporter
                .ok_or_else(|| vault_core::InvalidInput::new("supporter", "is required"))?;
            let supporter = supporter_from_pb(supporter)?;
            let consents = req
                .consents
                .iter()
                .map(consent_change)
                .collect::<Result<Vec<_>, _>>()?;
            self.vault.upsert(&caller, &supporter, &consents).await
        }
        .await;
        let out = finish(&caller, "Supporters.Upsert", result)?;
        Ok(Response::new(pb::UpsertResponse {
            id: out.id,
            created: out.created,
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::Supporter>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let fields = mask("fields", req.fields)?;
            self.vault.get(&caller, &req.id, fields).await
        }
        .await;
        finish(&caller, "Supporters.Get", result).map(|s| Response::new(supporter_to_pb(s)))
    }

    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::Supporter>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let key = match req.key {
                Some(pb::lookup_request::Key::Email(e)) => LookupKey::Email(e),
                Some(pb::lookup_request::Key::Phone(p)) => LookupKey::Phone(p),
                None => {
                    return Err(
                        vault_core::InvalidInput::new("key", "set either email or phone").into(),
                    );
                }
            };
            self.vault.lookup(&caller, &key).await
        }
        .await;
        finish(&caller, "Supporters.Lookup", result).map(|s| Response::new(supporter_to_pb(s)))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::Supporter>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let fields = mask("update_mask", req.update_mask)?;
            let patch = supporter_from_pb(req.supporter.unwrap_or_default())?;
            self.vault.update(&caller, &req.id, &patch, fields).await
        }
        .await;
        finish(&caller, "Supporters.Update", result).map(|s| Response::new(supporter_to_pb(s)))
    }

    async fn tag(
        &self,
        request: Request<pb::TagRequest>,
    ) -> Result<Response<pb::Supporter>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self.vault.tag(&caller, &req.id, &req.tags).await;
        finish(&caller, "Supporters.Tag", result).map(|s| Response::new(supporter_to_pb(s)))
    }

    async fn untag(
        &self,
        request: Request<pb::UntagRequest>,
    ) -> Result<Response<pb::Supporter>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self.vault.untag(&caller, &req.id, &req.tags).await;
        finish(&caller, "Supporters.Untag", result).map(|s| Response::new(supporter_to_pb(s)))
    }

    type SearchStream = tokio_stream::Iter<std::vec::IntoIter<Result<pb::Supporter, Status>>>;

    async fn search(
        &self,
        _request: Request<pb::SearchRequest>,
    ) -> Result<Response<Self::SearchStream>, Status> {
        Err(Status::unimplemented("Supporters.Search: not yet"))
    }

    async fn import(
        &self,
        _request: Request<tonic::Streaming<pb::Supporter>>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        Err(Status::unimplemented("Supporters.Import: not yet"))
    }

    type WatchStream = tokio_stream::Iter<std::vec::IntoIter<Result<pb::ChangeEvent, Status>>>;

    async fn watch(
        &self,
        _request: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("Supporters.Watch: not yet"))
    }
}
