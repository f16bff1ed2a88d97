//! Standard services: health answers without credentials (it reveals nothing but SERVING);
//! reflection, v1 and v1alpha alike, needs a token like every vault service, and each
//! reflection call is one access-log entry.

use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use vault_proto::v1 as pb;
use vault_tests::{Daemon, authed};

/// One reflection session in the version `$v` (`v1` or `v1alpha`): the status of a
/// `ListServices` without credentials, and the service names listed with `$creds`.
macro_rules! list_services {
    ($v:ident, $channel:expr, $creds:expr) => {{
        use tonic_reflection::pb::$v::ServerReflectionRequest;
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
        let list = || {
            tokio_stream::iter([ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            }])
        };
        let mut reflection = ServerReflectionClient::new($channel);
        let refused = reflection.server_reflection_info(list()).await.unwrap_err();
        let mut stream = reflection
            .server_reflection_info(authed(list(), $creds))
            .await
            .unwrap()
            .into_inner();
        let reply = stream.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(services)) = reply.message_response else {
            panic!("unexpected reflection reply");
        };
        let names: Vec<String> = services.service.into_iter().map(|s| s.name).collect();
        (refused.code(), names)
    }};
}

#[tokio::test]
async fn health_is_open_and_reflection_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let channel = daemon.channel().await;

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

    // Both versions: refused without a token, and the full list with one (each version
    // lists both reflection services).
    let auditor = daemon.create_client("auditor", "auditor", &[]).await;
    let v1 = list_services!(v1, channel.clone(), &auditor);
    let v1alpha = list_services!(v1alpha, channel, &auditor);
    for (version, (refused, names)) in [("v1", v1), ("v1alpha", v1alpha)] {
        assert_eq!(refused, Code::Unauthenticated, "{version}");
        for service in [
            "vault.v1.Supporters",
            "vault.v1.Audit",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert!(names.contains(&service.to_owned()), "{version}: {names:?}");
        }
    }

    // Every call is in the log, in order: for each version the refused one unidentified,
    // then the auditor's.
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
    let session = [
        ("-".to_owned(), "denied".to_owned()),
        (auditor.client_id.clone(), "allowed".to_owned()),
    ];
    assert_eq!(logged, [session.clone(), session].concat());
}
