//! The journal's tests: gapless sequence numbers, holds, group commit, restart, retention,
//! stored subtrees and paged exports.

use super::*;
use crate::audit::file::{self, Problem};
use crate::crypto::Key256;
use crate::journal::Outcome;
use crate::storage::sled_store::{SledOptions, SledStore};

fn root() -> RootKey {
    RootKey::from_key(Key256::from_bytes(&[9; 32]))
}

fn entry(i: u64, at_us: i64) -> AccessEntry {
    AccessEntry {
        at_us,
        request_id: format!("r{i}"),
        client_id: "c".into(),
        role: "campaign-tool",
        rpc: "Supporters.Get".into(),
        purpose: Some("membership".into()),
        subjects: vec![format!("s{i}")],
        fields: vec!["email"],
        outcome: Outcome::Allowed,
        request_ref: None,
        changes: Vec::new(),
    }
}

async fn open(dir: &std::path::Path, every: u64) -> (Arc<dyn Store>, AuditLog) {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir, &SledOptions::default()).unwrap());
    let options = AuditOptions {
        checkpoint_every: every,
        ..AuditOptions::default()
    };
    let log = AuditLog::open(Arc::clone(&store), &root(), options)
        .await
        .unwrap();
    (store, log)
}

#[tokio::test]
async fn a_failed_write_consumes_no_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path(), 4).await;
    log.append(Batch::new(), &entry(0, 1)).await.unwrap();
    let mut failing = Batch::new();
    failing.check(Table::Records, b"absent", Some(b"expected"));
    assert!(log.append(failing, &entry(1, 2)).await.is_err());
    assert_eq!(log.append(Batch::new(), &entry(2, 3)).await.unwrap(), 1);
    assert_eq!(log.size().await, 2);
    assert!(
        store
            .get(Table::AuditEntries, &seq_key(2))
            .await
            .unwrap()
            .is_none()
    );
    let exported = log.export(None, None).await.unwrap();
    assert_eq!(
        file::verify(&exported, &log.public_key()).unwrap().entries,
        2
    );
}

#[tokio::test]
async fn a_hold_keeps_writes_back_but_lets_lone_entries_through() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path(), 3).await;
    let log = Arc::new(log);
    log.append(Batch::new(), &entry(0, 1)).await.unwrap();
    let (started_tx, started_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let holder = {
        let (log, store) = (Arc::clone(&log), Arc::clone(&store));
        tokio::spawn(async move {
            log.hold_writes(move |size| async move {
                let _ = started_tx.send(size);
                let _ = release_rx.await;
                Ok(store.get(Table::Records, b"k").await?)
            })
            .await
        })
    };
    assert_eq!(started_rx.await.unwrap(), 1, "the size at the hold");
    let write = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            let mut b = Batch::new();
            b.put(Table::Records, b"k", b"v".to_vec());
            log.append(b, &entry(1, 2)).await
        })
    };
    // Entries alone (reads) still go through, after the held size.
    assert_eq!(log.append(Batch::new(), &entry(2, 3)).await.unwrap(), 1);
    assert_eq!(log.append(Batch::new(), &entry(3, 4)).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!write.is_finished(), "the write waits for the hold");
    assert_eq!(store.get(Table::Records, b"k").await.unwrap(), None);
    release_tx.send(()).unwrap();
    assert_eq!(
        holder.await.unwrap().unwrap(),
        None,
        "the task saw no write"
    );
    assert_eq!(write.await.unwrap().unwrap(), 3);
    assert_eq!(
        store.get(Table::Records, b"k").await.unwrap(),
        Some(b"v".to_vec())
    );
    let v = file::verify(&log.export(None, None).await.unwrap(), &log.public_key()).unwrap();
    assert_eq!(v.entries, 4);
    // A failing task reports its error, and the writer goes on.
    let e = log
        .hold_writes(|_| async { Err::<(), _>(Error::Codec("boom".into())) })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Codec(_)));
    assert_eq!(log.append(Batch::new(), &entry(4, 5)).await.unwrap(), 4);
}

#[tokio::test]
async fn a_group_of_writes_applies_together_and_a_losing_claim_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path(), 5).await;
    let log = Arc::new(log);
    // Holding writes makes every write below wait, so they reach the writer as one group.
    let (release_tx, release_rx) = oneshot::channel::<()>();
    let holder = {
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            log.hold_writes(move |_| async move {
                let _ = release_rx.await;
                Ok(())
            })
            .await
        })
    };
    let writes: Vec<_> = (0..40u64)
        .map(|i| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut b = Batch::new();
                if i == 7 || i == 23 {
                    // Two claims of one key: whichever comes second must fail.
                    b.check(Table::EmailIndex, b"dup", None).put(
                        Table::EmailIndex,
                        b"dup",
                        i.to_be_bytes().to_vec(),
                    );
                }
                b.put(Table::Records, &i.to_be_bytes(), b"v".to_vec());
                (i, log.append(b, &entry(i, i as i64)).await)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    release_tx.send(()).unwrap();
    holder.await.unwrap().unwrap();
    let mut seqs = Vec::new();
    let mut failed = Vec::new();
    for w in writes {
        match w.await.unwrap() {
            (_, Ok(seq)) => seqs.push(seq),
            (i, Err(_)) => failed.push(i),
        }
    }
    assert_eq!(failed.len(), 1, "exactly one claim loses: {failed:?}");
    let loser = failed[0];
    assert!(loser == 7 || loser == 23);
    seqs.sort_unstable();
    assert_eq!(seqs, (0..39).collect::<Vec<_>>(), "no sequence number lost");
    let winner = if loser == 7 { 23u64 } else { 7 };
    assert_eq!(
        store.get(Table::EmailIndex, b"dup").await.unwrap(),
        Some(winner.to_be_bytes().to_vec())
    );
    assert_eq!(
        store
            .get(Table::Records, &loser.to_be_bytes())
            .await
            .unwrap(),
        None,
        "the losing write left nothing"
    );
    let v = file::verify(&log.export(None, None).await.unwrap(), &log.public_key()).unwrap();
    assert_eq!(v.entries, 39);
}

#[tokio::test]
async fn concurrent_appends_form_one_verifiable_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (_, log) = open(dir.path(), 7).await;
    let log = Arc::new(log);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.append(Batch::new(), &entry(i, i as i64)).await })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..200).collect::<Vec<_>>());
    let v = file::verify(&log.export(None, None).await.unwrap(), &log.public_key()).unwrap();
    assert_eq!((v.entries, v.end.size), (200, 200));
    assert!(v.checkpoints > 200 / 7);
}

#[tokio::test]
async fn restart_resumes_the_chain_and_proofs_hold_across_it() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let (_, log) = open(dir.path(), 5).await;
        for i in 0..13 {
            log.append(Batch::new(), &entry(i, 1)).await.unwrap();
        }
        let cp = log.checkpoint().await.unwrap().unwrap();
        log.close().await.unwrap();
        cp
    };
    let (_, log) = open(dir.path(), 5).await;
    assert_eq!(log.size().await, 13);
    for i in 13..31 {
        log.append(Batch::new(), &entry(i, 1)).await.unwrap();
    }
    let second = log.checkpoint().await.unwrap().unwrap();
    let (a, b) = (
        first.verify(&log.public_key()).unwrap(),
        second.verify(&log.public_key()).unwrap(),
    );
    let proof = log.consistency_proof(a.size, b.size).await.unwrap();
    merkle::verify_consistency(a.size, b.size, &a.root, &b.root, &proof).unwrap();
    // And every entry is provably in the new tree.
    let leaves = log.leaves(b.size).await.unwrap();
    for seq in [0, 12, 13, 30] {
        let proof = log.inclusion_proof(seq, b.size).await.unwrap();
        merkle::verify_inclusion(&leaves[seq as usize], seq, b.size, &proof, &b.root).unwrap();
    }
    let v = file::verify(&log.export(None, None).await.unwrap(), &log.public_key()).unwrap();
    assert_eq!(v.entries, 31);
    // A partial export verifies too, from the checkpoint before it.
    let part = log.export(Some(12), Some(20)).await.unwrap();
    let v = file::verify(&part, &log.public_key()).unwrap();
    assert_eq!((v.first_seq, v.end.size), (10, 25));
}

#[tokio::test]
async fn pruning_keeps_a_signed_anchor_and_exports_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path(), 4).await;
    for i in 0..10 {
        log.append(Batch::new(), &entry(i, 100)).await.unwrap(); // old
    }
    for i in 10..14 {
        log.append(Batch::new(), &entry(i, 10_000)).await.unwrap(); // recent
    }
    let report = log.prune_older_than(5_000).await.unwrap();
    // Checkpoints at 4, 8, 12: the segment up to 8 is entirely old; 12 holds recent ones.
    assert_eq!(
        report,
        PruneReport {
            removed: 8,
            anchor_size: 8
        }
    );
    assert!(
        store
            .get(Table::AuditEntries, &seq_key(7))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .get(Table::AuditEntries, &seq_key(8))
            .await
            .unwrap()
            .is_some()
    );
    let exported = log.export(None, None).await.unwrap();
    let v = file::verify(&exported, &log.public_key()).unwrap();
    assert_eq!((v.first_seq, v.entries), (8, 6));
    // The cut is the log's signed statement: the file is the whole retained log.
    let cut = v.cut.clone().unwrap();
    assert_eq!(cut.size, 8);
    assert_eq!(
        cut.retention_us,
        AuditOptions::default().retention.as_micros() as i64
    );
    let whole = file::Requirements {
        whole: true,
        ..file::Requirements::default()
    };
    assert!(file::verify_with(&exported, &log.public_key(), whole).is_ok());
    // A range export that starts later is sound, but not the whole log.
    let range = log.export(Some(12), None).await.unwrap();
    assert_eq!(
        file::verify(&range, &log.public_key()).unwrap().first_seq,
        12
    );
    let e = file::verify_with(&range, &log.public_key(), whole).unwrap_err();
    assert_eq!((e.problem, e.seq), (Problem::Missing, Some(12)));
    // The cut moved to a later size (re-signed by nobody): refused.
    let text = String::from_utf8(exported.clone()).unwrap();
    let moved = text.replacen("\"cut\":{\"size\":8,", "\"cut\":{\"size\":12,", 1);
    assert_ne!(moved, text);
    let e = file::verify(moved.as_bytes(), &log.public_key()).unwrap_err();
    assert_eq!(e.problem, Problem::BadSignature, "{e}");
    // The cut dropped from the file (a version 1 header): sound, but not the whole log.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut header: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    header["version"] = 1.into();
    header["start"].as_object_mut().unwrap().remove("cut");
    lines[0] = header.to_string();
    let v1 = lines.join("\n") + "\n";
    assert!(file::verify(v1.as_bytes(), &log.public_key()).is_ok());
    let e = file::verify_with(v1.as_bytes(), &log.public_key(), whole).unwrap_err();
    assert_eq!(e.problem, Problem::Missing);
    // Tampering after the anchor is still caught.
    let text = String::from_utf8(exported)
        .unwrap()
        .replacen("\"s9\"", "\"s0\"", 1);
    let e = file::verify(text.as_bytes(), &log.public_key()).unwrap_err();
    assert_eq!((e.problem, e.seq), (Problem::Edited, Some(9)));
    // Proofs still reach back before the anchor (leaf hashes and subtrees are kept),
    // and every one verifies against the signed root.
    let proof = log.inclusion_proof(2, 14).await.unwrap();
    assert!(!proof.is_empty());
    log.checkpoint().await.unwrap();
    let head = log.checkpoints(14).await.unwrap().pop().unwrap();
    let head = head.verify(&log.public_key()).unwrap();
    assert_eq!(head.size, 14);
    let leaves = log.leaves(14).await.unwrap();
    for seq in 0..14 {
        let proof = log.inclusion_proof(seq, 14).await.unwrap();
        merkle::verify_inclusion(&leaves[seq as usize], seq, 14, &proof, &head.root).unwrap();
    }
    let anchor = log.anchor().await.unwrap().unwrap().0;
    let proof = log.consistency_proof(anchor.size, 14).await.unwrap();
    merkle::verify_consistency(anchor.size, 14, &anchor.root, &head.root, &proof).unwrap();
    proofs_match_leaves(&log, [8, 9, 13, 14].into_iter()).await;
    // After a restart, the head comes back and appends continue the chain.
    log.close().await.unwrap();
    drop(log);
    drop(store);
    let (_, log) = open(dir.path(), 4).await;
    log.append(Batch::new(), &entry(14, 20_000)).await.unwrap();
    let v = file::verify(&log.export(None, None).await.unwrap(), &log.public_key()).unwrap();
    assert_eq!((v.first_seq, v.end.size), (8, 15));
}

/// The subtrees a log of `n` entries stores: those of level `STORED_FROM_LEVEL` up.
fn stored_nodes(n: u64) -> usize {
    (STORED_FROM_LEVEL..64).map(|l| (n >> l) as usize).sum()
}

async fn count(store: &Arc<dyn Store>, table: Table) -> usize {
    store
        .scan_range(table, &[], None, usize::MAX)
        .await
        .unwrap()
        .len()
}

/// Every proof the log gives up to its size equals the one computed from all leaves.
async fn proofs_match_leaves(log: &AuditLog, sizes: impl Iterator<Item = u64>) {
    let size = log.size().await;
    let leaves = log.leaves(size).await.unwrap();
    for n in sizes {
        for seq in 0..n {
            assert_eq!(
                log.inclusion_proof(seq, n).await.unwrap(),
                merkle::inclusion_proof(&leaves, seq, n).unwrap(),
                "inclusion of {seq} in {n}"
            );
        }
        for old in 0..=n {
            assert_eq!(
                log.consistency_proof(old, n).await.unwrap(),
                merkle::consistency_proof(&leaves, old, n).unwrap(),
                "consistency {old} -> {n}"
            );
        }
        assert_eq!(
            log.root_at(n).await.unwrap(),
            merkle::root(&leaves, n).unwrap()
        );
    }
}

#[tokio::test]
async fn proofs_from_stored_subtrees_equal_proofs_from_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (store, log) = open(dir.path(), 5).await;
    for i in 0..70 {
        log.append(Batch::new(), &entry(i, 1)).await.unwrap();
    }
    // One node per completed perfect subtree of a stored level.
    assert_eq!(count(&store, Table::AuditNodes).await, stored_nodes(70));
    proofs_match_leaves(&log, 1..=70).await;
    // Past the head: refused, as before.
    assert!(matches!(
        log.inclusion_proof(0, 71).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        log.inclusion_proof(70, 70).await,
        Err(Error::InvalidInput(_))
    ));
    assert!(matches!(
        log.consistency_proof(9, 8).await,
        Err(Error::InvalidInput(_))
    ));
}

#[tokio::test]
async fn a_store_written_without_subtrees_gets_them_once_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, log) = open(dir.path(), 6).await;
        for i in 0..45 {
            log.append(Batch::new(), &entry(i, 1)).await.unwrap();
        }
        log.close().await.unwrap();
        // What a build that kept no subtrees leaves: no nodes, no marker.
        let mut b = Batch::new();
        for (k, _) in store
            .scan_range(Table::AuditNodes, &[], None, usize::MAX)
            .await
            .unwrap()
        {
            b.delete(Table::AuditNodes, &k);
        }
        b.delete(Table::Meta, meta::AUDIT_NODES_BUILT);
        store.commit(b).await.unwrap();
        assert_eq!(count(&store, Table::AuditNodes).await, 0);
    }
    let (store, log) = open(dir.path(), 6).await;
    assert_eq!(count(&store, Table::AuditNodes).await, stored_nodes(45));
    assert_eq!(
        store
            .get(Table::Meta, meta::AUDIT_NODES_BUILT)
            .await
            .unwrap()
            .as_deref(),
        Some(NODES_VERSION)
    );
    proofs_match_leaves(&log, [1, 16, 31, 32, 33, 45].into_iter()).await;
    // Appends go on storing theirs.
    for i in 45..64 {
        log.append(Batch::new(), &entry(i, 1)).await.unwrap();
    }
    assert_eq!(count(&store, Table::AuditNodes).await, stored_nodes(64));
    proofs_match_leaves(&log, [64].into_iter()).await;
}

#[tokio::test]
async fn leaves_that_do_not_hash_to_the_signed_root_stop_the_build() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, log) = open(dir.path(), 4).await;
        for i in 0..8 {
            log.append(Batch::new(), &entry(i, 1)).await.unwrap();
        }
        log.close().await.unwrap();
        let mut b = Batch::new();
        b.delete(Table::Meta, meta::AUDIT_NODES_BUILT).put(
            Table::AuditLeaves,
            &seq_key(2),
            vec![7; 32],
        );
        store.commit(b).await.unwrap();
    }
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(dir.path(), &SledOptions::default()).unwrap());
    let e = AuditLog::open(store, &root(), AuditOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Integrity(_)), "{e}");
}

#[tokio::test]
async fn a_tampered_subtree_fails_and_a_missing_one_is_recomputed() {
    use crate::crypto::row_mac::RowKey;
    use crate::storage::AuthenticatedStore;
    let dir = tempfile::tempdir().unwrap();
    let raw: Arc<dyn Store> =
        Arc::new(SledStore::open(dir.path(), &SledOptions::default()).unwrap());
    let store: Arc<dyn Store> = Arc::new(AuthenticatedStore::new(
        Arc::clone(&raw),
        RowKey::derive(&root()),
    ));
    let options = AuditOptions {
        checkpoint_every: 8,
        ..AuditOptions::default()
    };
    let log = AuditLog::open(Arc::clone(&store), &root(), options)
        .await
        .unwrap();
    for i in 0..40 {
        log.append(Batch::new(), &entry(i, 1)).await.unwrap();
    }
    log.checkpoint().await.unwrap();
    let cp = log.checkpoints(40).await.unwrap().pop().unwrap();
    let cp = cp.verify(&log.public_key()).unwrap();
    let leaves = log.leaves(40).await.unwrap();
    let good = log.inclusion_proof(3, 40).await.unwrap();
    merkle::verify_inclusion(&leaves[3], 3, 40, &good, &cp.root).unwrap();
    // The path of leaf 3 in 40 reads the stored node (4, 1), leaves 16..32.
    let key = node_key(4, 1);
    let stored = raw.get(Table::AuditNodes, &key).await.unwrap().unwrap();
    // Deleted (a store writer can always delete): recomputed, the same proof.
    let mut b = Batch::new();
    b.delete(Table::AuditNodes, &key);
    raw.commit(b).await.unwrap();
    assert_eq!(log.inclusion_proof(3, 40).await.unwrap(), good);
    // Altered: refused, never a proof.
    let mut altered = stored.clone();
    altered[0] ^= 1;
    let mut b = Batch::new();
    b.put(Table::AuditNodes, &key, altered);
    raw.commit(b).await.unwrap();
    let e = log.inclusion_proof(3, 40).await.unwrap_err();
    assert!(matches!(e, Error::Integrity(_)), "{e}");
    assert!(log.consistency_proof(16, 40).await.is_err());
    // Another node's valid row moved here: refused too (the tag covers the key).
    let other = raw
        .get(Table::AuditNodes, &node_key(4, 0))
        .await
        .unwrap()
        .unwrap();
    let mut b = Batch::new();
    b.put(Table::AuditNodes, &key, other);
    raw.commit(b).await.unwrap();
    assert!(log.inclusion_proof(3, 40).await.is_err());
    // Put back: proofs are whole again.
    let mut b = Batch::new();
    b.put(Table::AuditNodes, &key, stored);
    raw.commit(b).await.unwrap();
    assert_eq!(log.inclusion_proof(3, 40).await.unwrap(), good);
}

/// The export as the single-buffer code before paging built it (frontiers from the
/// leaves): the paged export must equal it byte for byte.
async fn reference_export(log: &AuditLog, from_seq: Option<u64>, to_seq: Option<u64>) -> Vec<u8> {
    log.checkpoint().await.unwrap();
    let anchor = log.anchor().await.unwrap();
    let anchor_size = anchor.as_ref().map(|(c, _)| c.size).unwrap_or(0);
    let all = log.checkpoints(0).await.unwrap();
    let stored: Vec<(Checkpoint, SignedCheckpoint)> = all
        .iter()
        .map(|s| (s.verify(&log.public_key()).unwrap(), s.clone()))
        .collect();
    let head_size = log.size().await;
    let from = from_seq.unwrap_or(0).max(anchor_size);
    let want_end = to_seq
        .map(|t| t.saturating_add(1))
        .unwrap_or(head_size)
        .min(head_size);
    let start_cp = stored
        .iter()
        .rev()
        .find(|(c, _)| c.size <= from && c.size >= anchor_size);
    let start = match start_cp {
        Some((c, signed)) if c.size > 0 => {
            let mut frontier = Frontier::new();
            for leaf in log.leaves(c.size).await.unwrap() {
                frontier.push(leaf).unwrap();
            }
            Start {
                checkpoint: Some(signed.clone()),
                frontier: Some(hex::encode(frontier.to_bytes())),
                cut: log.cut().await.unwrap(),
            }
        }
        _ => Start::default(),
    };
    let start_size = start_cp.map(|(c, _)| c.size).unwrap_or(0);
    let (end_cp, end_signed) = stored
        .iter()
        .find(|(c, _)| c.size >= want_end.max(start_size))
        .unwrap()
        .clone();
    let mut out = file::header_line(&start, &end_signed);
    let between: std::collections::BTreeMap<u64, SignedCheckpoint> = stored
        .iter()
        .filter(|(c, _)| c.size > start_size && c.size < end_cp.size)
        .map(|(c, s)| (c.size, s.clone()))
        .collect();
    for (bytes, e) in log.entries(start_size, end_cp.size).await.unwrap() {
        out.extend(file::entry_line(&bytes));
        if let Some(cp) = between.get(&(e.seq + 1)) {
            out.extend(file::checkpoint_line(cp));
        }
    }
    out
}

/// The paged export, in pages of several sizes, equals the reference byte for byte,
/// and the streamed verification says what the offline verifier says of it.
async fn check_export(log: &AuditLog, from: Option<u64>, to: Option<u64>) {
    let reference = reference_export(log, from, to).await;
    for page in [1usize, 3, 4, 5, 4096] {
        let mut paged = log.export_stream(from, to).await.unwrap().with_page(page);
        let mut out = Vec::new();
        while let Some(c) = paged.next_chunk().await.unwrap() {
            out.extend(c);
        }
        assert!(out == reference, "{from:?}..{to:?} in pages of {page}");
    }
    let v = file::verify(&reference, &log.public_key()).unwrap();
    assert_eq!(log.verify(from, to).await.unwrap().unwrap(), v);
}

#[tokio::test]
async fn the_paged_export_is_the_single_buffer_file_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (_, log) = open(dir.path(), 4).await;
    for i in 0..10 {
        log.append(Batch::new(), &entry(i, 100)).await.unwrap();
    }
    for i in 10..37 {
        log.append(Batch::new(), &entry(i, 10_000)).await.unwrap();
    }
    let ranges = [
        (None, None),
        (Some(0), Some(0)),
        (Some(5), None),
        (Some(12), Some(20)),
        (Some(16), Some(16)),
        (None, Some(35)),
        (Some(36), None),
        (Some(1000), None),
    ];
    for (from, to) in ranges {
        check_export(&log, from, to).await;
    }
    // After pruning, from the anchor and its cut.
    let report = log.prune_older_than(5_000).await.unwrap();
    assert_eq!(report.anchor_size, 8);
    for (from, to) in ranges {
        check_export(&log, from, to).await;
    }
    // An entry edited in the store: the streamed verification finds it where it is.
    let mut e = AuditEntry::decode(
        &log.store
            .get(Table::AuditEntries, &seq_key(21))
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    e.subjects = vec!["someone-else".into()];
    let mut b = Batch::new();
    b.put(Table::AuditEntries, &seq_key(21), e.encode().unwrap());
    log.store.commit(b).await.unwrap();
    let found = log.verify(None, None).await.unwrap().unwrap_err();
    assert_eq!(
        (found.problem, found.seq),
        (Problem::Edited, Some(21)),
        "{found}"
    );
}

#[tokio::test]
async fn an_empty_log_exports_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (_, log) = open(dir.path(), 4).await;
    let v = log.verify(None, None).await.unwrap().unwrap();
    assert_eq!((v.entries, v.end.size), (0, 0));
    assert_eq!(count(&log.store, Table::AuditNodes).await, 0);
}
