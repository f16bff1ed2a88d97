//! Two handles on one store, used at once (two replicas of the daemon on PostgreSQL; two
//! owners of one open store on sled). Checks must hold at the moment a batch applies, so
//! of conflicting batches at most one applies. Exactly one does here: a batch fails only
//! because another applied first, or on a race its engine gave up retrying, which a
//! handful of racers never exhausts (PostgreSQL retries ten times). Tasks start together
//! on a barrier; no assertion depends on timing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Barrier;
use tokio::task::JoinSet;

use super::{Engine, assert_conflict, open_two, put, rows};
use crate::storage::{Batch, Store, StoreError, Table};

/// Tasks racing in the many-writer properties, spread over the two handles.
const RACERS: usize = 16;

/// Runs `task(i, handle)` for `i` in `0..n`, alternating handles, all released at once;
/// returns their results in task order.
async fn race<T, F, Fut>(
    handles: &[Arc<dyn Store>; 2],
    n: usize,
    task: F,
) -> Result<Vec<T>, StoreError>
where
    T: Send + 'static,
    F: Fn(usize, Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let work = task(i, Arc::clone(&handles[i % 2]));
        let barrier = Arc::clone(&barrier);
        tasks.spawn(async move {
            barrier.wait().await;
            (i, work.await)
        });
    }
    let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined.map_err(|e| StoreError::Engine(format!("a task failed: {e}")))?;
        results[i] = Some(result);
    }
    Ok(results.into_iter().flatten().collect())
}

/// Many batches claim one absent key (check absent, put the key and a record of their
/// own): exactly one succeeds, every other gets a conflict on the key's table, and the
/// store holds the winner's key and record only, as both handles see it.
pub(super) async fn one_of_many_claims_of_an_absent_key_wins(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let place = engine.create().await?;
    let handles = open_two(place.as_ref()).await?;
    let results = race(&handles, RACERS, |i, store| async move {
        let id = format!("subject-{i}").into_bytes();
        let mut b = Batch::new();
        b.check(Table::EmailIndex, b"hmac-of-email", None)
            .put(Table::EmailIndex, b"hmac-of-email", id.clone())
            .put(Table::Records, &id, b"sealed".to_vec());
        (id, store.commit(b).await)
    })
    .await?;
    let mut winners = Vec::new();
    for (id, result) in results {
        match result {
            Ok(()) => winners.push(id),
            other => assert_conflict(other, Table::EmailIndex, "a losing claim"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    for store in &handles {
        assert_eq!(
            store.get(Table::EmailIndex, b"hmac-of-email").await?,
            Some(winners[0].clone())
        );
        assert_eq!(
            rows(store.as_ref(), Table::Records).await?,
            vec![(winners[0].clone(), b"sealed".to_vec())],
            "a losing claim wrote its record"
        );
    }
    Ok(())
}

/// Many batches compare-and-set one present key from the same value read: exactly one
/// succeeds, the others conflict, and the key holds the winner's value.
pub(super) async fn one_of_many_compare_and_sets_of_a_present_key_wins(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let place = engine.create().await?;
    let handles = open_two(place.as_ref()).await?;
    handles[0].commit(put(Table::Clients, b"c", b"v0")).await?;
    let results = race(&handles, RACERS, |i, store| async move {
        let value = format!("v{}", i + 1).into_bytes();
        let mut b = Batch::new();
        b.check(Table::Clients, b"c", Some(b"v0"))
            .put(Table::Clients, b"c", value.clone());
        (value, store.apply(b).await)
    })
    .await?;
    let mut winners = Vec::new();
    for (value, result) in results {
        match result {
            Ok(()) => winners.push(value),
            other => assert_conflict(other, Table::Clients, "a losing compare-and-set"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one compare-and-set wins");
    handles[0].sync().await?;
    for store in &handles {
        assert_eq!(
            store.get(Table::Clients, b"c").await?,
            Some(winners[0].clone())
        );
    }
    Ok(())
}

/// A check on one key guards a write to another under concurrency (no write skew): of two
/// batches, one checking `x` absent and writing `y`, the other checking `y` absent and
/// writing `x`, run at once from two handles, exactly one wins, round after round.
pub(super) async fn a_check_guards_another_key_under_concurrency(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let place = engine.create().await?;
    let handles = open_two(place.as_ref()).await?;
    for round in 0..10u8 {
        let x = [b'x', round];
        let y = [b'y', round];
        let results = race(&handles, 2, |i, store| async move {
            let (checked, written) = if i == 0 { (x, y) } else { (y, x) };
            let mut b = Batch::new();
            b.check(Table::Suppressions, &checked, None)
                .put(Table::Erasures, &written, b"mine".to_vec())
                .put(Table::Suppressions, &written, b"mine".to_vec());
            store.commit(b).await
        })
        .await?;
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            won, 1,
            "round {round}: {results:?}: exactly one guarded write wins"
        );
        for result in results.into_iter().filter(|r| r.is_err()) {
            assert_conflict(result, Table::Suppressions, "the guarded write that lost");
        }
        let present = [
            handles[1].get(Table::Suppressions, &x).await?.is_some(),
            handles[1].get(Table::Suppressions, &y).await?.is_some(),
        ];
        assert_eq!(
            present.iter().filter(|p| **p).count(),
            1,
            "round {round}: both guarded writes applied"
        );
        assert_eq!(
            present[0],
            handles[0].get(Table::Erasures, &x).await?.is_some(),
            "round {round}: the loser's write to the other table applied"
        );
    }
    Ok(())
}

/// Read-modify-write with retry on conflict, the vault's loop: many tasks on two handles
/// each add one to a counter, and the counter ends at the number of tasks.
pub(super) async fn concurrent_increments_lose_no_update(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let place = engine.create().await?;
    let handles = open_two(place.as_ref()).await?;
    let results = race(&handles, RACERS, |_, store| async move {
        // Each conflict means another task's increment applied in between, so a task
        // conflicts fewer times than there are tasks; the bound is generous for engines
        // that also report a lost race as a conflict (PostgreSQL after its own retries).
        for _ in 0..(RACERS * 20) {
            let current = store.get(Table::AuditCheckpoints, b"counter").await?;
            let n = match current.as_deref() {
                None => 0,
                Some(raw) => u64::from_be_bytes(
                    raw.try_into()
                        .map_err(|_| StoreError::Engine("the counter is not 8 bytes".into()))?,
                ),
            };
            let mut b = Batch::new();
            b.check(Table::AuditCheckpoints, b"counter", current.as_deref())
                .put(
                    Table::AuditCheckpoints,
                    b"counter",
                    (n + 1).to_be_bytes().to_vec(),
                );
            match store.commit(b).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Engine("an increment kept conflicting".into()))
    })
    .await?;
    for result in results {
        result?;
    }
    for store in &handles {
        assert_eq!(
            store.get(Table::AuditCheckpoints, b"counter").await?,
            Some((RACERS as u64).to_be_bytes().to_vec()),
            "an increment was lost"
        );
    }
    Ok(())
}

/// Two groups ([`Store::apply_all`]) from two handles that both claim one key: exactly one
/// group applies, entirely; nothing of the other does.
pub(super) async fn one_of_two_conflicting_groups_wins(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let place = engine.create().await?;
    let handles = open_two(place.as_ref()).await?;
    for round in 0..5u8 {
        let key = [b'h', round];
        let results = race(&handles, 2, |i, store| async move {
            let me = [b'a' + u8::try_from(i).unwrap_or(0), round];
            let mut claim = Batch::new();
            claim
                .check(Table::PhoneIndex, &key, None)
                .put(Table::PhoneIndex, &key, me.to_vec());
            let mut follow = Batch::new();
            follow.check(Table::PhoneIndex, &key, Some(&me)).put(
                Table::Records,
                &me,
                b"sealed".to_vec(),
            );
            let unrelated = put(Table::Changes, &me, b"change");
            (me, store.apply_all(&[&claim, &follow, &unrelated]).await)
        })
        .await?;
        let mut winners = Vec::new();
        for (me, result) in &results {
            let written = [
                handles[0].get(Table::Records, me).await?.is_some(),
                handles[0].get(Table::Changes, me).await?.is_some(),
            ];
            match result {
                Ok(()) => {
                    assert_eq!(
                        written,
                        [true, true],
                        "round {round}: a winner's group is partial"
                    );
                    winners.push(*me);
                }
                Err(_) => {
                    assert_conflict(result.clone(), Table::PhoneIndex, "the losing group");
                    assert_eq!(
                        written,
                        [false, false],
                        "round {round}: a losing group wrote"
                    );
                }
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one group wins");
        handles[1].sync().await?;
        assert_eq!(
            handles[1].get(Table::PhoneIndex, &key).await?,
            Some(winners[0].to_vec())
        );
    }
    Ok(())
}

/// A batch becomes visible all at once: while one handle writes batches setting two keys
/// (in two tables) to the same increasing number, readers on the other handle, reading
/// one key then the other, never see the second behind the first.
pub(super) async fn a_batch_is_visible_all_at_once(engine: &dyn Engine) -> Result<(), StoreError> {
    let place = engine.create().await?;
    let [writer, reader] = open_two(place.as_ref()).await?;
    let done = Arc::new(AtomicBool::new(false));
    let decode = |raw: Option<Vec<u8>>| -> Result<u64, StoreError> {
        match raw {
            None => Ok(0),
            Some(raw) => {
                Ok(u64::from_be_bytes(raw.as_slice().try_into().map_err(
                    |_| StoreError::Engine("a value is not 8 bytes".into()),
                )?))
            }
        }
    };
    let mut readers = JoinSet::new();
    for first_records in [true, false] {
        let reader = Arc::clone(&reader);
        let done = Arc::clone(&done);
        readers.spawn(async move {
            let (first, second) = if first_records {
                (Table::Records, Table::SubjectState)
            } else {
                (Table::SubjectState, Table::Records)
            };
            let mut reads = 0u64;
            loop {
                let finished = done.load(Ordering::Acquire);
                let a = decode(reader.get(first, b"k").await?)?;
                let b = decode(reader.get(second, b"k").await?)?;
                assert!(
                    b >= a,
                    "read {} = {a} then {} = {b}: half of a batch was visible",
                    first.name(),
                    second.name()
                );
                reads += 1;
                if finished {
                    return Ok::<u64, StoreError>(reads);
                }
                tokio::task::yield_now().await;
            }
        });
    }
    for i in 1..=200u64 {
        let mut b = Batch::new();
        b.put(Table::Records, b"k", i.to_be_bytes().to_vec()).put(
            Table::SubjectState,
            b"k",
            i.to_be_bytes().to_vec(),
        );
        writer.apply(b).await?;
    }
    writer.sync().await?;
    done.store(true, Ordering::Release);
    while let Some(joined) = readers.join_next().await {
        joined.map_err(|e| StoreError::Engine(format!("a reader failed: {e}")))??;
    }
    Ok(())
}

/// Whatever one handle's write returned `Ok` for, the other handle's reads see (get,
/// both scans, last), deletes included, and its checks hold against it.
pub(super) async fn each_handle_sees_the_others_writes(
    engine: &dyn Engine,
) -> Result<(), StoreError> {
    let place = engine.create().await?;
    let handles = open_two(place.as_ref()).await?;
    for (i, j) in [(0, 1), (1, 0)] {
        let (writer, reader) = (&handles[i], &handles[j]);
        let key = [b'k', u8::try_from(i).unwrap_or(0)];
        writer.commit(put(Table::Purposes, &key, b"one")).await?;
        assert_eq!(
            reader.get(Table::Purposes, &key).await?,
            Some(b"one".to_vec())
        );
        assert_eq!(
            reader.scan_prefix(Table::Purposes, &key).await?,
            vec![(key.to_vec(), b"one".to_vec())]
        );
        assert_eq!(
            reader.scan_range(Table::Purposes, &key, None, 1).await?,
            vec![(key.to_vec(), b"one".to_vec())]
        );
        assert_eq!(
            reader.last(Table::Purposes).await?.map(|(k, _)| k),
            Some(key.to_vec())
        );
        let mut next = Batch::new();
        next.check(Table::Purposes, &key, Some(b"one"))
            .put(Table::Purposes, &key, b"two".to_vec());
        reader.commit(next).await?;
        let mut stale = Batch::new();
        stale
            .check(Table::Purposes, &key, Some(b"one"))
            .delete(Table::Purposes, &key);
        assert_conflict(
            writer.commit(stale).await,
            Table::Purposes,
            "a check against the other handle's overwritten value",
        );
        let mut remove = Batch::new();
        remove.delete(Table::Purposes, &key);
        writer.commit(remove).await?;
        assert_eq!(reader.get(Table::Purposes, &key).await?, None);
    }
    assert_eq!(
        rows(handles[1].as_ref(), Table::Purposes).await?,
        Vec::new()
    );
    Ok(())
}
