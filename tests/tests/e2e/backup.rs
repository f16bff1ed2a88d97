//! Backups while serving (`Admin.Backup`, `vaultctl backup`) and offline restore
//! (`vaultctl restore`): a backup taken under write load restores every acknowledged write
//! and a log that verifies; a restore needs the root key that made the backup; restoring
//! over a data directory brings back the backup's state; after the store is lost, a restore
//! needs an erasure journal exported after the backup (`vaultctl erasures export`), or an
//! explicit acceptance that people erased since come back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vault_proto::v1 as pb;
use vault_tests::ctl::json;
use vault_tests::{Creds, Daemon, TestStore, VAULTCTL, authed, store_for, supporter};

/// `vaultctl restore` of `backup` into `data_dir`'s store (embedded, or its PostgreSQL
/// schema when the suite runs on PostgreSQL), with `root_key` and the `extra` flags.
fn restore(data_dir: &Path, backup: &Path, root_key: &Path, extra: &[&str]) -> Output {
    let mut cmd = Command::new(&*VAULTCTL);
    cmd.arg("restore")
        .arg("--backup")
        .arg(backup)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--root-key")
        .arg(root_key)
        .args(extra)
        .env_remove("VAULT_DATA_DIR")
        .env_remove("VAULT_ROOT_KEY_FILE");
    match store_for(data_dir) {
        TestStore::Embedded => {
            cmd.env_remove("VAULT_DATABASE_URL")
                .env_remove("VAULT_DATABASE_SCHEMA");
        }
        TestStore::Postgres(pg) => {
            cmd.env("VAULT_DATABASE_URL", &pg.url)
                .env("VAULT_DATABASE_SCHEMA", &pg.schema);
        }
    }
    cmd.output().unwrap()
}

fn email(i: u64) -> String {
    format!("sauvegarde.{i}@exemple.fr")
}

async fn upsert(daemon: &Daemon, tool: &Creds, i: u64) -> String {
    daemon
        .supporters()
        .await
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("Camille", "Sauvegarde", &email(i), "")),
                consents: vec![],
            },
            tool,
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn get(daemon: &Daemon, tool: &Creds, id: &str) -> Result<pb::Supporter, tonic::Status> {
    daemon.get_supporter(tool, id).await
}

async fn backup(
    daemon: &Daemon,
    token: &str,
    path: &Path,
) -> Result<pb::BackupManifest, tonic::Status> {
    daemon
        .admin()
        .await
        .backup(authed(
            pb::BackupRequest {
                path: path.display().to_string(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn verify(daemon: &Daemon, auditor: &Creds) -> pb::VerifyResponse {
    daemon
        .audit()
        .await
        .verify(authed(pb::VerifyRequest::default(), auditor))
        .await
        .unwrap()
        .into_inner()
}

/// Every access-log entry's stored bytes, by sequence number.
async fn log_entries(daemon: &Daemon, auditor: &Creds) -> Vec<(u64, Vec<u8>)> {
    daemon
        .audit_entries(auditor, pb::QueryRequest::default())
        .await
        .into_iter()
        .map(|e| (e.seq, e.raw))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_write_load_restores_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let admin = daemon.admin_token();
    let tool = daemon.tool("membership").await;
    let auditor = daemon.create_client("auditor", "auditor", &[]).await;

    let mut before = Vec::new();
    for i in 0..20 {
        before.push((upsert(&daemon, &tool, i).await, i));
    }

    // A writer keeps upserting while the backup runs.
    let daemon = Arc::new(daemon);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (daemon, tool, stop) = (Arc::clone(&daemon), tool.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut acked = BTreeSet::new();
            let mut i = 1000;
            while !stop.load(Ordering::Relaxed) || acked.len() < 10 {
                acked.insert(upsert(&daemon, &tool, i).await);
                i += 1;
            }
            acked
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let backups = tempfile::tempdir().unwrap();
    let path = backups.path().join("nightly");
    let manifest = backup(&daemon, &admin, &path).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let during = writer.await.unwrap();

    assert_eq!(manifest.path, path.display().to_string());
    assert!(manifest.supporters >= 20, "{manifest:?}");
    assert_eq!(manifest.epochs, vec![1]);
    assert_eq!(manifest.format_version, 1);
    assert!(manifest.taken_at.is_some());
    assert!(manifest.audit_size > 20);
    assert!(path.join("manifest.json").is_file() && path.join("store").is_dir());
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(on_disk["audit_size"], manifest.audit_size);
    assert_eq!(on_disk["root_key_included"], false);

    // Ciphertext only: no email, no name, and not the root key.
    let root_key = std::fs::read_to_string(dir.path().join("root.key")).unwrap();
    for needle in [email(3).as_str(), "Sauvegarde", root_key.trim()] {
        let found = vault_tests::files_containing(&path, needle.as_bytes());
        assert!(found.is_empty(), "{needle:?} in {found:?}");
    }

    // The same path again, a relative path, and a non-admin are refused.
    let e = backup(&daemon, &admin, &path).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("not empty"), "{}", e.message());
    let e = backup(&daemon, &admin, Path::new("relative/dir"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    let e = backup(&daemon, &tool.token, &backups.path().join("by-tool"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(!backups.path().join("by-tool").exists());

    // The live log verifies, and so does its prefix the backup holds.
    assert!(verify(&daemon, &auditor).await.ok);
    let original = log_entries(&daemon, &auditor).await;
    let mut daemon = Arc::into_inner(daemon).unwrap();
    assert!(daemon.terminate().success());

    // Restore into a new data directory, with the original root key file (no erasure since
    // the backup, so nobody can come back; the restore cannot know it without a journal).
    let restored_dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("root.key");
    let summary = json(&restore(
        restored_dir.path(),
        &path,
        &key,
        &["--accept-erased-people-may-return"],
    ));
    assert_eq!(summary["erasures_replayed"], 0);
    assert_eq!(summary["erased_people_may_return"], true);
    assert!(summary["rows_restored"].as_u64().unwrap() > manifest.audit_size);
    assert_eq!(summary["backup"]["audit_size"], manifest.audit_size);
    let key_flag = key.display().to_string();
    let restored = Daemon::start_with(restored_dir.path(), &["--root-key", &key_flag]);

    // Every supporter acknowledged before the backup is there, with its data.
    for (id, i) in &before {
        let s = get(&restored, &tool, id).await.unwrap();
        assert_eq!(s.email, email(*i));
    }
    // Writes acknowledged during the backup are there or not, but never half: each one
    // present is readable.
    let mut present = 0;
    for id in &during {
        match get(&restored, &tool, id).await {
            Ok(_) => present += 1,
            Err(e) => assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}"),
        }
    }
    assert_eq!(present + before.len() as u64, manifest.supporters);

    // The restored log verifies and is exactly the original's first `audit_size` entries.
    let v = verify(&restored, &auditor).await;
    assert!(v.ok, "{v:?}");
    assert!(v.tree_size > manifest.audit_size);
    let restored_log = log_entries(&restored, &auditor).await;
    let prefix = |log: &[(u64, Vec<u8>)]| -> Vec<(u64, Vec<u8>)> {
        log.iter()
            .filter(|(seq, _)| *seq < manifest.audit_size)
            .cloned()
            .collect()
    };
    assert_eq!(prefix(&restored_log).len() as u64, manifest.audit_size);
    assert_eq!(prefix(&restored_log), prefix(&original));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vaultctl_backup_then_restore_over_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let tool = daemon.tool("membership").await;
    let kept = upsert(&daemon, &tool, 1).await;
    let erased = upsert(&daemon, &tool, 3).await;

    let backups = tempfile::tempdir().unwrap();
    let path = backups.path().join("b1");
    let out = Command::new(&*VAULTCTL)
        .args(["backup", "--json", "--out"])
        .arg(&path)
        .env("VAULT_ADDR", format!("http://{}", daemon.addr))
        .env("VAULT_DATA_DIR", dir.path())
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap();
    let manifest = json(&out);
    assert_eq!(manifest["supporters"], 2);
    assert_eq!(manifest["root_key_included"], false);

    // Written after the backup: gone once the backup is restored.
    let later = upsert(&daemon, &tool, 2).await;

    // Erased after the backup (with suppression): the restore replays the erasure journal,
    // so the person does not come back, and their email stays refused.
    let dpo = daemon.dpo().await;
    daemon
        .rights()
        .await
        .erase(authed(
            pb::EraseRequest {
                subject_id: erased.clone(),
                request_ref: "REQ-17-9".into(),
                suppress: true,
            },
            &dpo,
        ))
        .await
        .unwrap();

    let key = dir.path().join("root.key");
    if matches!(store_for(dir.path()), TestStore::Embedded) {
        // A running daemon holds the embedded store: refused, nothing changed.
        let out = restore(dir.path(), &path, &key, &[]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("stop the daemon first"), "{err}");
    }
    assert!(daemon.terminate().success());

    // Another root key is refused before anything is touched.
    let other_dir = tempfile::tempdir().unwrap();
    let other_key = other_dir.path().join("other.key");
    vault_core::crypto::root_key::RootKey::load_or_create(&other_key).unwrap();
    let out = restore(dir.path(), &path, &other_key, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did not make this backup"), "{err}");

    // The target store is live: its own journal is as new as the backup.
    let summary = json(&restore(dir.path(), &path, &key, &[]));
    assert_eq!(summary["erasures_replayed"], 1, "{summary}");
    assert_eq!(summary["erased_people_may_return"], false, "{summary}");
    if matches!(store_for(dir.path()), TestStore::Embedded) {
        let aside = PathBuf::from(summary["previous_store"].as_str().unwrap());
        assert!(aside.is_dir() && aside.starts_with(dir.path()), "{summary}");
    }

    let daemon = Daemon::start(dir.path());
    let s = get(&daemon, &tool, &kept).await.unwrap();
    assert_eq!(s.email, email(1));
    let e = get(&daemon, &tool, &later).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = get(&daemon, &tool, &erased).await.unwrap_err();
    assert_eq!(
        e.code(),
        tonic::Code::NotFound,
        "still erased after the restore: {e:?}"
    );
    let e = daemon
        .supporters()
        .await
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("Camille", "Sauvegarde", &email(3), "")),
                consents: vec![],
            },
            &tool,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        tonic::Code::FailedPrecondition,
        "suppression replayed: {e:?}"
    );
}

/// `vaultctl erasures export FILE` against `daemon`, with its admin token file.
fn export_erasures(daemon: &Daemon, data_dir: &Path, file: &Path) -> Output {
    Command::new(&*VAULTCTL)
        .args(["erasures", "export"])
        .arg(file)
        .env("VAULT_ADDR", format!("http://{}", daemon.addr))
        .env("VAULT_DATA_DIR", data_dir)
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap()
}

/// Issue 14: the store is lost with its erasure journal. Without a journal exported after
/// the backup, a restore refuses (nothing changed); with one, the person erased after the
/// backup stays erased; with the flag, it runs and warns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_after_the_store_is_lost_needs_a_journal_as_new_as_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let admin = daemon.admin_token();
    let tool = daemon.tool("membership").await;
    let auditor = daemon.create_client("auditor", "auditor", &[]).await;
    let kept = upsert(&daemon, &tool, 1).await;
    let erased = upsert(&daemon, &tool, 2).await;
    let backups = tempfile::tempdir().unwrap();
    let path = backups.path().join("before-the-fire");
    let manifest = backup(&daemon, &admin, &path).await.unwrap();

    let dpo = daemon.dpo().await;
    daemon
        .rights()
        .await
        .erase(authed(
            pb::EraseRequest {
                subject_id: erased.clone(),
                request_ref: "REQ-14".into(),
                suppress: false,
            },
            &dpo,
        ))
        .await
        .unwrap();

    // Exported while serving, to a file kept elsewhere (here: beside the backups).
    let journal = backups.path().join("erasures.json");
    let summary = json(&export_erasures(&daemon, dir.path(), &journal));
    assert_eq!(summary["erasures"], 1, "{summary}");
    let taken_us = manifest.taken_at.as_ref().unwrap().seconds * 1_000_000;
    assert!(
        summary["as_of_us"].as_i64().unwrap() >= taken_us,
        "{summary}"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&journal).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // No personal data in it: ids, times and request references.
    let text = std::fs::read(&journal).unwrap();
    for needle in [email(2).as_str(), "Camille", "Sauvegarde"] {
        let n = needle.as_bytes();
        assert!(!text.windows(n.len()).any(|w| w == n), "{needle:?} in it");
    }
    // Admin only, and logged like every admin call.
    let e = daemon
        .admin()
        .await
        .export_erasure_journal(authed(pb::ExportErasureJournalRequest {}, &tool))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let exports: Vec<(String, String)> = daemon
        .audit_entries(
            &auditor,
            pb::QueryRequest {
                action: "Admin.ExportErasureJournal".into(),
                ..Default::default()
            },
        )
        .await
        .into_iter()
        .map(|e| (e.role, e.outcome))
        .collect();
    assert_eq!(
        exports,
        [
            ("admin".to_owned(), "allowed".to_owned()),
            ("campaign-tool".to_owned(), "denied".to_owned())
        ]
    );
    assert!(daemon.terminate().success());
    let key = dir.path().join("root.key");

    // The store is lost: a new data directory (or an empty PostgreSQL schema).
    let lost = tempfile::tempdir().unwrap();
    let out = restore(lost.path(), &path, &key, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "no erasure journal at least as new as the backup",
        "Nothing was changed",
        "--journal FILE",
        "vaultctl erasures export",
        "--accept-erased-people-may-return",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    assert_eq!(std::fs::read_dir(lost.path()).unwrap().count(), 0);

    // With the export: the person erased after the backup stays erased.
    let journal_flag = journal.display().to_string();
    let summary = json(&restore(
        lost.path(),
        &path,
        &key,
        &["--journal", &journal_flag],
    ));
    assert_eq!(summary["erasures_replayed"], 1, "{summary}");
    assert_eq!(summary["erased_people_may_return"], false, "{summary}");
    let key_flag = key.display().to_string();
    let mut restored = Daemon::start_with(lost.path(), &["--root-key", &key_flag]);
    assert_eq!(get(&restored, &tool, &kept).await.unwrap().email, email(1));
    let e = get(&restored, &tool, &erased).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(restored.terminate().success());

    // With the flag instead: it runs, says so, and the person is back.
    let other = tempfile::tempdir().unwrap();
    let out = restore(
        other.path(),
        &path,
        &key,
        &["--accept-erased-people-may-return"],
    );
    let summary = json(&out);
    assert_eq!(summary["erased_people_may_return"], true, "{summary}");
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(warning.contains("WARNING"), "{warning}");
    let restored = Daemon::start_with(other.path(), &["--root-key", &key_flag]);
    assert_eq!(
        get(&restored, &tool, &erased).await.unwrap().email,
        email(2)
    );
}
