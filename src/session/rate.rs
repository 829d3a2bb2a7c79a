//! A connection's message rate limit: a token bucket, and the rule for when
//! going over it ends the connection.
//!
//! The bucket holds up to `burst` tokens and refills at `rate` per second;
//! every message the client sends takes one. A message that finds the bucket
//! empty is dropped unread. A client that stays over the limit, meaning it
//! has messages dropped with no pause of [`EXCESS_GAP`] between drops, for
//! [`EXCESS_LIMIT`], is flooding and is disconnected.
//!
//! A player holding a key sends well under the rate and never touches the
//! bottom of the bucket; a burst (a reconnect, a tab waking up) is absorbed
//! by the bucket. Only a sustained flood is both dropped and closed.

use std::time::Duration;

use tokio::time::Instant;

/// How long a client may stay over its message rate before it is closed.
pub const EXCESS_LIMIT: Duration = Duration::from_secs(5);

/// A pause between dropped messages this long ends a period of excess.
pub const EXCESS_GAP: Duration = Duration::from_secs(1);

/// What to do with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: handle it.
    Accept,
    /// Over the limit: drop it. `first` is set on the first drop of a period
    /// of excess (the client is told once, not on every drop).
    Drop { first: bool },
    /// Over the limit for [`EXCESS_LIMIT`]: close the connection.
    Close,
}

/// One connection's token bucket.
#[derive(Debug)]
pub struct RateLimit {
    /// Tokens per second.
    rate: f64,
    /// Most tokens the bucket holds.
    burst: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
    /// Since when, and until when, messages have been dropped.
    excess: Option<(Instant, Instant)>,
}

impl RateLimit {
    /// A full bucket: `rate` messages per second, bursts of `burst`.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        RateLimit {
            rate: f64::from(rate.max(1)),
            burst,
            tokens: burst,
            at: now,
            excess: None,
        }
    }

    /// Counts one message arriving at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = self.at.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Accept;
        }
        match self.excess {
            Some((since, last)) if now.saturating_duration_since(last) < EXCESS_GAP => {
                self.excess = Some((since, now));
                if now.saturating_duration_since(since) >= EXCESS_LIMIT {
                    Verdict::Close
                } else {
                    Verdict::Drop { first: false }
                }
            }
            _ => {
                self.excess = Some((now, now));
                Verdict::Drop { first: true }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `per_sec` messages a second for `secs` seconds; returns the
    /// verdicts counted, and when the first close came.
    fn run(
        limit: &mut RateLimit,
        start: Instant,
        per_sec: f64,
        secs: f64,
    ) -> (u32, u32, Option<Duration>) {
        let (mut accepted, mut dropped, mut closed) = (0, 0, None);
        let n = (per_sec * secs) as u64;
        for i in 0..n {
            let now = start + Duration::from_secs_f64(i as f64 / per_sec);
            match limit.check(now) {
                Verdict::Accept => accepted += 1,
                Verdict::Drop { .. } => dropped += 1,
                Verdict::Close => {
                    closed.get_or_insert(now - start);
                }
            }
        }
        (accepted, dropped, closed)
    }

    #[test]
    fn key_repeat_is_never_limited() {
        let start = Instant::now();
        // The defaults at 20 Hz: 60/s, bursts of 120. A key held on a 33/s
        // repeat for ten minutes loses nothing.
        let mut limit = RateLimit::new(60, 120, start);
        let (accepted, dropped, closed) = run(&mut limit, start, 33.0, 600.0);
        assert_eq!((accepted, dropped, closed), (33 * 600, 0, None));
    }

    #[test]
    fn bursts_are_absorbed() {
        let start = Instant::now();
        let mut limit = RateLimit::new(60, 120, start);
        // 60 at once, a second of quiet, 60 more, then normal play.
        for i in 0..60 {
            assert_eq!(limit.check(start), Verdict::Accept, "message {i}");
        }
        let later = start + Duration::from_secs(1);
        for i in 0..60 {
            assert_eq!(limit.check(later), Verdict::Accept, "message {i}");
        }
        let (_, dropped, closed) = run(&mut limit, later, 21.0, 60.0);
        assert_eq!((dropped, closed), (0, None));
    }

    #[test]
    fn a_sustained_flood_is_dropped_then_closed() {
        let start = Instant::now();
        let mut limit = RateLimit::new(60, 120, start);
        let mut verdicts = Vec::new();
        for i in 0..12_000u32 {
            let now = start + Duration::from_millis(u64::from(i));
            verdicts.push((now - start, limit.check(now)));
        }
        let first_drop = verdicts
            .iter()
            .position(|(_, v)| matches!(v, Verdict::Drop { first: true }))
            .unwrap();
        // The burst goes through (1000/s drains 120 tokens, refilled at 60/s, in ~128 ms).
        assert!((120..140).contains(&first_drop), "{first_drop}");
        // Only one drop per period of excess is marked first.
        let firsts = verdicts
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Drop { first: true }))
            .count();
        assert_eq!(firsts, 1);
        let (closed_at, _) = verdicts.iter().find(|(_, v)| *v == Verdict::Close).unwrap();
        let expected = verdicts[first_drop].0 + EXCESS_LIMIT;
        assert!(*closed_at >= expected && *closed_at < expected + Duration::from_millis(5));
        // Meanwhile, 60 a second still got through.
        let accepted = verdicts
            .iter()
            .filter(|(t, v)| *v == Verdict::Accept && *t < *closed_at)
            .count() as f64;
        let expect = 120.0 + 60.0 * closed_at.as_secs_f64();
        assert!((accepted - expect).abs() <= 2.0, "{accepted} vs {expect}");
    }

    #[test]
    fn a_pause_ends_a_period_of_excess() {
        let start = Instant::now();
        let mut limit = RateLimit::new(10, 10, start);
        // Bursts of 20 every 1.5 s: half of each burst is dropped, but the
        // pauses between them mean it is never a sustained flood.
        let mut firsts = 0;
        for burst in 0..20u32 {
            let at = start + Duration::from_millis(1500 * u64::from(burst));
            for _ in 0..20 {
                match limit.check(at) {
                    Verdict::Close => panic!("closed at burst {burst}"),
                    Verdict::Drop { first: true } => firsts += 1,
                    _ => {}
                }
            }
        }
        assert_eq!(firsts, 20, "each burst starts a new period");
    }

    #[test]
    fn time_going_nowhere_or_backwards_is_harmless() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut limit = RateLimit::new(1, 1, start);
        assert_eq!(limit.check(start), Verdict::Accept);
        assert_eq!(
            limit.check(start - Duration::from_secs(5)),
            Verdict::Drop { first: true }
        );
        assert_eq!(limit.check(start + Duration::from_secs(2)), Verdict::Accept);
    }
}
