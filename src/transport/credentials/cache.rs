//! Caching in front of a provider, so that signing a request costs no I/O
//! and temporary credentials are replaced before they expire.
//!
//! Expiry is compared with `SystemTime`: it is a wall-clock instant set by
//! AWS. Retry pacing uses `Instant`: it is our own interval.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use super::{Credentials, ProvideCredentials, SharedCredentialsProvider};
use crate::error::{Error, Result};

/// Caches what an inner provider returns.
///
/// - Credentials without an expiry are kept for good.
/// - Temporary credentials further than the refresh window (5 minutes) from
///   expiry are returned as they are.
/// - Inside the window, one caller refreshes while the others keep getting
///   the still-valid cached credentials without waiting. A failed refresh is
///   logged and the cached credentials are still returned; the next attempt
///   waits for the retry interval (10 seconds).
/// - With nothing valid cached (first use, or expired), callers wait for a
///   refresh, one at a time, and get its error if it fails. Callers that were
///   waiting on a refresh that failed get the same error instead of each
///   repeating it.
pub struct CachedProvider {
    inner: SharedCredentialsProvider,
    refresh_window: Duration,
    retry_interval: Duration,
    /// Short critical sections only; never held during a refresh.
    state: Mutex<State>,
    /// Held for the duration of a refresh: at most one at a time.
    refreshing: Mutex<()>,
}

#[derive(Default)]
struct State {
    cached: Option<Credentials>,
    last_attempt: Option<Instant>,
    last_failure: Option<(Instant, Error)>,
}

/// Where cached credentials stand at a given time.
#[derive(Debug, PartialEq, Eq)]
enum Freshness {
    Fresh,
    /// Still valid, but inside the refresh window.
    Expiring,
    Expired,
}

impl CachedProvider {
    /// How long before expiry a refresh starts, by default.
    pub const DEFAULT_REFRESH_WINDOW: Duration = Duration::from_secs(5 * 60);
    /// The least time between refresh attempts inside the window, by default.
    pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(10);

    /// Caches `inner` with the default window and retry interval.
    pub fn new(inner: impl ProvideCredentials + 'static) -> CachedProvider {
        CachedProvider::from_shared(Arc::new(inner))
    }

    /// Caches an already shared provider.
    pub fn from_shared(inner: SharedCredentialsProvider) -> CachedProvider {
        CachedProvider {
            inner,
            refresh_window: Self::DEFAULT_REFRESH_WINDOW,
            retry_interval: Self::DEFAULT_RETRY_INTERVAL,
            state: Mutex::new(State::default()),
            refreshing: Mutex::new(()),
        }
    }

    /// Refresh temporary credentials once they expire within `window`.
    pub fn with_refresh_window(mut self, window: Duration) -> CachedProvider {
        self.refresh_window = window;
        self
    }

    /// Wait at least `interval` between refresh attempts made while the
    /// cached credentials are still valid.
    pub fn with_retry_interval(mut self, interval: Duration) -> CachedProvider {
        self.retry_interval = interval;
        self
    }

    fn freshness(&self, credentials: &Credentials, now: SystemTime) -> Freshness {
        match credentials.expiry() {
            None => Freshness::Fresh,
            Some(expiry) => match expiry.duration_since(now) {
                Ok(left) if left > self.refresh_window => Freshness::Fresh,
                Ok(left) if !left.is_zero() => Freshness::Expiring,
                _ => Freshness::Expired,
            },
        }
    }

    fn cached(&self) -> Option<Credentials> {
        self.state.lock().cached.clone()
    }

    /// Whether a refresh inside the window may start now.
    fn attempt_due(&self) -> bool {
        match self.state.lock().last_attempt {
            Some(at) => at.elapsed() >= self.retry_interval,
            None => true,
        }
    }

    /// Calls the inner provider and records the outcome. The caller holds
    /// `refreshing`.
    fn refresh(&self) -> Result<Credentials> {
        self.state.lock().last_attempt = Some(Instant::now());
        let outcome = self.inner.provide_credentials();
        let mut state = self.state.lock();
        match &outcome {
            Ok(credentials) => {
                if self.freshness(credentials, SystemTime::now()) == Freshness::Expired {
                    log::warn!(
                        "the credentials provider returned credentials (access key id {}) that \
                         have already expired; is the system clock right?",
                        credentials.access_key_id()
                    );
                }
                state.cached = Some(credentials.clone());
                state.last_failure = None;
            }
            Err(e) => state.last_failure = Some((Instant::now(), e.clone())),
        }
        outcome
    }

    /// Inside the window: refresh if nobody else is and the retry interval
    /// has passed, else (or on failure) return the still-valid `cached`.
    fn refresh_in_background_of_callers(&self, cached: Credentials) -> Credentials {
        if !self.attempt_due() {
            return cached;
        }
        let Some(_refreshing) = self.refreshing.try_lock() else {
            // Someone is refreshing; don't wait for them.
            return cached;
        };
        // The refresh that just ended may have done the job already.
        let latest = self.cached().unwrap_or(cached);
        if self.freshness(&latest, SystemTime::now()) != Freshness::Expiring || !self.attempt_due()
        {
            return latest;
        }
        match self.refresh() {
            Ok(fresh) => fresh,
            Err(e) => {
                log::warn!(
                    "refreshing credentials failed; using the cached ones until they expire \
                     (retrying in {:?}): {e}",
                    self.retry_interval
                );
                latest
            }
        }
    }
}

impl ProvideCredentials for CachedProvider {
    fn provide_credentials(&self) -> Result<Credentials> {
        if let Some(cached) = self.cached() {
            match self.freshness(&cached, SystemTime::now()) {
                Freshness::Fresh => return Ok(cached),
                Freshness::Expiring => return Ok(self.refresh_in_background_of_callers(cached)),
                Freshness::Expired => {}
            }
        }
        let waiting_since = Instant::now();
        let _refreshing = self.refreshing.lock();
        {
            let state = self.state.lock();
            // Whoever held the lock before us may have refreshed…
            if let Some(cached) = &state.cached {
                if self.freshness(cached, SystemTime::now()) != Freshness::Expired {
                    return Ok(cached.clone());
                }
            }
            // …or failed while we waited: share that answer instead of
            // repeating the same slow failure once per waiting caller.
            if let Some((at, error)) = &state.last_failure {
                if *at >= waiting_since {
                    return Err(error.clone());
                }
            }
        }
        self.refresh()
    }
}

// Not derived: shows the inner provider and the expiry, never the cache.
impl fmt::Debug for CachedProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expiry = self.state.lock().cached.as_ref().map(Credentials::expiry);
        f.debug_struct("CachedProvider")
            .field("inner", &self.inner)
            .field("refresh_window", &self.refresh_window)
            .field("cached_expiry", &expiry)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Returns credentials that expire `lifetime` after each call, or fails.
    #[derive(Debug)]
    struct Counting {
        calls: AtomicU32,
        lifetime: Option<Duration>,
        fail: bool,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials(&self) -> Result<Credentials> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(Error::Credentials("nope".into()));
            }
            Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                None,
                self.lifetime.map(|l| SystemTime::now() + l),
            ))
        }
    }

    #[test]
    fn freshness_boundaries() {
        let cache = CachedProvider::new(Credentials::new("a", "b", None, None))
            .with_refresh_window(Duration::from_secs(60));
        let now = SystemTime::now();
        let at = |secs: i64| {
            let expiry = if secs >= 0 {
                now + Duration::from_secs(secs as u64)
            } else {
                now - Duration::from_secs((-secs) as u64)
            };
            Credentials::new("a", "b", None, Some(expiry))
        };
        assert_eq!(cache.freshness(&at(61), now), Freshness::Fresh);
        assert_eq!(cache.freshness(&at(60), now), Freshness::Expiring);
        assert_eq!(cache.freshness(&at(1), now), Freshness::Expiring);
        assert_eq!(cache.freshness(&at(0), now), Freshness::Expired);
        assert_eq!(cache.freshness(&at(-5), now), Freshness::Expired);
        assert_eq!(
            cache.freshness(&Credentials::new("a", "b", None, None), now),
            Freshness::Fresh
        );
        // A huge window must not overflow.
        let huge = CachedProvider::new(Credentials::new("a", "b", None, None))
            .with_refresh_window(Duration::MAX);
        assert_eq!(huge.freshness(&at(61), now), Freshness::Expiring);
    }

    #[test]
    fn long_lived_credentials_are_fetched_once() {
        let inner = Arc::new(Counting {
            calls: AtomicU32::new(0),
            lifetime: None,
            fail: false,
        });
        let cache = CachedProvider::from_shared(inner.clone());
        for _ in 0..5 {
            assert_eq!(
                cache.provide_credentials().unwrap().access_key_id(),
                "AKID0"
            );
        }
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failures_without_cache_are_errors_each_time() {
        let inner = Arc::new(Counting {
            calls: AtomicU32::new(0),
            lifetime: None,
            fail: true,
        });
        let cache = CachedProvider::from_shared(inner.clone());
        assert!(cache.provide_credentials().is_err());
        assert!(cache.provide_credentials().is_err());
        assert_eq!(inner.calls.load(Ordering::SeqCst), 2);
    }
}
