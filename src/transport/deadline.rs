//! A deadline for every AWS call a thread makes inside a scope. A lease
//! write is worth nothing once the lease may have expired, and a consumer
//! that closes must not wait for minutes of retries, so the callers that
//! need it bound whole operations (attempts, response reads and backoff
//! sleeps together) without threading a parameter through every layer.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `body` with every call it makes finished by `deadline` (or by an
/// earlier deadline already in force on this thread).
pub(crate) fn within<T>(deadline: Instant, body: impl FnOnce() -> T) -> T {
    let outer = DEADLINE.get();
    let inner = outer.map_or(deadline, |outer| outer.min(deadline));
    // Restored even if `body` unwinds, so a caught panic leaves no deadline.
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEADLINE.set(self.0);
        }
    }
    let _restore = Restore(outer);
    DEADLINE.set(Some(inner));
    body()
}

/// Time left before this thread's deadline; `None` when there is none.
pub(crate) fn remaining() -> Option<Duration> {
    DEADLINE
        .get()
        .map(|deadline| deadline.saturating_duration_since(Instant::now()))
}

/// `limit`, shortened to the time left before this thread's deadline.
pub(crate) fn bounded(limit: Duration) -> Duration {
    remaining().map_or(limit, |left| left.min(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_deadlines_keep_the_earlier_and_are_restored() {
        assert_eq!(remaining(), None);
        let soon = Instant::now() + Duration::from_secs(1);
        let later = soon + Duration::from_secs(60);
        within(soon, || {
            within(later, || {
                assert!(remaining().unwrap() <= Duration::from_secs(1));
                assert!(bounded(Duration::from_secs(30)) <= Duration::from_secs(1));
            });
            assert!(remaining().is_some());
        });
        assert_eq!(remaining(), None);
        assert_eq!(bounded(Duration::from_secs(30)), Duration::from_secs(30));
        let caught = std::panic::catch_unwind(|| within(soon, || panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(remaining(), None, "a panic leaves no deadline behind");
    }
}
