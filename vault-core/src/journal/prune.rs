//! Retention: removing whole segments older than the retention, keeping the signed
//! anchor and cut.

use super::*;

impl AuditLog {
    /// Removes whole segments of entries older than the retention, keeping the checkpoint
    /// at the cut as the signed anchor (leaf hashes are kept, for proofs).
    pub async fn prune_older_than(&self, cutoff_us: i64) -> Result<PruneReport> {
        let anchor_size = self.anchor().await?.map(|(c, _)| c.size).unwrap_or(0);
        let mut cut: Option<(u64, Vec<u8>)> = None;
        for signed in self.checkpoints(anchor_size + 1).await? {
            let last = self.entries(signed.size - 1, signed.size).await?;
            match last.first() {
                Some((_, e)) if e.at_us < cutoff_us => {
                    if let Some(raw) = self
                        .store
                        .get(Table::AuditCheckpoints, &seq_key(signed.size))
                        .await?
                    {
                        cut = Some((signed.size, raw));
                    }
                }
                _ => break,
            }
        }
        let Some((size, raw)) = cut else {
            return Ok(PruneReport {
                removed: 0,
                anchor_size,
            });
        };
        // The anchor first, with the signed statement of the cut: a crash mid-way leaves
        // entries before it, which exports skip.
        let (anchor, _) = self.parse_stored(&raw)?;
        let retention_us = i64::try_from(self.options.retention.as_micros()).unwrap_or(i64::MAX);
        let cut = self.key.sign_cut(&anchor, now_us(), retention_us.max(1));
        let mut b = Batch::new();
        b.put(Table::Meta, meta::AUDIT_ANCHOR, raw).put(
            Table::Meta,
            meta::AUDIT_CUT,
            serde_json::to_vec(&cut).map_err(|e| Error::Codec(e.to_string()))?,
        );
        self.store.commit(b).await?;
        let mut removed = 0;
        let mut next = anchor_size;
        while next < size {
            let upto = (next + SCAN_CHUNK as u64).min(size);
            let mut b = Batch::new();
            self.stage_prune_rows(&mut b, next, upto).await?;
            for seq in next..upto {
                b.delete(Table::AuditEntries, &seq_key(seq));
                b.delete(Table::AuditCheckpoints, &seq_key(seq));
            }
            self.store.commit(b).await?;
            removed += upto - next;
            next = upto;
        }
        Ok(PruneReport {
            removed,
            anchor_size: size,
        })
    }

    /// Prunes by the configured retention.
    pub async fn prune(&self) -> Result<PruneReport> {
        let cutoff = now_us().saturating_sub(self.options.retention.as_micros() as i64);
        self.prune_older_than(cutoff).await
    }
}
