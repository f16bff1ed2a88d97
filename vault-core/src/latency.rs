//! A latency histogram with fixed buckets, recorded lock-free: the store's flushes are
//! timed with it (the daemon publishes them as a Prometheus histogram), and the daemon's
//! per-call latencies use the same type.
//!
//! Buckets are fixed at compile time so that recording is one atomic add per bucket hit
//! and a snapshot never allocates more than the bucket count; counts only grow, as a
//! Prometheus histogram's must.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (a last `+Inf` bucket is implied): from half a
/// millisecond (an embedded-store flush on a fast disk) to ten seconds (a slow fsync, a
/// long stream).
pub const BUCKET_BOUNDS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counts of durations by bucket, their sum and their number.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per bucket, not cumulative; the last one past every bound (`+Inf`).
    buckets: [AtomicU64; BUCKET_BOUNDS_SECONDS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// What a [`LatencyHistogram`] held at one moment, in Prometheus's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// For each bound of [`BUCKET_BOUNDS_SECONDS`], the observations at or below it.
    pub cumulative: [u64; BUCKET_BOUNDS_SECONDS.len()],
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one observation of `elapsed`.
    pub fn record(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKET_BOUNDS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKET_BOUNDS_SECONDS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now. Taken bucket by bucket while calls may record: the count is
    /// derived from the buckets read, so a snapshot is always consistent with itself.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; BUCKET_BOUNDS_SECONDS.len()];
        let mut running = 0u64;
        for (i, slot) in cumulative.iter_mut().enumerate() {
            running = running.saturating_add(self.buckets[i].load(Ordering::Relaxed));
            *slot = running;
        }
        let overflow = self.buckets[BUCKET_BOUNDS_SECONDS.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            cumulative,
            count: running.saturating_add(overflow),
            // Microseconds as f64 lose nothing below 2^53 µs (285 years).
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_cumulative_buckets() {
        let h = LatencyHistogram::new();
        h.record(Duration::from_micros(300)); // <= 0.0005
        h.record(Duration::from_micros(500)); // exactly on the first bound
        h.record(Duration::from_millis(20)); // <= 0.025
        h.record(Duration::from_secs(60)); // past every bound
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.cumulative[0], 2);
        assert_eq!(s.cumulative[4], 2, "0.01 s bucket");
        assert_eq!(s.cumulative[5], 3, "0.025 s bucket");
        assert_eq!(s.cumulative[BUCKET_BOUNDS_SECONDS.len() - 1], 3);
        assert!((s.sum_seconds - 60.0208).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn an_empty_histogram_is_all_zero() {
        let s = LatencyHistogram::new().snapshot();
        assert_eq!(s.count, 0);
        assert!(s.cumulative.iter().all(|c| *c == 0));
        assert_eq!(s.sum_seconds, 0.0);
    }

    #[test]
    fn bounds_increase() {
        assert!(BUCKET_BOUNDS_SECONDS.windows(2).all(|w| w[0] < w[1]));
    }
}
