//! The store as the vault sees it: every row that decides who may do what is authenticated.
//!
//! [`AuthenticatedStore`] wraps an engine. For the tables [`Table::is_authenticated`] names
//! (clients, the token index, purposes, store metadata with the key-epoch dates and the
//! access log's anchor, the keyring, the access log's leaves, stored subtrees, checkpoints and cosignatures,
//! suppressions, the erasure journal, rights requests, admin proposals, the certificate
//! index, the email and phone indexes), it
//! appends a tag ([`RowKey`]: HMAC-SHA256 under a root-derived key over table, key and
//! value) to every value it writes, and verifies and strips it from every value it reads.
//! A row that does not verify is never handed to the vault: the read fails with
//! [`StoreError::Tampered`], naming the table and key. Preconditions ([`Check`]) compare stored bytes, and tags are
//! deterministic, so the wrapper turns an expected value into its stored form and checks
//! keep their meaning. A scan leaves out (and reports) the rows that do not verify, as if
//! they had been deleted; a point read or [`Store::last`] fails.
//!
//! Records, data keys and consent events need no tag: they are AEAD-sealed and bound to
//! their row already. Posting lists and the change feed are not authenticated (see
//! SECURITY.md for what a store writer can still do with them).
//!
//! Stores written before rows were authenticated are upgraded once, at open
//! ([`authenticate_existing_rows`]): each untagged row is tagged as it is, and a marker
//! ([`meta::ROWS_AUTHENTICATED`]) records that the store is authenticated from then on. The marker's
//! absence is only believed when the high-water mark kept beside the root key file does not
//! say otherwise (see `crate::audit::mark`).

use std::sync::Arc;

use async_trait::async_trait;

use super::schema::meta;
use super::{Batch, Check, Op, Store, StoreError, Table};
use crate::crypto::row_mac::{RowKey, TAG_LEN};

/// Rows copied per batch by the one-time upgrade.
const UPGRADE_CHUNK: usize = 1024;

impl Table {
    /// Whether rows of this table carry a [`RowKey`] tag.
    pub fn is_authenticated(self) -> bool {
        matches!(
            self,
            Table::Meta
                | Table::Keyring
                | Table::Purposes
                | Table::Clients
                | Table::ClientTokens
                | Table::AuditLeaves
                | Table::AuditNodes
                | Table::AuditCheckpoints
                | Table::AuditCosignatures
                | Table::Suppressions
                | Table::Erasures
                | Table::RightsRequests
                | Table::Proposals
                | Table::ClientCerts
                | Table::EmailIndex
                | Table::PhoneIndex
        )
    }
}

/// Whether the row at `key` of `table` carries a tag. The migration marker is the one
/// exception: copy tools write it into a bare engine, and it only ever blocks an open.
fn tagged(table: Table, key: &[u8]) -> bool {
    table.is_authenticated() && !(table == Table::Meta && key == meta::MIGRATION_INCOMPLETE)
}

/// A short, printable form of a row key for messages: the key itself when it is printable
/// text (client and purpose ids, metadata names), else its first bytes in hex.
pub fn describe_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()) => s.to_owned(),
        _ => {
            let shown = &key[..key.len().min(8)];
            let more = if key.len() > 8 { "…" } else { "" };
            format!("0x{}{more}", hex::encode(shown))
        }
    }
}

/// Rows whose verified bytes are remembered, at most (the cache is emptied when full).
const VERIFIED_CACHE_ROWS: usize = 4096;

/// The small, hot tables whose verified rows are remembered.
fn cached(table: Table) -> bool {
    matches!(
        table,
        Table::Purposes | Table::Clients | Table::ClientTokens
    )
}

/// Verified rows, by (table, key): the stored bytes, tag included.
type VerifiedRows = std::collections::HashMap<(Table, Vec<u8>), Vec<u8>>;

/// An engine whose security rows are authenticated; see the module documentation.
pub struct AuthenticatedStore {
    inner: Arc<dyn Store>,
    key: RowKey,
    verified: std::sync::RwLock<VerifiedRows>,
}

impl AuthenticatedStore {
    /// Wraps `inner`, tagging and verifying under `key`.
    pub fn new(inner: Arc<dyn Store>, key: RowKey) -> Self {
        Self {
            inner,
            key,
            verified: std::sync::RwLock::new(VerifiedRows::new()),
        }
    }

    fn open_row(
        &self,
        table: Table,
        key: &[u8],
        mut stored: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        if !tagged(table, key) {
            return Ok(stored);
        }
        if !self.seen_before(table, key, &stored) {
            if self.key.open(table.name(), key, &stored).is_none() {
                return Err(StoreError::Tampered {
                    table: table.name(),
                    key: describe_key(key),
                });
            }
            self.remember(table, key, &stored);
        }
        stored.truncate(stored.len() - TAG_LEN);
        Ok(stored)
    }

    /// Whether exactly these stored bytes verified at this row before. The small tables every
    /// call reads (the purpose registry, clients, the token index) are read over and over
    /// unchanged: comparing bytes is cheaper than an HMAC.
    fn seen_before(&self, table: Table, key: &[u8], stored: &[u8]) -> bool {
        if !cached(table) {
            return false;
        }
        let seen = self.verified.read().unwrap_or_else(|p| p.into_inner());
        seen.get(&(table, key.to_vec()))
            .is_some_and(|known| known.as_slice() == stored)
    }

    fn remember(&self, table: Table, key: &[u8], stored: &[u8]) {
        if !cached(table) {
            return;
        }
        let mut seen = self.verified.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= VERIFIED_CACHE_ROWS {
            seen.clear();
        }
        seen.insert((table, key.to_vec()), stored.to_vec());
    }

    /// The rows of a scan that verify. A row that does not is left out, as if it had been
    /// deleted (which a store writer can always do, so every reader copes with it already),
    /// and reported: a forged client or purpose is never used, and does not stop the
    /// vault from serving everything else.
    fn open_rows(&self, table: Table, rows: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
        rows.into_iter()
            .filter_map(|(k, v)| match self.open_row(table, &k, v) {
                Ok(v) => Some((k, v)),
                Err(_) => {
                    tracing::error!(
                        target: "vault::store",
                        table = table.name(),
                        key = %describe_key(&k),
                        "a row failed authentication (written, altered or moved outside the \
                         vault) and was left out"
                    );
                    None
                }
            })
            .collect()
    }

    /// `batch` as stored, in place: values of untagged tables are moved, not copied.
    fn seal_owned(&self, mut batch: Batch) -> Batch {
        for c in &mut batch.checks {
            if let Some(v) = &mut c.expect
                && tagged(c.table, &c.key)
            {
                let tag = self.key.tag(c.table.name(), &c.key, v);
                v.extend_from_slice(&tag);
            }
        }
        for op in &mut batch.ops {
            if let Op::Put { table, key, value } = op
                && tagged(*table, key)
            {
                let tag = self.key.tag(table.name(), key, value);
                value.extend_from_slice(&tag);
            }
        }
        batch
    }

    /// `batch` as stored: tags on every authenticated value written or expected.
    fn seal_batch(&self, batch: &Batch) -> Batch {
        let checks = batch
            .checks
            .iter()
            .map(|c| Check {
                table: c.table,
                key: c.key.clone(),
                expect: c.expect.as_ref().map(|v| {
                    if tagged(c.table, &c.key) {
                        self.key.seal(c.table.name(), &c.key, v)
                    } else {
                        v.clone()
                    }
                }),
            })
            .collect();
        let ops = batch
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { table, key, value } if tagged(*table, key) => Op::Put {
                    table: *table,
                    key: key.clone(),
                    value: self.key.seal(table.name(), key, value),
                },
                other => other.clone(),
            })
            .collect();
        Batch { checks, ops }
    }
}

#[async_trait]
impl Store for AuthenticatedStore {
    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.inner.get(table, key).await? {
            Some(v) => self.open_row(table, key, v).map(Some),
            None => Ok(None),
        }
    }

    async fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let rows = self.inner.scan_prefix(table, prefix).await?;
        Ok(self.open_rows(table, rows))
    }

    async fn scan_range(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let rows = self.inner.scan_range(table, start, end, limit).await?;
        Ok(self.open_rows(table, rows))
    }

    async fn last(&self, table: Table) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        match self.inner.last(table).await? {
            Some((k, v)) => {
                let v = self.open_row(table, &k, v)?;
                Ok(Some((k, v)))
            }
            None => Ok(None),
        }
    }

    async fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        self.inner.apply(self.seal_owned(batch)).await
    }

    async fn apply_all(&self, batches: &[&Batch]) -> Result<(), StoreError> {
        let sealed: Vec<Batch> = batches.iter().map(|b| self.seal_batch(b)).collect();
        let refs: Vec<&Batch> = sealed.iter().collect();
        self.inner.apply_all(&refs).await
    }

    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.inner.commit(self.seal_owned(batch)).await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
}

/// What [`authenticate_existing_rows`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpgradeReport {
    /// Rows that carried no tag and were tagged as they were.
    pub tagged: u64,
}

/// Tags, as they are, the rows of a store written before rows were authenticated, then sets
/// [`meta::ROWS_AUTHENTICATED`]. Rows that already verify are left alone, so two daemons upgrading
/// one shared store at once do no harm. The caller decides whether the store may be
/// trusted this once (see `crate::audit::mark`).
pub async fn authenticate_existing_rows(
    raw: &dyn Store,
    key: &RowKey,
) -> Result<UpgradeReport, StoreError> {
    let mut report = UpgradeReport::default();
    for table in Table::ALL.into_iter().filter(|t| t.is_authenticated()) {
        let mut start = Vec::new();
        loop {
            let rows = raw.scan_range(table, &start, None, UPGRADE_CHUNK).await?;
            let Some((last, _)) = rows.last() else { break };
            let mut next = last.clone();
            next.push(0);
            let mut b = Batch::new();
            for (k, v) in &rows {
                if !tagged(table, k) || key.open(table.name(), k, v).is_some() {
                    continue;
                }
                b.check(table, k, Some(v))
                    .put(table, k, key.seal(table.name(), k, v));
                report.tagged += 1;
            }
            if !b.ops.is_empty() {
                raw.commit(b).await?;
            }
            if rows.len() < UPGRADE_CHUNK {
                break;
            }
            start = next;
        }
    }
    let mut b = Batch::new();
    b.put(
        Table::Meta,
        meta::ROWS_AUTHENTICATED,
        key.seal(Table::Meta.name(), meta::ROWS_AUTHENTICATED, b"1"),
    );
    raw.commit(b).await?;
    Ok(report)
}

/// Every row of the small security tables (metadata, keyring, purposes, clients, token
/// index, checkpoints) that does not verify: what the daemon names at start.
pub async fn unverified_security_rows(
    raw: &dyn Store,
    key: &RowKey,
) -> Result<Vec<(&'static str, String)>, StoreError> {
    let mut bad = Vec::new();
    for table in [
        Table::Meta,
        Table::Keyring,
        Table::Purposes,
        Table::Clients,
        Table::ClientTokens,
        Table::AuditCheckpoints,
    ] {
        for (k, v) in raw.scan_prefix(table, b"").await? {
            if tagged(table, &k) && key.open(table.name(), &k, &v).is_none() {
                bad.push((table.name(), describe_key(&k)));
            }
        }
    }
    Ok(bad)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::crypto::{Key256, RootKey};
    use crate::storage::SledStore;
    use crate::storage::sled_store::SledOptions;

    fn row_key() -> RowKey {
        RowKey::derive(&RootKey::from_key(Key256::from_bytes(&[3u8; 32])))
    }

    fn stores() -> (tempfile::TempDir, Arc<dyn Store>, AuthenticatedStore) {
        let dir = tempfile::tempdir().unwrap();
        let raw: Arc<dyn Store> =
            Arc::new(SledStore::open(dir.path(), &SledOptions::default()).unwrap());
        let auth = AuthenticatedStore::new(Arc::clone(&raw), row_key());
        (dir, raw, auth)
    }

    #[tokio::test]
    async fn values_round_trip_and_checks_keep_their_meaning() {
        let (_d, raw, auth) = stores();
        let mut b = Batch::new();
        b.check(Table::Clients, b"c1", None)
            .put(Table::Clients, b"c1", b"v1".to_vec())
            .put(Table::Records, b"r", b"sealed".to_vec());
        auth.commit(b).await.unwrap();
        assert_eq!(
            auth.get(Table::Clients, b"c1").await.unwrap(),
            Some(b"v1".to_vec())
        );
        // Stored with its tag; untagged tables as they are.
        assert_eq!(
            raw.get(Table::Clients, b"c1").await.unwrap().unwrap().len(),
            2 + 32
        );
        assert_eq!(
            raw.get(Table::Records, b"r").await.unwrap(),
            Some(b"sealed".to_vec())
        );
        // A check against the value read holds; against another value it does not.
        let mut b = Batch::new();
        b.check(Table::Clients, b"c1", Some(b"v1"))
            .put(Table::Clients, b"c1", b"v2".to_vec());
        auth.commit(b).await.unwrap();
        let mut b = Batch::new();
        b.check(Table::Clients, b"c1", Some(b"v1"));
        assert!(matches!(auth.commit(b).await, Err(StoreError::Conflict(_))));
    }

    #[tokio::test]
    async fn forged_and_moved_rows_are_refused_by_every_read() {
        let (_d, raw, auth) = stores();
        let mut b = Batch::new();
        b.put(Table::Clients, b"a", b"admin".to_vec());
        auth.commit(b).await.unwrap();
        // Written behind the wrapper's back: no tag, or the tag of another row.
        let moved = raw.get(Table::Clients, b"a").await.unwrap().unwrap();
        let mut b = Batch::new();
        b.put(Table::Clients, b"forged", b"dpo".to_vec())
            .put(Table::Clients, b"moved", moved);
        raw.commit(b).await.unwrap();
        for key in [&b"forged"[..], b"moved"] {
            let refused = auth.get(Table::Clients, key).await;
            assert!(
                matches!(&refused, Err(StoreError::Tampered { table: "clients", key: k }) if k.as_bytes() == key),
                "{refused:?}"
            );
        }
        // Scans leave them out; the last row is refused.
        let listed = auth.scan_prefix(Table::Clients, b"").await.unwrap();
        assert_eq!(listed, vec![(b"a".to_vec(), b"admin".to_vec())]);
        let ranged = auth
            .scan_range(Table::Clients, b"", None, 10)
            .await
            .unwrap();
        assert_eq!(ranged, listed);
        assert!(auth.last(Table::Clients).await.is_err());
        let bad = unverified_security_rows(raw.as_ref(), &row_key())
            .await
            .unwrap();
        assert_eq!(
            bad,
            vec![
                ("clients", "forged".to_owned()),
                ("clients", "moved".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn the_upgrade_tags_old_rows_once() {
        let (_d, raw, auth) = stores();
        let mut b = Batch::new();
        for i in 0..(UPGRADE_CHUNK as u32 + 5) {
            b.put(Table::EmailIndex, &i.to_be_bytes(), b"id".to_vec());
        }
        b.put(Table::Meta, meta::MIGRATION_INCOMPLETE, b"1".to_vec());
        raw.commit(b).await.unwrap();
        assert!(
            auth.get(Table::EmailIndex, &0u32.to_be_bytes())
                .await
                .is_err()
        );
        let first = authenticate_existing_rows(raw.as_ref(), &row_key())
            .await
            .unwrap();
        assert_eq!(first.tagged, UPGRADE_CHUNK as u64 + 5);
        let again = authenticate_existing_rows(raw.as_ref(), &row_key())
            .await
            .unwrap();
        assert_eq!(again.tagged, 0, "tagged rows are not tagged twice");
        let last = (UPGRADE_CHUNK as u32 + 4).to_be_bytes();
        assert_eq!(
            auth.get(Table::EmailIndex, &last).await.unwrap(),
            Some(b"id".to_vec())
        );
        assert_eq!(
            auth.get(Table::Meta, meta::ROWS_AUTHENTICATED)
                .await
                .unwrap(),
            Some(b"1".to_vec())
        );
        // The migration marker stays as copy tools write it.
        assert_eq!(
            auth.get(Table::Meta, meta::MIGRATION_INCOMPLETE)
                .await
                .unwrap(),
            Some(b"1".to_vec())
        );
    }

    #[test]
    fn keys_are_described_without_dumping_bytes() {
        assert_eq!(describe_key(b"mailer"), "mailer");
        assert_eq!(describe_key(&[0u8; 32]), "0x0000000000000000…");
        assert_eq!(describe_key(&7u64.to_be_bytes()), "0x0000000000000007");
    }
}
