//! One batch at a time: checks (compare-and-set), atomicity, order of checks and writes,
//! deletes, tables and key bytes. Each property runs through every write entry point
//! ([`Store::commit`], [`Store::apply`], and a group of one with [`Store::apply_all`]): they
//! differ only in when the write is durable, never in what it does.

use super::{Engine, assert_conflict, everything, fresh, put, rows};
use crate::storage::{Batch, Store, StoreError, Table};

/// A way to hand a batch to the store.
#[derive(Debug, Clone, Copy)]
enum Via {
    Commit,
    Apply,
    GroupOfOne,
}

const EVERY_WAY: [Via; 3] = [Via::Commit, Via::Apply, Via::GroupOfOne];

/// A check to add: table, key, expected value.
type CheckSpec<'a> = (Table, &'a [u8], Option<&'a [u8]>);

impl Via {
    async fn write(self, store: &dyn Store, batch: Batch) -> Result<(), StoreError> {
        match self {
            Via::Commit => store.commit(batch).await,
            Via::Apply => store.apply(batch).await,
            Via::GroupOfOne => store.apply_all(&[&batch]).await,
        }
    }

    /// `key` made distinct per way, so the ways do not see each other's rows.
    fn key(self, key: &[u8]) -> Vec<u8> {
        let mut k = format!("{self:?}/").into_bytes();
        k.extend_from_slice(key);
        k
    }
}

/// A check that `key` is absent holds only while it is: the first claim of a key wins, the
/// same claim again is a conflict naming the table, and leaves the value as it was.
pub(super) async fn compare_and_set_on_an_absent_key(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    for via in EVERY_WAY {
        let h = via.key(b"hmac");
        let mut claim = Batch::new();
        claim
            .check(Table::EmailIndex, &h, None)
            .put(Table::EmailIndex, &h, b"a".to_vec());
        via.write(store, claim).await?;
        assert_eq!(
            store.get(Table::EmailIndex, &h).await?,
            Some(b"a".to_vec()),
            "{via:?}"
        );
        let mut again = Batch::new();
        again
            .check(Table::EmailIndex, &h, None)
            .put(Table::EmailIndex, &h, b"b".to_vec());
        assert_conflict(
            via.write(store, again).await,
            Table::EmailIndex,
            "a second claim",
        );
        assert_eq!(
            store.get(Table::EmailIndex, &h).await?,
            Some(b"a".to_vec()),
            "{via:?}: the losing claim wrote"
        );
        // A check that fails fails the batch even when it writes nothing.
        let mut only_check = Batch::new();
        only_check.check(Table::EmailIndex, &h, None);
        assert_conflict(
            via.write(store, only_check).await,
            Table::EmailIndex,
            "a lone absent-check of a present key",
        );
    }
    Ok(())
}

/// A check that `key` holds a value holds only for exactly those bytes: read-modify-write
/// succeeds with the current value, fails with an older one, and a check expecting a value
/// fails on an absent key.
pub(super) async fn compare_and_set_on_a_present_key(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    for via in EVERY_WAY {
        let k = via.key(b"row");
        via.write(store, put(Table::Records, &k, b"v1")).await?;
        let mut next = Batch::new();
        next.check(Table::Records, &k, Some(b"v1"))
            .put(Table::Records, &k, b"v2".to_vec());
        via.write(store, next).await?;
        assert_eq!(store.get(Table::Records, &k).await?, Some(b"v2".to_vec()));
        let mut stale = Batch::new();
        stale
            .check(Table::Records, &k, Some(b"v1"))
            .put(Table::Records, &k, b"v3".to_vec());
        assert_conflict(
            via.write(store, stale).await,
            Table::Records,
            "a check of a stale value",
        );
        // A prefix or an extension of the stored value is another value.
        for near in [&b"v"[..], b"v2\0", b"V2"] {
            let mut b = Batch::new();
            b.check(Table::Records, &k, Some(near));
            assert_conflict(via.write(store, b).await, Table::Records, "a near value");
        }
        assert_eq!(store.get(Table::Records, &k).await?, Some(b"v2".to_vec()));
        let mut remove = Batch::new();
        remove
            .check(Table::Records, &k, Some(b"v2"))
            .delete(Table::Records, &k);
        via.write(store, remove).await?;
        assert_eq!(store.get(Table::Records, &k).await?, None);
        let mut on_absent = Batch::new();
        on_absent
            .check(Table::Records, &k, Some(b"v2"))
            .put(Table::Records, &k, b"v4".to_vec());
        assert_conflict(
            via.write(store, on_absent).await,
            Table::Records,
            "a value check of an absent key",
        );
        assert_eq!(store.get(Table::Records, &k).await?, None);
    }
    Ok(())
}

/// An empty value is a value: present, not absent, for reads and for checks.
pub(super) async fn an_empty_value_is_present(engine: &dyn Engine) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    for via in EVERY_WAY {
        let k = via.key(b"empty");
        let mut absent = Batch::new();
        absent.check(Table::Postings, &k, Some(b""));
        assert_conflict(
            via.write(store, absent).await,
            Table::Postings,
            "an empty-value check of an absent key",
        );
        via.write(store, put(Table::Postings, &k, b"")).await?;
        assert_eq!(store.get(Table::Postings, &k).await?, Some(Vec::new()));
        let mut as_absent = Batch::new();
        as_absent.check(Table::Postings, &k, None);
        assert_conflict(
            via.write(store, as_absent).await,
            Table::Postings,
            "an absent-check of an empty value",
        );
        let mut as_empty = Batch::new();
        as_empty.check(Table::Postings, &k, Some(b""));
        via.write(store, as_empty).await?;
    }
    Ok(())
}

/// A check on one key guards writes to other keys and other tables: they are applied when
/// it holds and not when it fails (the vault's dedupe: claim the email's index row, write
/// the record).
pub(super) async fn a_check_guards_writes_to_other_keys_and_tables(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    for via in EVERY_WAY {
        let h = via.key(b"hmac");
        let a = via.key(b"subject-a");
        let b = via.key(b"subject-b");
        via.write(store, put(Table::EmailIndex, &h, &a)).await?;
        // The index row names a: a batch guarded on "names b" writes nothing.
        let mut wrong = Batch::new();
        wrong
            .check(Table::EmailIndex, &h, Some(&b))
            .put(Table::Records, &b, b"sealed-b".to_vec())
            .put(Table::Postings, &b, Vec::new());
        assert_conflict(
            via.write(store, wrong).await,
            Table::EmailIndex,
            "a guard that does not hold",
        );
        assert_eq!(store.get(Table::Records, &b).await?, None);
        assert_eq!(store.get(Table::Postings, &b).await?, None);
        // Guarded on "names a": applied, in both other tables.
        let mut right = Batch::new();
        right
            .check(Table::EmailIndex, &h, Some(&a))
            .put(Table::Records, &a, b"sealed-a".to_vec())
            .put(Table::Postings, &a, Vec::new());
        via.write(store, right).await?;
        assert_eq!(
            store.get(Table::Records, &a).await?,
            Some(b"sealed-a".to_vec())
        );
        assert_eq!(store.get(Table::Postings, &a).await?, Some(Vec::new()));
        // An absent-check on a key of one table guards a delete in another.
        let mut guarded_delete = Batch::new();
        guarded_delete
            .check(Table::Erasures, &a, None)
            .delete(Table::Records, &a);
        via.write(store, put(Table::Erasures, &a, b"receipt"))
            .await?;
        assert_conflict(
            via.write(store, guarded_delete).await,
            Table::Erasures,
            "a guard on another table",
        );
        assert_eq!(
            store.get(Table::Records, &a).await?,
            Some(b"sealed-a".to_vec()),
            "the guarded delete ran"
        );
    }
    Ok(())
}

/// A batch whose check fails applies none of its writes (puts, overwrites, deletes, in any
/// table), whichever of its checks fails and wherever it stands among them; the conflict
/// names the failing check's table.
pub(super) async fn a_failed_batch_applies_nothing(engine: &dyn Engine) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    let mut setup = Batch::new();
    setup
        .put(Table::Records, b"r1", b"one".to_vec())
        .put(Table::Records, b"r2", b"two".to_vec())
        .put(Table::Keyring, b"k", b"epoch".to_vec())
        .put(Table::ClientTokens, b"t", b"client".to_vec());
    store.commit(setup).await?;
    let before = everything(store).await?;
    // Which check fails: the first, one in the middle, the last; an absent-check or a
    // value check.
    let failing = [
        (0, Table::Keyring, b"k".as_slice(), None),
        (
            1,
            Table::ClientTokens,
            b"t".as_slice(),
            Some(b"other".as_slice()),
        ),
        (
            2,
            Table::AuditLeaves,
            b"none".as_slice(),
            Some(b"x".as_slice()),
        ),
    ];
    for via in EVERY_WAY {
        for (position, table, key, expect) in failing {
            let mut b = Batch::new();
            let holding: [CheckSpec<'_>; 2] = [
                (Table::Records, b"r1", Some(b"one")),
                (Table::Records, b"absent", None),
            ];
            let mut holding = holding.into_iter();
            for slot in 0..3 {
                if slot == position {
                    b.check(table, key, expect);
                } else if let Some((t, k, e)) = holding.next() {
                    b.check(t, k, e);
                }
            }
            b.put(Table::Records, b"r1", b"changed".to_vec())
                .delete(Table::Records, b"r2")
                .put(Table::Records, b"r3", b"new".to_vec())
                .delete(Table::Keyring, b"k")
                .put(Table::Consent, b"c", b"event".to_vec())
                .put(Table::RightsRequests, b"ticket", b"json".to_vec());
            assert_conflict(
                via.write(store, b).await,
                table,
                &format!("{via:?}, failing check at {position}"),
            );
            assert_eq!(
                everything(store).await?,
                before,
                "{via:?}: a failed batch changed the store (failing check at {position})"
            );
        }
    }
    Ok(())
}

/// Every check is evaluated against the store as it was before the batch, before any of
/// its writes, wherever the checks were added among the writes.
pub(super) async fn checks_see_the_store_before_the_batch(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    for via in EVERY_WAY {
        let k = via.key(b"k");
        // A write added before the check does not make the check see it.
        let mut b = Batch::new();
        b.put(Table::Records, &k, b"v".to_vec())
            .check(Table::Records, &k, None);
        via.write(store, b).await?;
        assert_eq!(store.get(Table::Records, &k).await?, Some(b"v".to_vec()));
        let mut b = Batch::new();
        b.delete(Table::Records, &k)
            .check(Table::Records, &k, Some(b"v"));
        via.write(store, b).await?;
        assert_eq!(store.get(Table::Records, &k).await?, None);
        // A check expecting the batch's own write does not hold.
        let mut b = Batch::new();
        b.put(Table::Records, &k, b"w".to_vec())
            .check(Table::Records, &k, Some(b"w"));
        assert_conflict(
            via.write(store, b).await,
            Table::Records,
            "a check expecting the batch's own write",
        );
        assert_eq!(store.get(Table::Records, &k).await?, None);
        // Two checks of one key expecting different states cannot both hold.
        via.write(store, put(Table::Records, &k, b"x")).await?;
        let mut b = Batch::new();
        b.check(Table::Records, &k, Some(b"x"))
            .check(Table::Records, &k, None)
            .put(Table::Postings, &k, Vec::new());
        assert_conflict(
            via.write(store, b).await,
            Table::Records,
            "contradictory checks",
        );
        assert_eq!(store.get(Table::Postings, &k).await?, None);
    }
    Ok(())
}

/// A batch's writes apply in order: of several writes to one key, the last decides.
pub(super) async fn writes_apply_in_order(engine: &dyn Engine) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    for via in EVERY_WAY {
        let (a, b, c) = (via.key(b"a"), via.key(b"b"), via.key(b"c"));
        via.write(store, put(Table::Records, &c, b"old")).await?;
        let mut batch = Batch::new();
        batch
            .put(Table::Records, &a, b"1".to_vec())
            .put(Table::Records, &a, b"2".to_vec())
            .put(Table::Records, &b, b"1".to_vec())
            .delete(Table::Records, &b)
            .delete(Table::Records, &c)
            .put(Table::Records, &c, b"new".to_vec());
        via.write(store, batch).await?;
        assert_eq!(store.get(Table::Records, &a).await?, Some(b"2".to_vec()));
        assert_eq!(
            store.get(Table::Records, &b).await?,
            None,
            "put then delete"
        );
        assert_eq!(
            store.get(Table::Records, &c).await?,
            Some(b"new".to_vec()),
            "delete then put"
        );
    }
    Ok(())
}

/// A delete removes the key from every read (get, scans, last, checks); deleting an
/// absent key is no error and changes nothing; a deleted key can be written again.
pub(super) async fn deletes(engine: &dyn Engine) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    let mut b = Batch::new();
    b.put(Table::Proposals, b"p1", b"one".to_vec())
        .put(Table::Proposals, b"p2", b"two".to_vec());
    store.commit(b).await?;
    for via in EVERY_WAY {
        let mut absent = Batch::new();
        absent.delete(Table::Proposals, &via.key(b"never"));
        via.write(store, absent).await?;
        assert_eq!(rows(store, Table::Proposals).await?.len(), 2, "{via:?}");
    }
    let mut b = Batch::new();
    b.delete(Table::Proposals, b"p2");
    store.commit(b).await?;
    assert_eq!(store.get(Table::Proposals, b"p2").await?, None);
    assert_eq!(
        rows(store, Table::Proposals).await?,
        vec![(b"p1".to_vec(), b"one".to_vec())]
    );
    assert_eq!(
        store.scan_range(Table::Proposals, b"", None, 10).await?,
        vec![(b"p1".to_vec(), b"one".to_vec())]
    );
    assert_eq!(
        store.last(Table::Proposals).await?,
        Some((b"p1".to_vec(), b"one".to_vec()))
    );
    let mut claim = Batch::new();
    claim
        .check(Table::Proposals, b"p2", None)
        .put(Table::Proposals, b"p2", b"again".to_vec());
    store.commit(claim).await?;
    assert_eq!(
        store.get(Table::Proposals, b"p2").await?,
        Some(b"again".to_vec())
    );
    let mut all = Batch::new();
    all.delete(Table::Proposals, b"p1")
        .delete(Table::Proposals, b"p2");
    store.commit(all).await?;
    assert_eq!(rows(store, Table::Proposals).await?, Vec::new());
    assert_eq!(store.last(Table::Proposals).await?, None);
    Ok(())
}

/// An empty batch succeeds and changes nothing; a batch of checks only succeeds when they
/// hold and writes nothing either way.
pub(super) async fn empty_and_check_only_batches(engine: &dyn Engine) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    store.commit(put(Table::Purposes, b"p", b"json")).await?;
    let before = everything(store).await?;
    for via in EVERY_WAY {
        via.write(store, Batch::new()).await?;
        let mut holds = Batch::new();
        holds
            .check(Table::Purposes, b"p", Some(b"json"))
            .check(Table::Purposes, b"q", None);
        via.write(store, holds).await?;
        let mut fails = Batch::new();
        fails
            .check(Table::Purposes, b"q", None)
            .check(Table::Purposes, b"p", None);
        assert_conflict(
            via.write(store, fails).await,
            Table::Purposes,
            "a failing check-only batch",
        );
        assert_eq!(everything(store).await?, before, "{via:?}");
    }
    store.sync().await?;
    Ok(())
}

/// When a write returns `Ok` its batch is visible to every read of the handle at once
/// (`apply` and `apply_all` included: durability comes later, visibility does not); `sync`
/// succeeds after them.
pub(super) async fn applied_batches_are_visible_at_once(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    for (i, via) in EVERY_WAY.into_iter().enumerate() {
        let key = [0x10, u8::try_from(i).unwrap_or(u8::MAX)];
        via.write(store, put(Table::AuditEntries, &key, b"entry"))
            .await?;
        assert_eq!(
            store.get(Table::AuditEntries, &key).await?,
            Some(b"entry".to_vec()),
            "{via:?}"
        );
        assert_eq!(
            store.last(Table::AuditEntries).await?,
            Some((key.to_vec(), b"entry".to_vec())),
            "{via:?}"
        );
        assert_eq!(
            store.scan_prefix(Table::AuditEntries, &key).await?.len(),
            1,
            "{via:?}"
        );
    }
    store.sync().await?;
    Ok(())
}

/// Every table of [`Table::ALL`] exists and is its own namespace: one key in all of them
/// holds each table's own value, and writing or deleting it in one leaves the others. Keys
/// and values are any bytes: empty, NUL, 0xFF, every byte value.
pub(super) async fn tables_are_separate_and_keys_are_any_bytes(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let (_place, store) = fresh(engine).await?;
    let store = store.as_ref();
    let mut b = Batch::new();
    for table in Table::ALL {
        b.put(table, b"k", table.name().as_bytes().to_vec());
    }
    store.commit(b).await?;
    for table in Table::ALL {
        assert_eq!(
            store.get(table, b"k").await?,
            Some(table.name().as_bytes().to_vec()),
            "table {}",
            table.name()
        );
    }
    let mut b = Batch::new();
    b.delete(Table::Records, b"k")
        .put(Table::Consent, b"k", b"changed".to_vec());
    store.commit(b).await?;
    for table in Table::ALL {
        let expected = match table {
            Table::Records => None,
            Table::Consent => Some(b"changed".to_vec()),
            other => Some(other.name().as_bytes().to_vec()),
        };
        assert_eq!(store.get(table, b"k").await?, expected, "{}", table.name());
    }
    let every_byte: Vec<u8> = (0..=u8::MAX).collect();
    let keys: [&[u8]; 5] = [b"", b"\0", b"\0\0", &[0xFF; 3], &every_byte];
    for key in keys {
        let mut b = Batch::new();
        b.check(Table::SubjectKeys, key, None)
            .put(Table::SubjectKeys, key, every_byte.clone());
        store.commit(b).await?;
        assert_eq!(
            store.get(Table::SubjectKeys, key).await?,
            Some(every_byte.clone()),
            "key {key:02x?}"
        );
        let mut b = Batch::new();
        b.check(Table::SubjectKeys, key, Some(&every_byte));
        store.commit(b).await?;
    }
    // Those keys, and "k" from the start.
    assert_eq!(rows(store, Table::SubjectKeys).await?.len(), keys.len() + 1);
    Ok(())
}
