//! What was acknowledged is there after the store is closed and opened again, and nothing
//! else is. (In-process: the handle is dropped and the store reopened. Power loss and
//! `kill -9` are the end-to-end crash suite's, `tests/tests/crash.rs`.)

use super::{Engine, everything, fresh, open_one, put};
use crate::storage::{Batch, StoreError, Table};

/// Committed batches (puts and deletes), batches applied and then synced, and groups
/// applied and then synced are all present after a reopen, in every table they wrote; a
/// batch that failed its check is not; checks hold against the reopened store; and a
/// second reopen sees the same store.
pub(super) async fn acknowledged_writes_survive_a_reopen(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let (place, store) = fresh(engine).await?;
    let mut first = Batch::new();
    first
        .put(Table::SubjectKeys, b"s", b"wrapped".to_vec())
        .put(Table::Records, b"s", b"sealed".to_vec())
        .put(Table::Records, b"gone", b"soon deleted".to_vec())
        .put(Table::EmailIndex, b"h", b"s".to_vec());
    store.commit(first).await?;
    let mut second = Batch::new();
    second
        .check(Table::Records, b"gone", Some(b"soon deleted"))
        .delete(Table::Records, b"gone");
    store.commit(second).await?;
    store
        .apply(put(Table::AuditEntries, &1u64.to_be_bytes(), b"e1"))
        .await?;
    store
        .apply_all(&[
            &put(Table::AuditEntries, &2u64.to_be_bytes(), b"e2"),
            &put(Table::AuditLeaves, &2u64.to_be_bytes(), b"leaf"),
        ])
        .await?;
    store.sync().await?;
    let mut refused = Batch::new();
    refused
        .check(Table::EmailIndex, b"h", None)
        .put(Table::Records, b"never", b"x".to_vec());
    assert!(store.commit(refused).await.is_err());
    let before = everything(store.as_ref()).await?;
    drop(store);

    let store = open_one(place.as_ref()).await?;
    assert_eq!(
        everything(store.as_ref()).await?,
        before,
        "the reopened store differs from the one closed"
    );
    assert_eq!(
        store.get(Table::SubjectKeys, b"s").await?,
        Some(b"wrapped".to_vec())
    );
    assert_eq!(
        store.get(Table::Records, b"gone").await?,
        None,
        "a delete was lost"
    );
    assert_eq!(store.get(Table::Records, b"never").await?, None);
    assert_eq!(
        store.last(Table::AuditEntries).await?,
        Some((2u64.to_be_bytes().to_vec(), b"e2".to_vec()))
    );
    // Checks hold against what was reopened.
    let mut cas = Batch::new();
    cas.check(Table::EmailIndex, b"h", Some(b"s"))
        .check(Table::Records, b"gone", None)
        .put(Table::Records, b"s", b"resealed".to_vec());
    store.commit(cas).await?;
    let after = everything(store.as_ref()).await?;
    drop(store);

    let store = open_one(place.as_ref()).await?;
    assert_eq!(everything(store.as_ref()).await?, after);
    assert_eq!(
        store.get(Table::Records, b"s").await?,
        Some(b"resealed".to_vec())
    );
    Ok(())
}
