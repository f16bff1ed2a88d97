//! Cost of Audit.Query for one subject and Rights.Export of one person on a large access
//! log: time and peak resident memory (VmHWM, reset before each measured call). Builds the
//! log in one process and measures in another, so the build's memory does not count.
//!
//! ```sh
//! cargo run --release -p vault-core --example audit_subject_bench -- build DIR 1000000 10000
//! cargo run --release -p vault-core --example audit_subject_bench -- query DIR
//! cargo run --release -p vault-core --example audit_subject_bench -- reindex DIR
//! ```
//!
//! `build` opens a new vault in DIR, stores one supporter, and appends ENTRIES access-log
//! entries spread over SUBJECTS subjects (one of them the supporter), 4,096 in flight so the
//! log's writer applies each wave in one batch (the fastest path an honest entry takes: the
//! same staging, index rows and checkpoints as a served call). `query` times Audit.Query by
//! that subject and Rights.Export of that person through the vault's API, and, for
//! comparison, the whole-log read that Audit.Query did before the per-subject index
//! (`entries(0, size)`, then filter). `reindex` drops the index and its marker and times the
//! one-time indexing a store from before the index goes through at open.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use vault_core::journal::{AccessEntry, Outcome};
use vault_core::purpose::DPO_PURPOSE;
use vault_core::storage::{Batch, Table};
use vault_core::{AuditQuery, Caller, ExportKey, Role, Supporter, Vault, VaultOptions};

type Failure = Box<dyn std::error::Error>;

const IN_FLIGHT: u64 = 4096;
const TARGET_FILE: &str = "bench-subject";

fn caller(role: Role, purpose: Option<&str>) -> Caller {
    Caller {
        client_id: format!("bench-{role}"),
        role,
        allowed_purposes: purpose.map(str::to_owned).into_iter().collect(),
        purpose: purpose.map(str::to_owned),
        request_id: "bench".into(),
    }
}

/// Peak resident set size of this process so far, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak to the current resident size (Linux: `clear_refs` value 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn fake_id(n: u64) -> String {
    format!("{n:08x}-0000-4000-8000-{n:012x}")
}

async fn build(dir: &Path, entries: u64, subjects: u64) -> Result<(), Failure> {
    let (vault, _) = Vault::open(&VaultOptions::new(dir)).await?;
    vault.install_purposes(None).await?;
    let member = caller(Role::CampaignTool, Some("membership"));
    let person = Supporter {
        email: "bench@example.org".into(),
        ..Supporter::default()
    };
    let target = vault.upsert(&member, &person, &[]).await?.id;
    std::fs::write(dir.join(TARGET_FILE), &target)?;
    let vault = std::sync::Arc::new(vault);
    let started = Instant::now();
    let mut next = 0u64;
    while next < entries {
        let wave = (next..(next + IN_FLIGHT).min(entries)).map(|i| {
            let subject = match i % subjects.max(1) {
                0 => target.clone(),
                k => fake_id(k),
            };
            let vault = std::sync::Arc::clone(&vault);
            tokio::spawn(async move {
                let entry = AccessEntry {
                    at_us: 1_700_000_000_000_000 + i as i64,
                    request_id: format!("bench-{i}"),
                    client_id: "bench-client".into(),
                    role: "campaign-tool",
                    rpc: "Supporters.Get".into(),
                    purpose: Some("membership".into()),
                    subjects: vec![subject],
                    fields: vec!["email", "phone"],
                    outcome: Outcome::Allowed,
                    request_ref: None,
                    changes: Vec::new(),
                };
                vault.access_log().append(Batch::new(), &entry).await
            })
        });
        let wave: Vec<_> = wave.collect();
        next += wave.len() as u64;
        for task in wave {
            task.await??;
        }
        if next % 100_000 < IN_FLIGHT {
            eprintln!("{next} entries, {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    vault.access_log().checkpoint().await?;
    vault.access_log().close().await?;
    println!(
        "built {entries} entries over {subjects} subjects in {:.1} s; subject {target}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn measure<T, F>(what: &str, run: F) -> Result<T, Failure>
where
    F: std::future::Future<Output = Result<T, Failure>>,
{
    reset_peak();
    let before = peak_rss_kib();
    let started = Instant::now();
    let out = run.await?;
    let took = started.elapsed();
    let peak = peak_rss_kib();
    println!(
        "{what:<44} {:>9.1} ms   peak RSS {:>8} KiB (+{} KiB over the {} KiB before)",
        took.as_secs_f64() * 1e3,
        peak,
        peak.saturating_sub(before),
        before
    );
    Ok(out)
}

async fn query(dir: &Path) -> Result<(), Failure> {
    let target = std::fs::read_to_string(dir.join(TARGET_FILE))?;
    let opened = Instant::now();
    let (vault, _) = Vault::open(&VaultOptions::new(dir)).await?;
    println!(
        "opened in {:.1} s, log size {}, peak RSS {} KiB",
        opened.elapsed().as_secs_f64(),
        vault.access_log().size().await,
        peak_rss_kib()
    );
    let auditor = caller(Role::Auditor, None);
    let dpo = caller(Role::Dpo, Some(DPO_PURPOSE));
    let q = AuditQuery {
        subject_id: Some(target.clone()),
        ..AuditQuery::default()
    };
    for round in 0..2 {
        println!("-- round {round}");
        let found = measure("Audit.Query (subject)", async {
            Ok(vault.audit_query(&auditor, &q).await?.len())
        })
        .await?;
        let doc = measure("Rights.Export", async {
            Ok(vault
                .export(&dpo, &ExportKey::Id(target.clone()))
                .await?
                .1
                .len())
        })
        .await?;
        let scanned = measure("whole-log read + filter (before the index)", async {
            let log = vault.access_log();
            let size = log.size().await;
            Ok(log
                .entries(0, size)
                .await?
                .into_iter()
                .filter(|(_, e)| e.subjects.iter().any(|s| s == &target))
                .count())
        })
        .await?;
        println!("   {found} entries by query, {scanned} by the scan, export {doc} bytes");
    }
    vault.access_log().close().await?;
    Ok(())
}

async fn reindex(dir: &Path) -> Result<(), Failure> {
    {
        let store = vault_core::storage::sled_store::SledStore::open(
            &dir.join("store"),
            &vault_core::storage::sled_store::SledOptions::default(),
        )?;
        let tree = store.raw_tree(Table::AuditSubjects);
        let rows = tree.len();
        tree.clear()?;
        store
            .raw_tree(Table::Meta)
            .remove(vault_core::storage::schema::meta::AUDIT_SUBJECTS_INDEXED)?;
        store.raw_tree(Table::Meta).flush()?;
        tree.flush()?;
        println!("dropped {rows} index rows and the marker");
    }
    measure("open with the one-time indexing", async {
        let (vault, _) = Vault::open(&VaultOptions::new(dir)).await?;
        vault.access_log().close().await?;
        Ok(())
    })
    .await
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: audit_subject_bench build DIR [ENTRIES [SUBJECTS]] | query DIR | reindex DIR";
    let (Some(mode), Some(dir)) = (args.first(), args.get(1).map(PathBuf::from)) else {
        return Err(usage.into());
    };
    let number = |i: usize, default: u64| -> Result<u64, Failure> {
        Ok(args
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    match mode.as_str() {
        "build" => build(&dir, number(2, 1_000_000)?, number(3, 10_000)?).await,
        "query" => query(&dir).await,
        "reindex" => reindex(&dir).await,
        _ => Err(usage.into()),
    }
}
