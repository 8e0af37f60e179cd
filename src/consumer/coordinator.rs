//! The coordinator thread: discovers shards (paginated ListShards) and
//! leases, creates missing leases, decides which shards are ready (parents
//! finished), and balances: takes free or dead leases up to an even share,
//! otherwise asks the most loaded consumer to hand one over.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fetcher::{self, StartFrom};
use super::shard::OwnedShard;
use super::{ConsumerEventKind, Context};
use crate::checkpoint::{Checkpoint, Lease};
use crate::error::Result;
use crate::kinesis::{IteratorPosition, Shard};
use crate::transport::deadline;

/// What this consumer has seen of other consumers' leases, on its own
/// monotonic clock: a lease whose counter has not moved for
/// session_timeout is dead, whatever the wall clocks say.
#[derive(Default)]
pub(crate) struct Observations {
    seen: HashMap<String, Seen>,
}

struct Seen {
    counter: u64,
    since: Instant,
    /// The counter went down: the item was deleted and created again while
    /// its last owner may still be delivering.
    recreated: bool,
}

impl Observations {
    fn observe(&mut self, lease: &Lease, now: Instant) {
        let seen = self.seen.entry(lease.shard_id.clone()).or_insert(Seen {
            counter: lease.counter,
            since: now,
            recreated: false,
        });
        if seen.counter != lease.counter {
            seen.recreated = lease.counter < seen.counter;
            seen.counter = lease.counter;
            seen.since = now;
        }
    }

    fn is_expired(&self, lease: &Lease, context: &Context) -> bool {
        match self.seen.get(&lease.shard_id) {
            Some(seen) => {
                seen.counter == lease.counter
                    && seen.since.elapsed() >= context.settings.session_timeout
            }
            None => false,
        }
    }

    /// Whether a free lease may be taken now: not while its item was just
    /// created again after this consumer saw it held (by hand, a restore):
    /// its last owner learns of that only at its next write, so it is given
    /// session_timeout, as an expiring lease would be.
    fn may_take_free(&self, lease: &Lease, context: &Context) -> bool {
        self.seen.get(&lease.shard_id).is_none_or(|seen| {
            !seen.recreated || seen.since.elapsed() >= context.settings.session_timeout
        })
    }
}

pub(crate) fn run(context: Arc<Context>) {
    let mut observations = Observations::default();
    loop {
        // A cycle never outlasts a lease: close waits for it at most that long.
        let deadline = Instant::now() + context.settings.session_timeout;
        if let Err(error) = deadline::within(deadline, || cycle(&context, &mut observations)) {
            context
                .counters
                .discovery_failures
                .fetch_add(1, Ordering::Relaxed);
            if error.is_configuration() {
                log::error!("discovery on {}: {error}", context.stream);
                context.deliver_error(error);
            } else {
                log::warn!(
                    "discovery on {} failed, will retry: {error}",
                    context.stream
                );
            }
        }
        if !context.wait_for_next_cycle() {
            return;
        }
    }
}

/// One discovery and balancing pass.
pub(crate) fn cycle(context: &Arc<Context>, observations: &mut Observations) -> Result<()> {
    // Taken before the table is read: a tenure released after this cannot
    // look like a lease handed to us.
    let owned = context.owned_shards();
    let shards = context.kinesis.list_shards(&context.stream, None)?;
    let mut leases = context.checkpointer.leases(&context.scope)?;
    let known: HashSet<&str> = leases.iter().map(|l| l.shard_id.as_str()).collect();
    let missing: Vec<&Shard> = shards
        .iter()
        .filter(|s| !known.contains(s.shard_id.as_str()))
        .collect();
    if !missing.is_empty() {
        for shard in &missing {
            let parents: Vec<String> = shard.parents().map(str::to_owned).collect();
            context
                .checkpointer
                .create_lease(&context.scope, &shard.shard_id, &parents)?;
        }
        log::info!(
            "{}: found {} new shard(s): {}",
            context.stream,
            missing.len(),
            missing
                .iter()
                .map(|s| s.shard_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        leases = context.checkpointer.leases(&context.scope)?;
    }
    let now = Instant::now();
    for lease in &leases {
        observations.observe(lease, now);
    }

    end_orphaned_tenures(context, &owned, &leases);
    keep_expiry(context, &shards, &leases);
    let owned: Vec<Arc<OwnedShard>> = owned.into_iter().filter(|s| s.is_live()).collect();
    let ready = ready_leases(&shards, &leases);
    let me = context.owner.as_str();
    let owned_ids: HashSet<&str> = owned.iter().map(|s| &*s.shard_id).collect();

    // Leases handed to us (or still ours in the table after this consumer
    // stopped them itself). A renewal proves they are ours before any
    // record is read: a lease given up by self-fencing may already be
    // someone else's.
    for lease in ready
        .iter()
        .filter(|l| l.is_owned_by(me) && !owned_ids.contains(l.shard_id.as_str()))
    {
        let sent = Instant::now();
        match context.checkpointer.renew(&context.scope, lease) {
            Ok(renewed) => {
                log::info!("{me}: lease received: shard {}", lease.shard_id);
                start(context, renewed, sent, &shards);
                context
                    .counters
                    .handoffs_received
                    .fetch_add(1, Ordering::Relaxed);
                context.emit(
                    ConsumerEventKind::LeaseReceived,
                    &lease.shard_id,
                    String::new,
                );
            }
            Err(error) => log::info!("shard {}: not resumed: {error}", lease.shard_id),
        }
    }
    // Hand-over requests seen in the table reach the keeper at once.
    for lease in leases
        .iter()
        .filter(|l| l.is_owned_by(me) && l.handoff_to.is_some())
    {
        if let Some(shard) = owned.iter().find(|s| *s.shard_id == *lease.shard_id) {
            shard.note_handover_request(context, lease.handoff_to.as_deref().unwrap_or_default());
        }
    }

    let live_owners: HashSet<&str> = leases
        .iter()
        .filter(|l| !l.is_finished() && !observations.is_expired(l, context))
        .filter_map(|l| l.owner.as_deref())
        .chain(std::iter::once(me))
        .collect();
    let target = ready
        .len()
        .div_ceil(live_owners.len())
        .min(context.options.max_shard_consumers.unwrap_or(usize::MAX));
    // Hand-overs already asked of live owners count as ours: asking again
    // before they land would overshoot and move leases back and forth.
    let promised = |l: &Lease| {
        l.handoff_to.as_deref() == Some(me)
            && !l.is_owned_by(me)
            && !observations.is_expired(l, context)
    };
    let mut mine = context.owned_shards().len() + ready.iter().filter(|l| promised(l)).count();
    if mine >= target {
        return Ok(());
    }

    // Free leases first, then dead ones.
    let mut candidates: Vec<&&Lease> = ready
        .iter()
        .filter(|l| l.owner.is_none() && observations.may_take_free(l, context))
        .collect();
    candidates.extend(ready.iter().filter(|l| {
        l.owner.is_some() && !l.is_owned_by(me) && observations.is_expired(l, context)
    }));
    for lease in candidates {
        if mine >= target {
            return Ok(());
        }
        let sent = Instant::now();
        if let Some(taken) =
            context
                .checkpointer
                .take(&context.scope, &lease.shard_id, me, lease.counter)?
        {
            match &lease.owner {
                Some(previous) => log::info!(
                    "{me}: lease taken: shard {} from expired {previous}",
                    lease.shard_id
                ),
                None => log::info!("{me}: lease taken: shard {}", lease.shard_id),
            }
            context.counters.lease_gains.fetch_add(1, Ordering::Relaxed);
            context.emit(ConsumerEventKind::LeaseGained, &lease.shard_id, || {
                lease.owner.clone().unwrap_or_default()
            });
            start(context, taken, sent, &shards);
            mine += 1;
        }
    }
    if mine >= target {
        return Ok(());
    }

    // Still short: ask the most loaded live consumer for one lease.
    let mut load: HashMap<&str, Vec<&Lease>> = HashMap::new();
    for lease in &ready {
        if let Some(owner) = lease.owner.as_deref() {
            if owner != me && live_owners.contains(owner) && !promised(lease) {
                load.entry(owner).or_default().push(lease);
            }
        }
    }
    let busiest = load
        .into_iter()
        .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)));
    if let Some((owner, their_leases)) = busiest {
        if their_leases.len() > mine + 1 {
            if let Some(lease) = their_leases.iter().find(|l| l.handoff_to.is_none()) {
                if context
                    .checkpointer
                    .request_handoff(&context.scope, lease, me)?
                {
                    log::info!("{me}: asked {owner} to hand over shard {}", lease.shard_id);
                }
            }
        }
    }
    Ok(())
}

/// Leases whose shard can be processed now: not finished, and every parent
/// finished or gone from the stream (past retention).
fn ready_leases<'a>(shards: &[Shard], leases: &'a [Lease]) -> Vec<&'a Lease> {
    let in_stream: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    let by_shard: HashMap<&str, &Lease> = leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    let parents_of: HashMap<&str, Vec<&str>> = shards
        .iter()
        .map(|s| (s.shard_id.as_str(), s.parents().collect()))
        .collect();
    leases
        .iter()
        .filter(|lease| in_stream.contains(lease.shard_id.as_str()) && !lease.is_finished())
        .filter(|lease| {
            let parents: Vec<&str> = match parents_of.get(lease.shard_id.as_str()) {
                Some(parents) => parents.clone(),
                None => lease.parents.iter().map(String::as_str).collect(),
            };
            parents.iter().all(|parent| {
                !in_stream.contains(parent) || by_shard.get(parent).is_some_and(|l| l.is_finished())
            })
        })
        .collect()
}

/// A tenure live here whose lease the table does not give to this consumer
/// (taken, freed, or deleted and re-created by hand) was lost: it is ended
/// before the shard can be taken again, so two tenures of one shard never
/// deliver side by side.
fn end_orphaned_tenures(context: &Context, owned: &[Arc<OwnedShard>], leases: &[Lease]) {
    let stored: HashMap<&str, &Lease> = leases.iter().map(|l| (l.shard_id.as_str(), l)).collect();
    for tenure in owned {
        let why = match stored.get(&*tenure.shard_id) {
            None => "its lease item disappeared".to_owned(),
            Some(lease) => match tenure.is_orphaned(lease.owner.as_deref()) {
                Some(true) => match &lease.owner {
                    Some(owner) => format!("the lease table gives it to {owner}"),
                    None => "the lease table has it free".to_owned(),
                },
                // Ours, or a write is running: look again next cycle.
                _ => continue,
            },
        };
        tenure.mark_lost(context, &why);
    }
}

/// Items of shards still in the stream never expire, however long the group
/// is stopped; once a shard has left the stream (past retention) its item
/// may go after ttl_hours. Only items whose state differs are written.
fn keep_expiry(context: &Context, shards: &[Shard], leases: &[Lease]) {
    let in_stream: HashSet<&str> = shards.iter().map(|s| s.shard_id.as_str()).collect();
    for lease in leases {
        let gone = !in_stream.contains(lease.shard_id.as_str());
        if gone == lease.expires_at.is_some() {
            continue;
        }
        match context
            .checkpointer
            .set_expiry(&context.scope, &lease.shard_id, gone)
        {
            Ok(()) if gone => log::info!(
                "shard {} has left {}: its lease item may now expire",
                lease.shard_id,
                context.stream
            ),
            Ok(()) => {}
            Err(error) => log::warn!("shard {}: expiry not updated: {error}", lease.shard_id),
        }
    }
}

/// Starts a tenure for a lease this consumer now holds; the write that made
/// it ours was sent at `sent`.
fn start(context: &Arc<Context>, lease: Lease, sent: Instant, shards: &[Shard]) {
    let start_from = match (&lease.checkpoint, &lease.start) {
        (Some(Checkpoint::At(position)), _) => StartFrom::After(position.clone()),
        (Some(Checkpoint::ShardEnd), _) => return,
        (None, Some(pinned)) => StartFrom::At(pinned.clone()),
        (None, None) => {
            let is_child = shards
                .iter()
                .find(|s| s.shard_id == lease.shard_id)
                .is_some_and(|s| s.parents().any(|p| shards.iter().any(|s| s.shard_id == p)));
            // Children must not skip what was written before their parents ended.
            if is_child {
                StartFrom::At(IteratorPosition::TrimHorizon)
            } else {
                match &context.options.initial_position {
                    IteratorPosition::TrimHorizon => StartFrom::At(IteratorPosition::TrimHorizon),
                    moving => StartFrom::Unpinned(moving.clone()),
                }
            }
        }
    };
    let shard = Arc::new(OwnedShard::new(lease, sent, context.lease_time()));
    if !context.add_owned_shard(shard.clone()) {
        // Closing: the keeper's final releases may have run already.
        let _ = shard.release(context, Duration::MAX, None, None);
        return;
    }
    match fetcher::spawn(context.clone(), shard.clone(), start_from) {
        Ok(handle) => *shard.fetcher.lock() = Some(handle),
        Err(error) => {
            log::error!(
                "cannot start a fetch thread for {}: {error}",
                shard.shard_id
            );
            let _ = shard.release(context, Duration::MAX, None, None);
            context.deliver_error(crate::Error::Config(format!(
                "cannot start a thread: {error}"
            )));
        }
    }
}
