//! The log's stored perfect subtrees ([`Table::AuditNodes`]): the one-time build for a store
//! written before they were kept, reading them back, and roots at any size.

use super::*;

impl Core {
    /// Stores the log's perfect subtrees once, for a store written before they were kept
    /// (marked in `Meta`, [`meta::AUDIT_NODES_BUILT`]): reads the leaves a page at a time, commits the
    /// nodes each page completes, and checks the tree they build against the head restored
    /// from the signed checkpoint. Idempotent (a node's hash depends on its leaves alone),
    /// so a crash midway or replicas racing through it are harmless; it starts over.
    pub(super) async fn build_nodes(&self, head: &Head) -> Result<()> {
        if self
            .store
            .get(Table::Meta, meta::AUDIT_NODES_BUILT)
            .await?
            .as_deref()
            == Some(NODES_VERSION)
        {
            return Ok(());
        }
        let total = head.frontier.size();
        if total > 0 {
            tracing::info!(
                target: "vault::audit",
                entries = total,
                "storing the access log's Merkle subtrees (once, for proofs and roots from \
                 O(log n) rows)"
            );
        }
        let mut frontier = Frontier::new();
        let mut pages = 0u64;
        loop {
            let rows = self
                .store
                .scan_range(
                    Table::AuditLeaves,
                    &seq_key(frontier.size()),
                    None,
                    SCAN_CHUNK,
                )
                .await?;
            if rows.is_empty() {
                break;
            }
            let mut b = Batch::new();
            for (k, v) in rows {
                if parse_seq(&k)? != frontier.size() {
                    return Err(corrupt("audit leaves (gap in the log)"));
                }
                let leaf: Hash = v.as_slice().try_into().map_err(|_| corrupt("audit leaf"))?;
                frontier
                    .push_completing(leaf, |level, index, hash| {
                        if level >= STORED_FROM_LEVEL {
                            b.put(Table::AuditNodes, &node_key(level, index), hash.to_vec());
                        }
                    })
                    .map_err(|_| corrupt("audit log size"))?;
                if frontier.size() == total && frontier.root() != head.frontier.root() {
                    return Err(rolled_back(format!(
                        "the stored leaves do not hash to the signed root at size {total}: \
                         leaves were altered in the store; investigate before starting"
                    )));
                }
            }
            self.store.commit(b).await?;
            pages += 1;
            if pages.is_multiple_of(BUILD_PROGRESS_EVERY) {
                tracing::info!(
                    target: "vault::audit",
                    done = frontier.size(),
                    entries = total,
                    "storing the access log's Merkle subtrees"
                );
            }
        }
        if frontier.size() < total {
            return Err(corrupt("audit leaves (gap in the log)"));
        }
        let mut b = Batch::new();
        b.put(Table::Meta, meta::AUDIT_NODES_BUILT, NODES_VERSION.to_vec());
        self.store.commit(b).await?;
        if total > 0 {
            tracing::info!(
                target: "vault::audit",
                entries = frontier.size(),
                "stored the access log's Merkle subtrees"
            );
        }
        Ok(())
    }

    /// The hash of node `(level, index)`: the leaf row at level 0, the stored subtree above.
    /// A subtree missing from the store (deleted, or written by a build that did not keep
    /// them) is recomputed from its halves: slower, never wrong, as leaves are
    /// authenticated rows too. A row that fails authentication is an error, not a gap.
    pub(super) fn node(
        &self,
        level: u8,
        index: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Hash>> + Send + '_>> {
        Box::pin(async move {
            if level == 0 {
                let raw = self
                    .store
                    .get(Table::AuditLeaves, &seq_key(index))
                    .await?
                    .ok_or(corrupt("audit leaves (gap in the log)"))?;
                return raw.as_slice().try_into().map_err(|_| corrupt("audit leaf"));
            }
            if level < STORED_FROM_LEVEL {
                // Not stored: hashed from its (at most 2^(STORED_FROM_LEVEL - 1)) leaves,
                // read in one range.
                let (first, width) = (index << level, 1u64 << level);
                let rows = self
                    .store
                    .scan_range(
                        Table::AuditLeaves,
                        &seq_key(first),
                        Some(&seq_key(first.saturating_add(width))),
                        SCAN_CHUNK,
                    )
                    .await?;
                let mut leaves = Vec::with_capacity(rows.len());
                for (k, v) in rows {
                    if parse_seq(&k)? != first + leaves.len() as u64 {
                        return Err(corrupt("audit leaves (gap in the log)"));
                    }
                    let leaf: Hash = v.as_slice().try_into().map_err(|_| corrupt("audit leaf"))?;
                    leaves.push(leaf);
                }
                return merkle::root(&leaves, width)
                    .map_err(|_| corrupt("audit leaves (gap in the log)"));
            }
            match self
                .store
                .get(Table::AuditNodes, &node_key(level, index))
                .await?
            {
                Some(raw) => raw.as_slice().try_into().map_err(|_| corrupt("audit node")),
                None => {
                    // `index < 2^(64 - level)`, so the children's indexes fit a u64.
                    let left = self.node(level - 1, index << 1).await?;
                    let right = self.node(level - 1, (index << 1) | 1).await?;
                    Ok(merkle::node_hash(&left, &right))
                }
            }
        })
    }

    /// The nodes a generator asked a [`NodeRecorder`] for, read from the store.
    pub(super) async fn fetch_nodes(
        &self,
        asked: Vec<(u8, u64)>,
    ) -> Result<std::collections::HashMap<(u8, u64), Hash>> {
        let mut nodes = std::collections::HashMap::with_capacity(asked.len());
        for (level, index) in asked {
            nodes.insert((level, index), self.node(level, index).await?);
        }
        Ok(nodes)
    }

    /// The root of the tree of the first `size` entries, from O(log size) stored nodes.
    pub(super) async fn root_at(&self, size: u64) -> Result<Hash> {
        let recorder = NodeRecorder::new();
        let _ = merkle::root_from_nodes(&recorder, size);
        let nodes = self.fetch_nodes(recorder.into_asked()).await?;
        merkle::root_from_nodes(&nodes, size).map_err(|_| corrupt("audit node"))
    }
}
