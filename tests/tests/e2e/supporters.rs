//! The Supporters service end to end, through the real daemon.

use tonic::Code;
use vault_proto::v1 as pb;

use vault_tests::{Daemon, authed, supporter};

#[tokio::test]
async fn upsert_get_lookup_update_tag() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let token = daemon.tool("membership").await;
    let mut c = daemon.supporters().await;

    // Upsert a new supporter.
    let mut s = supporter(
        "Louise",
        "Michel",
        "  Louise.Michel@Commune.FR ",
        "06 11 22 33 44",
    );
    s.tags = vec!["Volunteer".into()];
    s.address = Some(pb::Address {
        postcode: "75018".into(),
        city: "Paris".into(),
        country: "fr".into(),
        ..Default::default()
    });
    s.source = "form:sign-up".into();
    let first = c
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(s),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(first.created);

    // Get: normalized values come back.
    let got = c
        .get(authed(
            pb::GetRequest {
                id: first.id.clone(),
                fields: None,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.id, first.id);
    assert_eq!(got.email, "louise.michel@commune.fr");
    assert_eq!(got.phone, "+33611223344");
    assert_eq!(got.tags, vec!["volunteer"]);
    assert_eq!(got.address.as_ref().unwrap().country, "FR");
    assert!(got.created_at.is_some() && got.updated_at.is_some());

    // Get with a field mask returns only those fields (and the id).
    let masked = c
        .get(authed(
            pb::GetRequest {
                id: first.id.clone(),
                fields: Some(prost_types::FieldMask {
                    paths: vec!["email".into(), "tags".into()],
                }),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(masked.id, first.id);
    assert_eq!(masked.email, "louise.michel@commune.fr");
    assert_eq!(masked.tags, vec!["volunteer"]);
    assert!(masked.given_name.is_empty() && masked.phone.is_empty() && masked.address.is_none());

    // Lookup by a differently cased email, and by a differently formatted phone.
    let by_email = c
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email(
                    "LOUISE.MICHEL@commune.fr".into(),
                )),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_email.id, first.id);
    let by_phone = c
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Phone("+33 6 11 22 33 44".into())),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_phone.id, first.id);

    // A second upsert with the same email (other casing) returns the same id and merges.
    let mut again = supporter("", "Michel-Updated", "louise.michel@COMMUNE.fr", "");
    again.tags = vec!["donor".into()];
    let second = c
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(again),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.id, first.id);
    assert!(!second.created);

    // Update with a mask: change the email; the index follows.
    let updated = c
        .update(authed(
            pb::UpdateRequest {
                id: first.id.clone(),
                supporter: Some(supporter("", "", "louise@commune.fr", "")),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["email".into()],
                }),
                request_ref: String::new(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.email, "louise@commune.fr");
    assert_eq!(updated.family_name, "Michel-Updated");
    assert_eq!(updated.tags, vec!["donor", "volunteer"]);
    let old = c
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email(
                    "louise.michel@commune.fr".into(),
                )),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::NotFound);
    let new = c
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email("Louise@Commune.fr".into())),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(new.id, first.id);

    // Tag and untag.
    let tagged = c
        .tag(authed(
            pb::TagRequest {
                id: first.id.clone(),
                tags: vec!["Canvasser".into()],
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tagged.tags, vec!["canvasser", "donor", "volunteer"]);
    let untagged = c
        .untag(authed(
            pb::UntagRequest {
                id: first.id.clone(),
                tags: vec!["donor".into()],
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(untagged.tags, vec!["canvasser", "volunteer"]);

    // Dedupe by phone: an upsert with only the phone finds the same person.
    let by_phone_upsert = c
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("", "", "", "0611223344")),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_phone_upsert.id, first.id);
    assert!(!by_phone_upsert.created);
}

#[tokio::test]
async fn concurrent_upserts_of_one_email_make_one_supporter() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let token = daemon.tool("membership").await;
    let client = daemon.supporters().await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let mut c = client.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let email = if i % 2 == 0 {
                "Same@Example.fr"
            } else {
                "same@example.FR"
            };
            let mut s = supporter("", "", email, "");
            s.tags = vec![format!("t{i}")];
            c.upsert(authed(
                pb::UpsertRequest {
                    supporter: Some(s),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut created = 0;
    for t in tasks {
        let r = t.await.unwrap();
        created += usize::from(r.created);
        ids.insert(r.id);
    }
    assert_eq!(ids.len(), 1, "one email, one supporter");
    assert_eq!(created, 1);
    // No update was lost: every tag made it.
    let mut c = client.clone();
    let s = c
        .get(authed(
            pb::GetRequest {
                id: ids.pop_first().unwrap(),
                fields: None,
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.tags.len(), 50);
}

// Multi-threaded: `terminate` blocks this thread while the client's connection task must
// still run to see the server's GOAWAY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_exits_zero_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let token = daemon.tool("membership").await;
    let admin_token = daemon.admin_token();
    let mut c = daemon.supporters().await;
    let id = c
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("Jean", "Jaurès", "jean@jaures.fr", "")),
                ..Default::default()
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    drop(c);
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status:?}");
    assert!(daemon.logs().contains("stopped"));

    // The restart reuses the root key and the token; no new token is written.
    let daemon = Daemon::start(dir.path());
    assert_eq!(daemon.admin_token(), admin_token);
    assert!(!daemon.logs().contains("wrote bootstrap admin token"));
    let mut c = daemon.supporters().await;
    let s = c
        .get(authed(pb::GetRequest { id, fields: None }, &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.family_name, "Jaurès");
}
