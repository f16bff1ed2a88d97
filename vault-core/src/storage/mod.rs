//! The storage seam: what the vault needs from a storage engine, and nothing more.
//!
//! The vault stores only ciphertext, HMACs, ids and small counters, in a few named tables
//! of byte keys and byte values ([`schema`]: every table's layout and every metadata key). Engines implement [`Store`]: point reads, ordered scans and
//! atomic writes of a [`Batch`], applied only if all its [`Check`]s still hold. Checks are
//! how dedupe and read-modify-write stay correct under concurrency without in-memory locks,
//! so the same logic holds when several daemons share one database engine.
//!
//! # The contract
//!
//! Every engine, and every wrapper of one, keeps these promises; the conformance suite in
//! `storage/contract/` asserts each of them, and every engine's tests run it.
//!
//! - **Data.** Each [`Table`] is its own namespace of keys. Keys and values are any bytes,
//!   the empty string included; an empty value is present, not absent. Keys are ordered
//!   byte-wise (lexicographically, a prefix before its extensions), as scans return them.
//! - **Checks.** A [`Check`] holds when the key's current value is exactly `expect`'s bytes
//!   (`None`: the key is absent). All checks of a batch are evaluated against the store as
//!   it is at the moment the batch applies and before any of the batch's own writes,
//!   whatever the order they were added in; they hold across every handle and process
//!   sharing the store, so of two batches that cannot both pass their checks at most one
//!   applies (a check on one key also guards the batch's writes to other keys and tables).
//! - **Writes.** A batch's [`Op`]s apply in order: of several writes to one key, the last
//!   decides. Deleting an absent key is no error.
//! - **Atomicity.** A batch, or a group of batches given to [`Store::apply_all`], applies
//!   entirely or not at all. A failed check is [`StoreError::Conflict`] naming the table of
//!   a check that did not hold; nothing was written, and the caller re-reads and retries. An
//!   engine that lost a race to concurrent transactions as often as it retries one
//!   (PostgreSQL, after its own retries) reports [`StoreError::Contended`]: nothing was
//!   written either, and the operation is not run again (its retry would multiply the
//!   engine's). Every
//!   other error also means nothing was written, except two whose outcome is unknown: an
//!   [`StoreError::Engine`] error that says so (the connection to a database lost while it
//!   committed), and a failure to make writes durable ([`StoreError::NotDurable`], or
//!   [`StoreError::Unavailable`] from the wait for durability of `commit` or `sync`), after
//!   which the batch may be visible and may or may not survive a restart (the embedded
//!   engine then refuses every later write until it is reopened).
//! - **Visibility.** When a write returns `Ok`, every read that starts afterwards, on any
//!   handle, sees it. A batch becomes visible at once: once a read has returned any of its
//!   writes, every later read sees all of them. Reads are not snapshots across calls, and a
//!   scan running while batches apply may return some rows from before a batch and some
//!   from after it; pin what was read with checks.
//! - **Durability.** When [`Store::commit`] returns `Ok` the batch is durable (it survives
//!   `kill -9` and power loss as far as the OS and disk honour fsync). [`Store::apply`] and
//!   [`Store::apply_all`] make batches visible; they are durable once a later
//!   [`Store::sync`] returns `Ok`. After a reopen the store holds exactly what was durable.

pub mod authenticated;
#[cfg(test)]
mod contract;
pub mod copy;
mod group_commit;
pub mod health;
pub mod postgres;
pub mod postgres_tls;
pub mod schema;
pub mod sled_store;

use async_trait::async_trait;

pub use authenticated::AuthenticatedStore;
pub use health::{HealthWatchedStore, StoreHealth, Unavailable};
pub use postgres::{DatabaseUrl, PostgresOptions, PostgresStore};
pub use schema::Table;
pub use sled_store::SledStore;

/// A precondition of a batch: the current value of `key` in `table` is exactly the bytes
/// of `expect` (`None`: the key is absent; `Some` of an empty value: present and empty),
/// when the batch applies and before any of its writes.
#[derive(Clone, PartialEq, Eq)]
pub struct Check {
    /// Table to read.
    pub table: Table,
    /// Key to read.
    pub key: Vec<u8>,
    /// The value the key must hold, or `None` for absent.
    pub expect: Option<Vec<u8>>,
}

/// One write of a batch.
#[derive(Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put {
        /// Table written.
        table: Table,
        /// Key written.
        key: Vec<u8>,
        /// New value.
        value: Vec<u8>,
    },
    /// Remove `key` (no error when absent).
    Delete {
        /// Table written.
        table: Table,
        /// Key removed.
        key: Vec<u8>,
    },
}

/// An atomic unit of writes with its preconditions (see the module documentation's
/// contract).
#[derive(Clone, Default)]
pub struct Batch {
    /// Preconditions, all checked before any write, against the store as it is before
    /// the batch.
    pub checks: Vec<Check>,
    /// Writes, applied in order.
    pub ops: Vec<Op>,
}

// Batches hold ciphertext and HMACs only, but keep them out of logs anyway.
impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("checks", &self.checks.len())
            .field("ops", &self.ops.len())
            .finish()
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `key` to hold `expect` (or be absent, with `None`).
    pub fn check(&mut self, table: Table, key: &[u8], expect: Option<&[u8]>) -> &mut Self {
        self.checks.push(Check {
            table,
            key: key.to_vec(),
            expect: expect.map(<[u8]>::to_vec),
        });
        self
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, table: Table, key: &[u8], value: Vec<u8>) -> &mut Self {
        self.ops.push(Op::Put {
            table,
            key: key.to_vec(),
            value,
        });
        self
    }

    /// Removes `key`.
    pub fn delete(&mut self, table: Table, key: &[u8]) -> &mut Self {
        self.ops.push(Op::Delete {
            table,
            key: key.to_vec(),
        });
        self
    }

    /// One batch whose outcome is that of applying `batches` one after another, all or
    /// nothing: the fallback of [`Store::apply_all`] for an engine whose transactions take
    /// one batch.
    ///
    /// A check on a key that an earlier batch of the group writes is decided here, against
    /// that write (a failing one is [`StoreError::Conflict`] at once, and nothing is
    /// applied); every other check is kept, and sees the store as it is before the group,
    /// which is what it would see in turn since no earlier batch wrote its key. The ops are
    /// every batch's ops, in order.
    pub fn merged(batches: &[&Batch]) -> Result<Batch, StoreError> {
        use std::collections::HashMap;
        // What the group has written so far: `None` for a delete.
        let mut written: HashMap<(Table, &[u8]), Option<&[u8]>> = HashMap::new();
        let mut merged = Batch::new();
        for batch in batches {
            for check in &batch.checks {
                match written.get(&(check.table, check.key.as_slice())) {
                    Some(value) if *value != check.expect.as_deref() => {
                        return Err(StoreError::Conflict(check.table.name()));
                    }
                    Some(_) => {}
                    None => merged.checks.push(check.clone()),
                }
            }
            for op in &batch.ops {
                match op {
                    Op::Put { table, key, value } => {
                        written.insert((*table, key), Some(value));
                    }
                    Op::Delete { table, key } => {
                        written.insert((*table, key), None);
                    }
                }
                merged.ops.push(op.clone());
            }
        }
        Ok(merged)
    }
}

/// Storage failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A [`Check`] of the batch did not hold (another writer changed the row first): the
    /// string is the table of the failed check. Nothing was written; re-read and retry
    /// (`txn::retry!` does).
    #[error("a concurrent write changed table {0} first")]
    Conflict(&'static str),
    /// The engine lost the race for the batch to concurrent transactions as many times as it
    /// retries one (PostgreSQL: serialization failures, deadlocks, unique violations), without
    /// its checks ever failing: the string is a table the batch touches. Nothing was
    /// written. Not a [`StoreError::Conflict`]: the operation's retry does not run the
    /// attempt again (the engine's tries times the operation's would stack to a thousand
    /// waits); the call fails with ABORTED, for the client to retry later.
    #[error(
        "the database kept losing races for table {0} to concurrent writers and gave up          after its retries; nothing was written"
    )]
    Contended(&'static str),
    /// The engine failed (I/O error, corruption detected by the engine, ...).
    #[error("{0}")]
    Engine(String),
    /// An earlier flush to disk failed; the store refuses further writes rather than
    /// acknowledge writes it cannot make durable. Restart the daemon.
    #[error("the store could not make writes durable ({0}) and stopped accepting writes")]
    NotDurable(String),
    /// The store refuses writes for a reason outside the vault (a full disk, a read-only
    /// file system, an I/O error, a database out of space): nothing of the failed call was
    /// acknowledged; the operator must act (see [`Unavailable`]).
    #[error("the vault's store refused a write: {cause}")]
    Unavailable {
        /// What happened, and the remedy.
        cause: Unavailable,
        /// The engine's own words, for the server log (no personal data, no secret).
        detail: String,
    },
    /// A row of an authenticated table (see [`Table::is_authenticated`]) does not carry the
    /// tag the vault's root key gives it: it was written, altered or moved behind the
    /// vault's back. The row is not used.
    #[error(
        "the row {key} of table {table} failed authentication: it was written, altered or \
         moved outside the vault"
    )]
    Tampered {
        /// The table.
        table: &'static str,
        /// The row's key, as [`authenticated::describe_key`] prints it.
        key: String,
    },
}

/// What the vault needs from a storage engine. The module documentation states the contract
/// (checks, order of writes, atomicity, visibility, durability) every method keeps.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The value of `key` in `table`, `None` when absent.
    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every pair of `table` whose key starts with `prefix` (the empty prefix: the whole
    /// table), in key order; empty when none does. For small tables and bounded prefixes
    /// (the keyring, one subject's rows); large tables are read with [`Store::scan_range`].
    async fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;

    /// The first `limit` pairs of `table` with `start <= key < end` (`end: None`: to the
    /// last key), in key order: empty when `limit` is 0 or `start >= end`. Page on with
    /// `start` = the last key returned followed by a 0x00 byte.
    async fn scan_range(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError>;

    /// The pair with the greatest key of `table`, `None` when the table is empty.
    async fn last(&self, table: Table) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError>;

    /// Applies `batch` atomically if all its checks hold, making it visible to readers, but
    /// not necessarily durable yet: [`Store::sync`] then waits for durability. Lets a caller
    /// order batches under a short lock and wait for durability outside it (group commit).
    /// Engines whose commits are durable at once implement it as [`Store::commit`].
    async fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        self.commit(batch).await
    }

    /// Applies `batches` in order as one atomic unit, made visible but not necessarily
    /// durable (as [`Store::apply`]): each batch's checks see the writes of the batches
    /// before it, and if any check fails nothing at all is applied ([`StoreError::Conflict`]
    /// naming the table of a check that did not hold). An empty list is `Ok`. Lets the
    /// access-log writer apply a whole group of writes in one engine transaction.
    ///
    /// Required of every engine and every wrapper (a wrapper passes it on). The fallback for
    /// an engine whose transactions take one batch is `self.apply(Batch::merged(batches)?)`:
    /// [`Batch::merged`] folds the group into one batch with the same outcome.
    async fn apply_all(&self, batches: &[&Batch]) -> Result<(), StoreError>;

    /// Applies `batch` atomically if all its checks hold; returns once it is durable.
    async fn commit(&self, batch: Batch) -> Result<(), StoreError>;

    /// Returns once every write applied before the call (by [`Store::apply`],
    /// [`Store::apply_all`] or [`Store::commit`]) is durable.
    async fn sync(&self) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_decides_checks_on_the_groups_own_writes_and_keeps_the_others() {
        let mut claim = Batch::new();
        claim
            .check(Table::EmailIndex, b"h", None)
            .put(Table::EmailIndex, b"h", b"a".to_vec());
        let mut follow = Batch::new();
        follow
            .check(Table::EmailIndex, b"h", Some(b"a"))
            .check(Table::Records, b"r", Some(b"old"))
            .delete(Table::Records, b"r");
        let merged = Batch::merged(&[&claim, &follow]).unwrap();
        // The check of "h" against the group's own write is decided; the store sees the
        // claim's check and the check of "r", and every op in order.
        assert_eq!(merged.checks.len(), 2);
        // (`Check` and `Op` have no `Debug`: they hold key bytes.)
        assert!(merged.checks[0] == claim.checks[0] && merged.checks[1] == follow.checks[1]);
        assert_eq!(merged.ops.len(), 2);
        assert!(merged.ops[0] == claim.ops[0] && merged.ops[1] == follow.ops[0]);
        // A second claim, or a check of a deleted key's old value, cannot hold.
        assert_eq!(
            Batch::merged(&[&claim, &claim]).map(|_| ()),
            Err(StoreError::Conflict("index_email"))
        );
        let mut expects_deleted = Batch::new();
        expects_deleted.check(Table::Records, b"r", Some(b"old"));
        assert_eq!(
            Batch::merged(&[&follow, &expects_deleted]).map(|_| ()),
            Err(StoreError::Conflict("records"))
        );
        assert_eq!(Batch::merged(&[]).map(|b| b.ops.len()), Ok(0));
    }
}
