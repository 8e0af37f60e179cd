//! A token bucket: `rate` tokens a second, at most `burst` saved up. What a
//! token stands for is the caller's choice (a record, a byte, a capacity
//! unit); the producer keeps two per shard, one for records and one for
//! bytes.
//!
//! A request for more than `burst` tokens is granted once the bucket is
//! full and leaves it in debt, so oversized requests are slowed to the rate
//! instead of being refused forever.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// A thread-safe token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<Level>,
}

#[derive(Debug)]
struct Level {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket refilled at `rate_per_second`, holding at most `burst`
    /// tokens. Both must be positive and finite.
    pub fn new(rate_per_second: f64, burst: f64) -> Result<TokenBucket> {
        let valid = |value: f64| value.is_finite() && value > 0.0;
        if !valid(rate_per_second) || !valid(burst) {
            return Err(Error::Config(format!(
                "a rate limit needs a positive rate and burst, got {rate_per_second}/s with burst {burst}"
            )));
        }
        Ok(TokenBucket {
            rate: rate_per_second,
            burst,
            state: Mutex::new(Level {
                tokens: burst,
                at: Instant::now(),
            }),
        })
    }

    /// Tokens added per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The most tokens saved up.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Takes `n` tokens if they are there now.
    pub fn try_acquire(&self, n: f64) -> bool {
        let mut level = self.state.lock();
        let wait = self.refill(&mut level, n);
        if wait.is_zero() {
            level.tokens -= n;
        }
        wait.is_zero()
    }

    /// Takes `n` tokens, sleeping until they are there; gives up (false,
    /// nothing taken) when that would be after `deadline`.
    pub fn acquire(&self, n: f64, deadline: Option<Instant>) -> bool {
        loop {
            let wait = self.wait_time(n);
            if wait.is_zero() && self.try_acquire(n) {
                return true;
            }
            if deadline.is_some_and(|deadline| Instant::now() + wait > deadline) {
                return false;
            }
            // Another thread may take the tokens first: look again after.
            std::thread::sleep(wait.max(Duration::from_micros(100)));
        }
    }

    /// How long until `n` tokens are there (zero: now).
    pub fn wait_time(&self, n: f64) -> Duration {
        let mut level = self.state.lock();
        self.refill(&mut level, n)
    }

    /// The tokens there now (negative while in debt).
    pub fn available(&self) -> f64 {
        let mut level = self.state.lock();
        self.refill(&mut level, 0.0);
        level.tokens
    }

    /// Takes `n` tokens whether or not they are there, going into debt if
    /// need be: for spending decided on [`TokenBucket::available`], or
    /// learnt only afterwards (capacity a write turned out to consume).
    pub fn take(&self, n: f64) {
        let mut level = self.state.lock();
        self.refill(&mut level, 0.0);
        level.tokens -= n;
    }

    /// Adds what accrued since the last look; returns the wait for `n`.
    fn refill(&self, level: &mut Level, n: f64) -> Duration {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(level.at).as_secs_f64();
        level.tokens = (level.tokens + elapsed * self.rate).min(self.burst);
        level.at = now;
        let missing = n.min(self.burst) - level.tokens;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_grants_its_burst_then_the_rate() {
        let bucket = TokenBucket::new(1000.0, 10.0).unwrap();
        assert!(bucket.try_acquire(10.0));
        assert!(!bucket.try_acquire(5.0));
        let wait = bucket.wait_time(5.0);
        assert!(wait <= Duration::from_millis(5), "{wait:?}");
        assert!(bucket.acquire(5.0, Some(Instant::now() + Duration::from_secs(1))));
    }

    #[test]
    fn acquire_gives_up_at_its_deadline_without_taking() {
        let bucket = TokenBucket::new(1.0, 1.0).unwrap();
        assert!(bucket.try_acquire(1.0));
        // The wait (a second) is past the deadline: no sleeping at all.
        let started = Instant::now();
        assert!(!bucket.acquire(1.0, Some(started + Duration::from_millis(50))));
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(!bucket.try_acquire(0.5));
    }

    #[test]
    fn oversized_requests_wait_for_a_full_bucket_and_leave_a_debt() {
        let bucket = TokenBucket::new(100.0, 10.0).unwrap();
        assert!(bucket.try_acquire(30.0));
        // 20 tokens of debt plus 1: about 210 ms at 100 a second.
        let wait = bucket.wait_time(1.0);
        assert!(wait > Duration::from_millis(180), "{wait:?}");
    }

    #[test]
    fn the_rate_holds_over_many_acquires() {
        let bucket = TokenBucket::new(2000.0, 20.0).unwrap();
        let started = Instant::now();
        for _ in 0..220 {
            assert!(bucket.acquire(1.0, Some(started + Duration::from_secs(5))));
        }
        // 20 from the burst, 200 at 2000 a second: at least 100 ms.
        assert!(started.elapsed() >= Duration::from_millis(95));
    }

    #[test]
    fn taking_past_the_level_leaves_a_debt() {
        let bucket = TokenBucket::new(10.0, 5.0).unwrap();
        assert!(bucket.available() > 4.9);
        bucket.take(8.0);
        assert!(bucket.available() < -2.5);
        assert!(!bucket.try_acquire(1.0));
    }

    #[test]
    fn nonsense_limits_are_configuration_errors() {
        for (rate, burst) in [(0.0, 1.0), (1.0, 0.0), (f64::NAN, 1.0), (-1.0, 1.0)] {
            assert!(TokenBucket::new(rate, burst)
                .unwrap_err()
                .is_configuration());
        }
    }
}
