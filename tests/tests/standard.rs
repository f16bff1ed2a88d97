//! Standard services: health answers without credentials (it reveals nothing but SERVING);
//! reflection, like every vault service, needs a token, and each authenticated reflection
//! call is one access-log entry.

// Test helpers unwrap: a failure is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Daemon, authed};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use vault_proto::v1 as pb;

#[tokio::test]
async fn health_is_open_and_reflection_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let channel = Channel::from_shared(format!("http://{}", daemon.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "vault.v1.Supporters"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }

    let list = || {
        tokio_stream::iter([ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        }])
    };
    let mut reflection = ServerReflectionClient::new(channel);
    let err = reflection.server_reflection_info(list()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let auditor = daemon.create_client("auditor", "auditor", &[]).await;
    let mut stream = reflection
        .server_reflection_info(authed(list(), &auditor))
        .await
        .unwrap()
        .into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(services)) = reply.message_response else {
        panic!("unexpected reflection reply");
    };
    let names: Vec<_> = services.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"vault.v1.Supporters".to_owned()),
        "{names:?}"
    );

    // Both calls are in the log: the refused one unidentified, the other by the auditor.
    let action = "ServerReflection.ServerReflectionInfo";
    let logged: Vec<(String, String)> = daemon
        .audit_entries(
            &auditor,
            pb::QueryRequest {
                action: action.into(),
                ..Default::default()
            },
        )
        .await
        .into_iter()
        .map(|e| (e.actor, e.outcome))
        .collect();
    assert_eq!(
        logged,
        [
            ("-".to_owned(), "denied".to_owned()),
            (auditor.client_id.clone(), "allowed".to_owned())
        ]
    );
}
