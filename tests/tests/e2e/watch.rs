//! The change feed (`Supporters.Watch`) shows a campaign tool only what its purpose has a
//! basis for, and stops when its client is revoked.
//!
//! A stream is a view of people through one purpose, judged like `Supporters.Get` of each
//! person: people without a basis for the purpose never appear, consent events of other
//! purposes never appear, the event that ends the basis (withdrawal, objection, restriction,
//! erasure) is delivered to the tools that had it, and nothing about the person follows it.
//! A stream whose client is revoked ends with UNAUTHENTICATED and delivers nothing written
//! after the revocation.

use std::collections::BTreeSet;
use std::time::Duration;

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

async fn upsert(d: &Daemon, creds: &Creds, email: &str, consents: &[(&str, &str)]) -> String {
    d.supporters()
        .await
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("Wat", "Cher", email, "")),
                consents: consents.iter().map(|(p, c)| consent(p, c)).collect(),
            },
            creds,
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn tag(d: &Daemon, creds: &Creds, id: &str, t: &str) {
    d.supporters()
        .await
        .tag(authed(
            pb::TagRequest {
                id: id.into(),
                tags: vec![t.into()],
            },
            creds,
        ))
        .await
        .unwrap();
}

async fn rename(d: &Daemon, creds: &Creds, id: &str) {
    d.supporters()
        .await
        .update(authed(
            pb::UpdateRequest {
                id: id.into(),
                supporter: Some(supporter("Renamed", "Cher", "", "")),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["given_name".into()],
                }),
                request_ref: String::new(),
            },
            creds,
        ))
        .await
        .unwrap();
}

async fn open(d: &Daemon, creds: &Creds, cursor: &str) -> tonic::Streaming<pb::ChangeEvent> {
    d.supporters()
        .await
        .watch(authed(
            pb::WatchRequest {
                cursor: cursor.into(),
            },
            creds,
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The next event of a live stream (at most a few seconds away).
async fn next(stream: &mut tonic::Streaming<pb::ChangeEvent>) -> pb::ChangeEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event within 10 s")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

/// Events of a live stream up to and including the first one matching `last`.
async fn until(
    stream: &mut tonic::Streaming<pb::ChangeEvent>,
    last: impl Fn(&pb::ChangeEvent) -> bool,
) -> Vec<pb::ChangeEvent> {
    let mut out = Vec::new();
    loop {
        let e = next(stream).await;
        let done = last(&e);
        out.push(e);
        if done {
            return out;
        }
    }
}

/// Everything in the feed for `creds` after `cursor`, once it is quiet for a moment.
async fn feed(d: &Daemon, creds: &Creds, cursor: &str) -> Vec<pb::ChangeEvent> {
    let mut stream = open(d, creds, cursor).await;
    let mut out = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(700), stream.message())
        .await
        .map(|r| r.unwrap())
    {
        out.push(e);
    }
    out
}

fn pairs(events: &[pb::ChangeEvent]) -> Vec<(String, String, String)> {
    events
        .iter()
        .map(|e| (e.kind.clone(), e.subject_id.clone(), e.purpose.clone()))
        .collect()
}

fn ev(kind: &str, id: &str, purpose: &str) -> (String, String, String) {
    (kind.to_owned(), id.to_owned(), purpose.to_owned())
}

#[tokio::test]
async fn a_newsletter_tool_sees_only_the_people_consenting_to_the_newsletter() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let news = d.tool("newsletter").await;
    // The membership tool also runs the sign-up form (newsletter and SMS boxes).
    let member = d
        .create_client(
            "members",
            "campaign-tool",
            &["membership", "newsletter", "sms-mobilisation"],
        )
        .await
        .with_purpose(Some("membership"));
    let sms = member.with_purpose(Some("sms-mobilisation"));
    let mut live = open(&d, &news, "").await;

    // A member without any consent, one with SMS consent only: never the newsletter's.
    let plain = upsert(&d, &member, "plain@example.fr", &[]).await;
    let texter = upsert(
        &d,
        &member,
        "texter@example.fr",
        &[("sms-mobilisation", "sms")],
    )
    .await;
    tag(&d, &member, &plain, "volunteer").await;
    tag(&d, &sms, &texter, "driver").await;
    // Newsletter readers: one signed up with the newsletter tool, one with the form (also
    // consenting to SMS, whose consent event is not the newsletter's business).
    let reader = upsert(&d, &news, "reader@example.fr", &[("newsletter", "email")]).await;
    let both = upsert(
        &d,
        &member,
        "both@example.fr",
        &[("newsletter", "email"), ("sms-mobilisation", "sms")],
    )
    .await;
    tag(&d, &member, &both, "donor").await;
    // A later SMS consent of the reader: not the newsletter's business.
    d.consent()
        .await
        .grant(authed(
            pb::ConsentRequest {
                subject_id: reader.clone(),
                contact_email: "reader@example.fr".into(),
                ..consent("sms-mobilisation", "sms")
            },
            &sms,
        ))
        .await
        .unwrap();
    let sentinel = upsert(&d, &news, "sentinel@example.fr", &[("newsletter", "email")]).await;

    let got = until(&mut live, |e| {
        e.subject_id == sentinel && e.kind != "created"
    })
    .await;
    assert_eq!(
        pairs(&got),
        [
            ev("created", &reader, ""),
            ev("consent-granted", &reader, "newsletter"),
            ev("created", &both, ""),
            ev("consent-granted", &both, "newsletter"),
            ev("tagged", &both, ""),
            ev("created", &sentinel, ""),
            ev("consent-granted", &sentinel, "newsletter"),
        ]
    );
    // The texter now consents to the newsletter too: shown from the grant on.
    d.consent()
        .await
        .grant(authed(
            pb::ConsentRequest {
                subject_id: texter.clone(),
                contact_email: "texter@example.fr".into(),
                ..consent("newsletter", "email")
            },
            &member.with_purpose(Some("newsletter")),
        ))
        .await
        .unwrap();
    let granted = next(&mut live).await;
    assert_eq!(
        pairs(std::slice::from_ref(&granted)),
        [ev("consent-granted", &texter, "newsletter")]
    );
    assert_eq!(granted.channel, "email");
    // Replayed from the start, the feed judges every old event by the person's basis now:
    // the texter consents now, so their history (without the SMS consent) is shown; the
    // plain member still never appears.
    let replay = feed(&d, &news, "").await;
    let ids: BTreeSet<&str> = replay.iter().map(|e| e.subject_id.as_str()).collect();
    assert!(!ids.contains(plain.as_str()), "{replay:?}");
    assert!(
        replay
            .iter()
            .all(|e| e.purpose.is_empty() || e.purpose == "newsletter"),
        "{replay:?}"
    );
    assert!(
        replay
            .iter()
            .all(|e| e.channel.is_empty() || e.channel == "email")
    );
    assert_eq!(
        pairs(&replay)
            .into_iter()
            .filter(|(_, id, _)| *id == texter)
            .collect::<Vec<_>>(),
        [
            ev("created", &texter, ""),
            ev("tagged", &texter, ""),
            ev("consent-granted", &texter, "newsletter"),
        ]
    );
    // The membership tool (a contract: no consent needed) sees the people collected for
    // membership, not those the newsletter tool signed up, and not the consent events of
    // the newsletter or of SMS.
    let members_view = feed(&d, &member, "").await;
    let ids: BTreeSet<&str> = members_view.iter().map(|e| e.subject_id.as_str()).collect();
    for id in [&plain, &texter, &both] {
        assert!(ids.contains(id.as_str()));
    }
    for id in [&reader, &sentinel] {
        assert!(!ids.contains(id.as_str()));
    }
    assert!(
        members_view.iter().all(|e| e.purpose.is_empty()),
        "{members_view:?}"
    );
}

#[tokio::test]
async fn the_event_that_ends_the_basis_is_delivered_then_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let news = d.tool("newsletter").await;
    // The membership tool runs the sign-up form: it collects for membership, with the
    // newsletter's consent, so it may still write to the people after the newsletter's
    // basis ends.
    let member = d
        .create_client("members", "campaign-tool", &["membership", "newsletter"])
        .await
        .with_purpose(Some("membership"));
    let dpo = d.dpo().await;
    let withdrawn = upsert(
        &d,
        &member,
        "withdrawn@example.fr",
        &[("newsletter", "email")],
    )
    .await;
    let restricted = upsert(
        &d,
        &member,
        "restricted@example.fr",
        &[("newsletter", "email")],
    )
    .await;
    let erased = upsert(&d, &member, "erased@example.fr", &[("newsletter", "email")]).await;
    let objected = upsert(
        &d,
        &member,
        "objected@example.fr",
        &[("newsletter", "email")],
    )
    .await;
    let control = upsert(
        &d,
        &member,
        "control@example.fr",
        &[("newsletter", "email")],
    )
    .await;
    let mut live = open(&d, &news, "").await;
    let start = until(&mut live, |e| {
        e.subject_id == control && e.kind == "consent-granted"
    })
    .await;
    assert_eq!(start.len(), 10);
    let mark = start.last().unwrap().cursor.clone();

    // Withdrawal, then a rename and a tag by another tool: only the withdrawal.
    d.consent()
        .await
        .withdraw(authed(
            pb::ConsentRequest {
                subject_id: withdrawn.clone(),
                ..consent("newsletter", "email")
            },
            &news,
        ))
        .await
        .unwrap();
    rename(&d, &member, &withdrawn).await;
    tag(&d, &member, &withdrawn, "after").await;
    // Restriction, then a rectification by the DPO (the only one who may act): only the
    // restriction.
    d.rights()
        .await
        .restrict(authed(
            pb::RestrictRequest {
                subject_id: restricted.clone(),
                request_ref: "R-1".into(),
            },
            &dpo,
        ))
        .await
        .unwrap();
    rename(&d, &dpo, &restricted).await;
    // Erasure: delivered once.
    d.rights()
        .await
        .erase(authed(
            pb::EraseRequest {
                subject_id: erased.clone(),
                request_ref: "E-1".into(),
                suppress: false,
            },
            &dpo,
        ))
        .await
        .unwrap();
    // Objection on email: the withdrawal it makes and the objection, then nothing.
    d.rights()
        .await
        .object(authed(
            pb::ObjectRequest {
                subject_id: objected.clone(),
                channels: vec!["email".into()],
                request_ref: "O-1".into(),
            },
            &dpo,
        ))
        .await
        .unwrap();
    tag(&d, &member, &objected, "after").await;
    // The control person still consents: its tag is delivered, and marks the end.
    tag(&d, &member, &control, "end").await;

    let got = until(&mut live, |e| e.subject_id == control).await;
    let expected = [
        ev("consent-withdrawn", &withdrawn, "newsletter"),
        ev("restricted", &restricted, ""),
        ev("erased", &erased, ""),
        ev("consent-withdrawn", &objected, "newsletter"),
        ev("objected", &objected, ""),
        ev("tagged", &control, ""),
    ];
    assert_eq!(pairs(&got), expected);
    assert_eq!(got[4].channel, "email");
    // Resumed from the mark, later: the same events (the basis before each ending event
    // was recorded when it was written; the erased person's data is gone).
    assert_eq!(pairs(&feed(&d, &news, &mark).await), expected);
    // Replayed from the start: nothing of the four people but their ending events.
    let replay = feed(&d, &news, "").await;
    for (id, ending) in [
        (&withdrawn, vec!["consent-withdrawn"]),
        (&restricted, vec!["restricted"]),
        (&erased, vec!["erased"]),
        (&objected, vec!["consent-withdrawn", "objected"]),
    ] {
        let kinds: Vec<&str> = replay
            .iter()
            .filter(|e| e.subject_id == *id)
            .map(|e| e.kind.as_str())
            .collect();
        assert_eq!(kinds, ending, "{id}");
    }
    // The membership tool had a basis for the restricted and erased people too.
    let members_view = feed(&d, &member, &mark).await;
    let kinds: Vec<(String, String)> = members_view
        .iter()
        .map(|e| (e.kind.clone(), e.subject_id.clone()))
        .collect();
    assert!(kinds.contains(&("restricted".into(), restricted.clone())));
    assert!(kinds.contains(&("erased".into(), erased.clone())));
    assert!(!kinds.contains(&("updated".into(), restricted.clone())));
    assert!(members_view.iter().all(|e| e.purpose.is_empty()));
}

#[tokio::test]
async fn a_revoked_clients_stream_ends_unauthenticated_and_delivers_nothing_after() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let news = d.tool("newsletter").await;
    let writer = d
        .create_client("writer", "campaign-tool", &["newsletter"])
        .await
        .with_purpose(Some("newsletter"));
    let before = upsert(&d, &writer, "before@example.fr", &[("newsletter", "email")]).await;
    let mut live = open(&d, &news, "").await;
    let seen = until(&mut live, |e| e.kind == "consent-granted").await;
    assert!(seen.iter().all(|e| e.subject_id == before));

    d.admin()
        .await
        .revoke_client(authed(
            pb::RevokeClientRequest {
                id: news.client_id.clone(),
            },
            &d.admin_token(),
        ))
        .await
        .unwrap();
    // Written after the revocation: none of it may reach the revoked client.
    let mut after = BTreeSet::new();
    for i in 0..3 {
        let id = upsert(
            &d,
            &writer,
            &format!("after{i}@example.fr"),
            &[("newsletter", "email")],
        )
        .await;
        tag(&d, &writer, &before, &format!("t{i}")).await;
        after.insert(id);
    }
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        let mut delivered = Vec::new();
        loop {
            match live.message().await {
                Ok(Some(e)) => delivered.push(e),
                Ok(None) => return (delivered, None),
                Err(status) => return (delivered, Some(status)),
            }
        }
    })
    .await
    .expect("the stream ends within 5 s of the revocation");
    let (delivered, status) = end;
    assert!(
        delivered.is_empty(),
        "delivered after revocation: {delivered:?}"
    );
    let status = status.expect("the stream ends with an error, not a clean end");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // And the revoked client can open no new stream.
    let again = d
        .supporters()
        .await
        .watch(authed(pb::WatchRequest::default(), &news))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::Unauthenticated);
    // The cut is a refusal like any other: one access-log entry under the stream's client.
    let auditor = d.create_client("auditor", "auditor", &[]).await;
    let logged: Vec<(String, String)> = d
        .audit_entries(
            &auditor,
            pb::QueryRequest {
                actor: news.client_id.clone(),
                action: "Supporters.Watch".into(),
                ..Default::default()
            },
        )
        .await
        .into_iter()
        .map(|e| (e.outcome, e.reason))
        .collect();
    assert_eq!(
        logged,
        [
            ("allowed".to_owned(), String::new()),
            ("denied".to_owned(), "unauthenticated".to_owned())
        ]
    );
}
