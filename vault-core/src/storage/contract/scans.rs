//! Ordered reads: [`Store::scan_prefix`], [`Store::scan_range`] and [`Store::last`], against
//! a model (a `BTreeMap` orders byte strings as the contract does: byte-wise, a prefix
//! before its extensions).

use std::collections::BTreeMap;

use super::{Engine, fresh};
use crate::storage::{Batch, Store, StoreError, Table};

/// Keys chosen for the edges of byte order: empty, 0x00, 0xFF runs, a prefix and its
/// extensions, a byte above 0x7F (signed comparison would misplace it).
const KEYS: [&[u8]; 13] = [
    &[0xFF, 0xFF, 0x01],
    &[0x01, 0xFF],
    &[],
    &[0x02],
    &[0x01],
    &[0xFF],
    &[0x00],
    &[0x01, 0x00],
    &[0xFF, 0xFF],
    &[0x01, 0xFF, 0xFF],
    &[0xFF, 0x00],
    &[0x80],
    &[0x01, 0xFE, 0xFF],
];

type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Writes [`KEYS`] into `table` (and, as decoys, into another table) and returns the model.
async fn fill(store: &dyn Store, table: Table) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
    let mut model = BTreeMap::new();
    let mut batch = Batch::new();
    for (i, key) in KEYS.iter().enumerate() {
        let value = format!("value-{i}").into_bytes();
        batch.put(table, key, value.clone());
        model.insert(key.to_vec(), value);
    }
    // The same keys in another table must never leak into a scan.
    let decoys = if table == Table::Keyring {
        Table::Clients
    } else {
        Table::Keyring
    };
    for key in KEYS {
        batch.put(decoys, key, b"decoy".to_vec());
    }
    store.commit(batch).await?;
    Ok(model)
}

/// A prefix scan returns exactly the pairs whose key starts with the prefix, in key order
/// (the empty prefix: the whole table); an empty table or a prefix nothing starts with
/// gives an empty list.
pub(super) async fn scan_prefix_order_and_bounds(engine: &dyn Engine) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    assert_eq!(store.scan_prefix(Table::Keyring, b"").await?, Rows::new());
    let model = fill(store, Table::Keyring).await?;
    let prefixes: [&[u8]; 12] = [
        &[],
        &[0x00],
        &[0x01],
        &[0x01, 0xFF],
        &[0x01, 0xFE],
        &[0x02],
        &[0x03],
        &[0x80],
        &[0xFF],
        &[0xFF, 0xFF],
        &[0xFF, 0xFF, 0xFF],
        &[0x01, 0x00, 0x00],
    ];
    for prefix in prefixes {
        let expected: Rows = model
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            store.scan_prefix(Table::Keyring, prefix).await?,
            expected,
            "prefix {prefix:02x?}"
        );
    }
    assert_eq!(
        store.scan_prefix(Table::Records, b"").await?,
        Rows::new(),
        "an empty table"
    );
    Ok(())
}

/// A range scan returns the pairs with `start <= key < end` (`end: None`: to the last
/// key), in key order, the first `limit` of them: `limit` 0, or `start >= end`, gives an
/// empty list. Paging on with `start` = last key ‖ 0x00 visits every pair once.
pub(super) async fn scan_range_bounds_and_limits(engine: &dyn Engine) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    assert_eq!(
        store.scan_range(Table::AuditEntries, b"", None, 10).await?,
        Rows::new()
    );
    let model = fill(store, Table::AuditEntries).await?;
    let bounds: [&[u8]; 8] = [
        &[],
        &[0x00],
        &[0x01],
        &[0x01, 0xFF],
        &[0x7F],
        &[0x80],
        &[0xFF, 0xFF],
        &[0xFF, 0xFF, 0xFF],
    ];
    for start in bounds {
        let ends = bounds.iter().map(|e| Some(*e)).chain([None]);
        for end in ends {
            for limit in [0, 1, 2, 5, KEYS.len(), usize::MAX] {
                let expected: Rows = model
                    .iter()
                    .filter(|(k, _)| k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(
                    store
                        .scan_range(Table::AuditEntries, start, end, limit)
                        .await?,
                    expected,
                    "start {start:02x?}, end {end:02x?}, limit {limit}"
                );
            }
        }
    }
    // Paging through the table three rows at a time.
    let mut paged = Rows::new();
    let mut start = Vec::new();
    loop {
        let page = store
            .scan_range(Table::AuditEntries, &start, None, 3)
            .await?;
        assert!(page.len() <= 3, "a page over its limit");
        let Some((last, _)) = page.last() else { break };
        start = last.clone();
        start.push(0x00);
        paged.extend(page);
    }
    let all: Rows = model.into_iter().collect();
    assert_eq!(paged, all);
    Ok(())
}

/// `last` is the pair with the greatest key of the table (`None` when it is empty), per
/// table, following writes and deletes.
pub(super) async fn last_is_the_greatest_key(engine: &dyn Engine) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    assert_eq!(store.last(Table::AuditCheckpoints).await?, None);
    let model = fill(store, Table::AuditCheckpoints).await?;
    let greatest = model.last_key_value().map(|(k, v)| (k.clone(), v.clone()));
    assert_eq!(store.last(Table::AuditCheckpoints).await?, greatest);
    assert_eq!(
        store.last(Table::Keyring).await?.map(|(k, _)| k),
        greatest.as_ref().map(|(k, _)| k.clone()),
        "the decoy table has its own last row"
    );
    assert_eq!(store.last(Table::Records).await?, None);
    // Delete the greatest keys one by one: each time the next greatest is last.
    let mut model = model;
    while let Some((key, _)) = model.pop_last() {
        let mut b = Batch::new();
        b.delete(Table::AuditCheckpoints, &key);
        store.commit(b).await?;
        assert_eq!(
            store.last(Table::AuditCheckpoints).await?,
            model.last_key_value().map(|(k, v)| (k.clone(), v.clone())),
            "after deleting {key:02x?}"
        );
    }
    // Big-endian sequence numbers, as the access log keys them: the last is the highest.
    let mut b = Batch::new();
    for seq in [1u64, 255, 256, 65_536, 2] {
        b.put(Table::AuditCheckpoints, &seq.to_be_bytes(), Vec::new());
    }
    store.commit(b).await?;
    assert_eq!(
        store.last(Table::AuditCheckpoints).await?,
        Some((65_536u64.to_be_bytes().to_vec(), Vec::new()))
    );
    Ok(())
}
