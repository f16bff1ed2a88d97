//! The one backoff: how long a writer that lost a race waits before trying again.
//!
//! Three layers used to carry their own (the operations' retry, the access log's catch-up
//! between replicas, the PostgreSQL engine's serialization retries), each with its own
//! constants. One policy, named per use, keeps their behaviour visible in one place and
//! testable without sleeping: [`Backoff::delay`] is pure, [`Backoff::pause`] sleeps it.
//!
//! The delay for retry `n` is half the cap plus a random half: `cap(n) / 2 + jitter`, where
//! `cap(n) = min(base << min(n, growth), ceiling)`. Jitter spreads contending writers (on
//! several replicas, many for one row) so they stop colliding in step; the growth bounds
//! how long a storm lasts before each writer waits the ceiling.

use std::time::Duration;

/// A jittered, growing delay between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The cap of the first retry's delay, in microseconds.
    pub base_us: u64,
    /// How many doublings the cap grows by before it stops growing.
    pub growth: u32,
    /// The largest cap, in microseconds.
    pub ceiling_us: u64,
}

impl Backoff {
    /// An operation that re-reads its rows and tries again (`txn::retry`): 100 µs growing
    /// to 25 ms. A re-read on the embedded store costs microseconds; on PostgreSQL a
    /// read-modify-write spans several round trips.
    pub const OPERATION: Backoff = Backoff {
        base_us: 100,
        growth: 8,
        ceiling_us: 25_000,
    };

    /// The access log's writer catching up with entries another replica appended: short,
    /// since it has just read the new head and only needs to leave the other one room.
    pub const LOG_HEAD: Backoff = Backoff {
        base_us: 50,
        growth: 7,
        ceiling_us: 6_400,
    };

    /// The PostgreSQL engine running a batch again after a serialization failure (nothing
    /// was written): 500 µs growing to 20 ms.
    pub const ENGINE: Backoff = Backoff {
        base_us: 500,
        growth: 6,
        ceiling_us: 20_000,
    };

    /// The cap of retry `attempt`'s delay (attempt 0 is the first try: no delay).
    pub fn cap(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let grown = self
            .base_us
            .checked_shl(attempt.min(self.growth))
            .unwrap_or(u64::MAX);
        Duration::from_micros(grown.min(self.ceiling_us))
    }

    /// The delay before retry `attempt`, given `random` (any value; uniform in practice).
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let cap = u64::try_from(self.cap(attempt).as_micros()).unwrap_or(u64::MAX);
        if cap == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(cap / 2 + (random % cap) / 2)
    }

    /// Sleeps the delay before retry `attempt` (nothing before the first try).
    pub async fn pause(&self, attempt: u32) {
        let delay = self.delay(attempt, random());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// A random u64 for jitter. Not a secret: the standard library's per-instance hash keys
/// are random enough, and cost no system call per retry.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_try_waits_nothing_and_the_cap_grows_to_its_ceiling() {
        let b = Backoff::OPERATION;
        assert_eq!(b.delay(0, u64::MAX), Duration::ZERO);
        assert_eq!(b.cap(1), Duration::from_micros(200));
        assert_eq!(b.cap(2), Duration::from_micros(400));
        assert_eq!(b.cap(8), Duration::from_micros(25_000));
        assert_eq!(b.cap(1_000), Duration::from_micros(25_000));
        assert_eq!(Backoff::ENGINE.cap(6), Duration::from_micros(20_000));
        assert_eq!(Backoff::LOG_HEAD.cap(7), Duration::from_micros(6_400));
    }

    proptest! {
        #[test]
        fn a_delay_is_between_half_the_cap_and_the_cap(attempt in 1u32..10_000, random: u64) {
            for b in [Backoff::OPERATION, Backoff::LOG_HEAD, Backoff::ENGINE] {
                let cap = b.cap(attempt);
                let d = b.delay(attempt, random);
                prop_assert!(d >= cap / 2 && d <= cap, "{d:?} outside [{:?}, {cap:?}]", cap / 2);
            }
        }
    }
}
