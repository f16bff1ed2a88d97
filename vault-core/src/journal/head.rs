//! The head of the log: restoring it at open from the signed checkpoint and the leaves
//! after it, staging an entry into a batch (sequence number, hash link, Merkle frontier,
//! subtrees), and making checkpoints at the head.

use super::writer::advance_mark;
use super::*;

impl Core {
    pub(super) async fn restore_head(&self) -> Result<Head> {
        // Start from the newest checkpoint (or the anchor), then replay the leaves after it.
        let newest = match self.store.last(Table::AuditCheckpoints).await? {
            Some((_, raw)) => Some(self.parse_stored(&raw)?),
            None => self.anchor().await?,
        };
        let (mut frontier, last_checkpoint, mut prev) = match &newest {
            Some((cp, frontier)) => (frontier.clone(), Some(*cp), cp.last_leaf),
            None => (Frontier::new(), None, zero_hash()),
        };
        let mut next = frontier.size();
        loop {
            let rows = self
                .store
                .scan_range(Table::AuditLeaves, &seq_key(next), None, SCAN_CHUNK)
                .await?;
            if rows.is_empty() {
                break;
            }
            for (k, v) in rows {
                let seq = parse_seq(&k)?;
                if seq != next {
                    return Err(corrupt("audit leaves (gap in the log)"));
                }
                let leaf: Hash = v.as_slice().try_into().map_err(|_| corrupt("audit leaf"))?;
                // No checkpoint covers these entries yet: re-hash each against its leaf
                // (leaves carry row tags, so a rewritten entry cannot bring its own).
                let entry = self.store.get(Table::AuditEntries, &k).await?;
                if entry.as_deref().map(entry_hash) != Some(leaf) {
                    return Err(rolled_back(format!(
                        "entry {seq}, after the last checkpoint, is missing or does not hash to \
                         its leaf: it was rewritten in the store; investigate before starting \
                         (export the log with the daemon stopped: vaultctl audit verify)"
                    )));
                }
                frontier.push(leaf).map_err(|_| corrupt("audit log size"))?;
                prev = leaf;
                next += 1;
            }
        }
        Ok(Head {
            frontier,
            prev,
            last_checkpoint,
        })
    }

    /// Refuses a log behind `mark` or with another root at its size.
    pub(super) async fn check_against_mark(&self, head: &Head, mark: &Mark) -> Result<()> {
        if mark.size == 0 {
            return Ok(());
        }
        let newest = head.last_checkpoint.map_or(0, |c| c.size);
        if newest < mark.size {
            return Err(rolled_back(format!(
                "its newest checkpoint is at size {newest}, but a checkpoint at size {} was \
                 made durable before (the high-water mark beside the root key file, written \
                 {}): checkpoints or entries were deleted from the store, or an older copy \
                 of it was put in place; investigate before starting. After a deliberate \
                 restore, vaultctl restore resets the mark",
                mark.size, mark.at_us
            )));
        }
        let at_mark = match self
            .store
            .get(Table::AuditCheckpoints, &seq_key(mark.size))
            .await?
        {
            Some(raw) => self.parse_stored(&raw)?.0.root,
            // Pruned since: the leaves and subtrees are kept, recompute the root there.
            None => {
                if head.frontier.size() < mark.size {
                    return Err(rolled_back(format!(
                        "the log holds {} entries, fewer than the high-water mark's size {}",
                        head.frontier.size(),
                        mark.size
                    )));
                }
                self.root_at(mark.size).await?
            }
        };
        if hex::encode(at_mark) != mark.root {
            return Err(rolled_back(format!(
                "its root at size {} is not the one the high-water mark beside the root key \
                 file records: the log was rewritten; investigate before starting",
                mark.size
            )));
        }
        Ok(())
    }

    /// Moves the mark file to the newest checkpoint once it is durable, off the writer task
    /// (two fsyncs; the writer must not wait for them).
    pub(super) fn note_durable(&self, head: &Head) {
        if let Some(cp) = head.last_checkpoint {
            // Signing is deterministic (Ed25519): this is the stored checkpoint's signature.
            self.durable.send_if_modified(|known| {
                let newer = known.as_ref().is_none_or(|k| k.size < cp.size);
                if newer {
                    *known = Some(self.key.sign(&cp));
                }
                newer
            });
        }
        let (Some(file), Some(cp)) = (&self.outside, head.last_checkpoint) else {
            return;
        };
        // Most groups bring no new checkpoint: nothing to hand off.
        if self
            .marked
            .fetch_max(cp.size, std::sync::atomic::Ordering::Relaxed)
            >= cp.size
        {
            return;
        }
        let file = Arc::clone(file);
        tokio::task::spawn_blocking(move || advance_mark(&file, &cp));
    }

    /// Parses and checks a stored checkpoint: signature, and frontier against the root.
    pub(super) fn parse_stored(&self, raw: &[u8]) -> Result<(Checkpoint, Frontier)> {
        let stored: StoredCheckpoint =
            serde_json::from_slice(raw).map_err(|_| corrupt("audit checkpoint"))?;
        let cp = stored
            .signed
            .verify(&self.key.public_key())
            .ok_or(corrupt("audit checkpoint signature"))?;
        let frontier = hex::decode(&stored.frontier)
            .ok()
            .and_then(|b| Frontier::from_bytes(&b).ok())
            .ok_or(corrupt("audit checkpoint frontier"))?;
        if frontier.size() != cp.size || frontier.root() != cp.root {
            return Err(corrupt("audit checkpoint frontier"));
        }
        Ok((cp, frontier))
    }
    /// The signed retention cut, if retention ever removed entries (and the anchor it names
    /// is the one stored).
    pub(super) async fn cut(&self) -> Result<Option<SignedCut>> {
        let Some(raw) = self.store.get(Table::Meta, meta::AUDIT_CUT).await? else {
            return Ok(None);
        };
        let cut: SignedCut = serde_json::from_slice(&raw).map_err(|_| corrupt("audit cut"))?;
        cut.verify(&self.key.public_key())
            .ok_or(corrupt("audit cut signature"))?;
        Ok(Some(cut))
    }

    pub(super) async fn anchor(&self) -> Result<Option<(Checkpoint, Frontier)>> {
        match self.store.get(Table::Meta, meta::AUDIT_ANCHOR).await? {
            Some(raw) => Ok(Some(self.parse_stored(&raw)?)),
            None => Ok(None),
        }
    }

    /// The Ed25519 public key, 32 raw bytes.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.public_key()
    }

    /// The signing key, for the C2SP form of checkpoints (`audit::witness`).
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The newest checkpoint made durable by this process (or found in the store at open),
    /// updated after every flush that made a newer one durable.
    pub fn durable_checkpoints(&self) -> tokio::sync::watch::Receiver<Option<SignedCheckpoint>> {
        self.durable.subscribe()
    }

    pub(super) fn head(&self) -> Head {
        self.head.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn publish(&self, head: &Head) {
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = head.clone();
    }

    /// The latencies of the writer's flushes so far: each makes a group of calls and their
    /// entries durable, so this is the store's share of a call's latency.
    pub fn flush_latency(&self) -> crate::latency::HistogramSnapshot {
        self.flushes.snapshot()
    }

    /// Time since the newest durable signed checkpoint was made (`None` before the first;
    /// zero if the clock stepped back past it).
    pub fn checkpoint_age(&self) -> Option<Duration> {
        let at = self.durable.borrow().as_ref().map(|c| c.at_us)?;
        let micros = now_us().saturating_sub(at).max(0);
        Some(Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
    }

    /// Flushes the store, timing it.
    pub(super) async fn timed_sync(&self) -> std::result::Result<(), StoreError> {
        let started = std::time::Instant::now();
        let synced = self.store.sync().await;
        self.flushes.record(started.elapsed());
        synced
    }

    /// Number of entries appended (as of the last applied batch).
    pub async fn size(&self) -> u64 {
        self.head().frontier.size()
    }

    pub(super) fn stored_checkpoint(
        &self,
        cp: &Checkpoint,
        frontier: &Frontier,
    ) -> Result<(SignedCheckpoint, Vec<u8>)> {
        let signed = self.key.sign(cp);
        let raw = serde_json::to_vec(&StoredCheckpoint {
            signed: signed.clone(),
            frontier: hex::encode(frontier.to_bytes()),
        })
        .map_err(|e| Error::Codec(e.to_string()))?;
        Ok((signed, raw))
    }

    /// Encodes `entry` at the head's next position into `batch` (with the checkpoint that
    /// falls due there), and returns the head as it will be once the batch is applied.
    pub(super) fn stage(
        &self,
        head: &Head,
        batch: &mut Batch,
        entry: &AccessEntry,
    ) -> Result<Head> {
        let seq = head.frontier.size();
        let (outcome, reason) = match entry.outcome {
            Outcome::Allowed => ("allowed", None),
            Outcome::Denied(reason) => ("denied", Some(reason.code().to_owned())),
        };
        let bytes = AuditEntry {
            v: ENTRY_VERSION,
            seq,
            prev: hex::encode(head.prev),
            at_us: entry.at_us,
            request_id: entry.request_id.clone(),
            client: entry.client_id.clone(),
            role: entry.role.to_owned(),
            rpc: entry.rpc.clone(),
            purpose: entry.purpose.clone(),
            subjects: entry.subjects.clone(),
            fields: entry.fields.iter().map(|f| (*f).to_owned()).collect(),
            outcome: outcome.to_owned(),
            reason,
            request_ref: entry.request_ref.clone(),
        }
        .encode()?;
        let leaf = entry_hash(&bytes);
        batch
            .check(Table::AuditEntries, &seq_key(seq), None)
            .put(Table::AuditEntries, &seq_key(seq), bytes)
            .put(Table::AuditLeaves, &seq_key(seq), leaf.to_vec());
        self.subjects.stage(batch, seq, &entry.subjects);
        for (index, change) in entry.changes.iter().enumerate() {
            let cursor = crate::changes::Cursor {
                seq,
                index: u16::try_from(index)
                    .map_err(|_| corrupt("too many changes in one write"))?,
            };
            batch.put(
                Table::Changes,
                &cursor.key(),
                crate::changes::encode(change, entry.at_us)?,
            );
        }
        let mut next = head.clone();
        // The subtrees this leaf completes ride in its batch (see `Table::AuditNodes`).
        next.frontier
            .push_completing(leaf, |level, index, hash| {
                if level >= STORED_FROM_LEVEL {
                    batch.put(Table::AuditNodes, &node_key(level, index), hash.to_vec());
                }
            })
            .map_err(|_| corrupt("audit log size"))?;
        next.prev = leaf;
        // Every N entries, the checkpoint rides in the same batch.
        if next
            .frontier
            .size()
            .is_multiple_of(self.options.checkpoint_every.max(1))
        {
            let cp = Checkpoint {
                size: next.frontier.size(),
                root: next.frontier.root(),
                last_leaf: leaf,
                at_us: now_us(),
            };
            let (_, raw) = self.stored_checkpoint(&cp, &next.frontier)?;
            batch.put(Table::AuditCheckpoints, &seq_key(cp.size), raw);
            next.last_checkpoint = Some(cp);
        }
        Ok(next)
    }

    /// Brings `head` up to date with entries other daemons sharing the store appended.
    pub(super) async fn catch_up(&self, head: &mut Head) -> Result<()> {
        loop {
            let next = head.frontier.size();
            let rows = self
                .store
                .scan_range(Table::AuditLeaves, &seq_key(next), None, SCAN_CHUNK)
                .await?;
            if rows.is_empty() {
                return Ok(());
            }
            for (k, v) in rows {
                if parse_seq(&k)? != head.frontier.size() {
                    return Err(corrupt("audit leaves (gap in the log)"));
                }
                let leaf: Hash = v.as_slice().try_into().map_err(|_| corrupt("audit leaf"))?;
                head.frontier
                    .push(leaf)
                    .map_err(|_| corrupt("audit log size"))?;
                head.prev = leaf;
            }
        }
    }

    /// Applies `entries` (with the write `data`, if any) at the head, retrying at the new
    /// head when another daemon took the sequence numbers. Returns their sequence numbers.
    pub(super) async fn apply_at_head(
        &self,
        head: &mut Head,
        data: Option<&Batch>,
        entries: &[&AccessEntry],
    ) -> Result<Vec<u64>> {
        // Daemons sharing a database race for the log's head; the loser catches up and
        // goes again. Bounded by time rather than by a count: a busy peer can win many
        // rounds in a row, and an access must not fail for that.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut attempt = 0u32;
        while tokio::time::Instant::now() < deadline {
            attempt += 1;
            let mut batch = data.cloned().unwrap_or_default();
            let mut next = head.clone();
            let mut seqs = Vec::with_capacity(entries.len());
            for e in entries {
                seqs.push(next.frontier.size());
                next = self.stage(&next, &mut batch, e)?;
            }
            match self.store.apply(batch).await {
                Ok(()) => {
                    *head = next;
                    self.publish(head);
                    return Ok(seqs);
                }
                Err(StoreError::Conflict(t)) if t == Table::AuditEntries.name() => {
                    self.catch_up(head).await?;
                    self.publish(head);
                    // Spread the replicas out a little so they stop colliding.
                    crate::backoff::Backoff::LOG_HEAD.pause(attempt).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contention("the access log".into()))
    }

    /// Signs and applies a checkpoint at the head (unless one is there, or it is not due).
    pub(super) async fn checkpoint_at_head(
        &self,
        head: &mut Head,
        only_if_due: bool,
    ) -> Result<Option<SignedCheckpoint>> {
        let size = head.frontier.size();
        let due = match head.last_checkpoint {
            Some(c) if c.size == size => false,
            Some(c) if only_if_due => {
                now_us().saturating_sub(c.at_us)
                    >= self.options.checkpoint_interval.as_micros() as i64
            }
            _ => size > 0,
        };
        if !due {
            return Ok(None);
        }
        let cp = Checkpoint {
            size,
            root: head.frontier.root(),
            last_leaf: head.prev,
            at_us: now_us(),
        };
        let (signed, raw) = self.stored_checkpoint(&cp, &head.frontier)?;
        let mut b = Batch::new();
        b.put(Table::AuditCheckpoints, &seq_key(size), raw);
        self.store.apply(b).await?;
        head.last_checkpoint = Some(cp);
        self.publish(head);
        Ok(Some(signed))
    }
}
