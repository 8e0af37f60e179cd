//! Process-local randomness for backoff jitter and instance ids, without a
//! dedicated RNG crate: std's randomly keyed SipHash over a counter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A fresh pseudo-random 64-bit value (not for cryptography).
pub(crate) fn random_u64() -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = KEYS.get_or_init(RandomState::new).build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// A uniformly distributed value in `0..=max`.
pub(crate) fn random_up_to(max: u64) -> u64 {
    if max == u64::MAX {
        return random_u64();
    }
    random_u64() % (max + 1)
}
