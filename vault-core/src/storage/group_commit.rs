//! Group commit: one flusher thread makes the store durable for every waiting writer.
//!
//! A writer applies its batch in memory, takes a ticket, and waits until a flush that
//! started after its ticket was issued has completed. One thread runs all flushes, so a
//! burst of N writers costs one fsync, not N, and no two flushes ever run at once
//! (concurrent `flush_async` calls on sled 0.34.7 can hang: sled issue #1308).
//!
//! Invariant: a flush covers every write whose ticket is at most the flush's target,
//! because the target is read before the flush begins and tickets are issued only after
//! the write was applied.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::watch;

use super::StoreError;

#[derive(Clone, Debug)]
struct Durable {
    /// Highest ticket known durable.
    ticket: u64,
    /// Set once a flush failed; every later wait fails with it.
    failed: Option<StoreError>,
}

struct Requests {
    issued: u64,
    shutdown: bool,
}

struct Shared {
    requests: Mutex<Requests>,
    wake: Condvar,
    durable: watch::Sender<Durable>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Requests> {
        // A poisoned lock only means a thread panicked while holding it; the counters it
        // guards are still consistent (single-word updates), so keep going.
        self.requests.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The flusher and its waiters.
pub(super) struct GroupCommit {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl GroupCommit {
    /// Starts the flusher thread; `flush` makes everything applied so far durable. Its
    /// error is what every later write gets (classified by the engine: a full disk is
    /// [`StoreError::Unavailable`]).
    pub(super) fn start<F>(flush: F) -> std::io::Result<Self>
    where
        F: Fn() -> Result<(), StoreError> + Send + 'static,
    {
        let (durable, _) = watch::channel(Durable {
            ticket: 0,
            failed: None,
        });
        let shared = Arc::new(Shared {
            requests: Mutex::new(Requests {
                issued: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            durable,
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("vault-flusher".into())
            .spawn(move || flusher(&worker, flush))?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Waits until everything applied before this call is durable.
    pub(super) async fn wait_durable(&self) -> Result<(), StoreError> {
        let ticket = {
            let mut req = self.shared.lock();
            if req.shutdown {
                return Err(StoreError::NotDurable("the store is closed".into()));
            }
            req.issued += 1;
            req.issued
        };
        self.shared.wake.notify_one();
        let mut rx = self.shared.durable.subscribe();
        let state = rx
            .wait_for(|d| d.failed.is_some() || d.ticket >= ticket)
            .await
            .map_err(|_| StoreError::NotDurable("the flusher stopped".into()))?;
        match &state.failed {
            Some(failure) => Err(failure.clone()),
            None => Ok(()),
        }
    }

    /// The failure of a flush, if one failed (writes must then be refused).
    pub(super) fn failed(&self) -> Option<StoreError> {
        self.shared.durable.borrow().failed.clone()
    }

    /// Flushes what is pending and stops the thread.
    pub(super) fn stop(&self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_one();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.stop();
    }
}

fn flusher<F>(shared: &Shared, flush: F)
where
    F: Fn() -> Result<(), StoreError>,
{
    let mut done = 0u64;
    loop {
        let (target, shutdown) = {
            let mut req = shared.lock();
            while req.issued == done && !req.shutdown {
                req = shared.wake.wait(req).unwrap_or_else(|p| p.into_inner());
            }
            (req.issued, req.shutdown)
        };
        let result = flush();
        done = target;
        match result {
            Ok(()) => {
                shared.durable.send_modify(|d| d.ticket = target);
            }
            Err(failure) => {
                tracing::error!(reason = %failure, "flush to disk failed; refusing further writes");
                shared.durable.send_modify(|d| d.failed = Some(failure));
                return;
            }
        }
        if shutdown {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_writers_share_few_flushes() -> Result<(), StoreError> {
        let flushes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&flushes);
        let gc = Arc::new(
            GroupCommit::start(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(2));
                Ok(())
            })
            .map_err(|e| StoreError::Engine(e.to_string()))?,
        );
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let gc = Arc::clone(&gc);
            tasks.push(tokio::spawn(async move { gc.wait_durable().await }));
        }
        for t in tasks {
            t.await.map_err(|e| StoreError::Engine(e.to_string()))??;
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!((1..200).contains(&n), "{n} flushes for 200 writers");
        Ok(())
    }

    #[tokio::test]
    async fn failed_flush_fails_waiters_and_later_writes() -> Result<(), StoreError> {
        let full = StoreError::Unavailable {
            cause: super::super::Unavailable::NoSpace,
            detail: "disk full".into(),
        };
        let failure = full.clone();
        let gc = GroupCommit::start(move || Err(failure.clone()))
            .map_err(|e| StoreError::Engine(e.to_string()))?;
        // The flush's own error, kept for every later write.
        assert_eq!(gc.wait_durable().await, Err(full.clone()));
        assert_eq!(gc.wait_durable().await, Err(full.clone()));
        assert_eq!(gc.failed(), Some(full));
        Ok(())
    }
}
