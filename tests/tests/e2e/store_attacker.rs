//! The attacker who can write the store (a copied data directory, a PostgreSQL
//! administrator, a compromised backup host) but holds no root key: what they write behind
//! the vault's back is refused and reported, and no personal data comes out.
//!
//! Each test writes the stopped daemon's store directly, with the engine's own tools (sled's
//! trees, or SQL on PostgreSQL: [`RawStore`]), restarts the daemon, and checks that the
//! attack fails: forged clients and token rows, a widened purpose, a row moved to another
//! key, a log shortened or rewritten (deleted checkpoints, a rewritten tail, a moved anchor,
//! a deleted signing key), a consent ledger cut short, a person's state put back from an
//! older copy. The suite runs on both engines (`VAULT_TEST_BACKEND=postgres`).

use tonic::Code;
use vault_core::storage::Table;
use vault_core::storage::schema::meta;
use vault_proto::v1 as pb;
use vault_tests::{Creds, Daemon, RawStore, authed, supporter};

/// Length of the tag the vault appends to an authenticated row.
const TAG: usize = 32;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// A stored security row's JSON, without the vault's tag (rows written before tags, as the
/// attack was first run against, have none).
fn json_of(stored: &[u8]) -> serde_json::Value {
    serde_json::from_slice(stored)
        .or_else(|_| serde_json::from_slice(&stored[..stored.len() - TAG]))
        .unwrap()
}

async fn sign_up(daemon: &Daemon, tool: &Creds, name: &str) -> String {
    daemon
        .supporters()
        .await
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter(
                    name,
                    "Attaque",
                    &format!("{name}@attaque.fr"),
                    "",
                )),
                consents: vec![pb::ConsentRequest {
                    purpose: "newsletter".into(),
                    source: "form".into(),
                    notice_version: "2026-02".into(),
                    ..Default::default()
                }],
            },
            tool,
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn get(daemon: &Daemon, creds: &Creds, id: &str) -> Result<pb::Supporter, tonic::Status> {
    daemon.get_supporter(creds, id).await
}

async fn export(daemon: &Daemon, creds: &Creds, id: &str) -> Result<String, tonic::Status> {
    daemon
        .rights()
        .await
        .export(authed(
            pb::ExportRequest {
                subject: Some(pb::export_request::Subject::SubjectId(id.into())),
                format: String::new(),
            },
            creds,
        ))
        .await
        .map(|r| String::from_utf8_lossy(&r.into_inner().document).into_owned())
}

/// A daemon that makes a checkpoint every 4 entries, so a short test has several.
fn start_checkpointing(dir: &std::path::Path) -> Daemon {
    let config = dir.join("vault.toml");
    std::fs::write(&config, "audit_checkpoint_entries = 4\n").unwrap();
    Daemon::start_with(dir, &["--config", config.to_str().unwrap()])
}

fn refused(what: &str, r: &Result<impl std::fmt::Debug, tonic::Status>, codes: &[Code]) {
    match r {
        Ok(v) => panic!("{what}: the attack worked, the vault answered {v:?}"),
        Err(s) => assert!(
            codes.contains(&s.code()),
            "{what}: {:?} {}",
            s.code(),
            s.message()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_credentials_and_widened_purposes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let tool = daemon.tool("newsletter").await;
    let other = daemon
        .create_client("other-mailer", "campaign-tool", &["newsletter"])
        .await
        .with_purpose(Some("newsletter"));
    let dpo = daemon.dpo().await;
    let id = sign_up(&daemon, &tool, "Victime").await;
    assert!(
        export(&daemon, &dpo, &id)
            .await
            .unwrap()
            .contains("victime@attaque.fr")
    );
    assert!(daemon.terminate().success());

    let attacker_token = "vault_attacker-chose-this-token";
    {
        let store = RawStore::open(dir.path());
        // 1. A forged DPO client and its token row, as the vault would write them but
        //    without the root key.
        let mut forged = json_of(&store.get(Table::Clients, dpo.client_id.as_bytes()));
        forged["client"]["id"] = "forged-dpo".into();
        forged["client"]["name"] = "forged-dpo".into();
        forged["token_sha256"] = sha256_hex(attacker_token.as_bytes()).into();
        store.put(
            Table::Clients,
            b"forged-dpo",
            &serde_json::to_vec(&forged).unwrap(),
        );
        let attacker_hash = ring::digest::digest(&ring::digest::SHA256, attacker_token.as_bytes());
        store.put(Table::ClientTokens, attacker_hash.as_ref(), b"forged-dpo");
        // 2. The tool's token row pointed at the DPO: the DPO's own (tagged) token row copied
        //    over it, a row moved from one key to another.
        let tool_hash = ring::digest::digest(&ring::digest::SHA256, tool.token.as_bytes());
        let dpo_hash = ring::digest::digest(&ring::digest::SHA256, dpo.token.as_bytes());
        let dpo_row = store.get(Table::ClientTokens, dpo_hash.as_ref());
        store.put(Table::ClientTokens, tool_hash.as_ref(), &dpo_row);
        // 3. The newsletter purpose widened to every field, without its tag.
        let mut purpose = json_of(&store.get(Table::Purposes, b"newsletter"));
        purpose["fields"] = serde_json::json!([
            "given_name",
            "family_name",
            "email",
            "phone",
            "address",
            "tags",
            "custom"
        ]);
        store.put(
            Table::Purposes,
            b"newsletter",
            &serde_json::to_vec(&purpose).unwrap(),
        );
    }

    let mut daemon = Daemon::start(dir.path());
    let attacker = Creds {
        client_id: "forged-dpo".into(),
        token: attacker_token.into(),
        purpose: Some("data-subject-rights".into()),
    };
    let r = export(&daemon, &attacker, &id).await;
    refused(
        "forged DPO client",
        &r,
        &[Code::Unauthenticated, Code::DataLoss],
    );
    let as_dpo = tool.with_purpose(Some("data-subject-rights"));
    let r = export(&daemon, &as_dpo, &id).await;
    refused(
        "token row pointed at the DPO",
        &r,
        &[Code::Unauthenticated, Code::DataLoss],
    );
    // The newsletter purpose, widened behind the vault's back, is not used: its calls are
    // refused as for an unknown purpose, and nothing comes out.
    let r = get(&daemon, &other, &id).await;
    refused(
        "widened purpose",
        &r,
        &[Code::InvalidArgument, Code::PermissionDenied],
    );
    // Clients and purposes whose rows were not touched go on working.
    assert!(
        export(&daemon, &dpo, &id)
            .await
            .unwrap()
            .contains("victime@attaque.fr")
    );
    assert!(daemon.terminate().success());
    // The daemon named every forged row at start.
    let log = daemon.logs();
    for needle in [
        "table=\"clients\" key=forged-dpo",
        "table=\"client_tokens\"",
        "table=\"purposes\" key=newsletter",
    ] {
        assert!(
            log.contains(needle),
            "the start log does not name {needle}:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_checkpoints_or_a_rewritten_tail_stop_the_daemon() {
    for rewrite_tail in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        // A checkpoint every 4 entries, so there are several.
        let mut daemon = start_checkpointing(dir.path());
        let tool = daemon.tool("newsletter").await;
        for i in 0..10 {
            sign_up(&daemon, &tool, &format!("Log{i}")).await;
        }
        assert!(daemon.terminate().success());
        {
            let store = RawStore::open(dir.path());
            let checkpoints = store.rows(Table::AuditCheckpoints);
            assert!(checkpoints.len() >= 3, "{} checkpoints", checkpoints.len());
            // The newest checkpoint is the one the daemon signed when it stopped.
            // Keep the first checkpoint, delete every newer one.
            let kept = u64::from_be_bytes(checkpoints[0].0.as_slice().try_into().unwrap());
            for (k, _) in &checkpoints[1..] {
                store.delete(Table::AuditCheckpoints, k);
            }
            if rewrite_tail {
                // The entry right after the kept checkpoint, rewritten, with the leaf SHA-256
                // gives it (no key needed for that).
                let key = kept.to_be_bytes();
                let mut entry = store.get(Table::AuditEntries, &key);
                let at = entry.len() / 2;
                entry[at] ^= 0x20;
                store.put(Table::AuditEntries, &key, &entry);
                let mut leaf = ring::digest::Context::new(&ring::digest::SHA256);
                leaf.update(&[0]);
                leaf.update(&entry);
                store.put(Table::AuditLeaves, &key, leaf.finish().as_ref());
            }
        }
        let log = Daemon::start_refused(dir.path());
        assert!(
            log.contains("access log") || log.contains("audit_leaves"),
            "{log}"
        );
        if !rewrite_tail {
            assert!(log.contains("high-water mark"), "{log}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_signing_key_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let tool = daemon.tool("newsletter").await;
    sign_up(&daemon, &tool, "Cle").await;
    assert!(daemon.terminate().success());
    {
        let store = RawStore::open(dir.path());
        store.delete(Table::Meta, meta::AUDIT_SIGNING_KEY);
        for (k, _) in store.rows(Table::AuditCheckpoints) {
            store.delete(Table::AuditCheckpoints, &k);
        }
    }
    let log = Daemon::start_refused(dir.path());
    assert!(log.contains("signing key"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_anchor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = start_checkpointing(dir.path());
    let tool = daemon.tool("newsletter").await;
    for i in 0..6 {
        sign_up(&daemon, &tool, &format!("Ancre{i}")).await;
    }
    let auditor = daemon.create_client("auditor", "auditor", &[]).await;
    assert!(daemon.terminate().success());
    {
        // A later checkpoint copied into the retention anchor: the log would seem to start
        // there, its prefix dropped.
        let store = RawStore::open(dir.path());
        let checkpoints = store.rows(Table::AuditCheckpoints);
        store.put(Table::Meta, meta::AUDIT_ANCHOR, &checkpoints[1].1);
    }
    let mut daemon = Daemon::start(dir.path());
    let r = daemon
        .audit()
        .await
        .verify(authed(pb::VerifyRequest::default(), &auditor))
        .await;
    refused("moved anchor", &r, &[Code::DataLoss]);
    assert!(daemon.terminate().success());
    let log = daemon.logs();
    assert!(
        log.contains(&*String::from_utf8_lossy(meta::AUDIT_ANCHOR)),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_ledger_or_a_rolled_back_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let tool = daemon.tool("newsletter").await;
    let membership = daemon.tool("membership").await;
    let dpo = daemon.dpo().await;
    // A withdraws; B is signed up, then restricted.
    let a = sign_up(&daemon, &tool, "Retrait").await;
    daemon
        .consent()
        .await
        .withdraw(authed(
            pb::ConsentRequest {
                subject_id: a.clone(),
                source: "email".into(),
                ..Default::default()
            },
            &tool,
        ))
        .await
        .unwrap();
    refused(
        "withdrawn consent",
        &get(&daemon, &tool, &a).await,
        &[Code::NotFound],
    );
    let b = sign_up(&daemon, &tool, "Restreinte").await;
    assert!(daemon.terminate().success());
    let state_before = RawStore::open(dir.path()).get(Table::SubjectState, b.as_bytes());

    let mut daemon = Daemon::start(dir.path());
    daemon
        .rights()
        .await
        .restrict(authed(
            pb::RestrictRequest {
                subject_id: b.clone(),
                request_ref: "REQ-1".into(),
            },
            &dpo,
        ))
        .await
        .unwrap();
    refused(
        "restricted",
        &get(&daemon, &membership, &b).await,
        &[Code::NotFound],
    );
    assert!(daemon.terminate().success());

    {
        let store = RawStore::open(dir.path());
        // The withdrawal deleted: the ledger ends at the grant again.
        let mut prefix = a.as_bytes().to_vec();
        prefix.push(0);
        let events: Vec<_> = store
            .rows(Table::Consent)
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect();
        assert_eq!(events.len(), 2);
        store.delete(Table::Consent, &events[1].0);
        // B's state from before the restriction put back.
        store.put(Table::SubjectState, b.as_bytes(), &state_before);
    }

    let daemon = Daemon::start(dir.path());
    let r = get(&daemon, &tool, &a).await;
    refused("truncated ledger", &r, &[Code::DataLoss]);
    assert!(r.unwrap_err().message().contains("consent event"));
    let r = get(&daemon, &membership, &b).await;
    refused("rolled-back state", &r, &[Code::DataLoss]);
    // No path around it: the DPO's export does not open them either.
    refused(
        "export after truncation",
        &export(&daemon, &dpo, &a).await,
        &[Code::DataLoss],
    );
    refused(
        "export after rollback",
        &export(&daemon, &dpo, &b).await,
        &[Code::DataLoss],
    );
}

/// Audit.Query by subject, read as a whole: its entries or the status that ended it.
async fn query_subject(
    daemon: &Daemon,
    auditor: &Creds,
    id: &str,
) -> Result<Vec<u64>, tonic::Status> {
    let mut stream = daemon
        .audit()
        .await
        .query(authed(
            pb::QueryRequest {
                subject_id: id.into(),
                ..Default::default()
            },
            auditor,
        ))
        .await?
        .into_inner();
    let mut seqs = Vec::new();
    while let Some(e) = stream.message().await? {
        seqs.push(e.seq);
    }
    Ok(seqs)
}

async fn verify(daemon: &Daemon, auditor: &Creds) -> Result<pb::VerifyResponse, tonic::Status> {
    daemon
        .audit()
        .await
        .verify(authed(pb::VerifyRequest::default(), auditor))
        .await
        .map(tonic::Response::into_inner)
}

/// The access log's per-subject index is only a pointer. A row pointed at another person's
/// entry makes the first person's query and export fail rather than answer with the other's
/// entry; a row deleted hides an entry from that person's answers until Audit.Verify, which
/// reports it (SECURITY.md, the access log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_subject_index_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let tool = daemon.tool("newsletter").await;
    let a = sign_up(&daemon, &tool, "Index").await;
    let b = sign_up(&daemon, &tool, "Pointeur").await;
    get(&daemon, &tool, &a).await.unwrap();
    let auditor = daemon.create_client("auditor", "auditor", &[]).await;
    let dpo = daemon.dpo().await;
    let of_a = query_subject(&daemon, &auditor, &a).await.unwrap();
    let of_b = query_subject(&daemon, &auditor, &b).await.unwrap();
    assert_eq!((of_a.len(), of_b.len()), (2, 1), "{of_a:?} {of_b:?}");
    assert!(daemon.terminate().success());
    // Row keys: keyed hash of the subject (16 bytes) ‖ sequence.
    let seq_of = |k: &[u8]| u64::from_be_bytes(k[16..24].try_into().unwrap());
    let hash_of_a = {
        let store = RawStore::open(dir.path());
        let rows = store.rows(Table::AuditSubjects);
        let hash = rows
            .iter()
            .find(|(k, _)| seq_of(k) == of_a[0])
            .map(|(k, _)| k[..16].to_vec())
            .unwrap();
        // a's index now also points at b's entry.
        let forged = [hash.as_slice(), &of_b[0].to_be_bytes()].concat();
        store.put(Table::AuditSubjects, &forged, b"");
        hash
    };
    daemon = Daemon::start(dir.path());
    refused(
        "index row pointing at another's entry (query)",
        &query_subject(&daemon, &auditor, &a).await,
        &[Code::DataLoss],
    );
    refused(
        "index row pointing at another's entry (export)",
        &export(&daemon, &dpo, &a).await,
        &[Code::DataLoss],
    );
    assert_eq!(query_subject(&daemon, &auditor, &b).await.unwrap(), of_b);
    refused(
        "stray index row",
        &verify(&daemon, &auditor).await,
        &[Code::DataLoss],
    );
    assert!(daemon.terminate().success());
    {
        // The stray row removed, and one of a's genuine rows deleted.
        let store = RawStore::open(dir.path());
        let forged = [hash_of_a.as_slice(), &of_b[0].to_be_bytes()].concat();
        store.delete(Table::AuditSubjects, &forged);
        let genuine = [hash_of_a.as_slice(), &of_a[1].to_be_bytes()].concat();
        store.delete(Table::AuditSubjects, &genuine);
    }
    daemon = Daemon::start(dir.path());
    // What nothing points to, a query by subject cannot see...
    let now = query_subject(&daemon, &auditor, &a).await.unwrap();
    assert_eq!(now[0], of_a[0]);
    assert!(!now.contains(&of_a[1]));
    // ...but verification finds it.
    let r = verify(&daemon, &auditor).await;
    refused("deleted index row", &r, &[Code::DataLoss]);
    assert!(
        r.unwrap_err().message().contains("missing"),
        "the status says what was found"
    );
    assert!(daemon.terminate().success());
}
