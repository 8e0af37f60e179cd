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
                    // Never sleep past the thread's deadline: the next
                    // attempt could not finish in time anyway.
                    if super::deadline::remaining().is_some_and(|left| left <= sleep) {
                        return Err(error);
                    }
                    log::debug!("retrying after {sleep:?} (attempt {}): {error}", tried + 1);
                    std::thread::sleep(sleep);
                    tried += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorCode};
    use std::cell::Cell;

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    fn throttled() -> Error {
        Error::Service {
            operation: "GetRecords",
            code: ErrorCode::ProvisionedThroughputExceeded,
            status: 400,
            message: "slow down".into(),
        }
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        };
        assert_eq!(policy.backoff_ceiling(0), Duration::from_millis(100));
        assert_eq!(policy.backoff_ceiling(1), Duration::from_millis(200));
        assert_eq!(policy.backoff_ceiling(4), Duration::from_millis(1600));
        assert_eq!(policy.backoff_ceiling(5), Duration::from_secs(2));
        assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_secs(2));
        for retry in 0..64 {
            assert!(policy.backoff(retry) <= policy.backoff_ceiling(retry));
        }
    }

    #[test]
    fn full_jitter_spreads_sleeps() {
        let policy = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(1),
        };
        let sleeps: std::collections::HashSet<_> = (0..50).map(|_| policy.backoff(0)).collect();
        assert!(
            sleeps.len() > 10,
            "jitter should vary the sleep: {sleeps:?}"
        );
    }

    #[test]
    fn retryable_errors_are_tried_max_attempts_times() {
        let calls = Cell::new(0);
        let result: Result<()> = quick(4).run(|_| {
            calls.set(calls.get() + 1);
            Err(throttled())
        });
        assert!(result.unwrap_err().is_throttling());
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn success_after_retries_is_returned() {
        let result = quick(5).run(|attempt| {
            if attempt < 2 {
                Err(throttled())
            } else {
                Ok(attempt)
            }
        });
        assert_eq!(result.unwrap(), 2);
    }

    #[test]
    fn final_errors_are_not_retried() {
        let calls = Cell::new(0);
        let result: Result<()> = quick(5).run(|_| {
            calls.set(calls.get() + 1);
            Err(Error::Config("bad".into()))
        });
        assert!(result.is_err());
        assert_eq!(calls.get(), 1);
        let calls = Cell::new(0);
        let _ = RetryPolicy::no_retries().run(|_| -> Result<()> {
            calls.set(calls.get() + 1);
            Err(throttled())
        });
        assert_eq!(calls.get(), 1);
    }
}
