//! Reading the log back: checkpoints, entries, leaves, inclusion and consistency proofs,
//! and verification of the stored log as an auditor verifies an export.

use super::*;

impl AuditLog {
    /// Signed checkpoints with size at least `since_size`, oldest first (the anchor
    /// included when it qualifies).
    pub async fn checkpoints(&self, since_size: u64) -> Result<Vec<SignedCheckpoint>> {
        let mut out = Vec::new();
        if let Some(raw) = self.store.get(Table::Meta, meta::AUDIT_ANCHOR).await? {
            let stored: StoredCheckpoint =
                serde_json::from_slice(&raw).map_err(|_| corrupt("audit anchor"))?;
            if stored.signed.size >= since_size {
                out.push(stored.signed);
            }
        }
        let mut from = since_size;
        loop {
            let rows = self
                .store
                .scan_range(Table::AuditCheckpoints, &seq_key(from), None, SCAN_CHUNK)
                .await?;
            let Some((last_key, _)) = rows.last() else {
                break;
            };
            from = parse_seq(last_key)? + 1;
            for (_, raw) in rows {
                let stored: StoredCheckpoint =
                    serde_json::from_slice(&raw).map_err(|_| corrupt("audit checkpoint"))?;
                if out.last().is_none_or(|c| c.size != stored.signed.size) {
                    out.push(stored.signed);
                }
            }
        }
        Ok(out)
    }

    /// Entries with `from <= seq < to`, oldest first, as stored bytes and parsed.
    pub async fn entries(&self, from: u64, to: u64) -> Result<Vec<(Vec<u8>, AuditEntry)>> {
        let mut out = Vec::new();
        let mut next = from;
        while next < to {
            let rows = self
                .store
                .scan_range(
                    Table::AuditEntries,
                    &seq_key(next),
                    Some(&seq_key(to)),
                    SCAN_CHUNK,
                )
                .await?;
            let Some((last_key, _)) = rows.last() else {
                break;
            };
            next = parse_seq(last_key)? + 1;
            for (_, bytes) in rows {
                let e = AuditEntry::decode(&bytes).ok_or(corrupt("audit entry"))?;
                out.push((bytes, e));
            }
        }
        Ok(out)
    }

    /// Every leaf hash below `size` (tests compare proofs from nodes with these).
    #[cfg(test)]
    pub(super) async fn leaves(&self, size: u64) -> Result<Vec<Hash>> {
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        while (out.len() as u64) < size {
            let rows = self
                .store
                .scan_range(
                    Table::AuditLeaves,
                    &seq_key(out.len() as u64),
                    Some(&seq_key(size)),
                    SCAN_CHUNK,
                )
                .await?;
            if rows.is_empty() {
                return Err(corrupt("audit leaves (gap in the log)"));
            }
            for (_, v) in rows {
                out.push(v.as_slice().try_into().map_err(|_| corrupt("audit leaf"))?);
            }
        }
        Ok(out)
    }

    /// Proof that entry `seq` is in the tree of `size` entries (RFC 9162 §2.1.3), from
    /// O(log size) stored subtrees.
    pub async fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>> {
        self.check_size(size).await?;
        let recorder = NodeRecorder::new();
        merkle::inclusion_proof_from_nodes(&recorder, seq, size).map_err(|e| {
            crate::error::Error::from(crate::error::InvalidInput::new(
                "seq",
                format!("no inclusion proof: {e}"),
            ))
        })?;
        let nodes = self.fetch_nodes(recorder.into_asked()).await?;
        merkle::inclusion_proof_from_nodes(&nodes, seq, size).map_err(|_| corrupt("audit node"))
    }

    /// Proof that the tree of `new_size` entries extends the one of `old_size`
    /// (RFC 9162 §2.1.4), from O(log new_size) stored subtrees.
    pub async fn consistency_proof(&self, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
        self.check_size(new_size).await?;
        let recorder = NodeRecorder::new();
        merkle::consistency_proof_from_nodes(&recorder, old_size, new_size).map_err(|e| {
            crate::error::Error::from(crate::error::InvalidInput::new(
                "from_size",
                format!("no consistency proof: {e}"),
            ))
        })?;
        let nodes = self.fetch_nodes(recorder.into_asked()).await?;
        merkle::consistency_proof_from_nodes(&nodes, old_size, new_size)
            .map_err(|_| corrupt("audit node"))
    }

    pub(super) async fn check_size(&self, size: u64) -> Result<()> {
        let current = self.size().await;
        if size > current {
            return Err(crate::error::InvalidInput::new(
                "size",
                format!("the log has {current} entries; ask for a size up to that"),
            )
            .into());
        }
        Ok(())
    }

    /// Verifies the stored log between the checkpoints enclosing `from_seq..=to_seq`, as an
    /// auditor would verify an export: the paged export fed to the streaming verifier, so
    /// memory stays at a page and the Merkle frontier whatever the log's length.
    pub async fn verify(
        &self,
        from_seq: Option<u64>,
        to_seq: Option<u64>,
    ) -> Result<std::result::Result<file::Verified, file::VerifyError>> {
        let mut export = self.export_stream(from_seq, to_seq).await?;
        let public_key = self.key.public_key();
        let mut verifier =
            file::StreamVerifier::new(&public_key, file::Requirements::default(), &[], 0);
        while let Some(chunk) = export.next_chunk().await? {
            if let Err(e) = verifier.push(&chunk) {
                return Ok(Err(e));
            }
        }
        Ok(verifier.finish())
    }

    /// The newest stored checkpoint with `lo <= size <= at`, verified, with its frontier.
    /// Searches back from `at` in windows that double, so the cost follows the distance to
    /// that checkpoint (one window of `checkpoint_every` entries, normally), not the log.
    pub(super) async fn newest_checkpoint_in(
        &self,
        lo: u64,
        at: u64,
    ) -> Result<Option<(Checkpoint, Frontier)>> {
        let end = at.saturating_add(1);
        let mut width = self.options.checkpoint_every.max(1);
        let mut window_end = end;
        while window_end > lo {
            let window_start = window_end.saturating_sub(width).max(lo);
            // The last row of the window: page through it (a window holds a few rows).
            let mut newest = None;
            let mut from = window_start;
            loop {
                let rows = self
                    .store
                    .scan_range(
                        Table::AuditCheckpoints,
                        &seq_key(from),
                        Some(&seq_key(window_end)),
                        SCAN_CHUNK,
                    )
                    .await?;
                let full = rows.len() == SCAN_CHUNK;
                let Some((last_key, raw)) = rows.into_iter().next_back() else {
                    break;
                };
                from = parse_seq(&last_key)? + 1;
                newest = Some(raw);
                if !full {
                    break;
                }
            }
            if let Some(raw) = newest {
                return Ok(Some(self.parse_stored(&raw)?));
            }
            window_end = window_start;
            width = width.saturating_mul(2);
        }
        Ok(None)
    }
}
