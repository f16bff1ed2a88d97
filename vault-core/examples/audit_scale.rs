//! Time and peak memory of the access log's export, verification and proofs on a large
//! log: the figures of docs/benchmarks.md ("Access log at scale"). Not a test: run by hand,
//! in release, one mode per process so each peak RSS (`VmHWM`) is that mode's alone.
//!
//! `cargo run --release -p vault-core --example audit_scale -- MODE DIR [ENTRIES]`, MODE one
//! of `populate` (append ENTRIES entries, 256 in flight), `open` (open only: the one-time
//! subtree build, on a store written without subtrees), `verify`, `export` (the file
//! streamed to nowhere), `proof` (an inclusion and a consistency proof at the head).

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Instant;

use vault_core::crypto::row_mac::RowKey;
use vault_core::crypto::{Key256, RootKey};
use vault_core::journal::{AccessEntry, Outcome};
use vault_core::journal::{AuditLog, AuditOptions};
use vault_core::storage::sled_store::{SledOptions, SledStore};
use vault_core::storage::{AuthenticatedStore, Batch, Store};

fn entry(i: u64) -> AccessEntry {
    AccessEntry {
        at_us: 1_700_000_000_000_000 + i as i64,
        request_id: format!("req-{i:016x}"),
        client_id: "campaign-tool-1".into(),
        role: "campaign-tool",
        rpc: "Supporters.Get".into(),
        purpose: Some("membership".into()),
        subjects: vec![format!("{:032x}", i * 7919)],
        fields: vec!["email", "phone"],
        outcome: Outcome::Allowed,
        request_ref: None,
        changes: Vec::new(),
    }
}

/// Peak resident memory of this process so far, in MiB (Linux).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(dir)) = (args.get(1), args.get(2)) else {
        return Err("usage: audit_scale populate|open|verify|export|proof DIR [ENTRIES]".into());
    };
    let root = RootKey::from_key(Key256::from_bytes(&[7; 32]));
    let raw: Arc<dyn Store> = Arc::new(SledStore::open(
        std::path::Path::new(dir),
        &SledOptions::default(),
    )?);
    let store: Arc<dyn Store> = Arc::new(AuthenticatedStore::new(raw, RowKey::derive(&root)));
    let started = Instant::now();
    let log = Arc::new(AuditLog::open(store, &root, AuditOptions::default()).await?);
    let opened = started.elapsed();
    let size = log.size().await;
    let started = Instant::now();
    let what = match mode.as_str() {
        "populate" => {
            let n: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200_000);
            let mut next = size;
            while next < size + n {
                let wave = (size + n - next).min(256);
                let tasks: Vec<_> = (next..next + wave)
                    .map(|i| {
                        let log = Arc::clone(&log);
                        tokio::spawn(async move { log.append(Batch::new(), &entry(i)).await })
                    })
                    .collect();
                for t in tasks {
                    t.await??;
                }
                next += wave;
            }
            format!("appended {n}")
        }
        "open" => String::new(),
        "verify" => {
            let v = log.verify(None, None).await?;
            format!("{:?}", v.map(|v| v.entries).map_err(|e| e.to_string()))
        }
        "export" => {
            let mut bytes = 0usize;
            let mut export = log.export_stream(None, None).await?;
            while let Some(chunk) = export.next_chunk().await? {
                bytes += chunk.len();
            }
            format!("{bytes} bytes")
        }
        "proof" => {
            let a = log.inclusion_proof(size / 3, size).await?;
            let b = log.consistency_proof(size / 2, size).await?;
            format!("{} + {} hashes", a.len(), b.len())
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    let took = started.elapsed();
    log.close().await?;
    println!(
        "{mode}: {what}; log size {size}; open {:.2} s; {mode} {:.3} s; peak RSS {:.0} MiB",
        opened.as_secs_f64(),
        took.as_secs_f64(),
        peak_rss_mib()
    );
    Ok(())
}
