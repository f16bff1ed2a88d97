//! Copying a whole store to another engine, byte for byte, without decrypting anything.
//!
//! This is what `vaultctl migrate --to postgres` runs: every row of every [`Table`] of the
//! source is written unchanged into the destination. The vault's data is ciphertext,
//! blind-index HMACs, ids and small counters, sealed under keys derived from the root key
//! file; the root key never enters the store, so the copy needs no key and opens nothing.
//! The destination is usable with the same root key file.
//!
//! Safety rails:
//! - the destination must be empty (every table), so a copy never merges two vaults;
//! - every row is written with a check that it is still absent, so a process writing to
//!   the destination during the copy makes it fail rather than silently interleave;
//! - a marker row ([`meta::MIGRATION_INCOMPLETE`] in [`Table::Meta`]) is written first and removed
//!   last: the vault refuses to open a store that still carries it, so an interrupted copy
//!   is never served as if it were complete;
//! - after each table is copied, the destination table is read back and compared with the
//!   source, row for row.

use super::schema::meta;
use super::{Batch, Store, StoreError, Table};

/// Rows per destination batch (one transaction each).
pub const DEFAULT_BATCH_ROWS: usize = 500;

/// How many rows of each table were copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Rows per table, in [`Table::ALL`] order.
    pub tables: Vec<(Table, u64)>,
}

impl CopyReport {
    /// All rows copied.
    pub fn total_rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The destination already holds data; nothing was written.
    #[error(
        "the destination already holds data (table {table}: {rows} rows){hint}; \
         nothing was copied"
    )]
    DestinationNotEmpty {
        /// The first non-empty table.
        table: &'static str,
        /// How many rows it holds.
        rows: usize,
        /// Extra advice (an interrupted earlier copy).
        hint: &'static str,
    },
    /// A destination row appeared during the copy: another process writes to it.
    #[error(
        "a row of table {0} appeared in the destination during the copy: another process \
         (a running daemon?) writes to it; stop it, empty the destination and copy again"
    )]
    ConcurrentWriter(&'static str),
    /// Reading back a copied table did not give the source rows.
    #[error("table {table}: the destination does not match the source after the copy ({why})")]
    Mismatch {
        /// The table.
        table: &'static str,
        /// What differs.
        why: String,
    },
    /// The source or the destination failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every row of `table`, in key order.
///
/// Built on [`Store::scan_prefix`] with an empty prefix, so the whole table is held in
/// memory at once: fine for the tables of a campaign's vault on a machine sized for it (a
/// million supporters is on the order of a gigabyte of sealed records), but a paged scan
/// belongs in the [`Store`] trait before this is used on much larger stores.
pub async fn scan_table(
    store: &dyn Store,
    table: Table,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
    store.scan_prefix(table, b"").await
}

/// Copies every row of every table of `from` into the empty store `to`, `batch_rows` rows
/// per transaction, then reads each table back to compare. Nothing is decrypted. See the
/// module documentation for the safety rails. Memory: one table at a time (twice, for the
/// comparison), see [`scan_table`].
pub async fn copy_store(
    from: &dyn Store,
    to: &dyn Store,
    batch_rows: usize,
) -> Result<CopyReport, CopyError> {
    copy_filtered(from, to, batch_rows, &Table::ALL, &|_, _| true).await
}

/// Which rows of a table a copy takes: `keep(table, key)`.
pub type RowFilter<'a> = &'a (dyn Fn(Table, &[u8]) -> bool + Sync);

/// Like [`copy_store`], but copies `tables` in that order (each table of [`Table::ALL`]
/// exactly once), and only the rows `keep` accepts. Backups use it to copy the access log
/// up to a given size while it keeps growing, and the metadata last.
pub async fn copy_filtered(
    from: &dyn Store,
    to: &dyn Store,
    batch_rows: usize,
    tables: &[Table],
    keep: RowFilter<'_>,
) -> Result<CopyReport, CopyError> {
    for table in Table::ALL {
        let rows = scan_table(to, table).await?;
        if !rows.is_empty() {
            let interrupted =
                table == Table::Meta && rows.iter().any(|(k, _)| k == meta::MIGRATION_INCOMPLETE);
            return Err(CopyError::DestinationNotEmpty {
                table: table.name(),
                rows: rows.len(),
                hint: if interrupted {
                    " (an earlier copy was interrupted: drop the destination's tables and copy again)"
                } else {
                    ""
                },
            });
        }
    }
    let mut marker = Batch::new();
    marker
        .check(Table::Meta, meta::MIGRATION_INCOMPLETE, None)
        .put(Table::Meta, meta::MIGRATION_INCOMPLETE, b"1".to_vec());
    commit_new_rows(to, marker).await?;
    copy_into_marked(from, to, batch_rows, tables, keep).await
}

/// The copy itself, into a destination that holds nothing but the [`meta::MIGRATION_INCOMPLETE`]
/// (written by [`copy_filtered`], or with the emptying of the destination, as a restore
/// into PostgreSQL does): copies and compares each table, then removes the marker and waits
/// for durability.
pub async fn copy_into_marked(
    from: &dyn Store,
    to: &dyn Store,
    batch_rows: usize,
    tables: &[Table],
    keep: RowFilter<'_>,
) -> Result<CopyReport, CopyError> {
    let batch_rows = batch_rows.max(1);
    let mut seen = [false; Table::ALL.len()];
    for table in tables {
        seen[table.position()] = true;
    }
    if tables.len() != Table::ALL.len() || seen.contains(&false) {
        return Err(CopyError::Store(StoreError::Engine(
            "a copy must name every table exactly once".to_owned(),
        )));
    }
    let is_marker =
        |table: Table, key: &[u8]| table == Table::Meta && key == meta::MIGRATION_INCOMPLETE;
    for table in Table::ALL {
        let mut rows = scan_table(to, table).await?;
        rows.retain(|(k, _)| !is_marker(table, k));
        if !rows.is_empty() {
            return Err(CopyError::DestinationNotEmpty {
                table: table.name(),
                rows: rows.len(),
                hint: "",
            });
        }
    }

    let mut report = CopyReport { tables: Vec::new() };
    for &table in tables {
        let mut rows = scan_table(from, table).await?;
        // A source that itself carries the marker (copied from an interrupted copy) would
        // be refused when opened anyway; do not carry it over.
        rows.retain(|(k, _)| !is_marker(table, k) && keep(table, k));
        for chunk in rows.chunks(batch_rows) {
            let mut b = Batch::new();
            for (key, value) in chunk {
                b.check(table, key, None).put(table, key, value.clone());
            }
            commit_new_rows(to, b).await?;
        }
        let mut copied = scan_table(to, table).await?;
        copied.retain(|(k, _)| !is_marker(table, k));
        if copied != rows {
            return Err(CopyError::Mismatch {
                table: table.name(),
                why: format!(
                    "{} rows in the source, {} read back",
                    rows.len(),
                    copied.len()
                ),
            });
        }
        report.tables.push((table, rows.len() as u64));
    }

    let mut done = Batch::new();
    done.check(Table::Meta, meta::MIGRATION_INCOMPLETE, Some(b"1"))
        .delete(Table::Meta, meta::MIGRATION_INCOMPLETE);
    commit_new_rows(to, done).await?;
    to.sync().await?;
    Ok(report)
}

async fn commit_new_rows(to: &dyn Store, batch: Batch) -> Result<(), CopyError> {
    match to.commit(batch).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict(table)) => Err(CopyError::ConcurrentWriter(table)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::storage::SledStore;
    use crate::storage::sled_store::SledOptions;

    fn open(dir: &std::path::Path) -> SledStore {
        SledStore::open(dir, &SledOptions::default()).unwrap()
    }

    #[tokio::test]
    async fn copies_every_table_byte_for_byte_and_refuses_a_full_destination() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let from = open(a.path());
        let to = open(b.path());
        let mut batch = Batch::new();
        for (i, table) in Table::ALL.iter().enumerate() {
            for j in 0..=i {
                let key = vec![u8::try_from(j).unwrap(), 0xFF];
                batch.put(*table, &key, vec![0u8, 1, 2, u8::try_from(i).unwrap()]);
            }
        }
        from.commit(batch).await.unwrap();

        let report = copy_store(&from, &to, 3).await.unwrap();
        assert_eq!(report.tables.len(), Table::ALL.len());
        for (i, (table, rows)) in report.tables.iter().enumerate() {
            assert_eq!(*table, Table::ALL[i]);
            assert_eq!(*rows, i as u64 + 1);
            assert_eq!(
                scan_table(&to, *table).await.unwrap(),
                scan_table(&from, *table).await.unwrap()
            );
        }
        let n = Table::ALL.len() as u64;
        assert_eq!(report.total_rows(), n * (n + 1) / 2);
        assert_eq!(
            to.get(Table::Meta, meta::MIGRATION_INCOMPLETE)
                .await
                .unwrap(),
            None
        );

        // A second copy into the now full destination is refused and writes nothing.
        let err = copy_store(&from, &to, 3).await.unwrap_err();
        assert!(
            matches!(err, CopyError::DestinationNotEmpty { table: "meta", .. }),
            "{err}"
        );
        assert_eq!(
            to.get(Table::Meta, meta::MIGRATION_INCOMPLETE)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn an_interrupted_copy_is_named_as_such() {
        let b = tempfile::tempdir().unwrap();
        let to = open(b.path());
        let mut batch = Batch::new();
        batch.put(Table::Meta, meta::MIGRATION_INCOMPLETE, b"1".to_vec());
        to.commit(batch).await.unwrap();
        let a = tempfile::tempdir().unwrap();
        let err = copy_store(&open(a.path()), &to, 10).await.unwrap_err();
        assert!(err.to_string().contains("interrupted"), "{err}");
    }
}
