//! One tenure of a shard lease held by this consumer: the lease as last
//! written, what the caller has been given and has processed, and whether the
//! shard may still deliver records.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::Mutex;

use super::Context;
use crate::checkpoint::{Checkpoint, Lease, Position};
use crate::error::{Error, Result};

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
    /// The stored checkpoint.
    pub checkpointed: Option<Checkpoint>,
    /// The fetcher reached the shard's end and the caller took every record.
    pub end_reached: bool,
    /// When the last successful lease write was sent (for self-fencing).
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
    /// Held across every lease write so writes of the heartbeat thread and
    /// the caller's checkpoints are ordered and see each other's counter.
    lease: Mutex<Lease>,
    pub progress: Mutex<Progress>,
    pub counters: ShardCounters,
    pub fetcher: Mutex<Option<JoinHandle<()>>>,
}

impl OwnedShard {
    pub fn new(lease: Lease, sent: Instant) -> OwnedShard {
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
            counters: ShardCounters::default(),
            fetcher: Mutex::new(None),
        }
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

    /// Runs one conditional lease write. Success renews the lease (and may
    /// reveal a hand-over request); `LeaseLost` ends the tenure.
    pub fn write(
        &self,
        context: &Context,
        write: impl FnOnce(&Lease) -> Result<Option<Lease>>,
    ) -> Result<()> {
        if matches!(self.state(), TenureState::Lost | TenureState::Released) {
            return Err(self.lost_error());
        }
        let mut lease = self.lease.lock();
        let sent = Instant::now();
        match write(&lease) {
            Ok(Some(updated)) => {
                let handover = updated.handoff_to.clone();
                *lease = updated;
                drop(lease);
                self.progress.lock().last_write_sent = sent;
                if let Some(asker) = handover {
                    self.note_handover_request(context, &asker);
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(Error::LeaseLost { .. }) => {
                drop(lease);
                self.mark_lost(context, "another consumer holds it now");
                Err(self.lost_error())
            }
            Err(error) => Err(error),
        }
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

    /// Writes `checkpoint` unless the stored one is already there or beyond.
    pub fn write_checkpoint(&self, context: &Context, checkpoint: Checkpoint) -> Result<()> {
        {
            let progress = self.progress.lock();
            if let Some(current) = &progress.checkpointed {
                if *current == checkpoint || !current.allows(&checkpoint) {
                    return Ok(());
                }
            }
        }
        let result = self.write(context, |lease| {
            context
                .checkpointer
                .checkpoint(&context.scope, lease, &checkpoint)
                .map(Some)
        });
        match &result {
            Ok(()) => {
                let mut progress = self.progress.lock();
                progress.checkpointed = Some(checkpoint);
                progress.last_checkpoint_written = Instant::now();
                context
                    .counters
                    .checkpoint_writes
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                context
                    .counters
                    .checkpoint_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// Ends the tenure because the lease is gone.
    pub fn mark_lost(&self, context: &Context, why: &str) {
        let previous = self.state.swap(TenureState::Lost as u8, Ordering::AcqRel);
        if previous != TenureState::Lost as u8 && previous != TenureState::Released as u8 {
            context
                .counters
                .lease_losses
                .fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "lease lost: shard {} ({why}); its undelivered records are dropped",
                self.shard_id
            );
        }
    }

    pub fn lost_error(&self) -> Error {
        Error::LeaseLost {
            shard_id: self.shard_id.to_string(),
        }
    }
}
