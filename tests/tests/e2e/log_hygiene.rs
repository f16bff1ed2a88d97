//! The log check of the harness can fail: it finds planted secrets and personal data, in
//! text and in a real daemon's captured log, and leaves an ordinary daemon log alone.
//!
//! Every other test file relies on this check: each daemon they start has its log scanned
//! when it stops (see `vault_tests::leaks`).

use std::panic::AssertUnwindSafe;

use vault_proto::v1 as pb;
use vault_tests::leaks::{assert_clean, scan, watch_name, watch_secret};
use vault_tests::{Daemon, authed, supporter};

/// The kinds found in `log`.
fn kinds(log: &str) -> Vec<&'static str> {
    scan(log).into_iter().map(|f| f.kind).collect()
}

#[test]
fn planted_secrets_and_personal_data_are_found() {
    let token = format!("vault_{}", "0123456789abcdef".repeat(4));
    let secret = "s3cr3t-handled-by-a-test-0042";
    watch_secret(secret);
    watch_name("Philomène");
    for (line, kind) in [
        (format!("INFO auth: presented {token}"), "a vault token"),
        (
            format!("WARN key={secret} rejected"),
            "a secret the tests handled",
        ),
        (
            "-----BEGIN PRIVATE KEY-----".to_owned(),
            "a PEM private key",
        ),
        (
            "ERROR upsert failed for lena.b@exemple-campagne.fr".to_owned(),
            "an email address",
        ),
        (
            "DEBUG email=\"Jean@Example.FR\"".to_owned(),
            "an email address",
        ),
        (
            "WARN phone 06 98 76 54 32 refused".to_owned(),
            "a phone number",
        ),
        ("WARN phone=0698765432".to_owned(), "a phone number"),
        ("WARN phone=06.98.76.54.32".to_owned(), "a phone number"),
        ("WARN phone=+33698765432".to_owned(), "a phone number"),
        (
            "WARN phone=\"+33 7 81 62 40 59\"".to_owned(),
            "a phone number",
        ),
        (
            "WARN number +4915123456789 refused".to_owned(),
            "a phone number",
        ),
        ("INFO given_name=Philomène".to_owned(), "a supporter's name"),
        (
            "INFO family=Onfroy-Kerguelen".to_owned(),
            "a supporter's name",
        ),
    ] {
        let found = kinds(&line);
        assert!(
            found.iter().any(|k| k.starts_with(kind)),
            "{line:?}: expected {kind:?}, found {found:?}"
        );
    }
    let planted = format!("INFO listening on 127.0.0.1:4000\nWARN leaked {token}\n");
    let findings = scan(&planted);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].line, 2);
    let caught = std::panic::catch_unwind(|| assert_clean("a planted log", &planted));
    assert!(caught.is_err(), "assert_clean must fail on a planted token");
}

#[test]
fn ordinary_daemon_lines_are_clean() {
    let log = "\
2026-10-04T09:12:33.123456Z  INFO vault_server::daemon::serve: opened the store store=sled at /tmp/.tmpAbC123/store
2026-10-04T09:12:33.223456Z  INFO vault_server::daemon::bootstrap: wrote bootstrap admin token path=/tmp/.tmpAbC123/admin.token
2026-10-04T09:12:33.323456Z  INFO vault_server::daemon::serve: listening on 127.0.0.1:43817
2026-10-04T09:12:34.000001Z DEBUG vault::access: logged seq=1234567890 rpc=Supporters.Upsert client=0a1b2c3d-0612-4345-8678-061234567890
2026-10-04T09:12:34.000002Z DEBUG vault_server::daemon::grpc: call request_id=8f14e45f-ceea-467f-a0e6-0698765432ab client=tool-membership rpc=\"Rights.Erase\" code=NotFound
2026-10-04T09:12:34.000003Z ERROR vault_server::daemon::status: integrity check failed; the stored data was altered error=integrity check failed: record of supporter 5c0ffee0-0000-4000-8000-000000000001
2026-10-04T09:12:35.000004Z  INFO vault_core::vault::keys: destroyed expired key epochs epochs=[1, 2] at_us=1759569155000004 elapsed=0.0612345678s
2026-10-04T09:12:36.000005Z  INFO vault_server::daemon::serve: stopped: in-flight calls finished, the access log checkpointed and the store flushed
";
    assert_eq!(scan(log), Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_log_with_planted_data_fails_the_test_and_a_real_one_passes() {
    // A real session: its log passes the check.
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let tool = daemon.tool("membership").await;
    let mut c = daemon.supporters().await;
    c.upsert(authed(
        pb::UpsertRequest {
            supporter: Some(supporter(
                "Philibert",
                "Hygiène",
                "philibert@hygiene.fr",
                "06 11 22 33 44",
            )),
            consents: vec![],
        },
        &tool,
    ))
    .await
    .unwrap();
    // Hostile input too: refused, and not echoed into the log.
    let err = c
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("Philibert", "Hygiène", "not an email@", "")),
                consents: vec![],
            },
            &tool,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let bad_token = c
        .get(authed(
            pb::GetRequest {
                id: String::new(),
                fields: None,
            },
            &format!("vault_{}", "f".repeat(64)),
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), tonic::Code::Unauthenticated);
    drop(c);
    assert!(daemon.terminate().success());
    // The scan saw the verbose lines too: one per call, at debug.
    assert!(
        daemon.logs().contains("Supporters.Upsert"),
        "{}",
        daemon.logs()
    );

    // The same daemon's log with a client token planted: terminate fails the test...
    let mut daemon = Daemon::start(dir.path());
    daemon.plant_log_line(&format!("WARN authenticating {}", tool.token));
    let failed = std::panic::catch_unwind(AssertUnwindSafe(|| daemon.terminate()));
    let message = *failed
        .expect_err("a token in the log must fail the test")
        .downcast::<String>()
        .unwrap();
    assert!(message.contains("a secret the tests handled"), "{message}");
    // ...once (drop does not fail it again).
    drop(daemon);

    // An email planted in a running daemon's log: dropping it fails the test.
    let daemon = Daemon::start(dir.path());
    daemon.plant_log_line("DEBUG lookup email=philibert@hygiene.fr");
    let failed = std::panic::catch_unwind(AssertUnwindSafe(move || drop(daemon)));
    assert!(failed.is_err(), "an email in the log must fail the test");

    // And so does kill -9.
    let mut daemon = Daemon::start(dir.path());
    daemon.plant_log_line("DEBUG given_name=Philibert");
    let failed = std::panic::catch_unwind(AssertUnwindSafe(|| daemon.kill9()));
    assert!(failed.is_err(), "a name in the log must fail the test");
}

#[test]
fn a_config_file_error_does_not_quote_the_file() {
    // A typo on the line holding the database password: the daemon refuses to start, says
    // where, and does not copy the line into its log.
    let password = "pw-in-a-config-file-0042";
    watch_secret(password);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vault.toml");
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:0\"\ndatabse_url = \"postgres://vault:{password}@db.example/vault\"\n"),
    )
    .unwrap();
    let out = Daemon::command(dir.path())
        .args(["--config", config.to_str().unwrap()])
        .arg("--data-dir")
        .arg(dir.path())
        .env("VAULT_LOG", vault_tests::VAULT_LOG)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 2, column 1") && err.contains("databse_url"),
        "{err}"
    );
    assert_clean("a daemon refusing its config", &err);
}
