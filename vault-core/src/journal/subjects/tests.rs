//! The per-subject index: atomic with its entry, read only for the subject, checked on read,
//! cross-checked by verification, pruned with the log, built once for older stores.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::*;
use crate::crypto::Key256;
use crate::journal::{AccessEntry, Outcome};
use crate::journal::{AuditLog, AuditOptions};
use crate::storage::sled_store::{SledOptions, SledStore};
use crate::storage::{Store, StoreError};

fn root() -> RootKey {
    RootKey::from_key(Key256::from_bytes(&[9; 32]))
}

fn entry(i: u64, at_us: i64, subjects: &[&str]) -> AccessEntry {
    AccessEntry {
        at_us,
        request_id: format!("r{i}"),
        client_id: "c".into(),
        role: "campaign-tool",
        rpc: "Supporters.Get".into(),
        purpose: Some("membership".into()),
        subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
        fields: vec!["email"],
        outcome: Outcome::Allowed,
        request_ref: None,
        changes: Vec::new(),
    }
}

/// An engine that counts the access-log entries it hands out.
struct Counting {
    inner: Arc<dyn Store>,
    entries_read: AtomicU64,
}

impl Counting {
    fn note(&self, table: Table, rows: usize) {
        if table == Table::AuditEntries {
            self.entries_read.fetch_add(rows as u64, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl Store for Counting {
    async fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let v = self.inner.get(table, key).await?;
        self.note(table, usize::from(v.is_some()));
        Ok(v)
    }
    async fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let rows = self.inner.scan_prefix(table, prefix).await?;
        self.note(table, rows.len());
        Ok(rows)
    }
    async fn scan_range(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let rows = self.inner.scan_range(table, start, end, limit).await?;
        self.note(table, rows.len());
        Ok(rows)
    }
    async fn last(&self, table: Table) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.last(table).await
    }
    async fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        self.inner.apply(batch).await
    }
    async fn apply_all(&self, batches: &[&Batch]) -> Result<(), StoreError> {
        self.inner.apply_all(batches).await
    }
    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        self.inner.commit(batch).await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync().await
    }
}

async fn open(dir: &std::path::Path) -> (Arc<Counting>, AuditLog) {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir, &SledOptions::default()).unwrap());
    let counting = Arc::new(Counting {
        inner: store,
        entries_read: AtomicU64::new(0),
    });
    let options = AuditOptions {
        checkpoint_every: 16,
        ..AuditOptions::default()
    };
    let log = AuditLog::open(Arc::clone(&counting) as Arc<dyn Store>, &root(), options)
        .await
        .unwrap();
    (counting, log)
}

/// 200 entries over ten subjects (`s{i % 10}`), every fifth also naming `shared`.
async fn fill(log: &AuditLog) {
    for i in 0..200u64 {
        let s = format!("s{}", i % 10);
        let subjects: Vec<&str> = if i % 5 == 0 {
            vec![&s, "shared", &s]
        } else {
            vec![&s]
        };
        log.append(Batch::new(), &entry(i, i as i64, &subjects))
            .await
            .unwrap();
    }
}

fn seqs(found: &[(Vec<u8>, AuditEntry)]) -> Vec<u64> {
    found.iter().map(|(_, e)| e.seq).collect()
}

fn is_index_problem(e: &Error) -> bool {
    matches!(e, Error::Integrity(IntegrityObject::AccessLog(_)))
}

#[tokio::test]
async fn rows_commit_with_their_entry_and_a_failed_write_leaves_none() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path()).await;
    let seq = log
        .append(Batch::new(), &entry(0, 1, &["a", "b", "a"]))
        .await
        .unwrap();
    let key = SubjectIndexKey::derive(&root());
    for s in ["a", "b"] {
        let row = row_key(&key.hash(s), seq);
        assert_eq!(
            store.get(Table::AuditSubjects, &row).await.unwrap(),
            Some(Vec::new())
        );
    }
    // One row per distinct subject, and nothing else.
    assert_eq!(
        store
            .scan_prefix(Table::AuditSubjects, b"")
            .await
            .unwrap()
            .len(),
        2
    );
    // A write whose check fails is not applied: neither its entry nor its rows.
    let mut failing = Batch::new();
    failing.check(Table::Records, b"absent", Some(b"expected"));
    assert!(log.append(failing, &entry(1, 2, &["c"])).await.is_err());
    let row = row_key(&key.hash("c"), 1);
    assert_eq!(store.get(Table::AuditSubjects, &row).await.unwrap(), None);
    // The keys carry a keyed hash (under a root-derived key), never the id.
    let other = SubjectIndexKey::derive(&RootKey::from_key(Key256::from_bytes(&[8; 32])));
    assert_ne!(other.hash("a"), key.hash("a"));
}

#[tokio::test]
async fn a_subject_query_reads_only_that_subjects_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path()).await;
    fill(&log).await;
    let size = log.size().await;
    store.entries_read.store(0, Ordering::Relaxed);
    let found = log.subject_entries("s3", 0, size).await.unwrap();
    assert_eq!(
        seqs(&found),
        (0..20).map(|k| 3 + 10 * k).collect::<Vec<_>>()
    );
    assert!(
        found
            .iter()
            .all(|(_, e)| e.subjects.iter().any(|s| s == "s3"))
    );
    assert_eq!(
        store.entries_read.load(Ordering::Relaxed),
        20,
        "the twenty entries of s3, and not one more"
    );
    // An entry naming the subject twice is returned once; ranges are honoured.
    let shared = log.subject_entries("shared", 0, size).await.unwrap();
    assert_eq!(seqs(&shared), (0..40).map(|k| 5 * k).collect::<Vec<_>>());
    let part = log.subject_entries("s0", 20, 50).await.unwrap();
    assert_eq!(seqs(&part), vec![20, 30, 40]);
    assert!(
        log.subject_entries("nobody", 0, size)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_row_pointing_at_another_subjects_entry_is_an_integrity_error() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path()).await;
    fill(&log).await;
    let size = log.size().await;
    let key = SubjectIndexKey::derive(&root());
    // A store writer points s3's index at entry 4, which is s4's.
    let mut b = Batch::new();
    b.put(
        Table::AuditSubjects,
        &row_key(&key.hash("s3"), 4),
        Vec::new(),
    );
    store.commit(b).await.unwrap();
    let e = log.subject_entries("s3", 0, size).await.unwrap_err();
    assert!(is_index_problem(&e), "{e}");
    assert!(e.to_string().contains("entry 4"), "{e}");
    let check = log.check_subject_index(0, size).await.unwrap();
    assert_eq!((check.stray, check.first_stray), (1, Some(4)));
    assert!(check.into_result().is_err());
}

#[tokio::test]
async fn an_entry_rewritten_or_deleted_behind_its_row_is_an_integrity_error() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path()).await;
    fill(&log).await;
    let size = log.size().await;
    // Entry 13 (s3's) rewritten to name s3 but read by someone else: it no longer hashes
    // to its leaf.
    let raw = store
        .get(Table::AuditEntries, &seq_key(13))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw)
        .unwrap()
        .replacen("\"c\"", "\"x\"", 1);
    let mut b = Batch::new();
    b.put(Table::AuditEntries, &seq_key(13), text.into_bytes());
    store.commit(b).await.unwrap();
    let e = log.subject_entries("s3", 0, size).await.unwrap_err();
    assert!(
        is_index_problem(&e) && e.to_string().contains("leaf"),
        "{e}"
    );
    // Entry 23 deleted: its row now points at nothing.
    let mut b = Batch::new();
    b.delete(Table::AuditEntries, &seq_key(23));
    store.commit(b).await.unwrap();
    let e = log.subject_entries("s3", 20, size).await.unwrap_err();
    assert!(
        is_index_problem(&e) && e.to_string().contains("missing"),
        "{e}"
    );
}

#[tokio::test]
async fn a_deleted_row_hides_an_entry_from_queries_and_verification_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path()).await;
    fill(&log).await;
    let size = log.size().await;
    assert_eq!(
        log.check_subject_index(0, size)
            .await
            .unwrap()
            .into_result()
            .unwrap(),
        SubjectIndexCheck {
            entries: 200,
            rows: 240,
            ..SubjectIndexCheck::default()
        }
    );
    let key = SubjectIndexKey::derive(&root());
    let mut b = Batch::new();
    b.delete(Table::AuditSubjects, &row_key(&key.hash("s7"), 57));
    store.commit(b).await.unwrap();
    // The query cannot see what is not pointed at...
    let found = log.subject_entries("s7", 0, size).await.unwrap();
    assert_eq!(found.len(), 19);
    assert!(!seqs(&found).contains(&57));
    // ...but the cross-check can.
    let check = log.check_subject_index(0, size).await.unwrap();
    assert_eq!((check.missing, check.first_missing), (1, Some(57)));
    let e = check.into_result().unwrap_err();
    assert!(
        is_index_problem(&e) && e.to_string().contains("entry 57"),
        "{e}"
    );
}

#[tokio::test]
async fn pruning_removes_the_rows_of_the_entries_it_removes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path()).await;
    fill(&log).await; // at_us = seq
    let report = log.prune_older_than(100).await.unwrap();
    assert_eq!(report.anchor_size, 96, "checkpoints every 16 entries");
    let rows = store.scan_prefix(Table::AuditSubjects, b"").await.unwrap();
    assert!(
        rows.iter()
            .all(|(k, _)| row_seq(k).is_some_and(|s| s >= report.anchor_size)),
        "no row left for a pruned entry"
    );
    let size = log.size().await;
    let found = log.subject_entries("s3", 0, size).await.unwrap();
    assert_eq!(
        seqs(&found),
        (10..20).map(|k| 3 + 10 * k).collect::<Vec<_>>()
    );
    log.check_subject_index(0, size)
        .await
        .unwrap()
        .into_result()
        .unwrap();
}

#[tokio::test]
async fn a_store_without_the_index_is_indexed_once_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, log) = open(dir.path()).await;
        fill(&log).await;
        assert_eq!(log.index_subjects_once().await.unwrap(), 200);
        assert_eq!(log.index_subjects_once().await.unwrap(), 0, "marked done");
        // Make it a store from before the index: no rows, no marker.
        let mut b = Batch::new();
        for (k, _) in store.scan_prefix(Table::AuditSubjects, b"").await.unwrap() {
            b.delete(Table::AuditSubjects, &k);
        }
        b.delete(Table::Meta, meta::AUDIT_SUBJECTS_INDEXED);
        store.commit(b).await.unwrap();
        log.close().await.unwrap();
    }
    let (_, log) = open(dir.path()).await;
    let size = log.size().await;
    assert!(log.subject_entries("s3", 0, size).await.unwrap().is_empty());
    assert_eq!(log.index_subjects_once().await.unwrap(), 200);
    let found = log.subject_entries("s3", 0, size).await.unwrap();
    assert_eq!(
        seqs(&found),
        (0..20).map(|k| 3 + 10 * k).collect::<Vec<_>>()
    );
    log.check_subject_index(0, size)
        .await
        .unwrap()
        .into_result()
        .unwrap();
}
