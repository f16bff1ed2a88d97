//! Who may see what: roles × calls × purposes × consent, end to end.

use tonic::{Code, Status};
use vault_proto::v1 as pb;
use vault_tests::{Creds, Daemon, authed, files_containing, supporter};

const DSR: &str = "data-subject-rights";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Upsert,
    Get,
    Lookup,
    Update,
    Tag,
    Untag,
    Grant,
    Withdraw,
    Status,
    History,
    CreateClient,
    RevokeClient,
    ListClients,
    ListPurposes,
    PutPurpose,
    AuditPublicKey,
    AuditCheckpoints,
    AuditVerify,
}

const RPCS: [Rpc; 18] = [
    Rpc::Upsert,
    Rpc::Get,
    Rpc::Lookup,
    Rpc::Update,
    Rpc::Tag,
    Rpc::Untag,
    Rpc::Grant,
    Rpc::Withdraw,
    Rpc::Status,
    Rpc::History,
    Rpc::CreateClient,
    Rpc::RevokeClient,
    Rpc::ListClients,
    Rpc::ListPurposes,
    Rpc::PutPurpose,
    Rpc::AuditPublicKey,
    Rpc::AuditCheckpoints,
    Rpc::AuditVerify,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Tool,
    Dpo,
    Auditor,
    Admin,
}

/// A: collected for the newsletter, with its consent. B: collected for membership, no
/// consent at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Consented,
    NotConsented,
}

/// The rules of API.md and the access issue, stated independently of the implementation.
/// The campaign tool may use `newsletter` (consent-based; sees names, email, tags) and
/// `canvassing` (legitimate interest; sees names, address, tags).
fn expected(role: Role, rpc: Rpc, purpose: Option<&str>, subject: Subject) -> Code {
    use Rpc::*;
    let role_may = match rpc {
        Upsert | Tag | Untag | Grant => role == Role::Tool,
        Get | Lookup | Update | Withdraw | Status | History => {
            matches!(role, Role::Tool | Role::Dpo)
        }
        CreateClient | RevokeClient | ListClients | ListPurposes | PutPurpose => {
            role == Role::Admin
        }
        AuditPublicKey | AuditCheckpoints | AuditVerify => {
            matches!(role, Role::Auditor | Role::Dpo)
        }
    };
    if !role_may {
        return Code::PermissionDenied;
    }
    if matches!(rpc, AuditPublicKey | AuditCheckpoints | AuditVerify) {
        return Code::Ok; // the log holds no personal data: no purpose needed
    }
    if role == Role::Admin {
        return Code::Ok; // admin calls touch no personal data and need no purpose
    }
    let Some(purpose) = purpose else {
        return Code::InvalidArgument;
    };
    if purpose == "spam" {
        return Code::InvalidArgument;
    }
    let purpose_ok = match role {
        Role::Dpo => purpose == DSR,
        _ => purpose == "newsletter" || purpose == "canvassing",
    };
    if !purpose_ok {
        return Code::PermissionDenied;
    }
    let consented = subject == Subject::Consented;
    // Who each purpose reaches: A was collected for the newsletter with its consent, B for
    // membership; canvassing reaches people collected for it or for membership (the
    // registry's documented rule), so B and not A.
    let reached = match purpose {
        "newsletter" => consented,
        _ => !consented,
    };
    match (rpc, purpose) {
        // The DPO answers requests about anyone: a legal obligation, no consent needed.
        (_, DSR) => Code::Ok,
        // Grant (with the contact point it came through) and Withdraw target a third
        // person, known to both purposes by then.
        (Grant | Withdraw, _) => Code::Ok,
        // Canvassing may not see (so may not write or look up by) email.
        (Upsert | Lookup, "canvassing") => Code::PermissionDenied,
        // An upsert under a consent-based purpose needs the consent, on record or with it;
        // refused alike for a new and a known email.
        (Upsert, "newsletter") if !consented => Code::PermissionDenied,
        (Upsert, _) => Code::Ok,
        // A person outside the purpose's reach is answered as an absent one.
        _ if !reached => Code::NotFound,
        _ => Code::Ok,
    }
}

struct World {
    daemon: Daemon,
    creds: Vec<(Role, Creds)>,
    consented: String,
    not_consented: String,
    consent_target: String,
    throwaway_client: String,
}

fn email_of(s: Subject) -> &'static str {
    match s {
        Subject::Consented => "consented@matrix.fr",
        Subject::NotConsented => "not-consented@matrix.fr",
    }
}

async fn world() -> World {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let daemon = Daemon::start(dir.path());
    let seeder = daemon
        .create_client("seeder", "campaign-tool", &["newsletter", "membership"])
        .await;
    let c = daemon.supporters().await;
    let make = |email: &'static str, consent: bool| {
        let seeder = seeder.clone();
        let mut c = c.clone();
        async move {
            let consents = if consent {
                vec![pb::ConsentRequest {
                    purpose: "newsletter".into(),
                    source: "form".into(),
                    notice_version: "2026-01".into(),
                    ..Default::default()
                }]
            } else {
                vec![]
            };
            let mut s = supporter("Matrix", "Person", email, "");
            s.tags = vec!["kept".into()];
            let purpose = if consent { "newsletter" } else { "membership" };
            c.upsert(authed(
                pb::UpsertRequest {
                    supporter: Some(s),
                    consents,
                },
                &seeder.with_purpose(Some(purpose)),
            ))
            .await
            .unwrap()
            .into_inner()
            .id
        }
    };
    let consented = make(email_of(Subject::Consented), true).await;
    let not_consented = make(email_of(Subject::NotConsented), false).await;
    let consent_target = make("consent-target@matrix.fr", false).await;
    let tool = daemon
        .create_client("tool", "campaign-tool", &["newsletter", "canvassing"])
        .await;
    let dpo = daemon.create_client("dpo", "dpo", &[]).await;
    let auditor = daemon.create_client("auditor", "auditor", &[]).await;
    let admin = Creds {
        client_id: "bootstrap-admin".into(),
        token: daemon.admin_token(),
        purpose: None,
    };
    let throwaway_client = daemon
        .create_client("throwaway", "auditor", &[])
        .await
        .client_id;
    World {
        creds: vec![
            (Role::Tool, tool),
            (Role::Dpo, dpo),
            (Role::Auditor, auditor),
            (Role::Admin, admin),
        ],
        daemon,
        consented,
        not_consented,
        consent_target,
        throwaway_client,
    }
}

async fn call(w: &World, creds: &Creds, rpc: Rpc, subject: Subject) -> Result<(), Status> {
    let id = match subject {
        Subject::Consented => w.consented.clone(),
        Subject::NotConsented => w.not_consented.clone(),
    };
    let mut s = w.daemon.supporters().await;
    let mut c = w.daemon.consent().await;
    let mut a = w.daemon.admin().await;
    let consent_req = || pb::ConsentRequest {
        subject_id: w.consent_target.clone(),
        purpose: "newsletter".into(),
        channel: String::new(),
        source: "form".into(),
        notice_version: "2026-01".into(),
        contact_email: "consent-target@matrix.fr".into(),
        ..Default::default()
    };
    match rpc {
        Rpc::Upsert => s
            .upsert(authed(
                pb::UpsertRequest {
                    supporter: Some(supporter("", "", email_of(subject), "")),
                    consents: vec![],
                },
                creds,
            ))
            .await
            .map(drop),
        Rpc::Get => s
            .get(authed(pb::GetRequest { id, fields: None }, creds))
            .await
            .map(drop),
        Rpc::Lookup => s
            .lookup(authed(
                pb::LookupRequest {
                    key: Some(pb::lookup_request::Key::Email(email_of(subject).into())),
                },
                creds,
            ))
            .await
            .map(drop),
        Rpc::Update => s
            .update(authed(
                pb::UpdateRequest {
                    id,
                    supporter: Some(supporter("Matrix", "", "", "")),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["given_name".into()],
                    }),
                    request_ref: String::new(),
                },
                creds,
            ))
            .await
            .map(drop),
        Rpc::Tag => s
            .tag(authed(
                pb::TagRequest {
                    id,
                    tags: vec!["kept".into()],
                },
                creds,
            ))
            .await
            .map(drop),
        Rpc::Untag => s
            .untag(authed(
                pb::UntagRequest {
                    id,
                    tags: vec!["absent".into()],
                },
                creds,
            ))
            .await
            .map(drop),
        // Grant before withdraw keeps the target's state meaningful; neither depends on it.
        Rpc::Grant => c.grant(authed(consent_req(), creds)).await.map(drop),
        Rpc::Withdraw => c.withdraw(authed(consent_req(), creds)).await.map(drop),
        Rpc::Status => c
            .status(authed(pb::ConsentStatusRequest { subject_id: id }, creds))
            .await
            .map(drop),
        Rpc::History => c
            .history(authed(pb::ConsentHistoryRequest { subject_id: id }, creds))
            .await
            .map(drop),
        Rpc::CreateClient => a
            .create_client(authed(
                pb::CreateClientRequest {
                    name: "matrix-made".into(),
                    role: "auditor".into(),
                    ..Default::default()
                },
                creds,
            ))
            .await
            .map(drop),
        Rpc::RevokeClient => a
            .revoke_client(authed(
                pb::RevokeClientRequest {
                    id: w.throwaway_client.clone(),
                },
                creds,
            ))
            .await
            .map(drop),
        Rpc::ListClients => a
            .list_clients(authed(pb::ListClientsRequest {}, creds))
            .await
            .map(drop),
        Rpc::ListPurposes => a
            .list_purposes(authed(pb::ListPurposesRequest {}, creds))
            .await
            .map(drop),
        Rpc::PutPurpose => {
            // Put the newsletter purpose back exactly as it is.
            let current = a
                .list_purposes(authed(pb::ListPurposesRequest {}, &w.creds[3].1))
                .await
                .unwrap()
                .into_inner()
                .purposes
                .into_iter()
                .find(|p| p.id == "newsletter")
                .unwrap();
            a.put_purpose(authed(
                pb::PutPurposeRequest {
                    purpose: Some(current),
                },
                creds,
            ))
            .await
            .map(drop)
        }
        Rpc::AuditPublicKey => w
            .daemon
            .audit()
            .await
            .public_key(authed(pb::PublicKeyRequest {}, creds))
            .await
            .map(drop),
        Rpc::AuditCheckpoints => w
            .daemon
            .audit()
            .await
            .checkpoints(authed(pb::CheckpointsRequest { since_seq: 0 }, creds))
            .await
            .map(drop),
        Rpc::AuditVerify => {
            let r = w
                .daemon
                .audit()
                .await
                .verify(authed(pb::VerifyRequest::default(), creds))
                .await;
            if let Ok(v) = &r {
                assert!(
                    v.get_ref().ok,
                    "the log does not verify: {}",
                    v.get_ref().detail
                );
            }
            r.map(drop)
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_call() {
    let w = world().await;
    let purposes = [
        Some("newsletter"),
        Some("canvassing"),
        Some("membership"),
        Some(DSR),
        Some("spam"),
        None,
    ];
    let auditor = w.creds[2].1.clone();
    let before = w
        .daemon
        .audit_entries(&auditor, pb::QueryRequest::default())
        .await
        .len();
    let mut calls = 0;
    let mut failures = Vec::new();
    for (role, base) in &w.creds {
        for rpc in RPCS {
            for purpose in purposes {
                for subject in [Subject::Consented, Subject::NotConsented] {
                    let creds = base.with_purpose(purpose);
                    let want = expected(*role, rpc, purpose, subject);
                    let got = call(&w, &creds, rpc, subject).await;
                    // PutPurpose reads the registry as admin first: one extra logged call.
                    calls += 1 + usize::from(rpc == Rpc::PutPurpose);
                    let code = got.as_ref().map(|_| Code::Ok).unwrap_or_else(|s| s.code());
                    if code != want {
                        failures.push(format!(
                            "{role:?} {rpc:?} purpose={purpose:?} {subject:?}: want {want:?}, got {code:?} ({})",
                            got.err().map(|s| s.message().to_owned()).unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(calls, 4 * 18 * 6 * 2 + 4 * 6 * 2);
    // Every decision, allowed or denied, reached the access log: one entry per call (the
    // first query's own entry included).
    let entries = w
        .daemon
        .audit_entries(&auditor, pb::QueryRequest::default())
        .await;
    assert_eq!(entries.len(), before + 1 + calls);
    let matrix = &entries[before + 1..];
    let reasons: std::collections::BTreeSet<&str> =
        matrix.iter().map(|e| e.reason.as_str()).collect();
    for r in [
        "no-consent",
        "purpose-not-allowed",
        "purpose-missing",
        "purpose-unknown",
        "role",
        "field-not-allowed",
    ] {
        assert!(reasons.contains(r), "no entry with reason {r}: {reasons:?}");
    }
    assert!(matrix.iter().any(|e| e.outcome == "allowed"));
}

#[tokio::test]
async fn grant_read_withdraw_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let tool = daemon.tool("newsletter").await;
    let mut s = daemon.supporters().await;
    let mut c = daemon.consent().await;

    // A new supporter under a consent-based purpose needs the consent in the same call.
    let refused = s
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("Rosa", "L", "rosa@example.fr", "")),
                consents: vec![],
            },
            &tool,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    // A sign-up form: supporter and consent in one atomic call.
    let id = s
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("Rosa", "L", "rosa@example.fr", "")),
                consents: vec![pb::ConsentRequest {
                    purpose: "newsletter".into(),
                    source: "form".into(),
                    notice_version: "2026-02".into(),
                    ..Default::default()
                }],
            },
            &tool,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    let got = s
        .get(authed(
            pb::GetRequest {
                id: id.clone(),
                fields: None,
            },
            &tool,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.email, "rosa@example.fr");

    // Withdraw: exactly the same request shape as a grant.
    let w = c
        .withdraw(authed(
            pb::ConsentRequest {
                subject_id: id.clone(),
                source: "email".into(),
                ..Default::default()
            },
            &tool,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (w.kind.as_str(), w.channel.as_str(), w.seq),
        ("withdraw", "email", 1)
    );

    // The next read is refused: without the consent the person is out of the purpose's
    // reach, answered as an absent person is.
    let err = s
        .get(authed(
            pb::GetRequest {
                id: id.clone(),
                fields: None,
            },
            &tool,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        err.message(),
        format!("not found: no supporter with id {id}")
    );
    let err = s
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email("rosa@example.fr".into())),
            },
            &tool,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // History: both events, oldest first, with who, where and which notice.
    let h = c
        .history(authed(
            pb::ConsentHistoryRequest {
                subject_id: id.clone(),
            },
            &tool,
        ))
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<_> = h
        .events
        .iter()
        .map(|e| (e.seq, e.kind.as_str(), e.source.as_str()))
        .collect();
    assert_eq!(kinds, [(0, "grant", "form"), (1, "withdraw", "email")]);
    assert_eq!(h.events[0].notice_version, "2026-02");
    assert!(
        h.events
            .iter()
            .all(|e| e.client_id == tool.client_id && e.at.is_some())
    );
    let st = c
        .status(authed(
            pb::ConsentStatusRequest {
                subject_id: id.clone(),
            },
            &tool,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.states.len(), 1);
    assert!(!st.states[0].active);

    // Granting again (through the email it came by) restores access on the next call.
    c.grant(authed(
        pb::ConsentRequest {
            subject_id: id.clone(),
            source: "form".into(),
            notice_version: "2026-03".into(),
            contact_email: "rosa@example.fr".into(),
            ..Default::default()
        },
        &tool,
    ))
    .await
    .unwrap();
    s.get(authed(pb::GetRequest { id, fields: None }, &tool))
        .await
        .unwrap();

    // Consent for a purpose that does not rest on consent is refused clearly.
    let canvass = daemon.tool("canvassing").await;
    let err = c
        .grant(authed(
            pb::ConsentRequest {
                subject_id: h.subject_id,
                source: "form".into(),
                notice_version: "1".into(),
                ..Default::default()
            },
            &canvass,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("not on consent"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_purpose_never_sees_fields_it_may_not() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let member = daemon.tool("membership").await;
    let news = daemon
        .create_client("news", "campaign-tool", &["newsletter"])
        .await
        .with_purpose(Some("newsletter"));
    let mut s = daemon.supporters().await;
    let mut full = supporter("Jean", "Moulin", "jean@moulin.fr", "06 55 44 33 22");
    full.tags = vec!["resistant".into()];
    full.address = Some(pb::Address {
        city: "Béziers".into(),
        ..Default::default()
    });
    let id = s
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(full),
                consents: vec![],
            },
            &member,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    daemon
        .consent()
        .await
        .grant(authed(
            pb::ConsentRequest {
                subject_id: id.clone(),
                source: "form".into(),
                notice_version: "v1".into(),
                contact_email: "jean@moulin.fr".into(),
                ..Default::default()
            },
            &news,
        ))
        .await
        .unwrap();

    for mask in [
        None,
        Some(vec!["phone"]),
        Some(vec!["phone", "email"]),
        Some(vec!["address", "phone", "tags"]),
    ] {
        let fields = mask.clone().map(|m| prost_types::FieldMask {
            paths: m.into_iter().map(String::from).collect(),
        });
        let got = s
            .get(authed(
                pb::GetRequest {
                    id: id.clone(),
                    fields,
                },
                &news,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.phone, "", "mask {mask:?} leaked the phone");
        assert!(got.address.is_none(), "mask {mask:?} leaked the address");
        let asked_email = mask.as_ref().is_none_or(|m| m.contains(&"email"));
        assert_eq!(got.email.is_empty(), !asked_email, "mask {mask:?}");
    }
    let looked = s
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email("jean@moulin.fr".into())),
            },
            &news,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (looked.phone.as_str(), looked.given_name.as_str()),
        ("", "Jean")
    );
    let tagged = s
        .tag(authed(
            pb::TagRequest {
                id: id.clone(),
                tags: vec!["x".into()],
            },
            &news,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tagged.phone, "");
    // Nor may it find by phone, or write the phone.
    let err = s
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Phone("0655443322".into())),
            },
            &news,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = s
        .update(authed(
            pb::UpdateRequest {
                id: id.clone(),
                supporter: Some(supporter("", "", "", "0600000000")),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["phone".into()],
                }),
                request_ref: String::new(),
            },
            &news,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("may not write phone"),
        "{}",
        err.message()
    );
    // The phone is still there for a purpose that may see it.
    let got = s
        .get(authed(pb::GetRequest { id, fields: None }, &member))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.phone, "+33655443322");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_are_refused_and_no_token_is_kept_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let tool = daemon.tool("membership").await;
    let other = daemon
        .create_client("other", "campaign-tool", &["membership"])
        .await
        .with_purpose(Some("membership"));
    let mut s = daemon.supporters().await;
    let id = s
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("A", "B", "revoke@example.fr", "")),
                consents: vec![],
            },
            &tool,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    // Revoke, then the very next call on the same open connection is refused.
    daemon
        .admin()
        .await
        .revoke_client(authed(
            pb::RevokeClientRequest {
                id: tool.client_id.clone(),
            },
            &daemon.admin_token(),
        ))
        .await
        .unwrap();
    let err = s
        .get(authed(
            pb::GetRequest {
                id: id.clone(),
                fields: None,
            },
            &tool,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // Other clients are unaffected.
    s.get(authed(pb::GetRequest { id, fields: None }, &other))
        .await
        .unwrap();
    // The last admin cannot lock everyone out (the harness's approving admin goes first).
    let approver = daemon.approver().await;
    daemon
        .admin()
        .await
        .revoke_client(authed(
            pb::RevokeClientRequest {
                id: approver.client_id.clone(),
            },
            &daemon.admin_token(),
        ))
        .await
        .unwrap();
    let err = daemon
        .admin()
        .await
        .revoke_client(authed(
            pb::RevokeClientRequest {
                id: "bootstrap-admin".into(),
            },
            &daemon.admin_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    drop(s);
    assert!(daemon.terminate().success());
    let tokens = [
        tool.token.clone(),
        other.token.clone(),
        daemon.admin_token(),
    ];
    let logs = daemon.logs();
    for t in &tokens {
        assert!(!logs.contains(t.as_str()), "a token is in the daemon log");
        // The data directory holds admin.token (the operator's copy) and nothing else in clear.
        let hits: Vec<_> = files_containing(dir.path(), t.as_bytes())
            .into_iter()
            .filter(|p| !p.ends_with("admin.token"))
            .collect();
        assert!(hits.is_empty(), "token in clear in {hits:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tokens_are_refused_and_expiry_must_lie_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let admin_token = daemon.admin_token();
    let mut admin = daemon.admin().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let request = |name: &str, at: i64| {
        authed(
            pb::CreateClientRequest {
                name: name.into(),
                role: "campaign-tool".into(),
                purposes: vec!["membership".into()],
                expires_at: Some(prost_types::Timestamp {
                    seconds: at,
                    nanos: 0,
                }),
                ..Default::default()
            },
            &admin_token,
        )
    };
    // An expiry in the past is a mistake, refused before anything is created.
    let err = admin
        .create_client(request("stale", now - 60))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("expires_at"), "{}", err.message());

    // A campaign tool takes two admins: proposed and approved by the harness.
    let creds = daemon
        .create_client_with(request("short-lived", now + 2).into_inner())
        .await
        .with_purpose(Some("membership"));
    let client = pb::Client {
        id: creds.client_id.clone(),
        ..Default::default()
    };
    let mut s = daemon.supporters().await;
    let upsert = |email: &str| {
        authed(
            pb::UpsertRequest {
                supporter: Some(supporter("", "", email, "")),
                consents: vec![],
            },
            &creds,
        )
    };
    s.upsert(upsert("before-expiry@example.fr")).await.unwrap();

    // Wait out the expiry (the token's lifetime, not a performance bound).
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let err = s
        .upsert(upsert("after-expiry@example.fr"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"), "{}", err.message());

    // Nothing was written, and the refusal is in the access log.
    let tool = daemon.tool("membership").await;
    let err = s
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email(
                    "after-expiry@example.fr".into(),
                )),
            },
            &tool,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let auditor = daemon.create_client("auditor", "auditor", &[]).await;
    let refused: Vec<_> = daemon
        .audit_entries(&auditor, pb::QueryRequest::default())
        .await
        .into_iter()
        .filter(|e| e.outcome == "denied" && e.action == "Supporters.Upsert")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    // Listed with its expiry, still revocable.
    let listed = admin
        .list_clients(authed(pb::ListClientsRequest {}, &admin_token))
        .await
        .unwrap()
        .into_inner()
        .clients;
    assert!(
        listed
            .iter()
            .any(|c| c.id == client.id && c.expires_at.is_some())
    );
    admin
        .revoke_client(authed(
            pb::RevokeClientRequest { id: client.id },
            &admin_token,
        ))
        .await
        .unwrap();
}
