//! Invariant: a write acknowledged before `kill -9` of the daemon is there after restart.

// Test helpers unwrap: a failure is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use vault_proto::v1 as pb;
mod common;

use common::{Daemon, authed, supporter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(String, String)> = Vec::new(); // (id, tag added last)
    for round in 0..4 {
        let mut daemon = Daemon::start(dir.path());
        let token = daemon.tool("membership").await;
        let client = daemon.supporters().await;

        // Everything acknowledged in earlier rounds is still there.
        for (id, tag) in &acked {
            let s = client
                .clone()
                .get(authed(
                    pb::GetRequest {
                        id: id.clone(),
                        fields: None,
                    },
                    &token,
                ))
                .await
                .unwrap_or_else(|e| panic!("round {round}: acknowledged supporter {id} lost: {e}"))
                .into_inner();
            assert!(
                s.tags.contains(tag),
                "round {round}: acknowledged tag {tag} of {id} lost"
            );
        }

        // Concurrent writes, each acknowledged, then SIGKILL with no chance to flush.
        let mut tasks = Vec::new();
        for i in 0..40 {
            let mut c = client.clone();
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let email = format!("crash-{round}-{i}@example.fr");
                let id = c
                    .upsert(authed(
                        pb::UpsertRequest {
                            supporter: Some(supporter("", "", &email, "")),
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .id;
                let tag = format!("r{round}-n{i}");
                c.tag(authed(
                    pb::TagRequest {
                        id: id.clone(),
                        tags: vec![tag.clone()],
                    },
                    &token,
                ))
                .await
                .unwrap();
                (id, tag)
            }));
        }
        for t in tasks {
            acked.push(t.await.unwrap());
        }
        daemon.kill9();
    }
    let daemon = Daemon::start(dir.path());
    let token = daemon.tool("membership").await;
    let mut c = daemon.supporters().await;
    for (id, tag) in &acked {
        let s = c
            .get(authed(
                pb::GetRequest {
                    id: id.clone(),
                    fields: None,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(s.tags.contains(tag));
    }
    assert_eq!(acked.len(), 160);
}
