//! A ciphertext altered on disk, or moved to another supporter's row, fails to open with
//! an integrity error (`DATA_LOSS`); the vault never returns wrong data.
//!
//! The bytes are altered behind the vault's back with the engine's own tools: sled's trees
//! for the embedded store, plain SQL `UPDATE`s under the PostgreSQL backend.

use tonic::Code;
use vault_core::storage::Table;
use vault_proto::v1 as pb;
use vault_tests::{Daemon, RawStore, authed, supporter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altered_or_moved_ciphertexts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path());
    let token = daemon.tool("membership").await;
    let mut c = daemon.supporters().await;
    let mut ids = Vec::new();
    for name in [
        "altered",
        "source",
        "moved-record",
        "moved-key",
        "untouched",
    ] {
        let r = c
            .upsert(authed(
                pb::UpsertRequest {
                    supporter: Some(supporter(
                        name,
                        "Integrity",
                        &format!("{name}@integrity.fr"),
                        "",
                    )),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        ids.push(r.id);
    }
    drop(c);
    assert!(daemon.terminate().success());
    let [altered, source, moved_record, moved_key, untouched] =
        <[String; 5]>::try_from(ids).unwrap();

    // Tamper with the store's bytes while the daemon is down.
    {
        let store = RawStore::open(dir.path());
        // 1. One bit flipped in the middle of a record's ciphertext.
        let mut bytes = store.get(Table::Records, altered.as_bytes());
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        store.set(Table::Records, altered.as_bytes(), &bytes);
        // 2. Another supporter's record copied over this one's (its key still in place).
        let src_record = store.get(Table::Records, source.as_bytes());
        store.set(Table::Records, moved_record.as_bytes(), &src_record);
        // 3. Another supporter's wrapped data key copied over this one's.
        let src_key = store.get(Table::SubjectKeys, source.as_bytes());
        store.set(Table::SubjectKeys, moved_key.as_bytes(), &src_key);
    }

    let daemon = Daemon::start(dir.path());
    let mut c = daemon.supporters().await;
    for (id, what) in [
        (&altered, "record"),
        (&moved_record, "record"),
        (&moved_key, "data key"),
    ] {
        let err = c
            .get(authed(
                pb::GetRequest {
                    id: id.clone(),
                    fields: None,
                },
                &token,
            ))
            .await
            .expect_err("tampered ciphertext must not open");
        assert_eq!(err.code(), Code::DataLoss, "{id}: {}", err.message());
        assert!(
            err.message().contains("integrity check failed"),
            "{}",
            err.message()
        );
        assert!(err.message().contains(what), "{}", err.message());
        assert!(err.message().contains(id.as_str()), "{}", err.message());
    }
    // Lookup goes through the same check: no wrong data by another path either.
    let err = c
        .lookup(authed(
            pb::LookupRequest {
                key: Some(pb::lookup_request::Key::Email(
                    "moved-record@integrity.fr".into(),
                )),
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss);
    // Writes to a tampered supporter are refused too (they would need to open it first).
    let err = c
        .tag(authed(
            pb::TagRequest {
                id: altered.clone(),
                tags: vec!["x".into()],
            },
            &token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss);
    // The others are intact.
    for (id, name) in [(&source, "source"), (&untouched, "untouched")] {
        let s = c
            .get(authed(
                pb::GetRequest {
                    id: id.clone(),
                    fields: None,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.given_name, name);
    }
    // The daemon says so in its log, with ids only.
    assert!(daemon.logs().contains("integrity check failed"));
}
