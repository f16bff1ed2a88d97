//! The store's health as the vault sees it, and the probe that finds out whether writes
//! work again (see `storage::health`).

use super::Vault;
use crate::Result;
use crate::storage::schema::meta;
use crate::storage::{Batch, StoreHealth, Table};

impl Vault {
    /// Whether the store accepts writes: `None`, or why not. Follow it with
    /// [`StoreHealth::subscribe`].
    pub fn store_health(&self) -> &StoreHealth {
        &self.health
    }

    /// Writes one small row durably, so that a store that refused writes is seen to accept
    /// them again (which clears [`Vault::store_health`]), or to still refuse them. The
    /// daemon calls it while its health service says `NOT_SERVING`.
    pub async fn probe_store(&self) -> Result<()> {
        let now = super::now_us();
        let mut batch = Batch::new();
        batch.put(Table::Meta, meta::STORE_PROBE, now.to_be_bytes().to_vec());
        Ok(self.store.commit(batch).await?)
    }
}
