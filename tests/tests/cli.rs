//! `vaultctl` against a running daemon, and the daemon's refusals at start.

// Test helpers unwrap: a failure is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::{Daemon, VAULT_SERVER, VAULTCTL};

fn vaultctl(daemon: &Daemon, args: &[&str]) -> Output {
    Command::new(VAULTCTL)
        .args(args)
        .env("VAULT_ADDR", format!("http://{}", daemon.addr))
        .env("VAULT_DATA_DIR", &daemon.data_dir)
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn tour_upsert_lookup_get() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let created = json(&vaultctl(
        &daemon,
        &[
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
        ],
    ));
    assert_eq!(created["created"], true);
    let id = created["id"].as_str().unwrap().to_owned();

    let found = json(&vaultctl(
        &daemon,
        &["supporter", "lookup", "--email", "OLYMPE@gouges.fr"],
    ));
    assert_eq!(found["id"], id.as_str());
    assert_eq!(found["phone"], "+33601020304");
    let found = json(&vaultctl(
        &daemon,
        &["supporter", "lookup", "--phone", "+33601020304"],
    ));
    assert_eq!(found["id"], id.as_str());

    let got = json(&vaultctl(
        &daemon,
        &["supporter", "get", &id, "--fields", "email,tags"],
    ));
    assert_eq!(got["email"], "olympe@gouges.fr");
    assert_eq!(got["given_name"], "");
    assert_eq!(got["tags"][0], "volunteer");

    let tagged = json(&vaultctl(&daemon, &["supporter", "tag", &id, "speaker"]));
    assert_eq!(tagged["tags"].as_array().unwrap().len(), 2);

    // Failures: non-zero exit, one line naming the status.
    let out = vaultctl(
        &daemon,
        &["supporter", "get", "6f1c1a7e-3b7d-4d0e-9a51-2c9f5d3e8b10"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("vaultctl: NotFound:"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1);

    let out = Command::new(VAULTCTL)
        .args(["supporter", "get", &id])
        .env("VAULT_ADDR", format!("http://{}", daemon.addr))
        .env("VAULT_TOKEN", "vault_wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthenticated"));
}

#[test]
fn vaultctl_without_daemon_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin.token"), "vault_x\n").unwrap();
    let out = Command::new(VAULTCTL)
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

fn start_failure(args: &[&str]) -> String {
    let out = Command::new(VAULT_SERVER)
        .args(args)
        .env_remove("VAULT_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn daemon_refuses_unsafe_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();

    // Plaintext on a public address.
    let err = start_failure(&["--data-dir", data, "--listen", "0.0.0.0:0"]);
    assert!(err.contains("refusing to serve plaintext"), "{err}");

    // A root key file others can read.
    let key = dir.path().join("loose.key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = start_failure(&[
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--root-key",
        key.to_str().unwrap(),
    ]);
    assert!(err.contains("readable by its owner only"), "{err}");

    // A store whose root key went missing.
    drop(Daemon::start(dir.path()));
    std::fs::remove_file(dir.path().join("root.key")).unwrap();
    let err = start_failure(&["--data-dir", data, "--listen", "127.0.0.1:0"]);
    assert!(err.contains("is missing, but the store"), "{err}");
    assert!(
        !dir.path().join("root.key").exists(),
        "a useless new key was left behind"
    );

    // Another root key: named as such.
    let other = dir.path().join("other.key");
    std::fs::write(&other, format!("{}\n", "cd".repeat(32))).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = start_failure(&[
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--root-key",
        other.to_str().unwrap(),
    ]);
    assert!(err.contains("root key does not match this store"), "{err}");

    // The PostgreSQL store is not in this version: a clear refusal, not a silent fallback.
    let err = start_failure(&[
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        "postgres://localhost/vault",
    ]);
    assert!(err.contains("PostgreSQL store is not available"), "{err}");
}
