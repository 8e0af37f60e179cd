//! Which shard a record goes to, as Kinesis decides it: the MD5 of the
//! partition key read as a 128-bit big-endian integer, or the explicit hash
//! key, falls in exactly one open shard's hash key range. Each open shard
//! has its own record and byte limits.

use std::collections::HashMap;
use std::sync::Arc;

use md5::{Digest, Md5};

use crate::error::Result;
use crate::kinesis::Shard;
use crate::rate::TokenBucket;

/// The share of a second's allowance a shard may spend at once: bursts of
/// 100 ms keep a saturated shard near its limit in every one-second window.
const BURST_SECONDS: f64 = 0.1;

/// The hash Kinesis routes a partition key by.
pub(crate) fn partition_key_hash(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// An explicit hash key: a decimal integer in 0..2¹²⁸.
pub(crate) fn parse_hash_key(text: &str) -> Option<u128> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Per-shard write limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ShardLimits {
    pub records_per_second: f64,
    pub bytes_per_second: f64,
}

/// The two buckets of one shard: records and bytes.
#[derive(Debug)]
pub(crate) struct ShardBudget {
    records: TokenBucket,
    bytes: TokenBucket,
}

impl ShardBudget {
    fn new(limits: ShardLimits) -> Result<ShardBudget> {
        let bucket = |rate: f64| TokenBucket::new(rate, (rate * BURST_SECONDS).max(1.0));
        Ok(ShardBudget {
            records: bucket(limits.records_per_second)?,
            bytes: bucket(limits.bytes_per_second)?,
        })
    }

    /// How long until `records` records of `bytes` bytes may go (each
    /// capped at a burst, so a backlog waits for a worthwhile chunk rather
    /// than leaving a record at a time).
    pub fn wait_for_chunk(&self, records: usize, bytes: usize) -> std::time::Duration {
        let records = (records as f64).min(self.records.burst());
        let bytes = (bytes as f64).min(self.bytes.burst());
        self.records
            .wait_time(records)
            .max(self.bytes.wait_time(bytes))
    }

    /// What the shard may spend now, to be drawn on while building one
    /// request and then [`ShardBudget::spend`]: one look at the clock per
    /// shard and request rather than per record.
    pub fn allowance(&self) -> Allowance {
        Allowance {
            records: self.records.available(),
            bytes: self.bytes.available(),
            records_burst: self.records.burst(),
            bytes_burst: self.bytes.burst(),
        }
    }

    /// Spends what an allowance granted.
    pub fn spend(&self, records: usize, bytes: usize) {
        self.records.take(records as f64);
        self.bytes.take(bytes as f64);
    }
}

/// A snapshot of a shard's buckets, drawn on as the buckets would be: a
/// draw larger than the burst needs a full bucket and leaves a debt.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Allowance {
    records: f64,
    bytes: f64,
    records_burst: f64,
    bytes_burst: f64,
}

impl Allowance {
    /// Draws `records` records of `bytes` bytes if both are there.
    pub fn try_draw(&mut self, records: usize, bytes: usize) -> bool {
        let (records, bytes) = (records as f64, bytes as f64);
        // An aggregate's later members draw bytes only.
        let fits = (records == 0.0 || self.records >= records.min(self.records_burst))
            && self.bytes >= bytes.min(self.bytes_burst);
        if fits {
            self.records -= records;
            self.bytes -= bytes;
        }
        fits
    }
}

/// The open shards, sorted by hash key range, with their budgets.
#[derive(Debug, Default)]
pub(crate) struct ShardMap {
    /// `(starting hash key, ending hash key)` per shard, sorted.
    ranges: Vec<(u128, u128)>,
    ids: Vec<Arc<str>>,
    budgets: Vec<Arc<ShardBudget>>,
}

impl ShardMap {
    /// The map of `shards`' open shards; a shard already in `previous`
    /// keeps its budget (what it spent still counts).
    pub fn new(shards: &[Shard], limits: ShardLimits, previous: &ShardMap) -> Result<ShardMap> {
        let kept: HashMap<&str, &Arc<ShardBudget>> = previous
            .ids
            .iter()
            .map(|id| &**id)
            .zip(&previous.budgets)
            .collect();
        let mut open: Vec<(u128, u128, &str)> = shards
            .iter()
            .filter(|shard| !shard.is_closed())
            .filter_map(|shard| {
                let range = &shard.hash_key_range;
                Some((
                    parse_hash_key(&range.starting_hash_key)?,
                    parse_hash_key(&range.ending_hash_key)?,
                    shard.shard_id.as_str(),
                ))
            })
            .collect();
        open.sort_unstable();
        let mut map = ShardMap::default();
        for (start, end, id) in open {
            let budget = match kept.get(id) {
                Some(budget) => Arc::clone(budget),
                None => Arc::new(ShardBudget::new(limits)?),
            };
            map.ranges.push((start, end));
            map.ids.push(id.into());
            map.budgets.push(budget);
        }
        Ok(map)
    }

    /// Open shards.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// The index of the open shard whose range holds `hash`.
    pub fn route(&self, hash: u128) -> Option<usize> {
        let after = self.ranges.partition_point(|&(start, _)| start <= hash);
        let index = after.checked_sub(1)?;
        (hash <= self.ranges[index].1).then_some(index)
    }

    pub fn id(&self, index: usize) -> &str {
        &self.ids[index]
    }

    pub fn budget(&self, index: usize) -> &ShardBudget {
        &self.budgets[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinesis::HashKeyRange;

    fn shard(id: &str, start: u128, end: u128, closed: bool) -> Shard {
        let mut shard = Shard {
            shard_id: id.into(),
            hash_key_range: HashKeyRange {
                starting_hash_key: start.to_string(),
                ending_hash_key: end.to_string(),
            },
            ..Shard::default()
        };
        if closed {
            shard.sequence_number_range.ending_sequence_number = Some("9".into());
        }
        shard
    }

    const LIMITS: ShardLimits = ShardLimits {
        records_per_second: 1000.0,
        bytes_per_second: 1048576.0,
    };

    #[test]
    fn partition_keys_hash_as_kinesis_does() {
        // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
        assert_eq!(
            partition_key_hash("a"),
            0x0cc175b9c0f1b6a831c399e269772661u128
        );
        assert_eq!(parse_hash_key("0"), Some(0));
        assert_eq!(parse_hash_key(&u128::MAX.to_string()), Some(u128::MAX));
        for bad in [
            "",
            "-1",
            "+1",
            "1.0",
            "340282366920938463463374607431768211456",
        ] {
            assert_eq!(parse_hash_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn hashes_route_to_the_open_shard_whose_range_holds_them() {
        let half = u128::MAX / 2;
        let shards = [
            shard("parent", 0, u128::MAX, true),
            shard("high", half + 1, u128::MAX, false),
            shard("low", 0, half, false),
        ];
        let map = ShardMap::new(&shards, LIMITS, &ShardMap::default()).unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map.id(map.route(0).unwrap()), "low");
        assert_eq!(map.id(map.route(half).unwrap()), "low");
        assert_eq!(map.id(map.route(half + 1).unwrap()), "high");
        assert_eq!(map.id(map.route(u128::MAX).unwrap()), "high");
        let gap = ShardMap::new(&shards[1..2], LIMITS, &ShardMap::default()).unwrap();
        assert_eq!(gap.route(5), None);
    }

    #[test]
    fn budgets_survive_a_refresh_of_the_same_shard() {
        let shards = [shard("only", 0, u128::MAX, false)];
        let first = ShardMap::new(&shards, LIMITS, &ShardMap::default()).unwrap();
        let mut allowance = first.budget(0).allowance();
        assert!(allowance.try_draw(100, 10));
        assert!(!allowance.try_draw(1, 1), "the burst is drawn");
        first.budget(0).spend(100, 10);
        let second = ShardMap::new(&shards, LIMITS, &first).unwrap();
        assert!(
            !second.budget(0).allowance().try_draw(1, 1),
            "the burst was spent"
        );
    }

    #[test]
    fn a_draw_over_the_burst_needs_a_full_bucket_and_leaves_a_debt() {
        let shards = [shard("only", 0, u128::MAX, false)];
        let map = ShardMap::new(&shards, LIMITS, &ShardMap::default()).unwrap();
        let mut allowance = map.budget(0).allowance();
        // A 1 MiB record is ten bursts of bytes.
        assert!(allowance.try_draw(1, 1 << 20));
        assert!(!allowance.try_draw(1, 1));
        assert!(!allowance.try_draw(0, 1), "nor more bytes for an aggregate");
    }
}
