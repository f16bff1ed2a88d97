//! Separation of duties among administrators, end to end: what widens access to personal
//! data (a dpo client, a campaign tool with purposes, a purpose with more fields, channels,
//! another basis, a shorter retention, a new purpose) takes one admin to propose and a
//! different admin to approve, both in the access log; the retention floor; and the two
//! races of the admin calls (mutual revocation, one certificate for two clients).

use std::sync::Arc;

use tonic::Code;
use vault_proto::v1 as pb;
use vault_tests::{Creds, Daemon, authed};

fn create(name: &str, role: &str, purposes: &[&str], cert: &str) -> pb::CreateClientRequest {
    pb::CreateClientRequest {
        name: name.into(),
        role: role.into(),
        purposes: purposes.iter().map(|p| (*p).to_owned()).collect(),
        cert_sha256: cert.into(),
        expires_at: None,
    }
}

async fn purpose(d: &Daemon, admin: &str, id: &str) -> pb::Purpose {
    d.admin()
        .await
        .list_purposes(authed(pb::ListPurposesRequest {}, admin))
        .await
        .unwrap()
        .into_inner()
        .purposes
        .into_iter()
        .find(|p| p.id == id)
        .unwrap()
}

async fn put(d: &Daemon, admin: &str, p: pb::Purpose) -> Result<pb::Purpose, tonic::Status> {
    d.admin()
        .await
        .put_purpose(authed(pb::PutPurposeRequest { purpose: Some(p) }, admin))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_admin_alone_cannot_create_a_dpo_or_a_campaign_tool() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let admin = d.admin_token();
    let mut a = d.admin().await;
    for (name, role, purposes) in [
        ("dpo", "dpo", &[][..]),
        ("mailer", "campaign-tool", &["newsletter"][..]),
    ] {
        let err = a
            .create_client(authed(create(name, role, purposes, ""), &admin))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{role}: {err:?}");
        assert!(err.message().contains("second admin"), "{}", err.message());
    }
    // Nothing was created.
    let clients = a
        .list_clients(authed(pb::ListClientsRequest {}, &admin))
        .await
        .unwrap()
        .into_inner()
        .clients;
    assert_eq!(clients.len(), 1, "{clients:?}");
    // Clients without personal data stay one-admin: an auditor, and a second admin (the
    // bootstrap: a lone admin has nobody to approve it).
    a.create_client(authed(create("auditor", "auditor", &[], ""), &admin))
        .await
        .unwrap();
    a.create_client(authed(create("second", "admin", &[], ""), &admin))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_admin_alone_cannot_widen_a_purpose_but_may_narrow_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let admin = d.admin_token();
    let newsletter = purpose(&d, &admin, "newsletter").await;

    let mut more_fields = newsletter.clone();
    more_fields.fields.push("phone".into());
    let mut more_channels = newsletter.clone();
    more_channels.channels.push("sms".into());
    let mut basis = newsletter.clone();
    basis.lawful_basis = "legitimate-interest".into();
    basis.special_category_basis = "political-body-regular-contacts".into();
    let mut shorter = newsletter.clone();
    shorter.retention_days = 365;
    let mut new = newsletter.clone();
    new.id = "petition".into();
    for (what, p) in [
        ("fields", more_fields),
        ("channels", more_channels),
        ("basis", basis),
        ("retention", shorter),
        ("new purpose", new),
    ] {
        let err = put(&d, &admin, p).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{what}: {err:?}");
        assert!(
            err.message().contains("second admin"),
            "{what}: {}",
            err.message()
        );
    }
    assert_eq!(purpose(&d, &admin, "newsletter").await, newsletter);

    // Narrowing stays one-admin: fewer fields, a longer retention.
    let mut narrower = newsletter.clone();
    narrower.fields.retain(|f| f != "tags");
    narrower.retention_days += 30;
    let got = put(&d, &admin, narrower.clone()).await.unwrap();
    assert_eq!(got.retention_days, narrower.retention_days);
    assert_eq!(purpose(&d, &admin, "newsletter").await, narrower);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_below_the_floor_is_refused_by_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let admin = d.admin_token();
    let newsletter = purpose(&d, &admin, "newsletter").await;
    for days in [0, 1, 29] {
        let mut p = newsletter.clone();
        p.retention_days = days;
        let err = put(&d, &admin, p).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{days}: {err:?}");
        assert!(
            err.message().contains("retention_days") && err.message().contains("30"),
            "{}",
            err.message()
        );
    }
    assert_eq!(purpose(&d, &admin, "newsletter").await, newsletter);
}

#[test]
fn a_retention_below_the_floor_is_refused_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vault.toml");
    std::fs::write(
        &config,
        r#"
[[purposes]]
id = "flash"
description = "Kept for a day, then crypto-shredded by the sweep"
lawful_basis = "legitimate-interest"
special_category_basis = "political-body-regular-contacts"
channels = ["email"]
retention_days = 1
fields = ["email"]
"#,
    )
    .unwrap();
    let log = Daemon::start_refused_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    assert!(
        log.contains("retention_days") && log.contains("flash"),
        "the refusal names the purpose and the setting: {log}"
    );
    // A floor lowered in the config is refused too: it may only be raised.
    std::fs::write(&config, "min_retention_days = 7\n").unwrap();
    let log = Daemon::start_refused_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    assert!(log.contains("min_retention_days"), "{log}");
}

/// Whether `token` still authenticates as an active admin.
async fn works(d: &Daemon, token: &str) -> bool {
    d.admin()
        .await
        .list_clients(authed(pb::ListClientsRequest {}, token))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_mutual_revocation_leaves_an_active_admin() {
    let dir = tempfile::tempdir().unwrap();
    let d = Arc::new(Daemon::start(dir.path()));
    let mut survivor = Creds {
        client_id: "bootstrap-admin".into(),
        token: d.admin_token(),
        purpose: None,
    };
    for round in 0..20 {
        // The lone admin creates a second one (the bootstrap case, one-admin)...
        let other = d
            .admin()
            .await
            .create_client(authed(
                create(&format!("admin-{round}"), "admin", &[], ""),
                &survivor,
            ))
            .await
            .unwrap()
            .into_inner();
        vault_tests::leaks::watch_secret(&other.token);
        let other = Creds {
            client_id: other.client.unwrap().id,
            token: other.token,
            purpose: None,
        };
        // ...and the two revoke each other at the same moment.
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let mut tasks = Vec::new();
        for (actor, target) in [
            (survivor.clone(), other.client_id.clone()),
            (other.clone(), survivor.client_id.clone()),
        ] {
            let (d, barrier) = (Arc::clone(&d), Arc::clone(&barrier));
            tasks.push(tokio::spawn(async move {
                let mut a = d.admin().await;
                barrier.wait().await;
                a.revoke_client(authed(pb::RevokeClientRequest { id: target }, &actor))
                    .await
                    .map(drop)
            }));
        }
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.unwrap());
        }
        let revoked = outcomes.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            revoked, 1,
            "round {round}: exactly one revocation wins: {outcomes:?}"
        );
        // The loser finds itself the last admin, or (when the winner committed before the
        // loser's call was authenticated) is no longer an admin at all.
        let refused = outcomes.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert!(
            (refused.code() == Code::FailedPrecondition
                && refused.message().contains("last active admin"))
                || refused.code() == Code::Unauthenticated,
            "{refused:?}"
        );
        let mut still = Vec::new();
        for c in [survivor.clone(), other.clone()] {
            if works(&d, &c.token).await {
                still.push(c);
            }
        }
        assert_eq!(still.len(), 1, "round {round}: one active admin remains");
        survivor = still.remove(0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_fingerprint_is_bound_to_one_client() {
    let dir = tempfile::tempdir().unwrap();
    let d = Arc::new(Daemon::start(dir.path()));
    let admin = d.admin_token();
    let fp = "ab".repeat(32);
    let mut a = d.admin().await;
    a.create_client(authed(create("auditor-1", "auditor", &[], &fp), &admin))
        .await
        .unwrap();
    // The same fingerprint again, however it is written: refused.
    let colons = fp
        .to_ascii_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    for again in [fp.clone(), colons] {
        let err = a
            .create_client(authed(create("auditor-2", "auditor", &[], &again), &admin))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
        assert!(err.message().contains("certificate"), "{}", err.message());
    }
    // Two creations with one new fingerprint at the same moment: one wins.
    let fp2 = "cd".repeat(32);
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let mut tasks = Vec::new();
    for n in 0..2 {
        let (d, barrier, admin, fp2) = (
            Arc::clone(&d),
            Arc::clone(&barrier),
            admin.clone(),
            fp2.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut a = d.admin().await;
            barrier.wait().await;
            a.create_client(authed(
                create(&format!("racer-{n}"), "auditor", &[], &fp2),
                &admin,
            ))
            .await
            .map(|r| vault_tests::leaks::watch_secret(&r.into_inner().token))
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap().map_err(|s| s.code()));
    }
    codes.sort_by_key(|c| c.is_err());
    assert_eq!(codes, vec![Ok(()), Err(Code::AlreadyExists)]);
    let clients = a
        .list_clients(authed(pb::ListClientsRequest {}, &admin))
        .await
        .unwrap()
        .into_inner()
        .clients;
    for fp in [&fp, &fp2] {
        assert_eq!(
            clients.iter().filter(|c| &c.cert_sha256 == fp).count(),
            1,
            "{clients:?}"
        );
    }
}

/// A client proposal's request.
fn propose_client(name: &str, role: &str, purposes: &[&str]) -> pb::ProposeChangeRequest {
    pb::ProposeChangeRequest {
        change: Some(pb::propose_change_request::Change::CreateClient(create(
            name, role, purposes, "",
        ))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_admin_approves_a_dpo_client_and_both_steps_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let first = d.admin_token();
    let second = d.create_client("second-admin", "admin", &[]).await;
    let auditor = d.create_client("auditor", "auditor", &[]).await;
    let mut a = d.admin().await;

    // The first admin proposes; the token it gets back does not work yet.
    let r = a
        .propose_change(authed(propose_client("dpo", "dpo", &[]), &first))
        .await
        .unwrap()
        .into_inner();
    vault_tests::leaks::watch_secret(&r.token);
    let proposal = r.proposal.unwrap();
    assert_eq!(proposal.status, "pending");
    assert_eq!(proposal.proposed_by, "bootstrap-admin");
    assert!(!proposal.widens.is_empty(), "{proposal:?}");
    let dpo = Creds {
        client_id: match &proposal.change {
            Some(pb::proposal::Change::CreateClient(c)) => c.id.clone(),
            other => panic!("a client proposal, not {other:?}"),
        },
        token: r.token,
        purpose: Some("data-subject-rights".into()),
    };
    let requests = |creds: &Creds| {
        let (d, creds) = (&d, creds.clone());
        async move {
            d.rights()
                .await
                .list_requests(authed(pb::ListRequestsRequest::default(), &creds))
                .await
        }
    };
    assert_eq!(
        requests(&dpo).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // Not by the proposer.
    let err = a
        .approve_proposal(authed(
            pb::ApproveProposalRequest {
                id: proposal.id.clone(),
                change_sha256: String::new(),
            },
            &first,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // The second admin sees what it approves, and approves exactly that.
    let listed = a
        .list_proposals(authed(pb::ListProposalsRequest { all: false }, &second))
        .await
        .unwrap()
        .into_inner()
        .proposals;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].change_sha256, proposal.change_sha256);
    assert!(listed[0].summary.contains("role dpo"), "{:?}", listed[0]);
    let wrong = a
        .approve_proposal(authed(
            pb::ApproveProposalRequest {
                id: proposal.id.clone(),
                change_sha256: "0".repeat(64),
            },
            &second,
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::FailedPrecondition, "{wrong:?}");
    let approved = a
        .approve_proposal(authed(
            pb::ApproveProposalRequest {
                id: proposal.id.clone(),
                change_sha256: listed[0].change_sha256.clone(),
            },
            &second,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.status, "approved");
    assert_eq!(approved.approved_by, second.client_id);
    requests(&dpo).await.unwrap();
    // Once only.
    let again = a
        .approve_proposal(authed(
            pb::ApproveProposalRequest {
                id: proposal.id.clone(),
                change_sha256: String::new(),
            },
            &second,
        ))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");

    // The access log holds the proposal, the refused self-approval and the approval, each
    // naming the proposal.
    let reference = format!("proposal:{}", proposal.id);
    let entries: Vec<(String, String, String, String)> = d
        .audit_entries(&auditor, pb::QueryRequest::default())
        .await
        .into_iter()
        .filter(|e| e.request_ref == reference)
        .map(|e| (e.actor, e.action, e.outcome, e.reason))
        .collect();
    let first_id = "bootstrap-admin".to_owned();
    let s = |x: &str| x.to_owned();
    assert_eq!(
        entries[..3],
        [
            (
                first_id.clone(),
                s("Admin.ProposeChange"),
                s("allowed"),
                s("")
            ),
            (
                first_id,
                s("Admin.ApproveProposal"),
                s("denied"),
                s("own-proposal")
            ),
            (
                second.client_id.clone(),
                s("Admin.ApproveProposal"),
                s("denied"),
                s("failed-precondition")
            ),
        ],
        "{entries:?}"
    );
    assert_eq!(
        entries[3],
        (
            second.client_id.clone(),
            s("Admin.ApproveProposal"),
            s("allowed"),
            s("")
        ),
        "{entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_admin_approves_widening_a_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path());
    let first = d.admin_token();
    let second = d.create_client("second-admin", "admin", &[]).await;
    let mut newsletter = purpose(&d, &first, "newsletter").await;
    newsletter.fields.push("phone".into());
    newsletter.channels.push("sms".into());
    let mut a = d.admin().await;
    let proposal = a
        .propose_change(authed(
            pb::ProposeChangeRequest {
                change: Some(pb::propose_change_request::Change::PutPurpose(
                    newsletter.clone(),
                )),
            },
            &first,
        ))
        .await
        .unwrap()
        .into_inner()
        .proposal
        .unwrap();
    assert!(
        proposal.widens.iter().any(|w| w.contains("phone"))
            && proposal.widens.iter().any(|w| w.contains("sms")),
        "{proposal:?}"
    );
    assert!(proposal.previous_purpose.is_some());
    // Nothing changes before the approval.
    assert!(
        !purpose(&d, &first, "newsletter")
            .await
            .fields
            .contains(&"phone".into())
    );
    a.approve_proposal(authed(
        pb::ApproveProposalRequest {
            id: proposal.id.clone(),
            change_sha256: proposal.change_sha256.clone(),
        },
        &second,
    ))
    .await
    .unwrap();
    let now = purpose(&d, &first, "newsletter").await;
    assert!(now.fields.contains(&"phone".into()) && now.channels.contains(&"sms".into()));

    // A proposed retention below the floor is refused at the proposal already.
    let mut short = now.clone();
    short.retention_days = 10;
    let err = a
        .propose_change(authed(
            pb::ProposeChangeRequest {
                change: Some(pb::propose_change_request::Change::PutPurpose(short)),
            },
            &second,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // With two admins, a third admin takes two as well.
    let err = a
        .create_client(authed(create("third", "admin", &[], ""), &first))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
}
