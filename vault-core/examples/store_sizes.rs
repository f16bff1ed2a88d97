//! Live bytes per table of an embedded store (keys + values, as stored), next to the size
//! of its directory: how docs/benchmarks.md splits the disk figure into the vault's own data
//! and the engine's overhead. Run on a stopped daemon's store:
//!
//! `cargo run --release -p vault-core --example store_sizes -- DATA_DIR/store`

#![forbid(unsafe_code)]

use std::path::PathBuf;

use vault_core::storage::Table;
use vault_core::storage::sled_store::{SledOptions, SledStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        return Err("usage: store_sizes STORE_DIR (a stopped daemon's DATA_DIR/store)".into());
    };
    let store = SledStore::open(&dir, &SledOptions::default())?;
    let (mut rows, mut bytes) = (0u64, 0u64);
    println!(
        "{:<24} {:>12} {:>14} {:>10}",
        "table", "rows", "bytes", "bytes/row"
    );
    for table in Table::ALL {
        let (mut n, mut b) = (0u64, 0u64);
        for kv in store.raw_tree(table).iter() {
            let (k, v) = kv?;
            n += 1;
            b += (k.len() + v.len()) as u64;
        }
        if n > 0 {
            println!("{:<24} {:>12} {:>14} {:>10}", table.name(), n, b, b / n);
        }
        rows += n;
        bytes += b;
    }
    println!("{:<24} {:>12} {:>14}", "total", rows, bytes);
    Ok(())
}
