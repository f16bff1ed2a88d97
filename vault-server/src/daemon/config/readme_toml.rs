//! README.md's TOML snippets are one pasteable config file: taken in order and concatenated,
//! the daemon accepts them, and every key lands in the table its own snippet puts it in (a
//! top-level key pasted after a `[table]` would silently become that table's key, or be
//! refused as unknown there).

use std::collections::BTreeSet;

use super::tests::args;
use super::*;

/// The bodies of README.md's ```toml blocks, in order.
fn readme_blocks() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match current.as_mut() {
            None if line.trim() == "```toml" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(
        current.is_none(),
        "README.md: a ```toml block is not closed"
    );
    blocks
}

/// Every key of `value` as a dotted path (`limits.max_request_bytes`, `purposes[].id`).
fn key_paths(value: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, v) in value {
        let path = format!("{prefix}{key}");
        match v {
            toml::Value::Table(t) => key_paths(t, &format!("{path}."), out),
            toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                for item in items.iter().filter_map(toml::Value::as_table) {
                    key_paths(item, &format!("{path}[]."), out);
                }
            }
            _ => {
                out.insert(path);
            }
        }
    }
}

fn parse(text: &str, what: &str) -> toml::Table {
    toml::from_str(text).unwrap_or_else(|e| panic!("{what} is not TOML: {e}\n{text}"))
}

#[test]
fn the_readme_snippets_pasted_in_order_are_one_valid_config() {
    let blocks = readme_blocks();
    assert!(blocks.len() >= 8, "README.md lost its config snippets");
    let mut wanted = BTreeSet::new();
    for (i, block) in blocks.iter().enumerate() {
        key_paths(
            &parse(block, &format!("README ```toml block #{}", i + 1)),
            "",
            &mut wanted,
        );
    }
    let whole = blocks.concat();
    let mut landed = BTreeSet::new();
    key_paths(
        &parse(&whole, "the README's blocks, concatenated"),
        "",
        &mut landed,
    );
    assert_eq!(
        landed.difference(&wanted).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "keys that land in another table once the README's blocks are pasted in order \
         (the misplaced key is among those wanted but missing)"
    );
    assert_eq!(landed, wanted);

    // The daemon's own parser and checks accept it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vault.toml");
    std::fs::write(&file, &whole).unwrap();
    let config = Config::resolve(args(&["--config", file.to_str().unwrap()]))
        .unwrap_or_else(|e| panic!("the daemon refuses the README's config: {e}"));
    // A few keys, read back where the README puts them.
    let top = parse(&whole, "the README's blocks");
    assert_eq!(
        i64::from(config.min_retention_days),
        top["min_retention_days"].as_integer().unwrap()
    );
    assert_eq!(
        config.retention_sweep_every.map(|d| d.as_secs() as i64),
        Some(top["retention_sweep_hours"].as_integer().unwrap() * 3600)
    );
    assert_eq!(
        config.audit.checkpoint_every as i64,
        top["audit_checkpoint_entries"].as_integer().unwrap()
    );
    assert_eq!(
        config.controller.map(|c| c.name),
        top["controller"]["name"].as_str().map(str::to_owned)
    );
    assert!(config.purposes.is_some_and(|p| !p.is_empty()));
}
