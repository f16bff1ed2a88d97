//! Replays the committed seed corpus of every fuzz target through the target's properties,
//! and runs the properties on small mutations of the seeds (a stable-toolchain stand-in for
//! the fuzzer, a few hundred inputs per target).
//!
//! `write_seeds` (ignored) regenerates the seeds that come from the real code: a real
//! envelope and sealed record, and real exports of a vault's access log.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use vault_properties::TARGETS;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target)
}

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(corpus_dir(target))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_target_has_seeds_and_they_hold() {
    for (target, check) in TARGETS {
        let seeds = seeds(target);
        assert!(seeds.len() >= 2, "{target}: at least two seeds");
        for (path, bytes) in seeds {
            eprintln!("{target}: {}", path.display());
            check(&bytes);
        }
    }
}

/// One mutation of a seed: flip a byte, delete a range, or duplicate a range.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(prop::sample::Index, u8),
    Delete(prop::sample::Index, usize),
    Duplicate(prop::sample::Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<prop::sample::Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<prop::sample::Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        match m {
            Mutation::Flip(i, b) => {
                let i = i.index(bytes.len());
                bytes[i] ^= b;
            }
            Mutation::Delete(i, n) => {
                let i = i.index(bytes.len());
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
            }
            Mutation::Duplicate(i, n) => {
                let i = i.index(bytes.len());
                let end = (i + n).min(bytes.len());
                let copy = bytes[i..end].to_vec();
                bytes.splice(i..i, copy);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn mutated_seeds_hold(
        target in 0usize..TARGETS.len(),
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let (name, check) = TARGETS[target];
        let seeds = seeds(name);
        let (_, bytes) = &seeds[seed.index(seeds.len())];
        check(&mutate(bytes.clone(), &mutations));
    }

    #[test]
    fn arbitrary_bytes_hold(target in 0usize..TARGETS.len(), bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        (TARGETS[target].1)(&bytes);
    }
}

/// Regenerates the seeds made by the real code. Run after a format change:
/// `cargo test -p vault-properties --test corpus -- --ignored write_seeds`.
#[test]
#[ignore = "writes the committed seeds"]
fn write_seeds() {
    use vault_core::crypto::{Key256, envelope};
    use vault_core::journal::AuditOptions;
    use vault_core::supporter::record;
    use vault_core::{Caller, FieldSet, Role, Supporter, Vault, VaultOptions};
    use vault_properties::{audit_verify, envelope_open as env};

    let key = Key256::from_bytes(&env::KEY);
    let seal = envelope::seal(&key, &env::aad(), env::PLAINTEXT).unwrap();
    std::fs::write(corpus_dir("envelope_open").join("real-seal"), seal).unwrap();
    let supporter = Supporter {
        id: env::SUBJECT.into(),
        given_name: "Marianne".into(),
        email: "marianne@example.fr".into(),
        tags: ["canvass".to_owned()].into(),
        ..Supporter::default()
    };
    let sealed = record::seal(&key, &supporter).unwrap();
    std::fs::write(corpus_dir("envelope_open").join("real-record"), sealed).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut options = VaultOptions::new(dir.path());
        options.audit = AuditOptions {
            checkpoint_every: 4,
            ..AuditOptions::default()
        };
        let (vault, _) = Vault::open(&options).await.unwrap();
        vault.install_purposes(None).await.unwrap();
        let tool = |purpose: &str| Caller {
            client_id: "signup-form".into(),
            role: Role::CampaignTool,
            allowed_purposes: ["membership".to_owned()].into(),
            purpose: Some(purpose.into()),
            request_id: "seed".into(),
        };
        let mut ids = Vec::new();
        for (i, name) in ["Marianne", "Jean", "Aïcha"].iter().enumerate() {
            let s = Supporter {
                given_name: (*name).into(),
                email: format!("seed-{i}@example.fr"),
                ..Supporter::default()
            };
            ids.push(vault.upsert(&tool("membership"), &s, &[]).await.unwrap().id);
        }
        for id in &ids {
            vault
                .get(&tool("membership"), id, FieldSet::empty())
                .await
                .unwrap();
            // A purpose the client may not use: refused, and logged as a denial.
            assert!(
                vault
                    .get(&tool("newsletter"), id, FieldSet::empty())
                    .await
                    .is_err()
            );
        }
        let auditor = Caller {
            client_id: "cnil-auditor".into(),
            role: Role::Auditor,
            allowed_purposes: Default::default(),
            purpose: None,
            request_id: "seed-export".into(),
        };
        // The partial export first: its end is then one of the full export's checkpoints.
        let partial = vault.audit_export(&auditor, Some(5), None).await.unwrap();
        let full = vault.audit_export(&auditor, None, None).await.unwrap();
        let public = vault.audit_public_key(&auditor).await.unwrap();
        let dir = corpus_dir("audit_verify");
        std::fs::write(dir.join("real-export.log"), full).unwrap();
        std::fs::write(dir.join("real-export-from-5.log"), partial).unwrap();
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("data/audit-public-key.hex"),
            format!("{}\n", hex::encode(public)),
        )
        .unwrap();
    });
    // The reference parses and verifies.
    audit_verify::check(audit_verify::REAL_EXPORT);
}
