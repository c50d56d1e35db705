//! A latency histogram that one thread records into and any thread reads, lock-free: fixed
//! bucket bounds (Prometheus-style cumulative on export), relaxed atomics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds; a last bucket takes the rest (+Inf).
pub const BOUNDS_US: [u64; 14] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 250_000, 1_000_000,
];

/// Durations counted into [`BOUNDS_US`] buckets, with their count and sum.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

/// A copy of a histogram's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative), the last one above every bound.
    pub buckets: [u64; BOUNDS_US.len() + 1],
    /// Observations in all.
    pub count: u64,
    /// Their sum in nanoseconds.
    pub sum_ns: u64,
}

impl LatencyHistogram {
    /// Counts one observation.
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|b| *b < us);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counters now (each read on its own: a concurrent record may show in one and not
    /// yet in another).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut s = HistogramSnapshot::default();
        for (dst, src) in s.buckets.iter_mut().zip(&self.buckets) {
            *dst = src.load(Ordering::Relaxed);
        }
        s.count = self.count.load(Ordering::Relaxed);
        s.sum_ns = self.sum_ns.load(Ordering::Relaxed);
        s
    }
}

impl HistogramSnapshot {
    /// Adds another snapshot (the shards' histograms into one).
    pub fn add(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_bounds_inclusive() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(10));
        h.record(Duration::from_micros(11));
        h.record(Duration::from_nanos(500));
        h.record(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 2, "<= 10 µs");
        assert_eq!(s.buckets[1], 1, "<= 25 µs");
        assert_eq!(s.buckets[BOUNDS_US.len()], 1, "+Inf");
        assert_eq!(s.count, 4);
        assert_eq!(s.sum_ns, 10_000 + 11_000 + 500 + 5_000_000_000);
        let mut t = s.clone();
        t.add(&s);
        assert_eq!(t.count, 8);
        assert_eq!(t.buckets[0], 4);
    }
}
