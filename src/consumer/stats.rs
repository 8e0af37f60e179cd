//! A snapshot of what the consumer is doing, for monitoring.

use std::sync::atomic::Ordering;

use serde::Serialize;

use super::Context;
use crate::checkpoint::Checkpoint;

/// Figures of one owned shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardStats {
    pub shard_id: String,
    /// This consumer's owner id.
    pub owner: String,
    /// `sequence/sub_sequence` of the last record returned to the caller.
    pub last_delivered: Option<String>,
    /// The stored checkpoint (`SHARD_END` for a finished shard).
    pub last_checkpointed: Option<String>,
    /// Milliseconds since this consumer last wrote the shard's checkpoint
    /// (or took the lease, when it has written none).
    pub millis_since_checkpoint: u64,
    /// Whether records returned to the caller lie beyond the stored
    /// checkpoint (false: the checkpoint is up to date, however old).
    pub checkpoint_behind: bool,
    pub millis_behind_latest: u64,
    /// User records queued for the caller, and their payload bytes.
    pub records: u64,
    pub bytes: u64,
    pub throttles: u64,
    pub errors: u64,
}

/// Figures of the whole consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerStats {
    /// The checkpointer's group (application name).
    pub group: String,
    pub owner: String,
    pub stream: String,
    pub shards: Vec<ShardStats>,
    pub lease_gains: u64,
    pub lease_losses: u64,
    pub handoffs_given: u64,
    pub handoffs_received: u64,
    pub checkpoint_writes: u64,
    pub checkpoint_failures: u64,
    /// Lease renewals without a checkpoint.
    pub heartbeats: u64,
    pub heartbeat_failures: u64,
    pub discovery_failures: u64,
}

pub(crate) fn collect(context: &Context) -> ConsumerStats {
    let mut shards: Vec<ShardStats> = context
        .owned_shards()
        .iter()
        .map(|shard| {
            let progress = shard.progress.lock();
            let counters = &shard.counters;
            ShardStats {
                shard_id: shard.shard_id.to_string(),
                owner: context.owner.clone(),
                last_delivered: progress.delivered.as_ref().map(ToString::to_string),
                last_checkpointed: progress.checkpointed.as_ref().map(Checkpoint::to_string),
                millis_since_checkpoint: u64::try_from(
                    progress.last_checkpoint_written.elapsed().as_millis(),
                )
                .unwrap_or(u64::MAX),
                checkpoint_behind: match (&progress.delivered, &progress.checkpointed) {
                    (None, _) => false,
                    (Some(delivered), Some(stored)) => !stored.covers(delivered),
                    (Some(_), None) => true,
                },
                millis_behind_latest: counters.millis_behind_latest.load(Ordering::Relaxed),
                records: counters.records.load(Ordering::Relaxed),
                bytes: counters.bytes.load(Ordering::Relaxed),
                throttles: counters.throttles.load(Ordering::Relaxed),
                errors: counters.errors.load(Ordering::Relaxed),
            }
        })
        .collect();
    shards.sort_by(|a, b| a.shard_id.cmp(&b.shard_id));
    let c = &context.counters;
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    ConsumerStats {
        group: context.scope.group.clone(),
        owner: context.owner.clone(),
        stream: context.stream.to_string(),
        shards,
        lease_gains: load(&c.lease_gains),
        lease_losses: load(&c.lease_losses),
        handoffs_given: load(&c.handoffs_given),
        handoffs_received: load(&c.handoffs_received),
        checkpoint_writes: load(&c.checkpoint_writes),
        checkpoint_failures: load(&c.checkpoint_failures),
        heartbeats: load(&c.heartbeats),
        heartbeat_failures: load(&c.heartbeat_failures),
        discovery_failures: load(&c.discovery_failures),
    }
}
