//! Data-subject rights end to end: export, erasure (with suppression), restriction,
//! objection and rectification, through the real daemon.

use tonic::Code;
use vault_proto::v1 as pb;

use vault_tests::{Creds, Daemon, authed, supporter};

fn consent(purpose: &str, channel: &str) -> pb::ConsentRequest {
    pb::ConsentRequest {
        purpose: purpose.into(),
        channel: channel.into(),
        source: "form".into(),
        notice_version: "2026-10".into(),
        ..Default::default()
    }
}

async fn upsert(
    d: &Daemon,
    creds: &Creds,
    s: pb::Supporter,
    mut consents: Vec<pb::ConsentRequest>,
) -> String {
    // The sign-up form collects for event invitations: the person consents to them.
    if creds.purpose.as_deref() == Some("event-invitations") {
        consents.push(consent("event-invitations", "email"));
    }
    d.supporters()
        .await
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(s),
                consents,
            },
            creds,
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn export(d: &Daemon, dpo: &Creds, id: &str) -> Result<serde_json::Value, tonic::Status> {
    d.rights()
        .await
        .export(authed(
            pb::ExportRequest {
                subject: Some(pb::export_request::Subject::SubjectId(id.into())),
                format: String::new(),
            },
            dpo,
        ))
        .await
        .map(|r| serde_json::from_slice(&r.into_inner().document).unwrap())
}

/// A sign-up form client: collects for event invitations, records newsletter and SMS
/// consent too.
async fn signup(d: &Daemon) -> Creds {
    d.create_client(
        "signup-form",
        "campaign-tool",
        &["event-invitations", "newsletter", "sms-mobilisation"],
    )
    .await
    .with_purpose(Some("event-invitations"))
}

async fn search_ids(d: &Daemon, creds: &Creds, req: pb::SearchRequest) -> Vec<String> {
    let mut stream = d
        .supporters()
        .await
        .search(authed(req, creds))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(s) = stream.message().await.unwrap() {
        out.push(s.id);
    }
    out
}

#[tokio::test]
async fn export_holds_everything_about_the_person_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let member = d.tool("membership").await;
    let news = d.tool("newsletter").await;
    let dpo = d.dpo().await;

    let mut s = supporter("Olympe", "de Gouges", "olympe@example.fr", "06 12 34 56 78");
    s.tags = vec!["volunteer".into(), "writer".into()];
    s.address = Some(pb::Address {
        line1: "1 rue de la Déclaration".into(),
        line2: "bât. B".into(),
        postcode: "75003".into(),
        city: "Paris".into(),
        country: "FR".into(),
    });
    s.custom = [("shirt".to_owned(), "M".to_owned())].into_iter().collect();
    s.source = "form:sign-up".into();
    let id = upsert(&d, &member, s, vec![]).await;
    let other = upsert(
        &d,
        &member,
        supporter("Other", "Person", "other@example.fr", "07 51 23 45 01"),
        vec![],
    )
    .await;
    let mut consent_client = d.consent().await;
    let mut grant = consent("newsletter", "email");
    grant.subject_id = id.clone();
    grant.contact_email = "olympe@example.fr".into();
    consent_client
        .grant(authed(grant.clone(), &news))
        .await
        .unwrap();
    consent_client
        .withdraw(authed(grant.clone(), &news))
        .await
        .unwrap();
    consent_client.grant(authed(grant, &news)).await.unwrap();
    // Accesses: a read by the newsletter tool, and a read of the other person.
    let mut sc = d.supporters().await;
    sc.get(authed(
        pb::GetRequest {
            id: id.clone(),
            fields: None,
        },
        &news,
    ))
    .await
    .unwrap();
    sc.get(authed(
        pb::GetRequest {
            id: other.clone(),
            fields: None,
        },
        &member,
    ))
    .await
    .unwrap();

    let doc = export(&d, &dpo, &id).await.unwrap();
    assert_eq!(doc["schema"], "vault.rights.export/1");
    assert_eq!(doc["subject_id"], id.as_str());
    let data = &doc["data"];
    assert_eq!(data["given_name"], "Olympe");
    assert_eq!(data["family_name"], "de Gouges");
    assert_eq!(data["email"], "olympe@example.fr");
    assert_eq!(data["phone"], "+33612345678");
    assert_eq!(data["address"]["line1"], "1 rue de la Déclaration");
    assert_eq!(data["address"]["line2"], "bât. B");
    assert_eq!(data["address"]["postcode"], "75003");
    assert_eq!(data["address"]["city"], "Paris");
    assert_eq!(data["address"]["country"], "FR");
    assert_eq!(data["tags"], serde_json::json!(["volunteer", "writer"]));
    assert_eq!(data["custom"]["shirt"], "M");
    assert_eq!(data["source"], "form:sign-up");
    assert!(data["created_at"].is_string() && data["updated_at"].is_string());
    // Every consent event, oldest first.
    let history: Vec<&str> = doc["consent_history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["grant", "withdraw", "grant"]);
    // Purposes with basis and retention.
    let purposes = doc["purposes"].as_array().unwrap();
    let newsletter = purposes.iter().find(|p| p["id"] == "newsletter").unwrap();
    assert_eq!(newsletter["lawful_basis"], "consent");
    assert_eq!(newsletter["retention_days"], 3 * 365);
    assert_eq!(newsletter["applies_to_you"], true);
    // Every access-log entry about the person: exactly those the Audit service lists.
    let auditor = d.create_client("auditor", "auditor", &[]).await;
    let expected: Vec<u64> = d
        .audit_entries(
            &auditor,
            pb::QueryRequest {
                subject_id: id.clone(),
                ..Default::default()
            },
        )
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    let exported: Vec<u64> = doc["access_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    // The export's own entry is written after the document was built.
    assert_eq!(exported, expected[..expected.len() - 1]);
    // Both read the per-subject index: check them against a filter of the whole log too.
    let scanned: Vec<u64> = d
        .audit_entries(&auditor, pb::QueryRequest::default())
        .await
        .iter()
        .filter(|e| e.subject_ids.contains(&id))
        .map(|e| e.seq)
        .collect();
    assert_eq!(scanned, expected);
    assert!(
        exported.len() >= 5,
        "upsert, 3 consent calls, get: {exported:?}"
    );
    let actions: Vec<&str> = doc["access_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"Supporters.Get"));
    // Nobody else's data: the other person's id, email and phone appear nowhere.
    let text = serde_json::to_string(&doc).unwrap();
    assert!(!text.contains(&other));
    assert!(!text.contains("other@example.fr"));
    assert!(!text.contains("+33751234501"));

    // By email, the same person; a campaign tool may not export.
    let by_email = d
        .rights()
        .await
        .export(authed(
            pb::ExportRequest {
                subject: Some(pb::export_request::Subject::Email(
                    "OLYMPE@example.fr".into(),
                )),
                format: "json".into(),
            },
            &dpo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_email.subject_id, id);
    let refused = d
        .rights()
        .await
        .export(authed(
            pb::ExportRequest {
                subject: Some(pb::export_request::Subject::SubjectId(id.clone())),
                format: String::new(),
            },
            &member,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn erased_means_gone_on_every_read_path_and_suppressed_stays_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let news = d.tool("newsletter").await;
    let form = signup(&d).await;
    let dpo = d.dpo().await;
    let mut s = supporter("Jean", "Jaurès", "jean@example.fr", "06 98 76 54 32");
    s.tags = vec!["orator".into()];
    let id = upsert(&d, &form, s, vec![consent("newsletter", "email")]).await;
    let keep = upsert(
        &d,
        &news,
        supporter("Keep", "Me", "keep@example.fr", ""),
        vec![consent("newsletter", "email")],
    )
    .await;
    let search = pb::SearchRequest::default();
    assert_eq!(search_ids(&d, &news, search.clone()).await.len(), 2);
    // Watch from the start: note where the feed stands.
    let mut watch = d
        .supporters()
        .await
        .watch(authed(pb::WatchRequest::default(), &news))
        .await
        .unwrap()
        .into_inner();

    // A request ref is required.
    let no_ref = d
        .rights()
        .await
        .erase(authed(
            pb::EraseRequest {
                subject_id: id.clone(),
                request_ref: String::new(),
                suppress: true,
            },
            &dpo,
        ))
        .await
        .unwrap_err();
    assert_eq!(no_ref.code(), Code::InvalidArgument);

    let receipt = d
        .rights()
        .await
        .erase(authed(
            pb::EraseRequest {
                subject_id: id.clone(),
                request_ref: "REQ-2026-017".into(),
                suppress: true,
            },
            &dpo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(receipt.subject_id, id);
    assert_eq!(receipt.request_ref, "REQ-2026-017");
    assert!(receipt.suppressed && receipt.erased_at.is_some());
    // Erasing again returns the same receipt.
    let again = d
        .rights()
        .await
        .erase(authed(
            pb::EraseRequest {
                subject_id: id.clone(),
                request_ref: "REQ-2026-017".into(),
                suppress: true,
            },
            &dpo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.receipt_id, receipt.receipt_id);

    let mut sc = d.supporters().await;
    let get = sc
        .get(authed(
            pb::GetRequest {
                id: id.clone(),
                fields: None,
            },
            &news,
        ))
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::NotFound);
    let lookup = sc
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email("jean@example.fr".into())),
            },
            &news,
        ))
        .await
        .unwrap_err();
    assert_eq!(lookup.code(), Code::NotFound);
    assert_eq!(search_ids(&d, &news, search).await, vec![keep.clone()]);
    assert_eq!(
        search_ids(
            &d,
            &news,
            pb::SearchRequest {
                tags_all: vec!["orator".into()],
                ..Default::default()
            }
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        export(&d, &dpo, &id).await.unwrap_err().code(),
        Code::NotFound
    );
    let consent_status = d
        .consent()
        .await
        .status(authed(
            pb::ConsentStatusRequest {
                subject_id: id.clone(),
            },
            &news,
        ))
        .await
        .unwrap_err();
    assert_eq!(consent_status.code(), Code::NotFound);
    // Watch shows the erasure.
    let erased = loop {
        let e = watch.message().await.unwrap().unwrap();
        if e.kind == "erased" {
            break e;
        }
    };
    assert_eq!(erased.subject_id, id);

    // Suppressed: the same email (any casing) or phone is refused on Upsert and Import.
    for s in [
        supporter("J", "J", "Jean@Example.fr", ""),
        supporter("J", "J", "", "+33698765432"),
    ] {
        let err = sc
            .upsert(authed(
                pb::UpsertRequest {
                    supporter: Some(s.clone()),
                    consents: vec![consent("newsletter", "email")],
                },
                &form,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("objected"), "{}", err.message());
        let mut with_consent = s;
        with_consent.consents = vec![consent("newsletter", "email")];
        let imported = sc
            .import(authed(tokio_stream::iter(vec![with_consent]), &form))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(imported.created, 0);
        assert_eq!(imported.rejected.len(), 1);
        assert_eq!(imported.rejected[0].row, 1);
        assert!(imported.rejected[0].reason.contains("objected"));
    }
    // Nor through a rectification of someone else: the suppressed email may not be given to
    // another supporter (who could then be sent mail at the address that objected).
    let err = sc
        .update(authed(
            pb::UpdateRequest {
                id: keep.clone(),
                supporter: Some(supporter("", "", "JEAN@example.fr", "")),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["email".into()],
                }),
                request_ref: String::new(),
            },
            &news,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("objected"), "{}", err.message());
    // Nothing of the person's data remains on disk once the store compacts: their email
    // was never there in clear; the receipt and the access log hold ids only.
    let auditor = d.create_client("auditor", "auditor", &[]).await;
    let entries = d
        .audit_entries(
            &auditor,
            pb::QueryRequest {
                subject_id: id.clone(),
                action: "Rights.Erase".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(entries.iter().any(|e| e.outcome == "allowed"));
}

#[tokio::test]
async fn restriction_and_objection_hold_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let news = d.tool("newsletter").await;
    let sms = d.tool("sms-mobilisation").await;
    let form = signup(&d).await;
    let dpo = d.dpo().await;
    let a = upsert(
        &d,
        &form,
        supporter("Rosa", "R", "rosa@example.fr", "06 01 02 03 04"),
        vec![consent("newsletter", "email")],
    )
    .await;
    let mut cc = d.consent().await;
    let mut g = consent("sms-mobilisation", "sms");
    g.subject_id = a.clone();
    g.contact_phone = "06 01 02 03 04".into();
    cc.grant(authed(g.clone(), &sms)).await.unwrap();
    let b = upsert(
        &d,
        &news,
        supporter("Clara", "Z", "clara@example.fr", ""),
        vec![consent("newsletter", "email")],
    )
    .await;

    let state = d
        .rights()
        .await
        .restrict(authed(
            pb::RestrictRequest {
                subject_id: a.clone(),
                request_ref: "REQ-101".into(),
            },
            &dpo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(state.restricted);
    let state = d
        .rights()
        .await
        .object(authed(
            pb::ObjectRequest {
                subject_id: b.clone(),
                channels: vec!["email".into()],
                request_ref: "REQ-102".into(),
            },
            &dpo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.objected_channels, vec!["email"]);
    assert!(!state.suppressed);

    d.terminate();
    let d = Daemon::start(dir.path());
    let mut sc = d.supporters().await;
    // Restricted: every purpose answered as for someone not in the file (no hint of the
    // request), the DPO still reads.
    for creds in [&news, &sms] {
        let err = sc
            .get(authed(
                pb::GetRequest {
                    id: a.clone(),
                    fields: None,
                },
                creds,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
    sc.get(authed(
        pb::GetRequest {
            id: a.clone(),
            fields: None,
        },
        &dpo,
    ))
    .await
    .unwrap();
    // Objected on email: newsletter consent withdrawn, a new grant refused, not in segments.
    let err = sc
        .get(authed(
            pb::GetRequest {
                id: b.clone(),
                fields: None,
            },
            &news,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let mut cc = d.consent().await;
    let mut g = consent("newsletter", "email");
    g.subject_id = b.clone();
    g.contact_email = "clara@example.fr".into();
    let err = cc.grant(authed(g, &news)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        search_ids(&d, &news, pb::SearchRequest::default())
            .await
            .is_empty()
    );
    // Each refusal is in the access log, naming the person and why.
    let auditor = d.create_client("auditor", "auditor", &[]).await;
    let denied = |subject: &str, actor: &str| {
        let (subject, actor) = (subject.to_owned(), actor.to_owned());
        let d = &d;
        let auditor = &auditor;
        async move {
            d.audit_entries(
                auditor,
                pb::QueryRequest {
                    subject_id: subject,
                    actor,
                    ..Default::default()
                },
            )
            .await
            .into_iter()
            .filter(|e| e.outcome == "denied")
            .map(|e| (e.action, e.reason))
            .collect::<Vec<_>>()
        }
    };
    for creds in [&news, &sms] {
        let refusals = denied(&a, &creds.client_id).await;
        assert!(
            refusals.contains(&("Supporters.Get".to_owned(), "restricted".to_owned())),
            "{refusals:?}"
        );
    }
    let refusals = denied(&b, &news.client_id).await;
    assert!(
        refusals
            .iter()
            .any(|(action, _)| action == "Supporters.Get"),
        "{refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .any(|(action, reason)| action == "Consent.Grant" && reason.contains("objected")),
        "{refusals:?}"
    );
    // Lifting the restriction gives access back.
    d.rights()
        .await
        .unrestrict(authed(
            pb::RestrictRequest {
                subject_id: a.clone(),
                request_ref: "REQ-101".into(),
            },
            &dpo,
        ))
        .await
        .unwrap();
    sc.get(authed(
        pb::GetRequest {
            id: a.clone(),
            fields: None,
        },
        &news,
    ))
    .await
    .unwrap();
    assert_eq!(
        search_ids(&d, &news, pb::SearchRequest::default()).await,
        vec![a.clone()]
    );

    // Objection to every channel: all consents withdrawn, re-import refused.
    let state = d
        .rights()
        .await
        .object(authed(
            pb::ObjectRequest {
                subject_id: a.clone(),
                channels: vec![],
                request_ref: "REQ-103".into(),
            },
            &dpo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(state.suppressed);
    let status = d
        .consent()
        .await
        .status(authed(
            pb::ConsentStatusRequest {
                subject_id: a.clone(),
            },
            &dpo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(status.states.iter().all(|s| !s.active), "{status:?}");
    let err = sc
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("Rosa", "R", "rosa@example.fr", "")),
                consents: vec![consent("newsletter", "email")],
            },
            &news,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn rectification_is_logged_with_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let member = d.tool("membership").await;
    let dpo = d.dpo().await;
    let id = upsert(
        &d,
        &member,
        supporter("Jon", "Doe", "jon@example.fr", ""),
        vec![],
    )
    .await;
    let fixed = d
        .supporters()
        .await
        .update(authed(
            pb::UpdateRequest {
                id: id.clone(),
                supporter: Some(supporter("John", "", "", "")),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["given_name".into()],
                }),
                request_ref: "REQ-16-1".into(),
            },
            &dpo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fixed.given_name, "John");
    let auditor = d.create_client("auditor", "auditor", &[]).await;
    let entries = d
        .audit_entries(
            &auditor,
            pb::QueryRequest {
                subject_id: id.clone(),
                action: "Supporters.Update".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].request_ref, "REQ-16-1");
    assert_eq!(entries[0].actor, dpo.client_id);
}

#[tokio::test]
async fn a_request_received_on_31_january_is_due_on_the_last_day_of_february() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let dpo = d.dpo().await;
    let ts = |s: i64| {
        Some(prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        })
    };
    // 2026-01-31T10:00:00Z; 2026 is not a leap year.
    let jan31 = 1_769_853_600;
    let feb28 = jan31 + 28 * 86_400;
    let opened = d
        .rights()
        .await
        .open_request(authed(
            pb::OpenRequestRequest {
                kind: "erasure".into(),
                received_at: ts(jan31),
                subject_id: String::new(),
                reference: "letter 2026-01-31".into(),
            },
            &dpo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        opened.due_at.unwrap().seconds,
        feb28,
        "due 2026-02-28T10:00:00Z"
    );
    assert_eq!(opened.status, "open");
    let list = |as_of: i64, overdue_only: bool| {
        let d = &d;
        let dpo = dpo.clone();
        async move {
            d.rights()
                .await
                .list_requests(authed(
                    pb::ListRequestsRequest {
                        overdue_only,
                        include_closed: false,
                        as_of: ts(as_of),
                    },
                    &dpo,
                ))
                .await
                .unwrap()
                .into_inner()
                .requests
        }
    };
    // On the due date itself: not overdue. The day after: overdue.
    assert!(list(feb28, true).await.is_empty());
    let on_time = list(feb28, false).await;
    assert_eq!(on_time.len(), 1);
    assert!(!on_time[0].overdue);
    let late = list(feb28 + 86_400, true).await;
    assert_eq!(late.len(), 1);
    assert!(late[0].overdue);
    assert_eq!(late[0].id, opened.id);
    // Closed with the action that answered it: no longer listed as open or overdue.
    let closed = d
        .rights()
        .await
        .close_request(authed(
            pb::CloseRequestRequest {
                id: opened.id.clone(),
                action: "erased".into(),
            },
            &dpo,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.status, "closed");
    assert_eq!(closed.action, "erased");
    assert!(list(feb28 + 86_400, true).await.is_empty());
    // A campaign tool may not see tickets.
    let tool = d.tool("newsletter").await;
    let err = d
        .rights()
        .await
        .list_requests(authed(pb::ListRequestsRequest::default(), &tool))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}
