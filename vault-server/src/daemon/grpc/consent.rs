//! The `vault.v1.Consent` service.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use vault_core::{Rpc, Vault};
use vault_proto::v1 as pb;
use vault_proto::v1::consent_server::Consent;

use super::{accepted, finish};
use crate::daemon::convert::{consent_change, consent_event_to_pb, consent_state_to_pb};
use crate::daemon::layers::auth::caller;

/// The Consent service over a vault.
pub struct ConsentService {
    vault: Arc<Vault>,
}

impl ConsentService {
    /// The service for `vault`.
    pub fn new(vault: Arc<Vault>) -> Self {
        Self { vault }
    }
}

#[tonic::async_trait]
impl Consent for ConsentService {
    async fn grant(
        &self,
        request: Request<pb::ConsentRequest>,
    ) -> Result<Response<pb::ConsentEvent>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let change = accepted(
                &self.vault,
                &caller,
                Rpc::ConsentGrant,
                consent_change(&req),
            )
            .await?;
            self.vault
                .grant_consent(&caller, &req.subject_id, &change)
                .await
        }
        .await;
        finish(&caller, "Consent.Grant", result).map(|e| Response::new(consent_event_to_pb(e)))
    }

    async fn withdraw(
        &self,
        request: Request<pb::ConsentRequest>,
    ) -> Result<Response<pb::ConsentEvent>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = async {
            let change = accepted(
                &self.vault,
                &caller,
                Rpc::ConsentWithdraw,
                consent_change(&req),
            )
            .await?;
            self.vault
                .withdraw_consent(&caller, &req.subject_id, &change)
                .await
        }
        .await;
        finish(&caller, "Consent.Withdraw", result).map(|e| Response::new(consent_event_to_pb(e)))
    }

    async fn status(
        &self,
        request: Request<pb::ConsentStatusRequest>,
    ) -> Result<Response<pb::ConsentStatusResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self.vault.consent_status(&caller, &req.subject_id).await;
        finish(&caller, "Consent.Status", result).map(|states| {
            Response::new(pb::ConsentStatusResponse {
                subject_id: req.subject_id,
                states: states.into_iter().map(consent_state_to_pb).collect(),
            })
        })
    }

    async fn history(
        &self,
        request: Request<pb::ConsentHistoryRequest>,
    ) -> Result<Response<pb::ConsentHistoryResponse>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let result = self.vault.consent_history(&caller, &req.subject_id).await;
        finish(&caller, "Consent.History", result).map(|events| {
            Response::new(pb::ConsentHistoryResponse {
                subject_id: req.subject_id,
                events: events.into_iter().map(consent_event_to_pb).collect(),
            })
        })
    }
}
