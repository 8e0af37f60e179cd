//! One tenure of a shard lease held by this consumer: the lease as last
//! written, what the caller has been given and has processed, and whether the
//! shard may still deliver records.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::Context;
use crate::checkpoint::{Checkpoint, Lease, Position};
use crate::error::{Error, Result};
use crate::transport::deadline;

/// Where a tenure stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum TenureState {
    /// Fetching and delivering.
    Active = 0,
    /// Another consumer asked for the lease: no more deliveries; the lease is
    /// released to it once the caller has processed what it was given.
    HandingOver = 1,
    /// The lease is gone (taken, expired, or not renewable): nothing more is
    /// delivered or checkpointed.
    Lost = 2,
    /// Released (shard end, hand-over done, or close).
    Released = 3,
}

/// Progress of the caller through this tenure's records.
#[derive(Debug)]
pub(crate) struct Progress {
    /// The last record returned to the caller.
    pub delivered: Option<Position>,
    /// The last record the caller acknowledged (automatic mode).
    pub processed: Option<Position>,
    /// The stored checkpoint (a copy of the lease's, for readers that must
    /// not wait for a lease write).
    pub checkpointed: Option<Checkpoint>,
    /// The fetcher reached the shard's end and the caller took every record.
    pub end_reached: bool,
    /// When the last successful lease write was sent.
    pub last_write_sent: Instant,
    /// When the last checkpoint was written (for coalescing).
    pub last_checkpoint_written: Instant,
    /// The consumer that asked for this lease, and since when.
    pub handover: Option<(String, Instant)>,
    /// Lease writes failed in a row, and when the keeper tries again.
    pub failed_writes: u32,
    pub retry_at: Option<Instant>,
}

/// Counters of one shard, read by `stats()`.
#[derive(Debug, Default)]
pub(crate) struct ShardCounters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub throttles: AtomicU64,
    pub errors: AtomicU64,
    pub millis_behind_latest: AtomicU64,
}

/// One holding of one shard's lease.
pub(crate) struct OwnedShard {
    /// Unique per tenure in this process; records carry it.
    pub id: u64,
    pub shard_id: Arc<str>,
    state: AtomicU8,
    /// Held across every lease write so the writes of the keeper and the
    /// caller's checkpoints are ordered, see each other's counter, and
    /// check "forward only" against what is really stored.
    lease: Mutex<Lease>,
    /// Until when the lease is certainly still ours (see [`LeaseClock`]):
    /// the send time of the last successful write plus the safe lease time.
    /// Checked wherever records are handed on, so fencing never depends on
    /// the keeper thread alone.
    valid_until: AtomicU64,
    /// How long a successful write keeps the lease ours.
    lease_time: Duration,
    pub progress: Mutex<Progress>,
    pub counters: ShardCounters,
    pub fetcher: Mutex<Option<JoinHandle<()>>>,
}

/// Instants as nanoseconds since a process-wide origin, so a deadline fits
/// an atomic and is read without a lock on every chunk.
struct LeaseClock;

impl LeaseClock {
    fn origin() -> Instant {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        *ORIGIN.get_or_init(Instant::now)
    }

    fn encode(at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(Self::origin()).as_nanos()).unwrap_or(u64::MAX)
    }

    fn decode(nanos: u64) -> Instant {
        Self::origin() + Duration::from_nanos(nanos)
    }
}

impl OwnedShard {
    /// A tenure of `lease`, whose taking (or proving) write was sent at
    /// `sent`: others may judge it expired `session_timeout` after that at
    /// the earliest, so it is ours for `lease_time` (shorter) from then.
    pub fn new(lease: Lease, sent: Instant, lease_time: Duration) -> OwnedShard {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        OwnedShard {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shard_id: lease.shard_id.as_str().into(),
            state: AtomicU8::new(TenureState::Active as u8),
            progress: Mutex::new(Progress {
                delivered: None,
                processed: None,
                checkpointed: lease.checkpoint.clone(),
                end_reached: false,
                last_write_sent: sent,
                last_checkpoint_written: sent,
                handover: None,
                failed_writes: 0,
                retry_at: None,
            }),
            lease: Mutex::new(lease),
            valid_until: AtomicU64::new(LeaseClock::encode(sent + lease_time)),
            lease_time,
            counters: ShardCounters::default(),
            fetcher: Mutex::new(None),
        }
    }

    /// Until when the lease is certainly ours.
    pub fn valid_until(&self) -> Instant {
        LeaseClock::decode(self.valid_until.load(Ordering::Acquire))
    }

    /// Whether records of this tenure may still reach the caller: it is
    /// active and its lease certainly still ours. A lease past its safe
    /// time ends the tenure here and now, whichever thread notices.
    pub fn may_deliver(&self, context: &Context) -> bool {
        self.is_active() && !self.end_if_lapsed(context)
    }

    /// Ends the tenure if its lease is past its safe time (others may take
    /// it now); true if so.
    pub fn end_if_lapsed(&self, context: &Context) -> bool {
        let lapsed = Instant::now() >= self.valid_until();
        if lapsed {
            self.mark_lost(context, "it was not renewed in time");
        }
        lapsed
    }

    /// Whether this tenure still holds its lease (delivering or handing over).
    pub fn is_live(&self) -> bool {
        matches!(self.state(), TenureState::Active | TenureState::HandingOver)
    }

    pub fn state(&self) -> TenureState {
        match self.state.load(Ordering::Acquire) {
            0 => TenureState::Active,
            1 => TenureState::HandingOver,
            2 => TenureState::Lost,
            _ => TenureState::Released,
        }
    }

    /// Whether records of this tenure may still reach the caller.
    pub fn is_active(&self) -> bool {
        self.state() == TenureState::Active
    }

    /// Moves from `from` to `to`; false if the state was something else.
    pub fn transition(&self, from: TenureState, to: TenureState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Ends the tenure for good.
    pub fn set_state(&self, to: TenureState) {
        self.state.store(to as u8, Ordering::Release);
    }

    /// Runs one conditional lease write, finished within `budget` and
    /// before the lease's safe time runs out. Success renews the lease (and
    /// may reveal a hand-over request); `LeaseLost` ends the tenure. A write
    /// that failed without telling whether it was applied is settled by
    /// reading the lease: our own write landed, or it did not, or the lease
    /// is someone else's now.
    pub fn write(
        &self,
        context: &Context,
        budget: Duration,
        write: impl FnOnce(&Lease) -> Result<WriteOutcome>,
    ) -> Result<()> {
        if !self.is_live() {
            return Err(self.lost_error());
        }
        let deadline = self.valid_until().min(
            Instant::now()
                .checked_add(budget)
                .unwrap_or_else(|| self.valid_until()),
        );
        let Some(mut lease) = self.lease.try_lock_until(deadline) else {
            return Err(Error::Timeout(format!(
                "shard {}: another lease write is still running",
                self.shard_id
            )));
        };
        if !self.is_live() || self.end_if_lapsed(context) {
            return Err(self.lost_error());
        }
        let sent = Instant::now();
        let result = deadline::within(deadline, || {
            let result = write(&lease);
            match result {
                Err(error) if error.is_ambiguous() => self.settle(context, &lease, error),
                other => other,
            }
        });
        match result {
            Ok(WriteOutcome::Renewed(updated)) => {
                let handover = updated.handoff_to.clone();
                self.renewed(sent, &updated);
                *lease = updated;
                drop(lease);
                if let Some(asker) = handover {
                    self.note_handover_request(context, &asker);
                }
                Ok(())
            }
            Ok(WriteOutcome::Unchanged) => Ok(()),
            Ok(WriteOutcome::Released) => {
                // Ended while the lock is held: whoever reads the table
                // after this write finds the tenure ended, never "live but
                // not in the table".
                self.set_state(TenureState::Released);
                Ok(())
            }
            Err(Error::LeaseLost { .. }) => {
                drop(lease);
                self.mark_lost(context, "another consumer holds it now");
                Err(self.lost_error())
            }
            Err(error) => Err(error),
        }
    }

    /// After a write failed ambiguously: reads the lease and tells whether
    /// that write landed (`Renewed` with what is stored), did not land (the
    /// original error, to be retried), or the lease is gone (`LeaseLost`).
    fn settle(&self, context: &Context, held: &Lease, error: Error) -> Result<WriteOutcome> {
        let Ok(stored) = context.checkpointer.lease(&context.scope, &self.shard_id) else {
            return Err(error);
        };
        match stored {
            Some(stored) if stored.counter == held.counter && stored.owner == held.owner => {
                Err(error)
            }
            Some(stored) if stored.counter == held.counter + 1 && stored.owner == held.owner => {
                log::info!(
                    "{}: shard {}: a lease write whose answer was lost had landed",
                    context.owner,
                    self.shard_id
                );
                Ok(WriteOutcome::Renewed(stored))
            }
            // Released by that write (to nobody or to the asker), or taken.
            _ => Err(Error::LeaseLost {
                shard_id: self.shard_id.to_string(),
            }),
        }
    }

    /// A write sent at `sent` succeeded and left `stored`: the lease is
    /// ours for another `lease_time` from then.
    fn renewed(&self, sent: Instant, stored: &Lease) {
        self.valid_until
            .fetch_max(LeaseClock::encode(sent + self.lease_time), Ordering::AcqRel);
        let mut progress = self.progress.lock();
        progress.last_write_sent = sent;
        progress.checkpointed = stored.checkpoint.clone();
    }

    /// Whether this tenure is live although a lease read from the table
    /// after it began gives the lease to `stored_owner`, not to us; `None`
    /// while a write is running (look again later). Counters are not
    /// compared: the read may predate our own later writes, and only this
    /// consumer's coordinator could have given the lease back to us.
    pub fn is_orphaned(&self, stored_owner: Option<&str>) -> Option<bool> {
        let lease = self.lease.try_lock_for(Duration::from_millis(50))?;
        // A release ends the tenure under this lock, so one that landed
        // before the read is seen here.
        Some(self.is_live() && stored_owner != lease.owner.as_deref())
    }

    /// Another consumer asked for this lease: stop delivering and let the
    /// keeper release it once the caller has processed what it was given.
    pub fn note_handover_request(&self, context: &Context, asker: &str) {
        if asker.is_empty() || asker == context.owner {
            return;
        }
        let mut progress = self.progress.lock();
        if progress.handover.is_none()
            && self.transition(TenureState::Active, TenureState::HandingOver)
        {
            log::info!(
                "shard {}: {asker} asked for the lease; handing it over",
                self.shard_id
            );
            progress.handover = Some((asker.to_owned(), Instant::now()));
        }
    }

    /// Writes `checkpoint` unless the stored one is already there or
    /// beyond; the check and the write are one step under the lease lock,
    /// so concurrent writers never move the checkpoint backwards.
    pub fn write_checkpoint(
        &self,
        context: &Context,
        budget: Duration,
        checkpoint: Checkpoint,
    ) -> Result<()> {
        let mut written = false;
        let result = self.write(context, budget, |lease| {
            if !moves_forward(lease.checkpoint.as_ref(), &checkpoint) {
                return Ok(WriteOutcome::Unchanged);
            }
            let updated = context
                .checkpointer
                .checkpoint(&context.scope, lease, &checkpoint)?;
            written = true;
            Ok(WriteOutcome::Renewed(updated))
        });
        match &result {
            Ok(()) if written => {
                self.progress.lock().last_checkpoint_written = Instant::now();
                context
                    .counters
                    .checkpoint_writes
                    .fetch_add(1, Ordering::Relaxed);
            }
            Ok(()) => {}
            Err(error) => {
                context
                    .counters
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
                context.emit(
                    super::ConsumerEventKind::CheckpointFailed,
                    &self.shard_id,
                    || error.to_string(),
                );
            }
        }
        result
    }

    /// Gives the lease up (to `to`, or to nobody), recording `checkpoint`
    /// if it moves forward from what is stored: one conditional write within
    /// `budget`, the check under the same lock. Returns the checkpoint
    /// written, if any.
    pub fn release(
        &self,
        context: &Context,
        budget: Duration,
        checkpoint: Option<Checkpoint>,
        to: Option<&str>,
    ) -> Result<Option<Checkpoint>> {
        let mut recorded = None;
        self.write(context, budget, |lease| {
            let checkpoint =
                checkpoint.filter(|next| moves_forward(lease.checkpoint.as_ref(), next));
            context
                .checkpointer
                .release(&context.scope, lease, checkpoint.as_ref(), to)?;
            recorded = checkpoint;
            Ok(WriteOutcome::Released)
        })?;
        if let Some(checkpoint) = &recorded {
            self.progress.lock().checkpointed = Some(checkpoint.clone());
            context
                .counters
                .checkpoint_writes
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(recorded)
    }

    /// Ends the tenure because the lease is gone (or may be): nothing more
    /// is delivered or checkpointed, undelivered records are dropped.
    pub fn mark_lost(&self, context: &Context, why: &str) {
        let ended = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                (state == TenureState::Active as u8 || state == TenureState::HandingOver as u8)
                    .then_some(TenureState::Lost as u8)
            });
        if ended.is_ok() {
            context
                .counters
                .lease_losses
                .fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "{}: lease lost: shard {} ({why}); its undelivered records are dropped",
                context.owner,
                self.shard_id
            );
            context.emit(super::ConsumerEventKind::LeaseLost, &self.shard_id, || {
                why.to_owned()
            });
        }
    }

    pub fn lost_error(&self) -> Error {
        Error::LeaseLost {
            shard_id: self.shard_id.to_string(),
        }
    }
}

/// What a lease write did.
pub(crate) enum WriteOutcome {
    /// The lease as stored after the write; still ours.
    Renewed(Lease),
    /// Nothing needed writing.
    Unchanged,
    /// The lease was given up.
    Released,
}

/// Whether storing `next` over `stored` moves forward (not backwards, and
/// not the same again).
fn moves_forward(stored: Option<&Checkpoint>, next: &Checkpoint) -> bool {
    stored.is_none_or(|current| current != next && current.allows(next))
}
