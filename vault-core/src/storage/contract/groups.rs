//! [`Store::apply_all`]: a group of batches applied in order as one atomic unit.

use super::{Engine, assert_conflict, everything, fresh, put};
use crate::storage::{Batch, StoreError, Table};

/// Each batch of a group is checked after the writes of the batches before it (puts and
/// deletes), and its writes come after theirs.
pub(super) async fn each_batch_sees_the_ones_before_it(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    let mut claim = Batch::new();
    claim
        .check(Table::EmailIndex, b"h", None)
        .put(Table::EmailIndex, b"h", b"a".to_vec())
        .put(Table::Records, b"a", b"rec-a".to_vec());
    let mut follow = Batch::new();
    follow
        .check(Table::EmailIndex, b"h", Some(b"a"))
        .check(Table::Records, b"a", Some(b"rec-a"))
        .put(Table::Records, b"a", b"rec-a2".to_vec());
    let mut last = Batch::new();
    last.check(Table::Records, b"a", Some(b"rec-a2"))
        .put(Table::Postings, b"a", Vec::new());
    store.apply_all(&[&claim, &follow, &last]).await?;
    assert_eq!(
        store.get(Table::EmailIndex, b"h").await?,
        Some(b"a".to_vec())
    );
    assert_eq!(
        store.get(Table::Records, b"a").await?,
        Some(b"rec-a2".to_vec()),
        "the later batch's write comes last"
    );
    assert_eq!(store.get(Table::Postings, b"a").await?, Some(Vec::new()));
    // A delete of an earlier batch is seen as absence; a put after it as the new value.
    let mut remove = Batch::new();
    remove
        .check(Table::EmailIndex, b"h", Some(b"a"))
        .delete(Table::EmailIndex, b"h");
    let mut reclaim = Batch::new();
    reclaim
        .check(Table::EmailIndex, b"h", None)
        .put(Table::EmailIndex, b"h", b"b".to_vec());
    let mut confirm = Batch::new();
    confirm.check(Table::EmailIndex, b"h", Some(b"b"));
    store.apply_all(&[&remove, &reclaim, &confirm]).await?;
    assert_eq!(
        store.get(Table::EmailIndex, b"h").await?,
        Some(b"b".to_vec())
    );
    // Writes of the group to one key: the last decides.
    store
        .apply_all(&[
            &put(Table::Records, b"w", b"1"),
            &put(Table::Records, b"w", b"2"),
        ])
        .await?;
    assert_eq!(store.get(Table::Records, b"w").await?, Some(b"2".to_vec()));
    store.sync().await?;
    Ok(())
}

/// If any check of any batch of a group fails (against the store, or against a write of
/// an earlier batch of the group), nothing of the group is applied, and the error is a
/// conflict naming the failing check's table.
pub(super) async fn a_failed_group_applies_nothing(engine: &dyn Engine) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    store.commit(put(Table::Keyring, b"epoch", b"1")).await?;
    let before = everything(store).await?;
    let mut claim_a = Batch::new();
    claim_a
        .check(Table::EmailIndex, b"h", None)
        .put(Table::EmailIndex, b"h", b"a".to_vec())
        .put(Table::Records, b"a", b"rec-a".to_vec());
    let mut claim_b = Batch::new();
    claim_b
        .check(Table::EmailIndex, b"h", None)
        .put(Table::EmailIndex, b"h", b"b".to_vec())
        .put(Table::Records, b"b", b"rec-b".to_vec());
    // Both claims hold against the store as it is, but not one after the other.
    assert_conflict(
        store.apply_all(&[&claim_a, &claim_b]).await,
        Table::EmailIndex,
        "two claims of one key in a group",
    );
    assert_eq!(everything(store).await?, before);
    // The last batch's check fails against the store itself.
    let mut stale = Batch::new();
    stale
        .check(Table::Keyring, b"epoch", Some(b"0"))
        .put(Table::Keyring, b"epoch", b"2".to_vec());
    assert_conflict(
        store.apply_all(&[&claim_a, &stale]).await,
        Table::Keyring,
        "a stale check after a good batch",
    );
    assert_eq!(everything(store).await?, before);
    // The first batch fails: the later, good ones are not applied either.
    assert_conflict(
        store
            .apply_all(&[&stale, &claim_a, &put(Table::Postings, b"p", b"")])
            .await,
        Table::Keyring,
        "a stale check before good batches",
    );
    assert_eq!(everything(store).await?, before);
    // A check expecting what an earlier batch deleted.
    let mut delete = Batch::new();
    delete.delete(Table::Keyring, b"epoch");
    let mut expects_it = Batch::new();
    expects_it.check(Table::Keyring, b"epoch", Some(b"1")).put(
        Table::Records,
        b"c",
        b"rec-c".to_vec(),
    );
    assert_conflict(
        store.apply_all(&[&delete, &expects_it]).await,
        Table::Keyring,
        "a check of a key an earlier batch deleted",
    );
    assert_eq!(everything(store).await?, before);
    Ok(())
}

/// A group of no batches, or of empty batches, succeeds and changes nothing.
pub(super) async fn empty_groups(engine: &dyn Engine) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    store.commit(put(Table::Clients, b"c", b"json")).await?;
    let before = everything(store).await?;
    store.apply_all(&[]).await?;
    store.apply_all(&[&Batch::new(), &Batch::new()]).await?;
    let mut holds = Batch::new();
    holds.check(Table::Clients, b"c", Some(b"json"));
    store.apply_all(&[&Batch::new(), &holds]).await?;
    assert_eq!(everything(store).await?, before);
    Ok(())
}
