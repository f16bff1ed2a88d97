//! `vaultctl` against a running daemon, and the daemon's refusals at start.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use vault_tests::ctl::{json, propose_and_approve, vaultctl};
use vault_tests::{Daemon, VAULTCTL};

/// A second admin's token, created by the bootstrap admin while alone (one admin may).
fn second_admin(daemon: &Daemon) -> String {
    let out = json(&vaultctl(
        daemon,
        None,
        &[
            "client",
            "create",
            "--name",
            "second-admin",
            "--role",
            "admin",
        ],
    ));
    let token = out["token"].as_str().unwrap().to_owned();
    vault_tests::leaks::watch_secret(&token);
    token
}

#[test]
fn tour_clients_upsert_lookup_get_consent() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());

    // A campaign tool reads personal data, so it takes two admins: one admin alone is
    // refused and told how to propose it.
    let tool_args = [
        "--name",
        "signup-form",
        "--role",
        "campaign-tool",
        "--purposes",
        "membership,newsletter",
    ];
    let mut direct = vec!["client", "create"];
    direct.extend_from_slice(&tool_args);
    let out = vaultctl(&daemon, None, &direct);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PermissionDenied") && err.contains("admin propose-client"),
        "{err}"
    );
    // The bootstrap admin creates a second admin (one admin may, while alone), proposes the
    // tool (its token is printed once, and works once approved)...
    let second = second_admin(&daemon);
    let mut propose = vec!["admin", "propose-client"];
    propose.extend_from_slice(&tool_args);
    let created = json(&vaultctl(&daemon, None, &propose));
    let token = created["token"].as_str().unwrap().to_owned();
    let client_id = created["proposal"]["change"]["create_client"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("vault_"));
    assert_eq!(created["proposal"]["status"], "pending");
    // ...which the second admin reviews and approves; the proposer itself may not.
    let pending = json(&vaultctl(&daemon, Some(&second), &["admin", "proposals"]));
    let pending = pending.as_array().unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert!(
        pending[0]["summary"]
            .as_str()
            .unwrap()
            .contains("signup-form")
    );
    let id = pending[0]["id"].as_str().unwrap().to_owned();
    let sha = pending[0]["change_sha256"].as_str().unwrap().to_owned();
    let own = vaultctl(&daemon, None, &["admin", "approve", &id]);
    assert!(!own.status.success());
    assert!(String::from_utf8_lossy(&own.stderr).contains("PermissionDenied"));
    let approved = json(&vaultctl(
        &daemon,
        Some(&second),
        &["admin", "approve", &id, "--sha256", &sha],
    ));
    assert_eq!(approved["status"], "approved");
    let listed = json(&vaultctl(&daemon, None, &["client", "list"]));
    assert_eq!(
        listed.as_array().unwrap().len(),
        3,
        "bootstrap admin, second admin and the new client"
    );
    let purposes = json(&vaultctl(&daemon, None, &["purpose", "list"]));
    assert!(
        purposes
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "newsletter")
    );

    // The admin itself reads no personal data.
    let out = vaultctl(
        &daemon,
        None,
        &[
            "--purpose",
            "membership",
            "supporter",
            "lookup",
            "--email",
            "x@y.fr",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("PermissionDenied"));

    let tool = |args: &[&str]| vaultctl(&daemon, Some(&token), args);
    let upserted = json(&tool(&[
        "--purpose",
        "membership",
        "supporter",
        "upsert",
        "--email",
        "Olympe@Gouges.fr",
        "--given-name",
        "Olympe",
        "--phone",
        "06 01 02 03 04",
        "--tag",
        "volunteer",
        "--postcode",
        "75003",
    ]));
    assert_eq!(upserted["created"], true);
    let id = upserted["id"].as_str().unwrap().to_owned();

    let found = json(&tool(&[
        "--purpose",
        "membership",
        "supporter",
        "lookup",
        "--email",
        "OLYMPE@gouges.fr",
    ]));
    assert_eq!(found["id"], id.as_str());
    assert_eq!(found["phone"], "+33601020304");
    let found = json(&tool(&[
        "--purpose",
        "membership",
        "supporter",
        "lookup",
        "--phone",
        "+33601020304",
    ]));
    assert_eq!(found["id"], id.as_str());

    let got = json(&tool(&[
        "--purpose",
        "membership",
        "supporter",
        "get",
        &id,
        "--fields",
        "email,tags",
    ]));
    assert_eq!(got["email"], "olympe@gouges.fr");
    assert_eq!(got["tags"][0], "volunteer");
    // Fields the mask left out are absent, not "": only the id and the asked fields.
    let keys: Vec<&str> = got
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["email", "id", "tags"], "{got}");

    let tagged = json(&tool(&[
        "--purpose",
        "membership",
        "supporter",
        "tag",
        &id,
        "speaker",
    ]));
    assert_eq!(tagged["tags"].as_array().unwrap().len(), 2);

    // Rectification: only the fields passed (and cleared) change.
    let updated = json(&tool(&[
        "--purpose",
        "membership",
        "supporter",
        "update",
        &id,
        "--family-name",
        "de Gouges",
        "--clear",
        "phone",
        "--request-ref",
        "REQ-2026-001",
    ]));
    assert_eq!(updated["family_name"], "de Gouges");
    // Cleared and visible to membership: an empty string, not an absent key.
    assert_eq!(updated["phone"], "");
    assert_eq!(updated["given_name"], "Olympe");
    assert_eq!(updated["address"]["postcode"], "75003");
    assert_eq!(updated["tags"].as_array().unwrap().len(), 2);
    for (args, says) in [
        (
            vec!["supporter", "update", id.as_str()],
            "nothing to change",
        ),
        (
            vec![
                "supporter",
                "update",
                id.as_str(),
                "--phone",
                "0601020304",
                "--clear",
                "phone",
            ],
            "both set and cleared",
        ),
        (
            vec!["supporter", "update", id.as_str(), "--clear", "created_at"],
            "InvalidArgument",
        ),
    ] {
        let mut full = vec!["--purpose", "membership"];
        full.extend(args);
        let out = tool(&full);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{err}");
    }

    // Newsletter needs consent: answered as for someone not in the file, granted (through
    // the email it came by), read (email but no phone), withdrawn.
    let out = tool(&["--purpose", "newsletter", "supporter", "get", &id]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("NotFound: not found: no supporter with id {id}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json(&tool(&[
        "--purpose",
        "newsletter",
        "consent",
        "grant",
        &id,
        "--source",
        "form",
        "--notice-version",
        "2026-03",
        "--contact-email",
        "olympe@gouges.fr",
    ]));
    let news = json(&tool(&["--purpose", "newsletter", "supporter", "get", &id]));
    assert_eq!(news["email"], "olympe@gouges.fr");
    // The newsletter never sees the phone or the address: absent, told from empty.
    assert!(news.get("phone").is_none(), "{news}");
    assert!(news.get("address").is_none(), "{news}");
    assert!(news.get("source").is_none(), "{news}");
    assert_eq!(news["given_name"], "Olympe", "{news}");
    let withdrawn = json(&tool(&[
        "--purpose",
        "newsletter",
        "consent",
        "withdraw",
        &id,
        "--source",
        "email",
    ]));
    assert_eq!(withdrawn["kind"], "withdraw");
    let history = json(&tool(&[
        "--purpose",
        "newsletter",
        "consent",
        "history",
        &id,
    ]));
    assert_eq!(history["events"].as_array().unwrap().len(), 2);

    // Failures: non-zero exit, one line naming the status.
    let out = tool(&[
        "--purpose",
        "membership",
        "supporter",
        "get",
        "6f1c1a7e-3b7d-4d0e-9a51-2c9f5d3e8b10",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("vaultctl: NotFound:"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1);

    // Revocation applies to the next call.
    json(&vaultctl(&daemon, None, &["client", "revoke", &client_id]));
    let out = tool(&["--purpose", "membership", "supporter", "get", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthenticated"));
}

#[test]
fn vaultctl_without_daemon_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "vault_x\n").unwrap();
    let out = Command::new(&*VAULTCTL)
        .args(["supporter", "lookup", "--email", "a@b.fr"])
        .env("VAULT_ADDR", "http://127.0.0.1:1")
        .env("VAULT_DATA_DIR", dir.path())
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1);
}

/// Starts the daemon on `dir`'s store (see `vault_tests::store_for`) and expects it to fail.
fn start_failure(dir: &Path, args: &[&str]) -> String {
    let out = Daemon::command(dir).args(args).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    vault_tests::leaks::assert_clean("a daemon refusing to start", &err);
    err
}

#[test]
fn daemon_refuses_unsafe_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();

    // Plaintext on a public address.
    let err = start_failure(dir.path(), &["--data-dir", data, "--listen", "0.0.0.0:0"]);
    assert!(err.contains("refusing to serve plaintext"), "{err}");

    // A root key file others can read.
    let key = dir.path().join("loose.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    vault_tests::leaks::watch_secret(&"ab".repeat(32));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = start_failure(
        dir.path(),
        &[
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--root-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(err.contains("readable by its owner only"), "{err}");

    // A store whose root key went missing.
    drop(Daemon::start(dir.path()));
    std::fs::remove_file(dir.path().join("root.key")).unwrap();
    let err = start_failure(dir.path(), &["--data-dir", data, "--listen", "127.0.0.1:0"]);
    assert!(err.contains("is missing, but the store"), "{err}");
    assert!(
        !dir.path().join("root.key").exists(),
        "a useless new key was left behind"
    );

    // Another root key: named as such.
    let other = dir.path().join("other.key");
    std::fs::write(&other, format!("{}\n", "cd".repeat(32))).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = start_failure(
        dir.path(),
        &[
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--root-key",
            other.to_str().unwrap(),
        ],
    );
    assert!(err.contains("root key does not match this store"), "{err}");

    // A database URL selects PostgreSQL: one that cannot be reached is a clear failure at
    // start (not a silent fallback to the embedded store), the password is never echoed,
    // and no root key is minted for a store that was never opened.
    let fresh = tempfile::tempdir().unwrap();
    vault_tests::use_store(fresh.path(), vault_tests::TestStore::Embedded);
    let fresh_data = fresh.path().to_str().unwrap();
    let password = "Never-In-The-Log-7731";
    let err = start_failure(
        fresh.path(),
        &[
            "--data-dir",
            fresh_data,
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &format!("postgres://vault:{password}@127.0.0.1:1/vault"),
        ],
    );
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(!err.contains(password), "{err}");
    assert!(!fresh.path().join("root.key").exists());

    // storage = "postgres" without a URL, and an unknown engine, are refused.
    let config = dir.path().join("pg.toml");
    let config = config.to_str().unwrap();
    std::fs::write(config, "storage = \"postgres\"\n").unwrap();
    let err = start_failure(
        fresh.path(),
        &["--data-dir", fresh_data, "--config", config],
    );
    assert!(err.contains("needs a database URL"), "{err}");
    std::fs::write(config, "storage = \"mysql\"\n").unwrap();
    let err = start_failure(
        fresh.path(),
        &["--data-dir", fresh_data, "--config", config],
    );
    assert!(err.contains("not a storage engine"), "{err}");
}

#[test]
fn record_of_processing_activities() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vault.toml");
    std::fs::write(
        &config,
        "[controller]\nname = \"Campagne Exemple 2027\"\ncontact = \"contact@exemple.fr\"\ndpo_contact = \"dpo@exemple.fr\"\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start_with(&data, &["--config", config.to_str().unwrap()]);
    let second = second_admin(&daemon);
    let created = propose_and_approve(
        &daemon,
        &second,
        &[
            "--name",
            "mailer",
            "--role",
            "campaign-tool",
            "--purposes",
            "newsletter",
        ],
    );
    let md = vaultctl(&daemon, None, &["report", "processing"]);
    assert!(
        md.status.success(),
        "{}",
        String::from_utf8_lossy(&md.stderr)
    );
    let md = String::from_utf8(md.stdout).unwrap();
    assert!(
        md.starts_with("# Record of processing activities (GDPR art. 30)"),
        "{md}"
    );
    assert!(md.contains("Controller: Campagne Exemple 2027"));
    for purpose in [
        "newsletter",
        "sms-mobilisation",
        "event-invitations",
        "canvassing",
        "membership",
        "donations-accounting",
        "data-subject-rights",
    ] {
        assert!(md.contains(&format!("## {purpose}\n")), "{purpose} missing");
    }
    assert!(md.contains("Recipients: mailer (campaign-tool)"));
    let js = json(&vaultctl(
        &daemon,
        None,
        &["report", "processing", "--format", "json"],
    ));
    assert_eq!(js["version"], 1);
    let news = js["activities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["purpose"] == "newsletter")
        .unwrap();
    assert_eq!(news["lawful_basis"], "consent");
    assert_eq!(news["special_category_basis"], "explicit-consent");
    // --json means the JSON report, the same document as --format json.
    let via_flag = json(&vaultctl(
        &daemon,
        None,
        &["report", "processing", "--json"],
    ));
    assert_eq!(via_flag["activities"], js["activities"]);
    let clash = vaultctl(
        &daemon,
        None,
        &["report", "processing", "--json", "--format", "markdown"],
    );
    assert!(!clash.status.success());
    assert!(
        String::from_utf8_lossy(&clash.stderr).contains("drop --format markdown"),
        "{}",
        String::from_utf8_lossy(&clash.stderr)
    );
    // A campaign tool may not print it.
    let token = created["token"].as_str().unwrap();
    let refused = vaultctl(&daemon, Some(token), &["report", "processing"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("PermissionDenied"));
}

/// An explicit `--token-file` beats `VAULT_TOKEN`, and a missing one is an error, not a
/// silent fall-back; a bare `HOST:PORT` (the form `--listen` takes) is an address.
#[test]
fn an_explicit_token_file_beats_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let missing = dir.path().join("no-such.token");
    let out = Command::new(&*VAULTCTL)
        .args(["--token-file", missing.to_str().unwrap(), "client", "list"])
        .env("VAULT_ADDR", daemon.addr.to_string())
        .env("VAULT_TOKEN", daemon.admin_token())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--token-file") && err.contains("no-such.token"),
        "{err}"
    );
    let file = dir.path().join("good.token");
    std::fs::write(&file, daemon.admin_token()).unwrap();
    let out = Command::new(&*VAULTCTL)
        .args(["--token-file", file.to_str().unwrap(), "client", "list"])
        .env("VAULT_ADDR", daemon.addr.to_string())
        .env("VAULT_TOKEN", "vault_not-a-token")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
