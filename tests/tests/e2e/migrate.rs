//! `vaultctl migrate --to postgres`: an embedded store copied into PostgreSQL without
//! decrypting, then served from there with the same root key and admin token.
//!
//! PostgreSQL only, whatever `VAULT_TEST_BACKEND` says: prints a loud `SKIPPED` line and
//! passes when `VAULT_TEST_DATABASE_URL` is not set.

use std::process::{Command, Output};

use vault_proto::v1 as pb;
use vault_tests::{Daemon, PgSchema, TestStore, VAULTCTL, authed, supporter, use_store};

fn migrate(data_dir: &std::path::Path, pg: &PgSchema) -> Output {
    Command::new(&*VAULTCTL)
        .args(["migrate", "--to", "postgres", "--data-dir"])
        .arg(data_dir)
        .env("VAULT_DATABASE_URL", &pg.url)
        .env("VAULT_DATABASE_SCHEMA", &pg.schema)
        .env_remove("VAULT_DATA_DIR")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_store_moves_to_postgres_intact() {
    let Some(url) = vault_tests::database_url("an_embedded_store_moves_to_postgres_intact") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    use_store(dir.path(), TestStore::Embedded);
    let mut daemon = Daemon::start(dir.path());
    let member = daemon.tool("membership").await;
    let news = daemon.tool("newsletter").await;
    let mut ids = Vec::new();
    for (given, email, phone) in [
        ("Jean", "jean.jaures@exemple.fr", "06 10 20 30 40"),
        ("Rosa", "rosa.l@exemple.fr", ""),
        ("Aimé", "aime.c@exemple.fr", "07 70 80 90 00"),
    ] {
        let r = daemon
            .supporters()
            .await
            .upsert(authed(
                pb::UpsertRequest {
                    supporter: Some(supporter(given, "Migration", email, phone)),
                    consents: vec![],
                },
                &member,
            ))
            .await
            .unwrap()
            .into_inner();
        ids.push(r.id);
    }
    daemon
        .consent()
        .await
        .grant(authed(
            pb::ConsentRequest {
                subject_id: ids[1].clone(),
                source: "form".into(),
                notice_version: "2026-03".into(),
                contact_email: "rosa.l@exemple.fr".into(),
                ..Default::default()
            },
            &news,
        ))
        .await
        .unwrap();

    let pg = PgSchema::new(&url);
    // The embedded store is locked while its daemon runs: refused, nothing copied.
    let out = migrate(dir.path(), &pg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop the daemon first"), "{err}");
    assert!(pg.tables().is_empty(), "nothing may reach the database");

    assert!(daemon.terminate().success());
    let out = migrate(dir.path(), &pg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tables = &summary["tables"];
    assert_eq!(tables["records"], 3, "{summary}");
    assert_eq!(tables["subject_keys"], 3);
    assert_eq!(tables["index_email"], 3);
    assert_eq!(tables["index_phone"], 2);
    assert_eq!(tables["consent"], 1);
    assert_eq!(tables["keyring"], 1);
    assert_eq!(
        tables["clients"], 4,
        "bootstrap admin, the harness's approving admin and two tools"
    );
    assert_eq!(tables["proposals"], 2, "the two tools' approved proposals");
    let sum: u64 = tables
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(summary["rows"].as_u64(), Some(sum));
    assert_eq!(summary["verified"], true);
    // The URL's password never shows.
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p.to_owned())
        .unwrap_or_default();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!password.is_empty() && !stdout.contains(&password) && !stderr.contains(&password));

    // Copied rows are the embedded store's bytes; a second copy into it is refused.
    let out = migrate(dir.path(), &pg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already holds data"), "{err}");

    // The same data dir (root key, admin token) now served from PostgreSQL.
    use_store(dir.path(), TestStore::Postgres(pg.clone()));
    let daemon = Daemon::start(dir.path());
    assert!(!daemon.logs().contains("wrote bootstrap admin token"));
    assert!(daemon.logs().contains("PostgreSQL"));
    let got = daemon
        .supporters()
        .await
        .get(authed(
            pb::GetRequest {
                id: ids[2].clone(),
                fields: None,
            },
            &member,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (got.given_name.as_str(), got.phone.as_str()),
        ("Aimé", "+33770809000")
    );
    let found = daemon
        .supporters()
        .await
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email(
                    "JEAN.JAURES@exemple.fr".into(),
                )),
            },
            &member,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.id, ids[0]);
    // Consent came along: the newsletter tool reads the consenting supporter only.
    let mut s = daemon.supporters().await;
    let get = |id: &str| pb::GetRequest {
        id: id.to_owned(),
        fields: None,
    };
    assert!(s.get(authed(get(&ids[1]), &news)).await.is_ok());
    let refused = s.get(authed(get(&ids[0]), &news)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);
    // Writes work, and dedupe holds against the migrated index.
    let again = s
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("", "", "Rosa.L@exemple.fr", "")),
                consents: vec![],
            },
            &member,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.id.as_str(), again.created), (ids[1].as_str(), false));
    // The bootstrap admin token written by the embedded daemon still works.
    daemon
        .admin()
        .await
        .list_clients(authed(pb::ListClientsRequest {}, &daemon.admin_token()))
        .await
        .unwrap();
}
