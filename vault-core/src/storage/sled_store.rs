//! The embedded engine: sled 0.34.7, one tree per [`Table`], in the data directory.
//!
//! Batches run as sled transactions over every tree, so checks and writes are atomic.
//! Durability comes from group commit (the `group_commit` module): sled's own periodic
//! flusher is turned off and a single thread of ours calls `flush`, so no two flushes
//! ever run concurrently.

use std::path::Path;

use async_trait::async_trait;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::group_commit::GroupCommit;
use super::{Batch, Op, Store, StoreError, Table, Unavailable};

/// Tuning for the embedded store.
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// Page cache size in bytes (sled's default is 1 GiB; ours is smaller so a national
    /// file fits comfortably in a small machine's memory).
    pub cache_capacity: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            cache_capacity: 256 * 1024 * 1024,
        }
    }
}

/// The sled-backed store.
pub struct SledStore {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    group_commit: GroupCommit,
}

fn engine(e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(e.to_string())
}

/// A sled error as a store error: an I/O error means the file system under the store is
/// not working (full, read-only, failing), which the operator must fix, so it is
/// [`StoreError::Unavailable`] with its cause; anything else (corruption, a bug) stays an
/// engine error.
fn classify(e: sled::Error) -> StoreError {
    match &e {
        sled::Error::Io(io) => StoreError::Unavailable {
            cause: Unavailable::of_io(io),
            detail: e.to_string(),
        },
        _ => engine(e),
    }
}

impl SledStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path, options: &SledOptions) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(options.cache_capacity)
            .flush_every_ms(None)
            .open()
            .map_err(|e| {
                StoreError::Engine(format!("cannot open the store in {}: {e}", dir.display()))
            })?;
        let trees = Table::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(classify)?;
        let flush_db = db.clone();
        let group_commit =
            GroupCommit::start(move || flush_db.flush().map(|_| ()).map_err(classify))
                .map_err(engine)?;
        Ok(Self {
            db,
            trees,
            group_commit,
        })
    }

    fn tree(&self, table: Table) -> &sled::Tree {
        &self.trees[table.position()]
    }

    /// The underlying tree, for tests that tamper with stored bytes.
    #[doc(hidden)]
    pub fn raw_tree(&self, table: Table) -> sled::Tree {
        self.tree(table).clone()
    }

    fn apply_batch(&self, batch: &Batch) -> Result<(), StoreError> {
        self.apply_batches(&[batch])
    }

    /// Applies `batches` in one transaction, each one's checks after the writes of those
    /// before it (a transaction's reads see its own writes).
    fn apply_batches(&self, batches: &[&Batch]) -> Result<(), StoreError> {
        // Transact over the touched trees only: sled's transactions cost per tree.
        let mut slot = [usize::MAX; Table::ALL.len()];
        let mut trees = Vec::with_capacity(Table::ALL.len());
        let tables = batches.iter().flat_map(|batch| {
            batch
                .checks
                .iter()
                .map(|c| c.table)
                .chain(batch.ops.iter().map(|op| match op {
                    Op::Put { table, .. } | Op::Delete { table, .. } => *table,
                }))
        });
        for table in tables {
            if slot[table.position()] == usize::MAX {
                slot[table.position()] = trees.len();
                trees.push(self.tree(table).clone());
            }
        }
        if trees.is_empty() {
            return Ok(());
        }
        let result = trees
            .as_slice()
            .transaction(|txs: &Vec<TransactionalTree>| {
                for batch in batches {
                    for check in &batch.checks {
                        let current = txs[slot[check.table.position()]].get(&check.key)?;
                        if current.as_deref() != check.expect.as_deref() {
                            return Err(ConflictableTransactionError::Abort(check.table));
                        }
                    }
                    for op in &batch.ops {
                        match op {
                            Op::Put { table, key, value } => {
                                txs[slot[table.position()]]
                                    .insert(key.as_slice(), value.as_slice())?;
                            }
                            Op::Delete { table, key } => {
                                txs[slot[table.position()]].remove(key.as_slice())?;
                            }
                        }
                    }
                }
                Ok(())
            });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(table)) => Err(StoreError::Conflict(table.name())),
            Err(TransactionError::Storage(e)) => Err(classify(e)),
        }
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // Stop the flusher (it flushes what is pending) before sled closes.
        self.group_commit.stop();
        let _ = self.db.flush();
    }
}

#[async_trait]
impl Store for SledStore {
    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(table)
            .get(key)
            .map_err(classify)?
            .map(|v| v.to_vec()))
    }

    async fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.tree(table)
            .scan_prefix(prefix)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(classify))
            .collect()
    }

    async fn scan_range(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let tree = self.tree(table);
        let iter = match end {
            Some(end) => tree.range(start..end),
            None => tree.range(start..),
        };
        iter.take(limit)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(classify))
            .collect()
    }

    async fn last(&self, table: Table) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        Ok(self
            .tree(table)
            .last()
            .map_err(classify)?
            .map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    async fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        if let Some(failure) = self.group_commit.failed() {
            return Err(failure);
        }
        self.apply_batch(&batch)
    }

    async fn apply_all(&self, batches: &[&Batch]) -> Result<(), StoreError> {
        if let Some(failure) = self.group_commit.failed() {
            return Err(failure);
        }
        self.apply_batches(batches)
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        if let Some(failure) = self.group_commit.failed() {
            return Err(failure);
        }
        self.apply_batch(&batch)?;
        self.group_commit.wait_durable().await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.group_commit.wait_durable().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;
    use crate::storage::contract::{self, Engine, Fallback, Place, VaultStack};

    /// sled in a temporary directory, for the contract suite.
    struct Sled;

    /// The directory of one store. sled locks its directory to one opener per process, so
    /// several handles are references to one open store.
    struct SledPlace(tempfile::TempDir);

    #[async_trait]
    impl Engine for Sled {
        async fn create(&self) -> Result<Box<dyn Place>, StoreError> {
            Ok(Box::new(SledPlace(tempfile::tempdir().map_err(engine)?)))
        }
    }

    #[async_trait]
    impl Place for SledPlace {
        async fn open(&self, handles: usize) -> Result<Vec<Arc<dyn Store>>, StoreError> {
            let store: Arc<dyn Store> =
                Arc::new(SledStore::open(self.0.path(), &SledOptions::default())?);
            Ok(vec![store; handles])
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sled_keeps_the_store_contract() -> Result<(), StoreError> {
        contract::run_all(&Sled).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_vault_stack_on_sled_keeps_the_store_contract() -> Result<(), StoreError> {
        contract::run_all(&VaultStack(Sled)).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_apply_all_fallback_on_sled_keeps_the_store_contract() -> Result<(), StoreError> {
        contract::run_all(&Fallback(Sled)).await
    }
}
