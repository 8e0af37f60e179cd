//! The lease keeper (heartbeat) thread: renews every owned lease, writes
//! coalesced automatic checkpoints, finishes shards at their end, hands
//! leases over when asked, fences itself when it cannot renew, and releases
//! everything at close. It never touches the caller's thread or the fetchers.

use std::panic::AssertUnwindSafe;

use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shard::{OwnedShard, TenureState, WriteOutcome};
use super::Context;
use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::transport::{deadline, RetryPolicy};

/// How often the keeper looks at its leases; writes happen far less often.
const TICK: Duration = Duration::from_millis(100);

/// Pause after a failed lease write (capped at half the heartbeat period).
const WRITE_BACKOFF: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    base_delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(5),
};

/// Runs until close sends its deadline (or the consumer is dropped), then
/// releases every owned lease before that deadline.
pub(crate) fn run(context: Arc<Context>, stop: Receiver<Instant>) {
    let deadline = loop {
        match stop.recv_timeout(TICK) {
            Ok(deadline) => break deadline,
            Err(RecvTimeoutError::Disconnected) => {
                break Instant::now() + context.settings.session_timeout
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        let tick = std::panic::catch_unwind(AssertUnwindSafe(|| {
            for shard in context.owned_shards() {
                keep(&context, &shard);
            }
            context.forget_ended_shards();
        }));
        // Never die silently: the caller hears of it and the keeper goes on.
        if let Err(panic) = tick {
            let message = crate::error::panic_message(&*panic);
            log::error!("lease keeper: {message}");
            context.deliver_error(Error::Internal(format!("lease keeper: {message}")));
        }
    };
    deadline::within(deadline, || {
        for shard in context.owned_shards() {
            release_at_close(&context, &shard);
        }
        release_unclaimed(&context);
    });
}

/// At close, leases the table gives this consumer without a tenure here (a
/// hand-over that arrived after the last discovery) are released too, so
/// nobody waits for them to expire.
fn release_unclaimed(context: &Context) {
    let leases = match context.checkpointer.leases(&context.scope) {
        Ok(leases) => leases,
        Err(error) => {
            log::warn!("could not list leases at close: {error}");
            return;
        }
    };
    for lease in leases.iter().filter(|l| l.is_owned_by(&context.owner)) {
        match context
            .checkpointer
            .release(&context.scope, lease, None, None)
        {
            Ok(()) => log::info!(
                "{}: lease released: shard {} (handed over at close)",
                context.owner,
                lease.shard_id
            ),
            Err(error) => log::warn!("shard {}: release failed: {error}", lease.shard_id),
        }
    }
}

fn keep(context: &Context, shard: &Arc<OwnedShard>) {
    let settings = &context.settings;
    let auto = settings.auto_checkpoint;
    // One shard's hung write must not starve the renewals of the others.
    let budget = settings.heartbeat_frequency;
    let state = shard.state();
    // Others judge the lease dead after session_timeout without a change;
    // stop before they can take it.
    if !shard.is_live() || shard.end_if_lapsed(context) {
        return;
    }
    let (
        silent_for,
        since_checkpoint,
        handover,
        end_reached,
        delivered,
        processed,
        checkpointed,
        retry_at,
    ) = {
        let progress = shard.progress.lock();
        (
            progress.last_write_sent.elapsed(),
            progress.last_checkpoint_written.elapsed(),
            progress.handover.clone(),
            progress.end_reached,
            progress.delivered.clone(),
            if auto {
                progress.processed.clone()
            } else {
                progress.delivered.clone()
            },
            progress.checkpointed.clone(),
            progress.retry_at,
        )
    };
    if retry_at.is_some_and(|at| Instant::now() < at) {
        return; // backing off after a failed write
    }
    // In manual mode only the caller's checkpoints count as processed.
    let caller_done = if auto {
        processed == delivered
    } else {
        match (&delivered, &checkpointed) {
            (None, _) => true,
            (Some(d), Some(c)) => c.covers(d),
            (Some(_), None) => false,
        }
    };
    if state == TenureState::HandingOver {
        let waited = handover
            .as_ref()
            .map_or(Duration::MAX, |(_, since)| since.elapsed());
        if caller_done || waited >= settings.session_timeout / 2 {
            let to = handover.map(|(asker, _)| asker);
            let checkpoint = if auto {
                processed.map(Checkpoint::At)
            } else {
                None
            };
            release(context, shard, budget, checkpoint, to.as_deref());
        }
        return;
    }
    if end_reached && caller_done {
        release(context, shard, budget, Some(Checkpoint::ShardEnd), None);
        context.wake_coordinator();
        return;
    }
    let result = match processed {
        Some(position)
            if auto
                && since_checkpoint >= context.options.checkpoint_interval
                && checkpointed.as_ref() != Some(&Checkpoint::At(position.clone())) =>
        {
            shard.write_checkpoint(context, budget, Checkpoint::At(position))
        }
        _ if silent_for >= settings.heartbeat_frequency => shard
            .write(context, budget, |lease| {
                context
                    .checkpointer
                    .renew(&context.scope, lease)
                    .map(WriteOutcome::Renewed)
            })
            .map(|()| {
                context.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
            }),
        _ => Ok(()),
    };
    let mut progress = shard.progress.lock();
    match result {
        Ok(()) => {
            progress.failed_writes = 0;
            progress.retry_at = None;
        }
        Err(error) if shard.state() != TenureState::Lost => {
            context
                .counters
                .heartbeat_failures
                .fetch_add(1, Ordering::Relaxed);
            let pause = WRITE_BACKOFF
                .backoff(progress.failed_writes)
                .min(settings.heartbeat_frequency / 2);
            progress.failed_writes = progress.failed_writes.saturating_add(1);
            progress.retry_at = Some(Instant::now() + pause);
            log::warn!(
                "shard {}: lease write failed, retrying in {pause:?}: {error}",
                shard.shard_id
            );
        }
        Err(_) => {}
    }
}

/// Releases the lease (to `to`, or to nobody) recording `checkpoint` when it
/// moves forward. One conditional write.
fn release(
    context: &Context,
    shard: &OwnedShard,
    budget: Duration,
    checkpoint: Option<Checkpoint>,
    to: Option<&str>,
) {
    match shard.release(context, budget, checkpoint, to) {
        Ok(_) => match to {
            Some(asker) => {
                context
                    .counters
                    .handoffs_given
                    .fetch_add(1, Ordering::Relaxed);
                context.emit(
                    super::ConsumerEventKind::LeaseHandedOver,
                    &shard.shard_id,
                    || asker.to_owned(),
                );
                log::info!(
                    "{}: lease handed over: shard {} to {asker}",
                    context.owner,
                    shard.shard_id
                );
            }
            None => log::info!(
                "{}: lease released: shard {}",
                context.owner,
                shard.shard_id
            ),
        },
        Err(error) => log::warn!("shard {}: release failed: {error}", shard.shard_id),
    }
}

/// At close: the processed position (automatic mode) and the lease go back
/// to the table, so another consumer resumes right after it.
fn release_at_close(context: &Context, shard: &OwnedShard) {
    if !shard.is_live() {
        return;
    }
    let auto = context.settings.auto_checkpoint;
    let checkpoint = {
        let progress = shard.progress.lock();
        let all_processed = progress.processed == progress.delivered;
        if auto && progress.end_reached && all_processed {
            Some(Checkpoint::ShardEnd)
        } else if auto {
            progress.processed.clone().map(Checkpoint::At)
        } else {
            None
        }
    };
    // Bounded by close's deadline and the lease's own time.
    release(context, shard, Duration::MAX, checkpoint, None);
}
