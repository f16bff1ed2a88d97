//! The [`Store`] contract as a conformance suite: every promise of the trait's documentation
//! (`storage/mod.rs`), written as a property that fails when an engine breaks it.
//!
//! Why a suite rather than each engine's own tests: the vault's correctness under
//! concurrency rests on the seam alone (dedupe and read-modify-write are checks, not
//! locks), so every engine must keep exactly the same promises, and a new engine or a
//! wrapper ([`super::AuthenticatedStore`], [`super::HealthWatchedStore`]) must be held to
//! them by the same code. Each engine's tests call [`run_all`] with an [`Engine`]: sled in
//! a temporary directory (`sled_store.rs`), PostgreSQL in a fresh schema when
//! `VAULT_TEST_DATABASE_URL` is set (`postgres.rs`), and the layers the vault stacks on
//! them ([`VaultStack`], and [`Fallback`] for the documented fallback of
//! [`Store::apply_all`]).
//!
//! The properties, by file:
//! - `batches`: compare-and-set on absent and present keys, empty values, a check guarding
//!   writes to other keys and tables, atomicity of a failed batch, checks before writes,
//!   writes in order, deletes, empty and check-only batches, tables and key bytes.
//! - `groups`: [`Store::apply_all`]: each batch sees the ones before it, all or nothing.
//! - `scans`: prefix and range scans (order, bounds, limits, empty results) and `last`.
//! - `durability`: what was acknowledged is there after a reopen, and nothing else.
//! - `concurrency`: two handles: one winner among conflicting batches, no lost increment,
//!   a check guarding another key under concurrency, a batch visible all at once, each
//!   handle sees the other's acknowledged writes.
//!
//! No property depends on timing: concurrent ones start tasks together on a barrier and
//! assert only what must hold in every interleaving.

mod batches;
mod concurrency;
mod durability;
mod groups;
mod layers;
mod scans;

use std::sync::Arc;

use async_trait::async_trait;

pub(crate) use layers::{Fallback, VaultStack};

use super::{Batch, Store, StoreError, Table};

/// An engine under test: makes new, empty stores.
#[async_trait]
pub(crate) trait Engine: Send + Sync {
    /// Creates a new, empty store (a temporary directory, a fresh schema) and returns where
    /// it lives. The store is removed when the returned place is dropped.
    async fn create(&self) -> Result<Box<dyn Place>, StoreError>;
}

/// One store of an [`Engine`], opened as often as the suite needs.
#[async_trait]
pub(crate) trait Place: Send + Sync {
    /// Opens `handles` handles on this store, usable at the same time: independent
    /// connections where the engine has them (PostgreSQL: one pool each, as replicas have),
    /// else references to one open store (sled locks its directory to one opener per
    /// process). The suite drops every handle before it opens the store again, and calling
    /// this again after that is a reopen (what a restarted daemon sees).
    async fn open(&self, handles: usize) -> Result<Vec<Arc<dyn Store>>, StoreError>;
}

/// Runs every property of the contract against `engine`, each on a store of its own.
/// Returns the first failure as an error naming the property (an assertion that does not
/// hold panics, naming its file and line).
pub(crate) async fn run_all(engine: &dyn Engine) -> Result<(), StoreError> {
    macro_rules! properties {
        ($($module:ident::$property:ident),* $(,)?) => {
            $(
                $module::$property(engine).await.map_err(|e| {
                    StoreError::Engine(format!(
                        "contract property {}::{}: {e}",
                        stringify!($module),
                        stringify!($property)
                    ))
                })?;
            )*
        };
    }
    properties!(
        batches::compare_and_set_on_an_absent_key,
        batches::compare_and_set_on_a_present_key,
        batches::an_empty_value_is_present,
        batches::a_check_guards_writes_to_other_keys_and_tables,
        batches::a_failed_batch_applies_nothing,
        batches::checks_see_the_store_before_the_batch,
        batches::writes_apply_in_order,
        batches::deletes,
        batches::empty_and_check_only_batches,
        batches::applied_batches_are_visible_at_once,
        batches::tables_are_separate_and_keys_are_any_bytes,
        groups::each_batch_sees_the_ones_before_it,
        groups::a_failed_group_applies_nothing,
        groups::empty_groups,
        scans::scan_prefix_order_and_bounds,
        scans::scan_range_bounds_and_limits,
        scans::last_is_the_greatest_key,
        durability::acknowledged_writes_survive_a_reopen,
        concurrency::one_of_many_claims_of_an_absent_key_wins,
        concurrency::one_of_many_compare_and_sets_of_a_present_key_wins,
        concurrency::a_check_guards_another_key_under_concurrency,
        concurrency::concurrent_increments_lose_no_update,
        concurrency::one_of_two_conflicting_groups_wins,
        concurrency::a_batch_is_visible_all_at_once,
        concurrency::each_handle_sees_the_others_writes,
    );
    Ok(())
}

/// A fresh store of `engine` and one handle on it. Keep the place alive as long as the
/// handle (declare it first: dropped last).
async fn fresh(engine: &dyn Engine) -> Result<(Box<dyn Place>, Arc<dyn Store>), StoreError> {
    let place = engine.create().await?;
    let store = open_one(place.as_ref()).await?;
    Ok((place, store))
}

/// One handle on `place`.
async fn open_one(place: &dyn Place) -> Result<Arc<dyn Store>, StoreError> {
    let mut handles = place.open(1).await?;
    match (handles.pop(), handles.is_empty()) {
        (Some(store), true) => Ok(store),
        _ => Err(StoreError::Engine(
            "Place::open(1) did not return one handle".into(),
        )),
    }
}

/// Two handles on `place`, usable at the same time.
async fn open_two(place: &dyn Place) -> Result<[Arc<dyn Store>; 2], StoreError> {
    let handles = place.open(2).await?;
    <[Arc<dyn Store>; 2]>::try_from(handles)
        .map_err(|_| StoreError::Engine("Place::open(2) did not return two handles".into()))
}

/// A batch of one put.
fn put(table: Table, key: &[u8], value: &[u8]) -> Batch {
    let mut b = Batch::new();
    b.put(table, key, value.to_vec());
    b
}

/// Every pair of `table`, in key order.
async fn rows(store: &dyn Store, table: Table) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
    store.scan_prefix(table, b"").await
}

/// Every pair of every table: the whole store, to compare before and after.
async fn everything(store: &dyn Store) -> Result<Vec<Vec<(Vec<u8>, Vec<u8>)>>, StoreError> {
    let mut all = Vec::with_capacity(Table::ALL.len());
    for table in Table::ALL {
        all.push(rows(store, table).await?);
    }
    Ok(all)
}

/// Asserts that `result` is the conflict of a check on `table`.
#[track_caller]
fn assert_conflict(result: Result<(), StoreError>, table: Table, what: &str) {
    assert_eq!(
        result,
        Err(StoreError::Conflict(table.name())),
        "{what}: expected a conflict on table {}",
        table.name()
    );
}
