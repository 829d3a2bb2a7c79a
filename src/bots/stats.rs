//! What the bots measure, in a form that costs nothing per sample: counters
//! and fixed-size histograms shared by every bot on the one thread.

/// Sub-buckets per power of two: 64 keeps every bucket within 1/64 (1.6 %)
/// of the values it holds.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values are clamped below 2^40 µs (12 days): more than any run lasts.
const MAX_BITS: u32 = 40;
const BUCKETS: usize = ((MAX_BITS - SUB_BITS + 1) as usize) << SUB_BITS;

/// A log-linear histogram of durations in microseconds.
///
/// Ten thousand bots at 20 Hz record 200,000 gaps a second; a histogram
/// takes each in a few instructions with no allocation, where a `Vec` of
/// samples would grow by megabytes and need sorting at the end.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    let v = v.min((1 << MAX_BITS) - 1);
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    (((shift + 1) as usize) << SUB_BITS) + ((v >> shift) - SUB) as usize
}

/// The smallest and largest value bucket `i` holds.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, i);
    }
    let shift = (i >> SUB_BITS) - 1;
    let low = (SUB + (i & (SUB - 1))) << shift;
    (low, low + (1 << shift) - 1)
}

impl Histogram {
    pub fn record(&mut self, micros: u64) {
        if let Some(c) = self.counts.get_mut(index(micros)) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(micros);
    }

    /// Raises the maximum without adding a sample: for a gap still open
    /// when the window closes, which is a real stall but not a finished gap.
    pub fn note_max(&mut self, micros: u64) {
        self.max = self.max.max(micros);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `p` quantile (0..=1) in milliseconds, `None` without samples.
    pub fn quantile_ms(&self, p: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = bounds(i);
                // The middle of the bucket, but never above the largest value seen.
                let mid = (low + (high - low) / 2).min(self.max);
                return Some(mid as f64 / 1000.0);
            }
        }
        Some(self.max as f64 / 1000.0)
    }

    /// The largest value in milliseconds (including [`Self::note_max`]),
    /// `None` if nothing was recorded.
    pub fn max_ms(&self) -> Option<f64> {
        (self.total > 0 || self.max > 0).then(|| self.max as f64 / 1000.0)
    }
}

/// Everything the bots count, summed over all bots. Only events inside the
/// measuring window are counted, except the failure counters, which cover
/// the whole run.
#[derive(Debug, Default)]
pub struct Stats {
    /// Snapshots (`state_update` on seed) received.
    pub updates: u64,
    /// Bytes of those snapshots.
    pub snapshot_bytes: u64,
    /// Bytes of every text and binary message received.
    pub bytes_in: u64,
    /// Time between consecutive snapshots at one bot.
    pub gaps: Histogram,
    /// Input to acknowledgement (native) or move to own position change (seed).
    pub latency: Histogram,
    /// How late bots sent their inputs after they were due: grows when the
    /// bots' own core cannot keep up.
    pub send_lag: Histogram,
    /// Inputs (moves on seed) sent.
    pub inputs_sent: u64,
    /// Ticks a bot never saw (a tick number jumped by more than one): the
    /// server sends a slow reader only the newest snapshot.
    pub ticks_missed: u64,
    /// Binary deltas: record bytes, and the records (changed entities) in them.
    pub record_bytes: u64,
    pub records: u64,
    /// Connection failures and connections the server closed or lost.
    pub disconnects: u64,
    /// Of those, the ones that never got as far as `welcome` / `init`.
    pub connect_failures: u64,
    /// Snapshots a decoding bot could not decode.
    pub decode_errors: u64,
    /// `error` messages from the server.
    pub server_errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order() {
        let mut last = 0;
        for v in [0, 1, 63, 64, 65, 127, 128, 129, 1000, 50_000, 1 << 39] {
            let i = index(v);
            assert!(i >= last, "{v}");
            let (lo, hi) = bounds(i);
            assert!(lo <= v && v <= hi, "{v} in [{lo}, {hi}]");
            assert!(hi - lo <= v / 32, "{v}: bucket too wide");
            last = i;
        }
        assert!(index(u64::MAX) < BUCKETS);
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        assert_eq!(h.quantile_ms(0.5), None);
        for v in 1..=1000 {
            h.record(v * 1000);
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        assert!((p50 - 500.0).abs() < 10.0, "{p50}");
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((p99 - 990.0).abs() < 20.0, "{p99}");
        assert_eq!(h.max_ms(), Some(1000.0));
        assert_eq!(h.count(), 1000);
    }
}
