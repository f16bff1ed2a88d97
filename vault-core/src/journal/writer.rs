//! The writer task: the one place entries get sequence numbers. It applies every entry
//! that arrived together (each write in its own batch, lone entries together), makes them
//! durable with one flush (group commit), runs held tasks while no write applies, and
//! answers each waiting call.

use super::*;

pub(super) fn advance_mark(file: &MarkFile, cp: &Checkpoint) {
    if let Err(e) = file.advance(cp.size, &cp.root, cp.at_us) {
        tracing::warn!(target: "vault::audit", error = %e, "cannot move the access log's high-water mark");
    }
}

pub(super) fn store_err(e: &StoreError) -> Error {
    Error::from(e.clone())
}

/// The same failure for each of several waiters (`Error` is not `Clone`): its kind is
/// kept where a client's status depends on it, the rest travels as text.
pub(super) fn for_each_waiter(e: &Error) -> Error {
    match e {
        Error::StoreUnavailable { cause } => Error::StoreUnavailable { cause: *cause },
        other => Error::Storage(StoreError::Engine(other.to_string())),
    }
}

/// The writer task: takes every job waiting, applies the lone entries together in one
/// batch (and each write in its own, in arrival order), flushes once, then answers. A
/// [`Job::Hold`] splits the group: the jobs before it are finished first, the ones after it
/// wait until its task is done.
pub(super) async fn writer(core: Arc<Core>, mut head: Head, mut rx: mpsc::UnboundedReceiver<Job>) {
    const MAX_GROUP: usize = 4096;
    // Jobs that arrived while writes were held, or after a hold in the same group.
    let mut backlog: VecDeque<Job> = VecDeque::new();
    loop {
        let first = match backlog.pop_front() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            if let Some(job) = backlog.pop_front() {
                jobs.push(job);
                continue;
            }
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut held = None;
        if let Some(at) = jobs.iter().position(|j| matches!(j, Job::Hold { .. })) {
            let mut after = jobs.split_off(at).into_iter();
            held = after.next();
            for job in after.rev() {
                backlog.push_front(job);
            }
        }
        if !jobs.is_empty() && run_group(&core, &mut head, jobs).await == Flow::Stop {
            return;
        }
        if let Some(Job::Hold { task }) = held {
            hold(&core, &mut head, &mut rx, &mut backlog, task).await;
        }
    }
}

/// Runs `task` with writes held back: jobs arriving meanwhile that carry a write (and
/// checkpoints, holds, stop) wait in `backlog`; entries alone (reads, denials) are still
/// appended, after the size the task was given, so reads keep being served.
pub(super) async fn hold(
    core: &Core,
    head: &mut Head,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    backlog: &mut VecDeque<Job>,
    task: HeldTask,
) {
    let mut running = task(head.frontier.size());
    let mut senders_alive = true;
    loop {
        tokio::select! {
            () = &mut running => return,
            job = rx.recv(), if senders_alive => {
                let Some(first) = job else {
                    senders_alive = false;
                    continue;
                };
                let mut lone = Vec::new();
                let mut next = Some(first);
                while let Some(job) = next {
                    match job {
                        job @ Job::Append { batch: None, .. } => lone.push(job),
                        other => backlog.push_back(other),
                    }
                    next = rx.try_recv().ok();
                }
                if !lone.is_empty() {
                    // Entries alone never stop the writer.
                    let _ = run_group(core, head, lone).await;
                }
            }
        }
    }
}

/// Applies and flushes one group of jobs (none of them a hold), then answers them.
pub(super) async fn run_group(core: &Core, head: &mut Head, jobs: Vec<Job>) -> Flow {
    let jobs = match apply_together(core, head, jobs).await {
        Ok(flow) => return flow,
        Err(jobs) => jobs,
    };
    let mut done: Vec<(oneshot::Sender<Result<u64>>, u64)> = Vec::new();
    let mut checkpoints: Vec<(CheckpointReply, Option<SignedCheckpoint>)> = Vec::new();
    let mut stop: Option<oneshot::Sender<Result<()>>> = None;
    let mut lone: Vec<(AccessEntry, oneshot::Sender<Result<u64>>)> = Vec::new();
    for job in jobs {
        match job {
            Job::Append {
                batch: None,
                entry,
                reply,
            } => lone.push((*entry, reply)),
            Job::Stop { reply } => stop = Some(reply),
            Job::Append {
                batch: Some(batch),
                entry,
                reply,
            } => {
                flush_lone(core, head, &mut lone, &mut done).await;
                match core.apply_at_head(head, Some(&batch), &[&entry]).await {
                    Ok(seqs) => done.push((reply, seqs[0])),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Job::Checkpoint { only_if_due, reply } => {
                flush_lone(core, head, &mut lone, &mut done).await;
                match core.checkpoint_at_head(head, only_if_due).await {
                    Ok(cp) => checkpoints.push((reply, cp)),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            // The writer splits groups at holds; a hold never reaches here. Run it anyway
            // rather than drop it: its caller would wait forever.
            Job::Hold { task } => task(head.frontier.size()).await,
        }
    }
    flush_lone(core, head, &mut lone, &mut done).await;
    let synced = core.timed_sync().await;
    if synced.is_ok() {
        core.note_durable(head);
    }
    for (reply, seq) in done {
        let _ = reply.send(synced.as_ref().map(|()| seq).map_err(store_err));
    }
    for (reply, cp) in checkpoints {
        let _ = reply.send(synced.as_ref().map(|()| cp).map_err(store_err));
    }
    if let Some(reply) = stop {
        let _ = reply.send(synced.as_ref().copied().map_err(store_err));
        return Flow::Stop;
    }
    Flow::Continue
}

/// Applies a group of appends carrying two writes or more in one engine transaction, each
/// write's checks after the writes before it, then flushes once and answers them. Any
/// failure (a check that no longer holds, another daemon at the head) applies nothing and
/// hands the jobs back, to be applied one at a time, where each gets its own outcome.
pub(super) async fn apply_together(
    core: &Core,
    head: &mut Head,
    jobs: Vec<Job>,
) -> std::result::Result<Flow, Vec<Job>> {
    let appends_only = jobs.iter().all(|j| matches!(j, Job::Append { .. }));
    let writes = jobs
        .iter()
        .filter(|j| matches!(j, Job::Append { batch: Some(_), .. }))
        .count();
    if !appends_only || writes < 2 {
        return Err(jobs);
    }
    let mut next = head.clone();
    let mut staged: Vec<Batch> = Vec::with_capacity(jobs.len());
    let mut seqs = Vec::with_capacity(jobs.len());
    for job in &jobs {
        if let Job::Append { entry, .. } = job {
            let mut b = Batch::new();
            seqs.push(next.frontier.size());
            next = match core.stage(&next, &mut b, entry) {
                Ok(n) => n,
                Err(_) => return Err(jobs),
            };
            staged.push(b);
        }
    }
    let mut batches: Vec<&Batch> = Vec::with_capacity(2 * jobs.len());
    for (job, entry_batch) in jobs.iter().zip(&staged) {
        if let Job::Append {
            batch: Some(data), ..
        } = job
        {
            batches.push(data);
        }
        batches.push(entry_batch);
    }
    if core.store.apply_all(&batches).await.is_err() {
        return Err(jobs);
    }
    *head = next;
    core.publish(head);
    let synced = core.timed_sync().await;
    if synced.is_ok() {
        core.note_durable(head);
    }
    for (job, seq) in jobs.into_iter().zip(seqs) {
        if let Job::Append { reply, .. } = job {
            let _ = reply.send(synced.as_ref().map(|()| seq).map_err(store_err));
        }
    }
    Ok(Flow::Continue)
}

pub(super) async fn flush_lone(
    core: &Core,
    head: &mut Head,
    lone: &mut Vec<(AccessEntry, oneshot::Sender<Result<u64>>)>,
    done: &mut Vec<(oneshot::Sender<Result<u64>>, u64)>,
) {
    if lone.is_empty() {
        return;
    }
    let entries: Vec<&AccessEntry> = lone.iter().map(|(e, _)| e).collect();
    match core.apply_at_head(head, None, &entries).await {
        Ok(seqs) => {
            for ((_, reply), seq) in lone.drain(..).zip(seqs) {
                done.push((reply, seq));
            }
        }
        Err(e) => {
            for (_, reply) in lone.drain(..) {
                let _ = reply.send(Err(for_each_waiter(&e)));
            }
        }
    }
}

impl AuditLog {
    pub(super) async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.jobs.send(job(tx)).map_err(|_| {
            Error::Storage(StoreError::NotDurable(
                "the access-log writer stopped".into(),
            ))
        })?;
        rx.await.map_err(|_| {
            Error::Storage(StoreError::NotDurable(
                "the access-log writer stopped".into(),
            ))
        })?
    }

    /// Appends `entry` in `batch` (the write it logs; an empty batch for an entry alone),
    /// and returns once both are durable. Returns the entry's sequence number. A batch whose
    /// checks fail is not applied and consumes no sequence number.
    pub async fn append(&self, batch: Batch, entry: &AccessEntry) -> Result<u64> {
        let batch = (!batch.checks.is_empty() || !batch.ops.is_empty()).then(|| Box::new(batch));
        let entry = Box::new(entry.clone());
        let seq = self
            .submit(|reply| Job::Append {
                batch,
                entry: entry.clone(),
                reply,
            })
            .await?;
        tracing::debug!(target: "vault::access", seq, rpc = %entry.rpc, client = %entry.client_id, "logged");
        Ok(seq)
    }

    /// Runs `task` while no write can apply, and returns its result.
    ///
    /// The writer finishes (applies and flushes) every job queued before this call, then
    /// calls `task` with the log's size at that moment: every write acknowledged so far is
    /// in the store, together with its entry, below that size. Until `task` completes,
    /// writes (and checkpoints) wait; entries alone, which reads and refused calls append,
    /// are still added, at or after that size, so reads go on being served. `task` must
    /// therefore read the access-log tables only below the size it is given. Writes that do
    /// not go through this log (another daemon sharing a database, start-up housekeeping,
    /// pruning) are not held.
    pub async fn hold_writes<T, F, Fut>(&self, task: F) -> Result<T>
    where
        F: FnOnce(u64) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let task: HeldTask = Box::new(move |size| {
            Box::pin(async move {
                let _ = tx.send(task(size).await);
            })
        });
        let stopped = || {
            Error::Storage(StoreError::NotDurable(
                "the access-log writer stopped".into(),
            ))
        };
        self.jobs.send(Job::Hold { task }).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Finishes the queued work and stops the writer task, so the store can be released
    /// (reopening the same embedded store in one process needs it). Later appends fail.
    pub async fn close(&self) -> Result<()> {
        let flushed = self.submit(|reply| Job::Stop { reply }).await;
        // The writer answers the stop, then returns and drops its handle on the store. Wait
        // for that too, so a caller that reopens the store at once finds it released.
        let task = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        // The last checkpoint into the mark before the store is let go, here and now.
        if let (Ok(()), Some(file), Some(cp)) =
            (&flushed, &self.outside, self.head().last_checkpoint)
        {
            advance_mark(file, &cp);
        }
        flushed
    }

    /// Signs and stores a checkpoint at the current size, unless one exists there already.
    pub async fn checkpoint(&self) -> Result<Option<SignedCheckpoint>> {
        self.submit(|reply| Job::Checkpoint {
            only_if_due: false,
            reply,
        })
        .await
    }

    /// Makes a checkpoint if entries were added and the last checkpoint is older than the
    /// configured interval (the daemon calls this every second).
    pub async fn checkpoint_if_due(&self) -> Result<Option<SignedCheckpoint>> {
        self.submit(|reply| Job::Checkpoint {
            only_if_due: true,
            reply,
        })
        .await
    }
}
