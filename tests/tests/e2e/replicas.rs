//! Two `vault-server` replicas sharing one PostgreSQL database (issue 8): what one writes
//! the other reads, dedupe holds across them, and consent withdrawals and client
//! revocations made through one are enforced by the other on its very next call.
//!
//! PostgreSQL only, whatever `VAULT_TEST_BACKEND` says: each test prints a loud `SKIPPED`
//! line and passes when `VAULT_TEST_DATABASE_URL` is not set.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use tonic::Code;
use vault_proto::v1 as pb;
use vault_tests::{Creds, Daemon, PgSchema, TestStore, authed, supporter, use_store};

/// Two replicas of one vault: one schema, two data directories (for each replica's admin
/// token file), one root key file (the first replica's).
struct Pair {
    a: Daemon,
    b: Daemon,
    pg: std::sync::Arc<PgSchema>,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

fn pair(test: &str) -> Option<Pair> {
    let url = vault_tests::database_url(test)?;
    let pg = PgSchema::new(&url);
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    use_store(da.path(), TestStore::Postgres(pg.clone()));
    use_store(db.path(), TestStore::Postgres(pg.clone()));
    // No default deadline: these tests prove correctness under contention (100 upserts of
    // one email over two replicas retry on serialization failures), not speed, and the
    // 30 s default turned a slow machine into a failure.
    let config = da.path().join("replica.toml");
    std::fs::write(&config, "[limits]\nunary_timeout_seconds = 0\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    let a = Daemon::start_with(da.path(), &["--config", &config]);
    assert!(a.logs().contains("wrote bootstrap admin token"));

    // A replica started without the shared root key file is refused, and mints no key.
    let out = Daemon::command(db.path())
        .args(["--data-dir", db.path().to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is missing, but the store"), "{err}");
    assert!(err.contains("PostgreSQL"), "{err}");
    assert!(!db.path().join("root.key").exists());

    // With it: serves, and does not write a second bootstrap token.
    let key = da.path().join("root.key");
    let b = Daemon::start_with(
        db.path(),
        &["--root-key", key.to_str().unwrap(), "--config", &config],
    );
    assert!(
        !db.path().join("admin.token").exists(),
        "the second replica wrote an admin token: {}",
        b.logs()
    );
    assert!(!b.logs().contains("wrote bootstrap admin token"));
    // The operator hands it the first replica's token.
    let token_b = db.path().join("admin.token");
    std::fs::copy(da.path().join("admin.token"), &token_b).unwrap();
    std::fs::set_permissions(&token_b, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(a.admin_token(), b.admin_token());
    Some(Pair {
        a,
        b,
        pg,
        _dirs: (da, db),
    })
}

async fn get(d: &Daemon, id: &str, creds: &Creds) -> Result<pb::Supporter, tonic::Status> {
    d.get_supporter(creds, id).await
}

async fn upsert(d: &Daemon, s: pb::Supporter, creds: &Creds) -> pb::UpsertResponse {
    d.supporters()
        .await
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(s),
                consents: vec![],
            },
            creds,
        ))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_through_one_replica_read_through_the_other() {
    let Some(p) = pair("written_through_one_replica_read_through_the_other") else {
        return;
    };
    // A client registered through one replica is known to the other.
    let tool = p.a.tool("membership").await;
    let created = upsert(
        &p.a,
        supporter(
            "Louise",
            "Michel",
            "Louise.Michel@Commune.fr",
            "06 11 22 33 44",
        ),
        &tool,
    )
    .await;
    assert!(created.created);
    let got = get(&p.b, &created.id, &tool).await.unwrap();
    assert_eq!(
        (
            got.given_name.as_str(),
            got.email.as_str(),
            got.phone.as_str()
        ),
        ("Louise", "louise.michel@commune.fr", "+33611223344")
    );
    // Lookup through the other replica uses the shared blind index.
    let found =
        p.b.supporters()
            .await
            .lookup(authed(
                pb::LookupRequest {
                    key: Some(pb::lookup_request::Key::Phone("+33 6 11 22 33 44".into())),
                },
                &tool,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(found.id, created.id);
    // And the other way round: a tag added through B is read through A.
    p.b.supporters()
        .await
        .tag(authed(
            pb::TagRequest {
                id: created.id.clone(),
                tags: vec!["oratrice".into()],
            },
            &tool,
        ))
        .await
        .unwrap();
    assert_eq!(
        get(&p.a, &created.id, &tool).await.unwrap().tags,
        vec!["oratrice".to_owned()]
    );
    // The same email through B merges into the same supporter.
    let again = upsert(
        &p.b,
        supporter("", "", "LOUISE.michel@commune.fr", ""),
        &tool,
    )
    .await;
    assert_eq!(
        (again.id.as_str(), again.created),
        (created.id.as_str(), false)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_upserts_on_both_replicas_make_one_supporter() {
    let Some(p) = pair("concurrent_upserts_on_both_replicas_make_one_supporter") else {
        return;
    };
    let tool = p.a.tool("membership").await;
    let clients = [p.a.supporters().await, p.b.supporters().await];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100usize {
        let mut c = clients[i % 2].clone();
        let tool = tool.clone();
        tasks.spawn(async move {
            let email = ["Meme@Exemple.fr", "meme@exemple.FR", " MEME@EXEMPLE.FR "][i % 3];
            let mut s = supporter("", "", email, "");
            s.tags = vec![format!("r{}-n{i}", i % 2)];
            c.upsert(authed(
                pb::UpsertRequest {
                    supporter: Some(s),
                    consents: vec![],
                },
                &tool,
            ))
            .await
            .unwrap_or_else(|e| panic!("upsert {i}: {e}"))
            .into_inner()
        });
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    while let Some(done) = tasks.join_next().await {
        let r = done.unwrap();
        created += usize::from(r.created);
        ids.insert(r.id);
    }
    assert_eq!(ids.len(), 1, "one email, one supporter: {ids:?}");
    assert_eq!(created, 1, "exactly one upsert created it");
    let id = ids.pop_first().unwrap();
    // No update lost either: every upsert's tag is there, read through either replica.
    for d in [&p.a, &p.b] {
        assert_eq!(get(d, &id, &tool).await.unwrap().tags.len(), 100);
    }
    // One supporter row in the shared database.
    assert_eq!(p.pg.dump().rows_of("vault_records"), 1);

    // The access log keeps one global order across both replicas: 100 upserts and 2 reads
    // logged once each, and the log verifies, asked through either replica.
    let auditor = p.a.create_client("auditor", "auditor", &[]).await;
    for d in [&p.a, &p.b] {
        let v = d
            .audit()
            .await
            .verify(authed(pb::VerifyRequest::default(), &auditor))
            .await
            .unwrap()
            .into_inner();
        assert!(v.ok, "{}", v.detail);
    }
    let mut stream =
        p.b.audit()
            .await
            .query(authed(
                pb::QueryRequest {
                    subject_id: id.clone(),
                    ..Default::default()
                },
                &auditor,
            ))
            .await
            .unwrap()
            .into_inner();
    let mut about = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        about.push(e);
    }
    assert_eq!(
        about
            .iter()
            .filter(|e| e.action == "Supporters.Upsert")
            .count(),
        100
    );
    assert_eq!(
        about
            .iter()
            .filter(|e| e.action == "Supporters.Get")
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_through_one_replica_is_enforced_by_the_other() {
    let Some(p) = pair("a_withdrawal_through_one_replica_is_enforced_by_the_other") else {
        return;
    };
    let tool = p.a.tool("newsletter").await;
    let id =
        p.a.supporters()
            .await
            .upsert(authed(
                pb::UpsertRequest {
                    supporter: Some(supporter("Olympe", "Gouges", "olympe@exemple.fr", "")),
                    consents: vec![pb::ConsentRequest {
                        purpose: "newsletter".into(),
                        source: "form".into(),
                        notice_version: "2026-03".into(),
                        ..Default::default()
                    }],
                },
                &tool,
            ))
            .await
            .unwrap()
            .into_inner()
            .id;
    // Consent granted through A: B serves the newsletter purpose.
    assert_eq!(
        get(&p.b, &id, &tool).await.unwrap().email,
        "olympe@exemple.fr"
    );
    // Withdrawn through A: B refuses on its next call.
    p.a.consent()
        .await
        .withdraw(authed(
            pb::ConsentRequest {
                subject_id: id.clone(),
                source: "email".into(),
                ..Default::default()
            },
            &tool,
        ))
        .await
        .unwrap();
    let refused = get(&p.b, &id, &tool).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{}", refused.message());
    // Granted again through B: A serves again.
    p.b.consent()
        .await
        .grant(authed(
            pb::ConsentRequest {
                subject_id: id.clone(),
                source: "form".into(),
                notice_version: "2026-04".into(),
                contact_email: "olympe@exemple.fr".into(),
                ..Default::default()
            },
            &tool,
        ))
        .await
        .unwrap();
    assert!(get(&p.a, &id, &tool).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_revoked_through_one_replica_is_refused_by_the_other() {
    let Some(p) = pair("a_client_revoked_through_one_replica_is_refused_by_the_other") else {
        return;
    };
    let tool = p.b.tool("membership").await;
    let id = upsert(&p.a, supporter("", "", "revoque@exemple.fr", ""), &tool)
        .await
        .id;
    assert!(get(&p.b, &id, &tool).await.is_ok());
    p.a.admin()
        .await
        .revoke_client(authed(
            pb::RevokeClientRequest {
                id: tool.client_id.clone(),
            },
            &p.a.admin_token(),
        ))
        .await
        .unwrap();
    for d in [&p.b, &p.a] {
        let refused = get(d, &id, &tool).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::Unauthenticated,
            "{}",
            refused.message()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_of_every_table_holds_no_personal_data() {
    let Some(p) = pair("a_dump_of_every_table_holds_no_personal_data") else {
        return;
    };
    let tool = p.a.tool("membership").await;
    let people = [
        (
            "Anatole",
            "Vercingetorix-Laplanche",
            "anatole.vlp@militant-exemple.fr",
            "06 98 76 54 32",
            "+33698765432",
        ),
        (
            "Hortense",
            "Quillebeuf",
            "Hortense.Q@Courriel-Exemple.org",
            "+33 7 55 44 33 22",
            "+33755443322",
        ),
    ];
    let mut ids = Vec::new();
    for (i, (given, family, email, phone, _)) in people.iter().enumerate() {
        let d = if i == 0 { &p.a } else { &p.b };
        let mut s = supporter(given, family, email, phone);
        s.address = Some(pb::Address {
            line1: "7 Impasse des Secrets Partagés".into(),
            postcode: "29200".into(),
            city: "Brest".into(),
            ..Default::default()
        });
        s.tags = vec!["soutien-confidentiel".into()];
        ids.push(upsert(d, s, &tool).await.id);
    }
    // Updates through the other replica, so records are rewritten.
    for (i, id) in ids.iter().enumerate() {
        let d = if i == 0 { &p.b } else { &p.a };
        d.supporters()
            .await
            .tag(authed(
                pb::TagRequest {
                    id: id.clone(),
                    tags: vec!["relance-discrete".into()],
                },
                &tool,
            ))
            .await
            .unwrap();
    }
    let dump = p.pg.dump();
    assert!(dump.rows.len() >= 10, "tables: {:?}", dump.rows);
    for (table, _) in &dump.rows {
        assert!(table.starts_with("vault_"), "{table}");
    }
    for id in &ids {
        assert!(
            dump.contains(id.as_bytes()),
            "ids are stored: the dump is not empty"
        );
    }
    let mut needles = vec![
        "Impasse des Secrets".to_owned(),
        "soutien-confidentiel".to_owned(),
        "relance-discrete".to_owned(),
    ];
    for (given, family, email, phone, e164) in people {
        needles.extend([given, family, email, phone, e164].map(str::to_owned));
        needles.push(email.to_lowercase());
        needles.push(e164.trim_start_matches("+33").to_owned());
    }
    for needle in needles {
        assert!(
            !dump.contains(needle.as_bytes()),
            "{needle:?} in clear in the database dump ({:?})",
            dump.rows
        );
    }
}
