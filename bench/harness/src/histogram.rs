//! Latency histogram: log-linear buckets (64 per power of two, so a recorded value is
//! off by at most 1/64 ≈ 1.6 %) of nanoseconds, shared lock-free by every task that
//! records into it. Fixed size (~30 KiB) however many samples, which matters when 10,000
//! subscribers each record every event.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Sub-buckets per power of two, as a number of bits.
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;
/// Enough buckets for any `u64`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// A concurrent histogram of durations.
pub(crate) struct Histogram {
    /// Samples per bucket.
    counts: Box<[AtomicU64]>,
    /// Samples in all buckets.
    total: AtomicU64,
}

impl Histogram {
    /// An empty histogram.
    pub(crate) fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
        }
    }

    /// Records one sample.
    pub(crate) fn record(&self, value: Duration) {
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.counts[index(nanos)].fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Samples recorded.
    pub(crate) fn count(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The `q` quantile (0..=1) of `expected` samples, where the samples never recorded
    /// (events not delivered in time) count as longer than any recorded. `None` when the
    /// quantile falls among those.
    pub(crate) fn quantile_of(&self, q: f64, expected: u64) -> Option<Duration> {
        let expected = expected.max(self.count());
        if expected == 0 {
            return None;
        }
        let rank = ((q * expected as f64).ceil() as u64).clamp(1, expected);
        let mut seen = 0;
        for (i, count) in self.counts.iter().enumerate() {
            seen += count.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(Duration::from_nanos(upper_bound(i)));
            }
        }
        None
    }

    /// The `q` quantile of the recorded samples.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        self.quantile_of(q, self.count())
    }
}

/// The bucket of a value.
fn index(v: u64) -> usize {
    if v < SUB as u64 {
        return v as usize;
    }
    let exponent = 63 - v.leading_zeros();
    let shift = exponent - SUB_BITS;
    let sub = (v >> shift) as usize & (SUB - 1);
    (shift as usize + 1) * SUB + sub
}

/// The largest value that falls in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let shift = (i / SUB - 1) as u32;
    let lower = ((SUB + i % SUB) as u64) << shift;
    lower.saturating_add((1u64 << shift) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_tight_and_ordered() {
        for v in [0, 1, 63, 64, 65, 127, 128, 1_000, 123_456_789, u64::MAX / 3] {
            let i = index(v);
            assert!(upper_bound(i) >= v, "{v}");
            assert!(i == 0 || upper_bound(i - 1) < v, "{v}");
            assert!((upper_bound(i) - v) as f64 <= v as f64 / 64.0 + 1.0, "{v}");
        }
    }

    #[test]
    fn quantiles_count_missing_samples_as_longest() {
        let h = Histogram::new();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).unwrap();
        assert!(p50 >= Duration::from_millis(50) && p50 < Duration::from_millis(51));
        assert!(h.quantile_of(0.99, 200).is_none());
        assert!(h.quantile_of(0.5, 200).is_some());
    }
}
