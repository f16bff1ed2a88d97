//! Engines built from other engines, so the layers above the seam are held to the contract
//! too: the stack the vault really reads through, and the documented fallback of
//! [`Store::apply_all`].

use std::sync::Arc;

use async_trait::async_trait;

use super::{Engine, Place};
use crate::crypto::row_mac::RowKey;
use crate::crypto::{Key256, RootKey};
use crate::storage::{
    AuthenticatedStore, Batch, HealthWatchedStore, Store, StoreError, StoreHealth, Table,
};

/// `E` as the vault opens it (`Vault::open`): an [`AuthenticatedStore`] over a
/// [`HealthWatchedStore`] over the engine. Tags on security rows and health reporting must
/// not change what a batch does.
pub(crate) struct VaultStack<E>(pub(crate) E);

struct StackPlace(Box<dyn Place>);

fn row_key() -> RowKey {
    RowKey::derive(&RootKey::from_key(Key256::from_bytes(&[0x5A; 32])))
}

#[async_trait]
impl<E: Engine> Engine for VaultStack<E> {
    async fn create(&self) -> Result<Box<dyn Place>, StoreError> {
        Ok(Box::new(StackPlace(self.0.create().await?)))
    }
}

#[async_trait]
impl Place for StackPlace {
    async fn open(&self, handles: usize) -> Result<Vec<Arc<dyn Store>>, StoreError> {
        let raw = self.0.open(handles).await?;
        Ok(raw
            .into_iter()
            .map(|engine| {
                let watched: Arc<dyn Store> =
                    Arc::new(HealthWatchedStore::new(engine, StoreHealth::default()));
                Arc::new(AuthenticatedStore::new(watched, row_key())) as Arc<dyn Store>
            })
            .collect())
    }
}

/// `E` with [`Store::apply_all`] replaced by the trait's documented fallback,
/// `apply(Batch::merged(batches)?)`: proves the fallback keeps the contract on an engine
/// that has a native implementation to compare with.
pub(crate) struct Fallback<E>(pub(crate) E);

struct FallbackPlace(Box<dyn Place>);

/// A store whose group apply is the fallback; everything else is the engine's.
struct FallbackStore(Arc<dyn Store>);

#[async_trait]
impl<E: Engine> Engine for Fallback<E> {
    async fn create(&self) -> Result<Box<dyn Place>, StoreError> {
        Ok(Box::new(FallbackPlace(self.0.create().await?)))
    }
}

#[async_trait]
impl Place for FallbackPlace {
    async fn open(&self, handles: usize) -> Result<Vec<Arc<dyn Store>>, StoreError> {
        let raw = self.0.open(handles).await?;
        Ok(raw
            .into_iter()
            .map(|engine| Arc::new(FallbackStore(engine)) as Arc<dyn Store>)
            .collect())
    }
}

#[async_trait]
impl Store for FallbackStore {
    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(table, key).await
    }

    async fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.0.scan_prefix(table, prefix).await
    }

    async fn scan_range(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.0.scan_range(table, start, end, limit).await
    }

    async fn last(&self, table: Table) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.0.last(table).await
    }

    async fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        self.0.apply(batch).await
    }

    async fn apply_all(&self, batches: &[&Batch]) -> Result<(), StoreError> {
        self.apply(Batch::merged(batches)?).await
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.0.commit(batch).await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.0.sync().await
    }
}
