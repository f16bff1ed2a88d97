//! The offline-verifiable export ([`Export`]), produced a page at a time.

use super::*;

impl AuditLog {
    /// The offline-verifiable file for entries `from_seq..=to_seq` (widened to the
    /// enclosing signed checkpoints; `None` means from the start / up to the head, which is
    /// checkpointed first), whole. Prefer [`AuditLog::export_stream`], which never holds
    /// more than a page of it.
    pub async fn export(&self, from_seq: Option<u64>, to_seq: Option<u64>) -> Result<Vec<u8>> {
        self.export_stream(from_seq, to_seq).await?.collect().await
    }

    /// The file of [`AuditLog::export`], produced a page of entries at a time: the header
    /// and the signed end are decided here (O(log n) reads), the entries and the
    /// checkpoints between them are read as [`Export::next_chunk`] is called.
    pub async fn export_stream(
        &self,
        from_seq: Option<u64>,
        to_seq: Option<u64>,
    ) -> Result<Export> {
        // The head gets a checkpoint first, so the export can end there.
        self.checkpoint().await?;
        let anchor = self.anchor().await?;
        let anchor_size = anchor.as_ref().map(|(c, _)| c.size).unwrap_or(0);
        // The head as of the newest checkpoint: entries appended since have none to end at.
        let head_size = match self.store.last(Table::AuditCheckpoints).await? {
            Some((_, raw)) => self.parse_stored(&raw)?.0.size,
            None => anchor_size,
        };
        let from = from_seq.unwrap_or(0).max(anchor_size);
        let want_end = to_seq
            .map(|t| t.saturating_add(1))
            .unwrap_or(head_size)
            .min(head_size);
        // Start: the newest checkpoint at or before `from`, not before the anchor (or the
        // beginning).
        let start_cp = match self.newest_checkpoint_in(anchor_size, from).await? {
            Some(found) => Some(found),
            None => anchor.clone().filter(|(c, _)| c.size <= from),
        };
        let start = match &start_cp {
            Some((c, frontier)) if c.size > 0 => Start {
                checkpoint: Some(self.key.sign(c)),
                frontier: Some(hex::encode(frontier.to_bytes())),
                cut: self.cut().await?,
            },
            _ if anchor_size > 0 => return Err(corrupt("audit anchor")),
            _ => Start::default(),
        };
        let start_size = start_cp.map(|(c, _)| c.size).unwrap_or(0);
        // End: the oldest checkpoint at or after the wanted end.
        let target = want_end.max(start_size);
        let stored_end = self
            .store
            .scan_range(Table::AuditCheckpoints, &seq_key(target), None, 1)
            .await?;
        let end = match stored_end.first() {
            Some((_, raw)) => Some(self.parse_stored(raw)?.0),
            None => anchor.map(|(c, _)| c).filter(|c| c.size >= target),
        };
        let end = match end {
            Some(c) => c,
            None if head_size == 0 => Checkpoint {
                size: 0,
                root: merkle::empty_root(),
                last_leaf: zero_hash(),
                at_us: now_us(),
            },
            None => return Err(corrupt("audit head checkpoint")),
        };
        let end_signed = self.key.sign(&end);
        Ok(Export {
            core: Arc::clone(&self.core),
            header: Some(file::header_line(&start, &end_signed)),
            end: end_signed,
            start_size,
            end_size: end.size,
            next: start_size,
            page: SCAN_CHUNK,
            trailer: Vec::new(),
            done: false,
        })
    }
}

/// An export being produced ([`AuditLog::export_stream`]): the header, then the entries a
/// page at a time with the signed checkpoints that fall between them, then any trailer
/// (witnessed lines). Holds the log's core, not the file: a page of entries at most.
pub struct Export {
    core: Arc<Core>,
    /// The header line, until the first chunk takes it.
    header: Option<Vec<u8>>,
    end: SignedCheckpoint,
    start_size: u64,
    end_size: u64,
    /// The next entry to read.
    next: u64,
    /// Entries per chunk.
    page: usize,
    trailer: Vec<u8>,
    done: bool,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("start_size", &self.start_size)
            .field("end_size", &self.end_size)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Export {
    /// The signed checkpoint the file ends at.
    pub fn signed_end(&self) -> &SignedCheckpoint {
        &self.end
    }

    /// The size the file starts at (its first entry's sequence number).
    pub fn start_size(&self) -> u64 {
        self.start_size
    }

    /// Entries per chunk from now on (at least one).
    #[must_use]
    pub fn with_page(mut self, entries: usize) -> Self {
        self.page = entries.max(1);
        self
    }

    /// Lines to write after the last entry (the witnessed lines of the signed end).
    pub fn push_trailer(&mut self, lines: &[u8]) {
        self.trailer.extend_from_slice(lines);
    }

    /// The next piece of the file, `None` once it is all out. The first holds the header;
    /// each holds at most a page of entries; the pieces concatenated are the file.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let mut out = self.header.take().unwrap_or_default();
        if self.next >= self.end_size {
            out.append(&mut self.trailer);
            self.done = true;
            return Ok((!out.is_empty()).then_some(out));
        }
        let upto = self
            .next
            .saturating_add(self.page as u64)
            .min(self.end_size);
        let store = &self.core.store;
        // The checkpoints strictly between start and end, each after the entry that brings
        // the log to its size: sizes `next + 1 ..= upto` for this page's entries.
        let mut between = std::collections::BTreeMap::new();
        let mut from = self.next + 1;
        let cp_end = upto.min(self.end_size - 1) + 1;
        while from < cp_end {
            let rows = store
                .scan_range(
                    Table::AuditCheckpoints,
                    &seq_key(from),
                    Some(&seq_key(cp_end)),
                    SCAN_CHUNK,
                )
                .await?;
            let Some((last_key, _)) = rows.last() else {
                break;
            };
            from = parse_seq(last_key)? + 1;
            for (_, raw) in rows {
                let stored: StoredCheckpoint =
                    serde_json::from_slice(&raw).map_err(|_| corrupt("audit checkpoint"))?;
                let cp = stored
                    .signed
                    .verify(&self.core.key.public_key())
                    .ok_or(corrupt("audit checkpoint signature"))?;
                if cp.size > self.start_size && cp.size < self.end_size {
                    between.insert(cp.size, stored.signed);
                }
            }
        }
        let rows = store
            .scan_range(
                Table::AuditEntries,
                &seq_key(self.next),
                Some(&seq_key(upto)),
                self.page,
            )
            .await?;
        for (_, bytes) in rows {
            let e = AuditEntry::decode(&bytes).ok_or(corrupt("audit entry"))?;
            out.extend(file::entry_line(&bytes));
            if let Some(cp) = between.get(&(e.seq + 1)) {
                out.extend(file::checkpoint_line(cp));
            }
        }
        self.next = upto;
        Ok(Some(out))
    }

    /// The whole file in memory (tests and small ranges).
    pub async fn collect(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            out.extend(chunk);
        }
        Ok(out)
    }
}
