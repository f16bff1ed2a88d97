//! Criterion benchmarks of the library's hot paths: envelope seal/open, blind index, posting
//! keys, sealing and opening a supporter record, and supporter upsert/get on the embedded
//! store (durable writes, group commit).
//!
//! Run: `cargo bench -p vault-core --bench core`. Figures go in docs/benchmarks.md.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vault_core::crypto::envelope::{self, Aad};
use vault_core::crypto::{BlindIndexKey, IndexKind, Key256, RootKey};
use vault_core::supporter::record;
use vault_core::{Address, Caller, FieldSet, Role, Supporter, Vault, VaultOptions};

fn crypto(c: &mut Criterion) {
    let key = Key256::generate().unwrap();
    let aad = Aad::new("record/supporter")
        .with(b"6f1c1a7e-3b7d-4d0e-9a51-2c9f5d3e8b10")
        .with_u32(1);
    let record = vec![b'x'; 300];
    let sealed = envelope::seal(&key, &aad, &record).unwrap();
    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal_300B", |b| {
        b.iter(|| envelope::seal(&key, &aad, &record).unwrap())
    });
    g.bench_function("open_300B", |b| {
        b.iter(|| envelope::open(&key, &aad, &sealed).unwrap())
    });
    g.finish();

    let blind = BlindIndexKey::derive(&RootKey::from_key(Key256::generate().unwrap()));
    c.bench_function("blind_index_email", |b| {
        b.iter(|| blind.index(IndexKind::Email, "marianne.dupont@example.fr"))
    });

    // Posting-list keys, as segments store them: HMAC of the term ‖ subject id. One per
    // tag, one for the postcode.
    let subject = "6f1c1a7e-3b7d-4d0e-9a51-2c9f5d3e8b10";
    let posting_key = |kind: IndexKind, term: &str| {
        let mut key = Vec::with_capacity(32 + subject.len());
        key.extend_from_slice(&blind.index(kind, term));
        key.extend_from_slice(subject.as_bytes());
        key
    };
    let mut g = c.benchmark_group("posting");
    g.throughput(Throughput::Elements(1));
    g.bench_function("tag_key", |b| {
        b.iter(|| posting_key(IndexKind::Tag, std::hint::black_box("porte-a-porte")))
    });
    // Every term of a typical supporter: three tags and a postcode.
    g.throughput(Throughput::Elements(4));
    g.bench_function("supporter_terms_4", |b| {
        b.iter(|| {
            [
                posting_key(IndexKind::Tag, "militant"),
                posting_key(IndexKind::Tag, "porte-a-porte"),
                posting_key(IndexKind::Tag, "quartier-nord"),
                posting_key(IndexKind::Postcode, "75011"),
            ]
        })
    });
    g.finish();

    // A whole supporter record (JSON, then AES-256-GCM under its data key, AAD bound to the
    // subject id and format version), as every write seals and every read opens.
    let dek = Key256::generate().unwrap();
    let supporter = Supporter {
        id: subject.into(),
        given_name: "Marianne".into(),
        family_name: "Dupont".into(),
        email: "marianne.dupont@example.fr".into(),
        phone: "+33612345678".into(),
        address: Address {
            line1: "12 rue de la République".into(),
            line2: String::new(),
            postcode: "75011".into(),
            city: "Paris".into(),
            country: "FR".into(),
        },
        tags: ["militant", "porte-a-porte", "quartier-nord"]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        custom: [("bureau_de_vote".to_owned(), "0412".to_owned())].into(),
        source: "form:petition-2026".into(),
        created_at_us: 1_795_000_000_000_000,
        updated_at_us: 1_795_000_000_000_000,
    };
    let sealed_record = record::seal(&dek, &supporter).unwrap();
    let mut g = c.benchmark_group("record");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal_supporter", |b| {
        b.iter(|| record::seal(&dek, &supporter).unwrap())
    });
    g.bench_function("open_supporter", |b| {
        b.iter(|| record::open(&dek, subject, &sealed_record).unwrap())
    });
    g.finish();
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = rt
        .block_on(Vault::open(&VaultOptions::new(dir.path())))
        .unwrap();
    let vault = Arc::new(vault);
    rt.block_on(vault.install_purposes(None)).unwrap();
    let caller = Caller {
        client_id: "bench".into(),
        role: Role::CampaignTool,
        allowed_purposes: ["membership".to_owned()].into(),
        purpose: Some("membership".into()),
        request_id: "bench".into(),
    };
    let mut n = 0u64;
    let mut next = move || {
        n += 1;
        Supporter {
            given_name: "Marianne".into(),
            email: format!("bench-{n}@example.fr"),
            ..Supporter::default()
        }
    };

    let mut g = c.benchmark_group("supporter");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.bench_function("upsert_durable_1_in_flight", |b| {
        b.to_async(&rt).iter_batched(
            &mut next,
            |s| {
                let vault = Arc::clone(&vault);
                let caller = caller.clone();
                async move { vault.upsert(&caller, &s, &[]).await.unwrap() }
            },
            BatchSize::SmallInput,
        )
    });
    // 64 writers at once share flushes (group commit): throughput per element.
    g.throughput(Throughput::Elements(64));
    g.bench_function("upsert_durable_64_in_flight", |b| {
        b.to_async(&rt).iter_batched(
            || (0..64).map(|_| next()).collect::<Vec<_>>(),
            |batch| {
                let vault = Arc::clone(&vault);
                let caller = caller.clone();
                async move {
                    let tasks: Vec<_> = batch
                        .into_iter()
                        .map(|s| {
                            let vault = Arc::clone(&vault);
                            let caller = caller.clone();
                            tokio::spawn(
                                async move { vault.upsert(&caller, &s, &[]).await.unwrap() },
                            )
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                }
            },
            BatchSize::SmallInput,
        )
    });
    let id = rt.block_on(vault.upsert(&caller, &next(), &[])).unwrap().id;
    g.throughput(Throughput::Elements(1));
    g.sample_size(100);
    g.bench_function("get", |b| {
        b.to_async(&rt)
            .iter(|| async { vault.get(&caller, &id, FieldSet::empty()).await.unwrap() })
    });
    g.finish();
}

fn audit(c: &mut Criterion) {
    use vault_core::audit::file;
    use vault_core::journal::{AccessEntry, Outcome};
    use vault_core::journal::{AuditLog, AuditOptions};
    use vault_core::storage::sled_store::{SledOptions, SledStore};
    use vault_core::storage::{Batch, Store};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(dir.path(), &SledOptions::default()).unwrap());
    let root = RootKey::from_key(Key256::generate().unwrap());
    let log = Arc::new(
        rt.block_on(AuditLog::open(store, &root, AuditOptions::default()))
            .unwrap(),
    );
    let entry = AccessEntry {
        at_us: 1_795_000_000_000_000,
        request_id: "0f3a9c1e5b7d4e2f8a6c0b1d3e5f7a9c".into(),
        client_id: "5e0c9b1a-2f3d-4c5b-8a7e-6d9f0e1c2b3a".into(),
        role: "campaign-tool",
        rpc: "Supporters.Get".into(),
        purpose: Some("newsletter".into()),
        subjects: vec!["1115219a-78db-40e3-b5c5-aacca0d9c568".into()],
        fields: vec!["given_name", "family_name", "email", "tags"],
        outcome: Outcome::Allowed,
        request_ref: None,
        changes: Vec::new(),
    };

    let mut g = c.benchmark_group("audit");
    g.sample_size(20);
    // Durable appends, 64 at once (group commit), as concurrent reads produce them.
    g.throughput(Throughput::Elements(64));
    g.bench_function("append_durable_64_in_flight", |b| {
        b.to_async(&rt).iter(|| {
            let log = Arc::clone(&log);
            let entry = entry.clone();
            async move {
                let tasks: Vec<_> = (0..64)
                    .map(|_| {
                        let log = Arc::clone(&log);
                        let entry = entry.clone();
                        tokio::spawn(async move { log.append(Batch::new(), &entry).await.unwrap() })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            }
        })
    });
    // Offline verification of an exported file of 100,000 entries.
    rt.block_on(async {
        let size = log.size().await;
        for _ in size..100_000 {
            log.append(Batch::new(), &entry).await.unwrap();
        }
    });
    let exported = rt.block_on(log.export(Some(0), Some(99_999))).unwrap();
    let key = log.public_key();
    g.throughput(Throughput::Elements(100_000));
    g.sample_size(10);
    g.bench_function("verify_export_100k", |b| {
        b.iter(|| file::verify(&exported, &key).unwrap())
    });
    g.finish();
}

criterion_group!(benches, crypto, store, audit);
criterion_main!(benches);
