//! A campaign tool sees only the people its purpose has a basis for, and cannot make one
//! up: the attacks of the client-isolation review, against the real daemon (both engines).
//!
//! - A newsletter tool that learned a member's id cannot grant itself consent with it
//!   (Consent.Grant needs the contact point the consent came through), while a sign-up
//!   form's Upsert with consent still works.
//! - A person outside the caller's basis (never collected for it, restricted, objected) is
//!   answered exactly as an absent one, on Get, Lookup, Update, Tag, Consent.Status and
//!   History; conflict messages name nobody.
//! - An objection on `in-person` stops canvassing's Get, Lookup, Update and Tag.
//! - A search may select only by fields its purpose may see.

use tonic::Code;
use vault_proto::v1 as pb;

use vault_tests::{Creds, Daemon, authed, supporter};

fn newsletter_consent() -> pb::ConsentRequest {
    pb::ConsentRequest {
        purpose: "newsletter".into(),
        channel: "email".into(),
        source: "form".into(),
        notice_version: "2026-10".into(),
        ..Default::default()
    }
}

async fn upsert(
    d: &Daemon,
    creds: &Creds,
    s: pb::Supporter,
    consents: Vec<pb::ConsentRequest>,
) -> Result<pb::UpsertResponse, tonic::Status> {
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
        .map(tonic::Response::into_inner)
}

async fn grant(
    d: &Daemon,
    creds: &Creds,
    id: &str,
    contact_email: &str,
) -> Result<pb::ConsentEvent, tonic::Status> {
    d.consent()
        .await
        .grant(authed(
            pb::ConsentRequest {
                subject_id: id.into(),
                contact_email: contact_email.into(),
                ..newsletter_consent()
            },
            creds,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn lookup(d: &Daemon, creds: &Creds, email: &str) -> Result<pb::Supporter, tonic::Status> {
    d.supporters()
        .await
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email(email.into())),
            },
            creds,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn update_name(d: &Daemon, creds: &Creds, id: &str) -> Result<(), tonic::Status> {
    d.supporters()
        .await
        .update(authed(
            pb::UpdateRequest {
                id: id.into(),
                supporter: Some(pb::Supporter {
                    given_name: "Renamed".into(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["given_name".into()],
                }),
                request_ref: String::new(),
            },
            creds,
        ))
        .await
        .map(drop)
}

async fn tag(d: &Daemon, creds: &Creds, id: &str) -> Result<(), tonic::Status> {
    d.supporters()
        .await
        .tag(authed(
            pb::TagRequest {
                id: id.into(),
                tags: vec!["door-knocked".into()],
            },
            creds,
        ))
        .await
        .map(drop)
}

async fn status(d: &Daemon, creds: &Creds, id: &str) -> Result<(), tonic::Status> {
    d.consent()
        .await
        .status(authed(
            pb::ConsentStatusRequest {
                subject_id: id.into(),
            },
            creds,
        ))
        .await
        .map(drop)
}

async fn history(d: &Daemon, creds: &Creds, id: &str) -> Result<(), tonic::Status> {
    d.consent()
        .await
        .history(authed(
            pb::ConsentHistoryRequest {
                subject_id: id.into(),
            },
            creds,
        ))
        .await
        .map(drop)
}

/// Asserts `r` is the answer an absent person gets for `id`: NOT_FOUND, the same message.
fn reads_as_absent<T: std::fmt::Debug>(r: Result<T, tonic::Status>, id: &str, what: &str) {
    let e = r.expect_err(what);
    assert_eq!(e.code(), Code::NotFound, "{what}: {e:?}");
    assert_eq!(
        e.message(),
        format!("not found: no supporter with id {id}"),
        "{what}"
    );
}

/// A fresh id of nobody.
fn nobody() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

#[tokio::test]
async fn a_basis_cannot_be_manufactured_from_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let member = d.tool("membership").await;
    let news = d.tool("newsletter").await;
    let email = "camille.roux@example.fr";
    let id = upsert(&d, &member, supporter("Camille", "Roux", email, ""), vec![])
        .await
        .unwrap()
        .id;

    // The attack of the review: the id seen (in a feed, a log, a URL), then Grant, then
    // Get. Without the contact point the grant is refused; with a wrong one it reads as
    // absent; the person stays out of reach.
    let e = grant(&d, &news, &id, "").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("contact_email"), "{}", e.message());
    reads_as_absent(
        grant(&d, &news, &id, "someone.else@example.fr").await,
        &id,
        "grant with another person's contact point",
    );
    let made_up = nobody();
    reads_as_absent(
        grant(&d, &news, &made_up, email).await,
        &made_up,
        "grant to a made-up id",
    );
    reads_as_absent(
        d.get_supporter(&news, &id).await,
        &id,
        "get after the attack",
    );

    // A sign-up form's Upsert with the consent still works (it comes with the email), and
    // so does a grant that names the email it came through.
    let signed = upsert(
        &d,
        &news,
        supporter("", "", email, ""),
        vec![newsletter_consent()],
    )
    .await
    .unwrap();
    assert_eq!(signed.id, id);
    let got = d.get_supporter(&news, &id).await.unwrap();
    assert_eq!(got.email, email);
    grant(&d, &news, &id, " Camille.Roux@Example.FR ")
        .await
        .unwrap();
    d.check_logs();
}

#[tokio::test]
async fn a_person_outside_the_basis_reads_as_absent_on_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let member = d.tool("membership").await;
    let news = d.tool("newsletter").await;
    let dpo = d.dpo().await;
    let email = "leon.martin@example.fr";
    let id = upsert(&d, &member, supporter("Léon", "Martin", email, ""), vec![])
        .await
        .unwrap()
        .id;
    let absent = nobody();

    // Never collected for the newsletter, no consent: the same answer as nobody.
    for (who, r) in [
        ("get", d.get_supporter(&news, &id).await.map(drop)),
        ("update", update_name(&d, &news, &id).await),
        ("tag", tag(&d, &news, &id).await),
        ("status", status(&d, &news, &id).await),
        ("history", history(&d, &news, &id).await),
    ] {
        reads_as_absent(r, &id, who);
    }
    for (who, r) in [
        ("get", d.get_supporter(&news, &absent).await.map(drop)),
        ("update", update_name(&d, &news, &absent).await),
        ("status", status(&d, &news, &absent).await),
    ] {
        reads_as_absent(r, &absent, who);
    }
    let in_file = lookup(&d, &news, email).await.unwrap_err();
    let not_in_file = lookup(&d, &news, "nobody@example.fr").await.unwrap_err();
    assert_eq!(in_file.code(), Code::NotFound);
    assert_eq!(in_file.message(), not_in_file.message());
    assert!(!in_file.message().contains(&id));

    // An upsert without consent under the newsletter is refused the same way for a new
    // email and for one in the file.
    let known = upsert(&d, &news, supporter("", "", email, ""), vec![])
        .await
        .unwrap_err();
    let new = upsert(&d, &news, supporter("", "", "new@example.fr", ""), vec![])
        .await
        .unwrap_err();
    assert_eq!(known.code(), new.code());
    assert_eq!(known.message(), new.message());

    // Conflict messages name nobody.
    let other = upsert(
        &d,
        &member,
        supporter("Ana", "Lopez", "ana@example.fr", "+33 6 12 34 56 78"),
        vec![],
    )
    .await
    .unwrap()
    .id;
    let e = upsert(
        &d,
        &member,
        supporter("", "", email, "+33 6 12 34 56 78"),
        vec![],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(
        !e.message().contains(&id) && !e.message().contains(&other),
        "{}",
        e.message()
    );

    // Restricted: the member tool loses the person too, with the same answer; the DPO keeps
    // it.
    d.rights()
        .await
        .restrict(authed(
            pb::RestrictRequest {
                subject_id: id.clone(),
                request_ref: "REQ-7".into(),
            },
            &dpo,
        ))
        .await
        .unwrap();
    reads_as_absent(d.get_supporter(&member, &id).await, &id, "restricted get");
    let e = lookup(&d, &member, email).await.unwrap_err();
    assert_eq!(e.message(), not_in_file.message());
    assert!(!e.message().contains("restrict"));
    d.get_supporter(&dpo, &id).await.unwrap();

    // The access log keeps the true reason for the auditor and the DPO.
    let entries = d
        .audit_entries(
            &dpo,
            pb::QueryRequest {
                subject_id: id.clone(),
                ..Default::default()
            },
        )
        .await;
    let reasons: Vec<&str> = entries
        .iter()
        .filter(|e| e.outcome == "denied")
        .map(|e| e.reason.as_str())
        .collect();
    assert!(reasons.contains(&"no-consent"), "{reasons:?}");
    assert!(reasons.contains(&"restricted"), "{reasons:?}");
    d.check_logs();
}

#[tokio::test]
async fn an_objection_on_in_person_stops_canvassing() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let member = d.tool("membership").await;
    let canvass = d.tool("canvassing").await;
    let dpo = d.dpo().await;
    let email = "jeanne.petit@example.fr";
    let mut s = supporter("Jeanne", "Petit", email, "");
    s.address = Some(pb::Address {
        line1: "3 rue des Lilas".into(),
        postcode: "69003".into(),
        city: "Lyon".into(),
        country: "FR".into(),
        ..Default::default()
    });
    let id = upsert(&d, &member, s, vec![]).await.unwrap().id;
    // Canvassing reaches members (the registry's documented rule) before the objection.
    let seen = d.get_supporter(&canvass, &id).await.unwrap();
    assert_eq!(seen.address.unwrap().line1, "3 rue des Lilas");
    tag(&d, &canvass, &id).await.unwrap();

    d.rights()
        .await
        .object(authed(
            pb::ObjectRequest {
                subject_id: id.clone(),
                channels: vec!["in-person".into()],
                request_ref: "REQ-9".into(),
            },
            &dpo,
        ))
        .await
        .unwrap();
    reads_as_absent(d.get_supporter(&canvass, &id).await, &id, "get");
    reads_as_absent(update_name(&d, &canvass, &id).await, &id, "update");
    reads_as_absent(tag(&d, &canvass, &id).await, &id, "tag");
    // Canvassing may not see emails, so it cannot look one up at all.
    let by_member = lookup(&d, &member, email).await.unwrap();
    assert_eq!(by_member.id, id, "the member tool still reaches the person");
    let e = d
        .supporters()
        .await
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email(email.into())),
            },
            &canvass,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    d.check_logs();
}

#[tokio::test]
async fn a_search_selects_only_by_fields_its_purpose_may_see() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let news = d.tool("newsletter").await;
    let e = d
        .supporters()
        .await
        .search(authed(
            pb::SearchRequest {
                postcodes: vec!["75011".into()],
                ..Default::default()
            },
            &news,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("postcode"), "{}", e.message());
    d.check_logs();
}
