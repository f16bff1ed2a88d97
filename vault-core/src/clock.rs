//! The vault's clock: the time its calls judge by (when a rights request is due, whether it
//! is overdue, when it was answered).
//!
//! The daemon always runs on the system clock. Tests inject another ([`Clock::from_fn`],
//! [`Clock::fixed`]) through [`crate::Vault::with_clock`], so a deadline a month away can be
//! crossed without waiting or sleeping, and every call that judges a deadline reads the same
//! clock (one time source, one answer).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of "now", in microseconds since the Unix epoch.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(Arc::new(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        }))
    }

    /// A clock that always reads `us`.
    pub fn fixed(us: i64) -> Self {
        Self(Arc::new(move || us))
    }

    /// A clock read through `now` (for a test that moves time forward).
    pub fn from_fn(now: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// Now, in microseconds since the Unix epoch.
    pub fn now_us(&self) -> i64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now_us()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    #[test]
    fn fixed_and_injected_clocks_read_what_they_are_given() {
        assert_eq!(Clock::fixed(42).now_us(), 42);
        let t = Arc::new(AtomicI64::new(1));
        let seen = Arc::clone(&t);
        let c = Clock::from_fn(move || seen.load(Ordering::SeqCst));
        assert_eq!(c.now_us(), 1);
        t.store(7, Ordering::SeqCst);
        assert_eq!(c.clone().now_us(), 7);
        // The system clock is past 2020-01-01.
        assert!(Clock::system().now_us() > 1_577_836_800_000_000);
    }
}
