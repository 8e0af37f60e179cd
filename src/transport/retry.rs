//! Capped exponential backoff with full jitter, the AWS-recommended retry
//! shape: attempt n sleeps a uniform random time in `0..=min(cap, base·2ⁿ)`.

use std::time::Duration;

use crate::error::Result;
use crate::random::random_up_to;

/// How often and how patiently a failed request is repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first included; at least 1.
    pub max_attempts: u32,
    /// Backoff ceiling of the first retry.
    pub base_delay: Duration,
    /// Backoff never exceeds this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn no_retries() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The upper bound of the sleep before retry number `retry` (0-based).
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// A full-jitter sleep before retry number `retry` (0-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.backoff_ceiling(retry).as_millis() as u64;
        Duration::from_millis(random_up_to(ceiling))
    }

    /// Runs `attempt` until it succeeds, fails with a final error, or the
    /// attempts are used up. `attempt` gets the 0-based attempt number.
    pub fn run<T>(&self, mut attempt: impl FnMut(u32) -> Result<T>) -> Result<T> {
        let mut tried = 0;
        loop {
            match attempt(tried) {
                Ok(value) => return Ok(value),
                Err(error) if error.is_retryable() && tried + 1 < self.max_attempts.max(1) => {
                    let sleep = self.backoff(tried);
                    log::debug!("retrying after {sleep:?} (attempt {}): {error}", tried + 1);
                    std::thread::sleep(sleep);
                    tried += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

