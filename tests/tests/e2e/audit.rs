//! The access log end to end: one entry per personal-data access (denied ones included), no
//! personal data in the exported log, offline verification with `vaultctl`, and consistency
//! proofs across a restart.

use std::process::Command;

use tonic::Code;
use vault_core::audit::merkle;
use vault_proto::v1 as pb;
use vault_tests::{Daemon, VAULTCTL, authed, supporter};

fn vaultctl(daemon: &Daemon, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(&*VAULTCTL)
        .args(args)
        .env("VAULT_ADDR", format!("http://{}", daemon.addr))
        .env("VAULT_TOKEN", token)
        .env_remove("VAULT_PURPOSE")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_entry_per_access_no_personal_data_and_offline_verification() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let tool = daemon
        .create_client("tool", "campaign-tool", &["membership", "newsletter"])
        .await;
    let member = tool.with_purpose(Some("membership"));
    let news = tool.with_purpose(Some("newsletter"));
    let auditor = daemon.create_client("auditor", "auditor", &[]).await;
    let mut s = daemon.supporters().await;
    let mut c = daemon.consent().await;

    // The scripted session.
    let mut lena = supporter(
        "Léna",
        "Auditée",
        "lena.auditee@example.fr",
        "06 98 76 54 32",
    );
    lena.tags = vec!["militante".into()];
    let id = s
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(lena),
                consents: vec![],
            },
            &member,
        ))
        .await
        .unwrap()
        .into_inner()
        .id;
    s.get(authed(
        pb::GetRequest {
            id: id.clone(),
            fields: None,
        },
        &member,
    ))
    .await
    .unwrap();
    assert_eq!(
        s.get(authed(
            pb::GetRequest {
                id: id.clone(),
                fields: None
            },
            &news
        ))
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    c.grant(authed(
        pb::ConsentRequest {
            subject_id: id.clone(),
            source: "form".into(),
            notice_version: "v1".into(),
            contact_email: "lena.auditee@example.fr".into(),
            ..Default::default()
        },
        &news,
    ))
    .await
    .unwrap();
    s.get(authed(
        pb::GetRequest {
            id: id.clone(),
            fields: None,
        },
        &news,
    ))
    .await
    .unwrap();
    s.lookup(authed(
        pb::LookupRequest {
            key: Some(pb::lookup_request::Key::Email(
                "LENA.auditee@example.fr".into(),
            )),
        },
        &member,
    ))
    .await
    .unwrap();
    let unknown = "6f1c1a7e-3b7d-4d0e-9a51-2c9f5d3e8b10".to_owned();
    assert_eq!(
        s.get(authed(
            pb::GetRequest {
                id: unknown.clone(),
                fields: None
            },
            &member
        ))
        .await
        .unwrap_err()
        .code(),
        Code::NotFound
    );
    assert_eq!(
        s.get(tonic::Request::new(pb::GetRequest {
            id: id.clone(),
            fields: None
        }))
        .await
        .unwrap_err()
        .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        s.get(authed(
            pb::GetRequest {
                id: id.clone(),
                fields: None
            },
            &auditor
        ))
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );
    s.update(authed(
        pb::UpdateRequest {
            id: id.clone(),
            supporter: Some(supporter("Lena", "", "", "")),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["given_name".into()],
            }),
            request_ref: String::new(),
        },
        &member,
    ))
    .await
    .unwrap();
    s.tag(authed(
        pb::TagRequest {
            id: id.clone(),
            tags: vec!["oratrice".into()],
        },
        &member,
    ))
    .await
    .unwrap();

    // Exactly one entry per personal-data access, in order, denied ones included.
    let all = daemon
        .audit_entries(&auditor, pb::QueryRequest::default())
        .await;
    let personal: Vec<_> = all
        .iter()
        .filter(|e| e.action.starts_with("Supporters.") || e.action.starts_with("Consent."))
        .map(|e| (e.action.as_str(), e.outcome.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        personal,
        [
            ("Supporters.Upsert", "allowed", ""),
            ("Supporters.Get", "allowed", ""),
            ("Supporters.Get", "denied", "no-consent"),
            ("Consent.Grant", "allowed", ""),
            ("Supporters.Get", "allowed", ""),
            ("Supporters.Lookup", "allowed", ""),
            ("Supporters.Get", "denied", "not-found"),
            ("Supporters.Get", "denied", "unauthenticated"),
            ("Supporters.Get", "denied", "role"),
            ("Supporters.Update", "allowed", ""),
            ("Supporters.Tag", "allowed", ""),
        ]
    );
    let about_lena: Vec<_> = all
        .iter()
        .filter(|e| e.subject_ids == [id.clone()])
        .collect();
    // The "recipients" of art. 15: upsert, get, the denied newsletter get (refused after the
    // person was found), grant, get, lookup, update, tag. The unauthenticated and the
    // auditor's calls were refused before any subject was touched.
    assert_eq!(about_lena.len(), 8);
    // By subject (through the log's per-subject index): the same entries as filtering the
    // whole log, in order.
    let by_subject: Vec<u64> = daemon
        .audit_entries(
            &auditor,
            pb::QueryRequest {
                subject_id: id.clone(),
                ..Default::default()
            },
        )
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    let filtered: Vec<u64> = all
        .iter()
        .filter(|e| e.subject_ids.contains(&id))
        .map(|e| e.seq)
        .collect();
    assert_eq!(by_subject, filtered);
    // With another filter, applied on the subject's entries.
    let reads = daemon
        .audit_entries(
            &auditor,
            pb::QueryRequest {
                subject_id: id.clone(),
                action: "Supporters.Get".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(
        reads.len(),
        3,
        "two allowed reads and the refused newsletter one"
    );
    let newsletter_read = all
        .iter()
        .find(|e| {
            e.purpose == "newsletter" && e.action == "Supporters.Get" && e.outcome == "allowed"
        })
        .unwrap();
    assert_eq!(
        newsletter_read.fields,
        [
            "given_name",
            "family_name",
            "email",
            "tags",
            "created_at",
            "updated_at"
        ]
    );
    assert!(
        all.iter()
            .any(|e| e.action == "Supporters.Get" && e.subject_ids == [unknown.clone()])
    );
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..all.len() as u64).collect::<Vec<_>>(), "no gaps");

    // Export with vaultctl; no email, name, phone or tag in it.
    let out = dir.path().join("log.jsonl");
    let exported = vaultctl(
        &daemon,
        &auditor.token,
        &["audit", "export", "--out", out.to_str().unwrap()],
    );
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    for needle in [
        "lena",
        "Léna",
        "Lena",
        "Auditée",
        "example.fr",
        "+33698765432",
        "0698765432",
        "698765432",
        "militante",
        "oratrice",
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle:?} is in the exported log"
        );
    }

    // Offline verification: the public key from vaultctl, then no daemon needed.
    let key = vaultctl(&daemon, &auditor.token, &["audit", "public-key"]);
    assert!(key.status.success());
    let key_path = dir.path().join("key.pub");
    std::fs::write(&key_path, &key.stdout).unwrap();
    let offline = |file: &std::path::Path| {
        Command::new(&*VAULTCTL)
            .args([
                "audit",
                "verify",
                file.to_str().unwrap(),
                "--public-key",
                key_path.to_str().unwrap(),
            ])
            .env("VAULT_ADDR", "http://127.0.0.1:1") // nothing listens there: offline indeed
            .env_remove("VAULT_TOKEN")
            .output()
            .unwrap()
    };
    let ok = offline(&out);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert!(report["entries"].as_u64().unwrap() >= all.len() as u64);

    // One edited entry: refused, naming the line and the entry.
    let text = String::from_utf8(bytes).unwrap();
    let line_no = text
        .lines()
        .position(|l| l.contains("\"Supporters.Tag\""))
        .unwrap()
        + 1;
    let tampered = text.replacen("\"Supporters.Tag\"", "\"Supporters.Untag\"", 1);
    let bad = dir.path().join("tampered.jsonl");
    std::fs::write(&bad, tampered).unwrap();
    let refused = offline(&bad);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("line {line_no},")) && err.contains("edited"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1);

    // The server-side check agrees.
    let v = daemon
        .audit()
        .await
        .verify(authed(pb::VerifyRequest::default(), &auditor))
        .await
        .unwrap()
        .into_inner();
    assert!(v.ok, "{}", v.detail);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_proofs_hold_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let tool = daemon.tool("membership").await;
    let auditor = daemon.create_client("auditor", "auditor", &[]).await;
    let mut s = daemon.supporters().await;
    for i in 0..20 {
        s.upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("", "", &format!("p{i}@restart.fr"), "")),
                consents: vec![],
            },
            &tool,
        ))
        .await
        .unwrap();
    }
    drop(s);
    assert!(daemon.terminate().success()); // signs a final checkpoint
    let daemon = Daemon::start(dir.path());
    let mut audit = daemon.audit().await;
    let before = audit
        .checkpoints(authed(pb::CheckpointsRequest { since_seq: 0 }, &auditor))
        .await
        .unwrap()
        .into_inner()
        .checkpoints;
    let old = before
        .last()
        .cloned()
        .expect("a checkpoint made at shutdown");
    assert!(old.size >= 22);
    let mut s = daemon.supporters().await;
    for i in 20..35 {
        s.upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("", "", &format!("p{i}@restart.fr"), "")),
                consents: vec![],
            },
            &tool,
        ))
        .await
        .unwrap();
    }
    // Exporting checkpoints the head; then every later checkpoint extends every earlier one.
    let mut export = audit
        .export_log(authed(pb::ExportLogRequest::default(), &auditor))
        .await
        .unwrap()
        .into_inner();
    while export.message().await.unwrap().is_some() {}
    let after = audit
        .checkpoints(authed(pb::CheckpointsRequest { since_seq: 0 }, &auditor))
        .await
        .unwrap()
        .into_inner()
        .checkpoints;
    let new = after.last().cloned().unwrap();
    assert!(new.size > old.size);
    let key: [u8; 32] = audit
        .public_key(authed(pb::PublicKeyRequest {}, &auditor))
        .await
        .unwrap()
        .into_inner()
        .public_key
        .try_into()
        .unwrap();
    let as_hash = |b: &[u8]| -> merkle::Hash { b.try_into().unwrap() };
    for (a, b) in [(&before[0], &new), (&old, &new), (&before[0], &old)] {
        // Each checkpoint's signature verifies with the published key...
        for cp in [a, b] {
            let signed = vault_core::audit::SignedCheckpoint {
                size: cp.size,
                root: hex::encode(&cp.root),
                last_leaf: hex::encode(&cp.last_leaf),
                at_us: cp.at_us,
                signature: hex::encode(&cp.signature),
            };
            assert!(
                signed.verify(&key).is_some(),
                "checkpoint {} does not verify",
                cp.size
            );
        }
        // ...and the later tree provably extends the earlier one.
        let proof: Vec<merkle::Hash> = audit
            .consistency_proof(authed(
                pb::ConsistencyProofRequest {
                    from_size: a.size,
                    to_size: b.size,
                },
                &auditor,
            ))
            .await
            .unwrap()
            .into_inner()
            .hashes
            .iter()
            .map(|h| as_hash(h))
            .collect();
        merkle::verify_consistency(a.size, b.size, &as_hash(&a.root), &as_hash(&b.root), &proof)
            .unwrap();
        // A proof against a wrong old root fails.
        assert!(
            merkle::verify_consistency(a.size, b.size, &[7u8; 32], &as_hash(&b.root), &proof)
                .is_err()
                || a.size == 0
        );
    }
}

/// An auditor pins a checkpoint; later, `vaultctl audit verify-since` checks through the
/// consistency proof that the log still extends it. A log rewritten from an older copy (a
/// backup restored, then other writes past the pinned size) is caught, and `verify --whole`
/// refuses an export whose prefix was dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_checkpoint_catches_a_rewritten_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let tool = daemon.tool("membership").await;
    let auditor = daemon.create_client("auditor", "auditor", &[]).await;
    let upsert = |name: String| {
        let daemon = &daemon;
        let tool = &tool;
        async move {
            daemon
                .supporters()
                .await
                .upsert(authed(
                    pb::UpsertRequest {
                        supporter: Some(supporter(&name, "Pin", &format!("{name}@pin.fr"), "")),
                        consents: vec![],
                    },
                    tool,
                ))
                .await
                .unwrap();
        }
    };
    upsert("avant".into()).await;
    // A backup now: the older copy a rewrite starts from.
    let backups = tempfile::tempdir().unwrap();
    let backup = backups.path().join("b");
    let out = Command::new(&*VAULTCTL)
        .args(["backup", "--out"])
        .arg(&backup)
        .env("VAULT_ADDR", format!("http://{}", daemon.addr))
        .env("VAULT_DATA_DIR", dir.path())
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..3 {
        upsert(format!("apres{i}")).await;
    }
    let key = vaultctl(&daemon, &auditor.token, &["audit", "public-key"]);
    let key_path = dir.path().join("key.pub");
    std::fs::write(&key_path, &key.stdout).unwrap();
    // With --json, the same key (and the vkey) as JSON.
    let as_json = vaultctl(&daemon, &auditor.token, &["audit", "public-key", "--json"]);
    let as_json: serde_json::Value = serde_json::from_slice(&as_json.stdout).unwrap();
    assert_eq!(
        as_json["public_key"],
        String::from_utf8_lossy(&key.stdout).trim(),
        "{as_json}"
    );
    assert!(as_json["vkey"].as_str().unwrap().contains('+'), "{as_json}");
    let pin = dir.path().join("pin.json");
    let pinned = vaultctl(
        &daemon,
        &auditor.token,
        &["audit", "pin", "--out", pin.to_str().unwrap()],
    );
    assert!(
        pinned.status.success(),
        "{}",
        String::from_utf8_lossy(&pinned.stderr)
    );
    let verify_since = |daemon: &Daemon| {
        vaultctl(
            daemon,
            &auditor.token,
            &[
                "audit",
                "verify-since",
                pin.to_str().unwrap(),
                "--public-key",
                key_path.to_str().unwrap(),
            ],
        )
    };
    // The honest log extends the pin, now and after more writes.
    upsert("encore".into()).await;
    let ok = verify_since(&daemon);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["ok"], true);

    // A whole export verifies with --whole; the same file with its first entries dropped
    // (started at a later checkpoint, with the frontier recomputed) is sound as a range, but
    // not the whole log.
    let export = dir.path().join("log.jsonl");
    let exported = vaultctl(
        &daemon,
        &auditor.token,
        &["audit", "export", "--out", export.to_str().unwrap()],
    );
    assert!(exported.status.success());
    let offline = |file: &std::path::Path, whole: bool| {
        let mut args = vec![
            "audit",
            "verify",
            file.to_str().unwrap(),
            "--public-key",
            key_path.to_str().unwrap(),
        ];
        if whole {
            args.push("--whole");
        }
        Command::new(&*VAULTCTL)
            .args(&args)
            .env("VAULT_ADDR", "http://127.0.0.1:1")
            .env_remove("VAULT_TOKEN")
            .output()
            .unwrap()
    };
    assert!(offline(&export, true).status.success());
    // The same check as verify-since, offline: the exported file extends the pin.
    let offline_since = |file: &std::path::Path| {
        Command::new(&*VAULTCTL)
            .args(["audit", "verify"])
            .arg(file)
            .arg("--public-key")
            .arg(&key_path)
            .arg("--since")
            .arg(&pin)
            .env("VAULT_ADDR", "http://127.0.0.1:1")
            .env_remove("VAULT_TOKEN")
            .output()
            .unwrap()
    };
    let extends = offline_since(&export);
    assert!(
        extends.status.success(),
        "{}",
        String::from_utf8_lossy(&extends.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&extends.stdout).unwrap();
    let pinned_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&pin).unwrap()).unwrap();
    assert_eq!(report["extends"]["size"], pinned_json["size"], "{report}");
    let text = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut_at = lines
        .iter()
        .position(|l| l.starts_with("{\"checkpoint\":"))
        .unwrap();
    let checkpoint: serde_json::Value = serde_json::from_str(lines[cut_at]).unwrap();
    let mut frontier = merkle::Frontier::new();
    for entry in &lines[1..cut_at] {
        frontier
            .push(vault_core::audit::entry::entry_hash(entry.as_bytes()))
            .unwrap();
    }
    let mut header: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    header["start"] = serde_json::json!({
        "checkpoint": checkpoint["checkpoint"],
        "frontier": hex::encode(frontier.to_bytes()),
    });
    let mut dropped = vec![header.to_string()];
    dropped.extend(lines[cut_at + 1..].iter().map(|l| (*l).to_owned()));
    let dropped_path = dir.path().join("dropped.jsonl");
    std::fs::write(&dropped_path, dropped.join("\n") + "\n").unwrap();
    assert!(
        offline(&dropped_path, false).status.success(),
        "a sound range"
    );
    let refused = offline(&dropped_path, true);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("missing"));

    // The log rewritten from the older copy: the backup restored, other writes past the
    // pinned size. Signed with the same key, but no longer an extension of the pin.
    assert!(daemon.terminate().success());
    let mut restore = Command::new(&*VAULTCTL);
    restore
        .arg("restore")
        .arg("--backup")
        .arg(&backup)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("VAULT_DATA_DIR");
    match vault_tests::store_for(dir.path()) {
        vault_tests::TestStore::Embedded => {
            restore
                .env_remove("VAULT_DATABASE_URL")
                .env_remove("VAULT_DATABASE_SCHEMA");
        }
        vault_tests::TestStore::Postgres(pg) => {
            restore
                .env("VAULT_DATABASE_URL", &pg.url)
                .env("VAULT_DATABASE_SCHEMA", &pg.schema);
        }
    }
    let restored = restore.output().unwrap();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let daemon = Daemon::start(dir.path());
    for i in 0..6 {
        upsert_on(&daemon, &tool, &format!("autre{i}")).await;
    }
    let forked = verify_since(&daemon);
    assert!(
        !forked.status.success(),
        "{}",
        String::from_utf8_lossy(&forked.stdout)
    );
    assert!(
        String::from_utf8_lossy(&forked.stderr).contains("does not extend the pinned checkpoint"),
        "{}",
        String::from_utf8_lossy(&forked.stderr)
    );
    // Offline too: the forked log's export, signed with the same key, is sound on its own
    // but does not extend the kept checkpoint.
    let forked_export = dir.path().join("forked.jsonl");
    let exported = vaultctl(
        &daemon,
        &auditor.token,
        &["audit", "export", "--out", forked_export.to_str().unwrap()],
    );
    assert!(exported.status.success());
    assert!(
        offline(&forked_export, true).status.success(),
        "sound alone"
    );
    let diverged = offline_since(&forked_export);
    assert!(!diverged.status.success());
    assert!(
        String::from_utf8_lossy(&diverged.stderr).contains("does not extend the kept checkpoint"),
        "{}",
        String::from_utf8_lossy(&diverged.stderr)
    );
}

async fn upsert_on(daemon: &Daemon, tool: &vault_tests::Creds, name: &str) {
    daemon
        .supporters()
        .await
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter(name, "Pin", &format!("{name}@pin.fr"), "")),
                consents: vec![],
            },
            tool,
        ))
        .await
        .unwrap();
}

/// A request the server refuses while converting it (before the library sees it) is one
/// access-log entry like every other refusal: action, actor, `denied`, and why.
#[tokio::test]
async fn a_request_refused_while_converting_it_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path());
    let member = d.tool("membership").await;
    let auditor = d.create_client("auditor", "auditor", &[]).await;
    let mut s = d.supporters().await;
    let id = uuid::Uuid::new_v4().hyphenated().to_string();
    let bad_mask = s
        .get(authed(
            pb::GetRequest {
                id: id.clone(),
                fields: Some(prost_types::FieldMask {
                    paths: vec!["not-a-field".into()],
                }),
            },
            &member,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_mask.code(), Code::InvalidArgument);
    let no_key = s
        .lookup(authed(pb::LookupRequest { key: None }, &member))
        .await
        .unwrap_err();
    assert_eq!(no_key.code(), Code::InvalidArgument);
    let no_supporter = s
        .upsert(authed(pb::UpsertRequest::default(), &member))
        .await
        .unwrap_err();
    assert_eq!(no_supporter.code(), Code::InvalidArgument);
    let bad_source = d
        .consent()
        .await
        .withdraw(authed(
            pb::ConsentRequest {
                subject_id: id,
                source: "pigeon".into(),
                ..Default::default()
            },
            &member,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_source.code(), Code::InvalidArgument);

    let entries = d
        .audit_entries(
            &auditor,
            pb::QueryRequest {
                actor: member.client_id.clone(),
                ..Default::default()
            },
        )
        .await;
    let denied: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e.outcome == "denied")
        .map(|e| (e.action.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        denied,
        [
            ("Supporters.Get", "invalid-argument"),
            ("Supporters.Lookup", "invalid-argument"),
            ("Supporters.Upsert", "invalid-argument"),
            ("Consent.Withdraw", "invalid-argument"),
        ]
    );
    d.check_logs();
}

/// Proofs come from the stored Merkle subtrees: a store without them (as older builds wrote
/// it) gets them once at start, with a progress line; every entry of the streamed export is
/// then provably in the signed tree, the tree extends an earlier checkpoint, and a subtree
/// altered in the store makes the proof fail instead of giving a wrong one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_come_from_stored_subtrees_built_once_for_older_stores() {
    use vault_core::storage::Table;
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let tool = daemon.tool("membership").await;
    let auditor = daemon.create_client("auditor", "auditor", &[]).await;
    let mut s = daemon.supporters().await;
    for i in 0..40 {
        s.upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter("", "", &format!("n{i}@nodes.fr"), "")),
                consents: vec![],
            },
            &tool,
        ))
        .await
        .unwrap();
    }
    drop(s);
    assert!(daemon.terminate().success());
    {
        let store = vault_tests::RawStore::open(dir.path());
        let nodes = store.rows(Table::AuditNodes);
        assert!(!nodes.is_empty(), "no stored subtrees");
        for (k, _) in nodes {
            store.delete(Table::AuditNodes, &k);
        }
        store.delete(
            Table::Meta,
            vault_core::storage::schema::meta::AUDIT_NODES_BUILT,
        );
    }
    let mut daemon = Daemon::start(dir.path());
    let mut audit = daemon.audit().await;
    let first = audit
        .checkpoints(authed(pb::CheckpointsRequest { since_seq: 0 }, &auditor))
        .await
        .unwrap()
        .into_inner()
        .checkpoints[0]
        .clone();
    let mut stream = audit
        .export_log(authed(pb::ExportLogRequest::default(), &auditor))
        .await
        .unwrap()
        .into_inner();
    let mut file = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        file.extend(chunk.data);
    }
    let key: [u8; 32] = audit
        .public_key(authed(pb::PublicKeyRequest {}, &auditor))
        .await
        .unwrap()
        .into_inner()
        .public_key
        .try_into()
        .unwrap();
    let v = vault_core::audit::file::verify(&file, &key).unwrap();
    let size = v.end.size;
    let entries: Vec<&[u8]> = file
        .split(|b| *b == b'\n')
        .skip(1)
        .filter(|l| !l.is_empty() && !l.starts_with(b"{\"checkpoint\":"))
        .collect();
    assert_eq!(entries.len() as u64, size);
    let as_hash = |b: &[u8]| -> merkle::Hash { b.try_into().unwrap() };
    for (seq, line) in entries.iter().enumerate() {
        let proof: Vec<merkle::Hash> = audit
            .inclusion_proof(authed(
                pb::InclusionProofRequest {
                    seq: seq as u64,
                    tree_size: size,
                },
                &auditor,
            ))
            .await
            .unwrap()
            .into_inner()
            .hashes
            .iter()
            .map(|h| as_hash(h))
            .collect();
        merkle::verify_inclusion(
            &merkle::leaf_hash(line),
            seq as u64,
            size,
            &proof,
            &v.end.root,
        )
        .unwrap();
    }
    let proof: Vec<merkle::Hash> = audit
        .consistency_proof(authed(
            pb::ConsistencyProofRequest {
                from_size: first.size,
                to_size: size,
            },
            &auditor,
        ))
        .await
        .unwrap()
        .into_inner()
        .hashes
        .iter()
        .map(|h| as_hash(h))
        .collect();
    merkle::verify_consistency(first.size, size, &as_hash(&first.root), &v.end.root, &proof)
        .unwrap();
    drop(audit);
    assert!(daemon.terminate().success());
    assert!(
        daemon
            .logs()
            .contains("stored the access log's Merkle subtrees"),
        "{}",
        daemon.logs()
    );
    // A stored subtree altered behind the vault's back: no proof that reads it.
    {
        let store = vault_tests::RawStore::open(dir.path());
        let nodes = store.rows(Table::AuditNodes);
        assert!(!nodes.is_empty(), "no rebuilt subtrees");
        for (k, mut value) in nodes {
            value[0] ^= 1;
            store.put(Table::AuditNodes, &k, &value);
        }
    }
    let mut daemon = Daemon::start(dir.path());
    let mut audit = daemon.audit().await;
    let r = audit
        .inclusion_proof(authed(
            pb::InclusionProofRequest {
                seq: 0,
                tree_size: size,
            },
            &auditor,
        ))
        .await;
    assert_eq!(r.unwrap_err().code(), Code::DataLoss);
    drop(audit);
    assert!(daemon.terminate().success());
}
