//! Placeholder for the erasure-journal replay that a restore runs after replacing the store.
//!
//! REPLACE-WITH-ORCHESTRATOR-IMPL: the real `replay_erasures` (erase again every subject of
//! the journal still present in the restored store) is written in parallel on another
//! branch and replaces this file at merge. Until then it erases nothing.

use crate::error::Result;

use super::Vault;

// REPLACE-WITH-ORCHESTRATOR-IMPL
impl Vault {
    /// Replays an erasure journal (`subject id -> erasure receipt JSON` rows of
    /// [`crate::storage::Table::Erasures`]) on this vault; returns how many supporters it
    /// erased again. Placeholder: erases nothing and returns 0.
    pub async fn replay_erasures(&self, journal: Vec<(Vec<u8>, Vec<u8>)>) -> Result<u64> {
        drop(journal);
        Ok(0)
    }
}
