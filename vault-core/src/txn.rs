//! The one retry of an operation that lost a race.
//!
//! An operation reads rows, decides, and commits one batch whose checks pin every row it
//! read; when a concurrent writer changed one of them the batch fails with
//! [`StoreError::Conflict`] and nothing of it is applied. [`retry`] then runs the attempt
//! again from its reads, after the one backoff ([`Backoff::OPERATION`]), up to
//! [`MAX_ATTEMPTS`] times. This is the only layer that retries a conflict of the vault's
//! rows: the storage engines retry only their own transient failures (and, when those run
//! out, say so with [`StoreError::Contended`], which is not retried here), and the access log's
//! writer only the race for its head between replicas (the data batch it carries goes back
//! here), so retries no longer stack.
//!
//! An attempt that finds what it read gone (a supporter removed between an index read and
//! the record read) returns [`stale`]: the same as a failed check, so it is read again.

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::storage::StoreError;

/// How often an operation re-reads and retries after a concurrent writer changed its rows.
pub const MAX_ATTEMPTS: u32 = 128;

/// Runs the attempt (a block: `?` and `return` leave the attempt, not the function) until
/// it returns anything but a conflict, waiting the operation backoff before each retry;
/// after [`MAX_ATTEMPTS`] conflicts, [`Error::Contention`] naming `what` (the client is
/// told to retry later: UNAVAILABLE). `txn::retry!("supporter upsert", { … })`.
///
/// A macro rather than a function taking an async closure: the attempt borrows the call's
/// access record mutably on every try, and a future borrowing from an async closure's
/// captures is not provably `Send` for every lifetime (rust-lang/rust#110338), which a
/// gRPC handler's future must be. Each try here is a plain `async` block, awaited at once.
macro_rules! retry {
    ($what:expr, $($attempt:tt)*) => {
        $crate::txn::retry!(backoff = $crate::backoff::Backoff::OPERATION; $what, $($attempt)*)
    };
    (backoff = $backoff:expr; $what:expr, $($attempt:tt)*) => {{
        let mut tries = $crate::txn::Tries::new($backoff);
        loop {
            tries.pause().await;
            let result: $crate::error::Result<_> = async { $($attempt)* }.await;
            if let ::std::ops::ControlFlow::Break(done) =
                tries.judge(result, || ::std::string::ToString::to_string(&$what))
            {
                break done;
            }
        }
    }};
}
pub(crate) use retry;

/// The tries of one [`retry!`]: how many ran, and the backoff between them.
#[derive(Debug)]
pub struct Tries {
    backoff: Backoff,
    done: u32,
}

impl Tries {
    /// No try run yet.
    pub fn new(backoff: Backoff) -> Self {
        Self { backoff, done: 0 }
    }

    /// Waits before the next try (nothing before the first).
    pub async fn pause(&self) {
        self.backoff.pause(self.done).await;
    }

    /// Whether a try's `result` ends the retry (`Break` with what the operation returns)
    /// or it runs again (a conflict, with tries left).
    pub fn judge<T>(
        &mut self,
        result: Result<T>,
        what: impl FnOnce() -> String,
    ) -> std::ops::ControlFlow<Result<T>> {
        use std::ops::ControlFlow::{Break, Continue};
        if !is_conflict(&result) {
            return Break(result);
        }
        self.done += 1;
        if self.done < MAX_ATTEMPTS {
            Continue(())
        } else {
            Break(Err(Error::Contention(what())))
        }
    }
}

/// What an attempt returns when a row it read is gone before it could pin it: read again.
pub fn stale(table: &'static str) -> Error {
    Error::Storage(StoreError::Conflict(table))
}

/// Whether `r` is a lost race ([`retry`] would run the attempt again).
pub fn is_conflict<T>(r: &Result<T>) -> bool {
    matches!(r, Err(Error::Storage(StoreError::Conflict(_))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Backoff = Backoff {
        base_us: 0,
        growth: 0,
        ceiling_us: 0,
    };

    #[tokio::test]
    async fn conflicts_are_retried_and_anything_else_returns_at_once() {
        let mut calls = 0u32;
        let r = retry!(backoff = NONE; "x", {
            calls += 1;
            if calls < 3 {
                return Err(stale("records"));
            }
            Ok(calls)
        });
        assert_eq!(r.unwrap(), 3);

        let mut calls = 0u32;
        let r: Result<()> = retry!(backoff = NONE; "x", {
            calls += 1;
            Err(Error::Codec("bad".into()))
        });
        assert!(matches!(r, Err(Error::Codec(_))));
        assert_eq!(calls, 1);
    }

    /// An engine that already retried its lost races (PostgreSQL's `commit_attempts`) is
    /// not retried again: one attempt, not 128 times the engine's.
    #[tokio::test]
    async fn an_engine_that_gave_up_its_own_retries_is_not_retried() {
        let mut calls = 0u32;
        let r: Result<()> = retry!(backoff = NONE; "x", {
            calls += 1;
            Err(Error::Storage(StoreError::Contended("records")))
        });
        assert!(matches!(
            r,
            Err(Error::Storage(StoreError::Contended("records")))
        ));
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn endless_conflicts_end_in_contention_after_the_bound() {
        let mut calls = 0u32;
        let r: Result<()> = retry!(backoff = NONE; format!("supporter {}", "upsert"), {
            calls += 1;
            Err(stale("records"))
        });
        assert!(matches!(r, Err(Error::Contention(w)) if w == "supporter upsert"));
        assert_eq!(calls, MAX_ATTEMPTS);
    }
}
