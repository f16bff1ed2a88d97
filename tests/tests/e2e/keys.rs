//! Key rotation makes stale copies of the store undecryptable: after `Admin.RotateKeys`
//! with a zero backup window, epoch 1 is destroyed, so the subject keys of a copy taken
//! before the rotation no longer open with the vault's keys, while a person who was not
//! erased stays readable through the current epoch (their record ciphertext is unchanged;
//! only the wrapping of their data key moved to epoch 2).
//!
//! The copy is the embedded store's directory copied while the daemon is stopped; under the
//! PostgreSQL backend it is the same rows read from the database before the rotation (what
//! a dump or a WAL archive would hold).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tonic::Code;
use vault_core::crypto::{Keyring, RootKey};
use vault_core::storage::sled_store::SledOptions;
use vault_core::storage::{PostgresOptions, PostgresStore, SledStore, Store, Table};
use vault_proto::v1 as pb;
use vault_tests::{Creds, Daemon, TestStore, authed, store_for, supporter};

const PEOPLE: [(&str, &str); 2] = [
    ("Anne", "anne.rotation@example.fr"),
    ("Bruno", "bruno.rotation@example.fr"),
];

/// The store of `data_dir` (the daemon must be stopped for the embedded store).
async fn open_store(data_dir: &Path) -> Arc<dyn Store> {
    match store_for(data_dir) {
        TestStore::Embedded => {
            Arc::new(SledStore::open(&data_dir.join("store"), &SledOptions::default()).unwrap())
        }
        TestStore::Postgres(pg) => Arc::new(
            PostgresStore::connect(
                &pg.url,
                &PostgresOptions {
                    schema: pg.schema.clone(),
                    pool_size: 2,
                    ..PostgresOptions::default()
                },
            )
            .await
            .unwrap(),
        ),
    }
}

/// The wrapped data keys and sealed records of `ids` in `store`.
struct Rows {
    keys: BTreeMap<String, Vec<u8>>,
    records: BTreeMap<String, Vec<u8>>,
}

async fn rows_of(store: &dyn Store, ids: &[String]) -> Rows {
    let mut rows = Rows {
        keys: BTreeMap::new(),
        records: BTreeMap::new(),
    };
    for id in ids {
        if let Some(k) = store.get(Table::SubjectKeys, id.as_bytes()).await.unwrap() {
            rows.keys.insert(id.clone(), k);
        }
        if let Some(r) = store.get(Table::Records, id.as_bytes()).await.unwrap() {
            rows.records.insert(id.clone(), r);
        }
    }
    rows
}

/// The key epochs of `store`, unwrapped with the root key file.
async fn keyring_of(store: &dyn Store, root_key: &Path) -> Keyring {
    let root = RootKey::load(root_key).unwrap();
    let wrapped: BTreeMap<u32, Vec<u8>> = store
        .scan_prefix(Table::Keyring, b"")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            // Stored with the vault's row tag (32 bytes) after the wrapped epoch.
            (
                u32::from_be_bytes(<[u8; 4]>::try_from(k.as_slice()).unwrap()),
                v[..v.len() - 32].to_vec(),
            )
        })
        .collect();
    Keyring::unwrap(&root, &wrapped).unwrap()
}

fn epoch_of(wrapped: &[u8]) -> u32 {
    u32::from_be_bytes(<[u8; 4]>::try_from(&wrapped[..4]).unwrap())
}

async fn get_email(daemon: &Daemon, tool: &Creds, id: &str) -> String {
    daemon
        .supporters()
        .await
        .get(authed(
            pb::GetRequest {
                id: id.to_owned(),
                ..Default::default()
            },
            tool,
        ))
        .await
        .unwrap()
        .into_inner()
        .email
}

async fn upsert(daemon: &Daemon, tool: &Creds, name: &str, email: &str) -> String {
    daemon
        .supporters()
        .await
        .upsert(authed(
            pb::UpsertRequest {
                supporter: Some(supporter(name, "Rotation", email, "")),
                ..Default::default()
            },
            tool,
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

async fn rotate(daemon: &Daemon, creds: &str) -> Result<pb::RotateKeysResponse, tonic::Status> {
    daemon
        .admin()
        .await
        .rotate_keys(authed(pb::RotateKeysRequest {}, creds))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_makes_stale_copies_undecryptable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("vault.toml");
    std::fs::write(&config, "[keys]\nbackup_window_hours = 0\n").unwrap();
    let flags = ["--config", config.to_str().unwrap()];

    // Two supporters, A and B, under epoch 1.
    let mut daemon = Daemon::start_with(&data, &flags);
    let tool = daemon.tool("membership").await;
    let mut ids = Vec::new();
    for (name, email) in PEOPLE {
        ids.push(upsert(&daemon, &tool, name, email).await);
    }
    let (a, b) = (ids[0].clone(), ids[1].clone());
    assert!(daemon.terminate().success());

    // The stale copy: the store as it is now, under epoch 1.
    let copy = match store_for(&data) {
        TestStore::Embedded => {
            let copy_dir = dir.path().join("copy");
            for file in vault_tests::files_under(&data.join("store")) {
                let to = copy_dir.join(file.strip_prefix(&data).unwrap());
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                std::fs::copy(&file, &to).unwrap();
            }
            let copied = SledStore::open(&copy_dir.join("store"), &SledOptions::default()).unwrap();
            rows_of(&copied, &ids).await
        }
        TestStore::Postgres(_) => rows_of(open_store(&data).await.as_ref(), &ids).await,
    };
    assert_eq!(copy.keys.len(), 2);
    assert!(copy.keys.values().all(|k| epoch_of(k) == 1));

    let mut daemon = Daemon::start_with(&data, &flags);

    // Erase A (after the copy was taken): A is gone from the API.
    let dpo = daemon.dpo().await;
    daemon
        .rights()
        .await
        .erase(authed(
            pb::EraseRequest {
                subject_id: a.clone(),
                request_ref: "REQ-17-1".into(),
                suppress: false,
            },
            &dpo,
        ))
        .await
        .unwrap();
    let gone = daemon
        .supporters()
        .await
        .get(authed(
            pb::GetRequest {
                id: a.clone(),
                ..Default::default()
            },
            &tool,
        ))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // Only an admin rotates keys; refusals change nothing.
    let auditor = daemon
        .create_client("rotation-auditor", "auditor", &[])
        .await;
    for creds in [&tool, &auditor] {
        let err = rotate(&daemon, &creds.token).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    }

    let report = rotate(&daemon, &daemon.admin_token()).await.unwrap();
    assert_eq!(report.epoch, 2);
    assert_eq!(report.destroyed_epochs, [1]);
    assert_eq!(report.epochs, [2]);
    assert_eq!(report.rewrapped, 1, "only B is left to re-wrap");

    // Everyone not erased still reads, now and after a restart.
    assert_eq!(get_email(&daemon, &tool, &b).await, PEOPLE[1].1);
    let rotations = daemon
        .audit_entries(
            &auditor,
            pb::QueryRequest {
                action: "Admin.RotateKeys".into(),
                ..Default::default()
            },
        )
        .await;
    let outcomes: Vec<(&str, &str)> = rotations
        .iter()
        .map(|e| (e.role.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("campaign-tool", "denied"),
            ("auditor", "denied"),
            ("admin", "allowed")
        ]
    );
    assert!(daemon.terminate().success());
    let mut daemon = Daemon::start_with(&data, &flags);
    assert_eq!(get_email(&daemon, &tool, &b).await, PEOPLE[1].1);
    assert!(daemon.terminate().success());

    // With everything the vault holds now (the current keyring and the root key file),
    // the copy's data keys no longer open: epoch 1 is gone.
    let store = open_store(&data).await;
    let ring = keyring_of(store.as_ref(), &data.join("root.key")).await;
    assert_eq!(ring.epochs(), [2]);
    for id in [&a, &b] {
        assert!(
            ring.unwrap_subject_key(id, &copy.keys[id]).is_err(),
            "a stale copy's data key still opens"
        );
    }
    // B, not erased, is re-readable only through the current epoch: B's data key as stored
    // now (under epoch 2) opens the copy's record ciphertext, which rotation left as it was.
    let current = rows_of(store.as_ref(), &ids).await;
    let b_key = ring.unwrap_subject_key(&b, &current.keys[&b]).unwrap();
    assert_eq!(epoch_of(&current.keys[&b]), 2);
    assert_eq!(current.records[&b], copy.records[&b]);
    let b_record = vault_core::supporter::record::open(&b_key, &b, &copy.records[&b]).unwrap();
    assert_eq!(b_record.email, PEOPLE[1].1);

    // A, erased: the vault holds no data key for A any more, and the copy's key (under the
    // destroyed epoch 1) opens under nothing the vault holds, so the copy's record for A can
    // never be decrypted again.
    assert!(!current.keys.contains_key(&a) && !current.records.contains_key(&a));
    assert!(ring.unwrap_subject_key(&a, &copy.keys[&a]).is_err());
}

/// Two replicas on one PostgreSQL schema: after a rotation through one, the other (whose
/// keyring still says epoch 1, now destroyed) writes a new supporter; its data key lands
/// under epoch 2, and everyone stays readable through both. PostgreSQL only: prints
/// `SKIPPED` and passes without `VAULT_TEST_DATABASE_URL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_with_a_stale_keyring_writes_under_the_new_epoch() {
    let Some(url) =
        vault_tests::database_url("a_replica_with_a_stale_keyring_writes_under_the_new_epoch")
    else {
        return;
    };
    let pg = vault_tests::PgSchema::new(&url);
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    vault_tests::use_store(&da, TestStore::Postgres(pg.clone()));
    vault_tests::use_store(&db, TestStore::Postgres(pg.clone()));
    let config = dir.path().join("vault.toml");
    std::fs::write(&config, "[keys]\nbackup_window_hours = 0\n").unwrap();
    let config = config.to_str().unwrap();
    let mut a = Daemon::start_with(&da, &["--config", config]);
    let key = da.join("root.key");
    let mut b = Daemon::start_with(
        &db,
        &["--config", config, "--root-key", key.to_str().unwrap()],
    );
    let tool = a.tool("membership").await;
    let first = upsert(&b, &tool, "Anne", "anne.replica@example.fr").await;

    let report = rotate(&a, &a.admin_token()).await.unwrap();
    assert_eq!((report.epoch, report.destroyed_epochs), (2, vec![1]));
    // b still holds epoch 1 in memory; its write pins the epoch and retries under 2.
    let second = upsert(&b, &tool, "Bruno", "bruno.replica@example.fr").await;
    for d in [&a, &b] {
        assert_eq!(get_email(d, &tool, &first).await, "anne.replica@example.fr");
        assert_eq!(
            get_email(d, &tool, &second).await,
            "bruno.replica@example.fr"
        );
    }
    assert!(a.terminate().success());
    assert!(b.terminate().success());

    let store = open_store(&da).await;
    let ring = keyring_of(store.as_ref(), &key).await;
    assert_eq!(ring.epochs(), [2]);
    let rows = rows_of(store.as_ref(), &[first, second]).await;
    assert_eq!(rows.keys.len(), 2);
    assert!(rows.keys.values().all(|k| epoch_of(k) == 2));
}
