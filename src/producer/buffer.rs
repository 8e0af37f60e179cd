//! The bounded buffer between `put` and the sending thread, and the
//! ledger of tickets: which are settled, which failed for good and which
//! of those a flush has reported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{FailedRecord, ProducerOptions};
use crate::error::{Error, Result};
use crate::kinesis::PutRecordsEntry;
use crate::tickets::{
    wait_for_room, wait_until_settled, Failure, Ledger, RecordStatus, Ticket, Vocabulary,
};

const WORDS: Vocabulary = Vocabulary {
    owner: "producer",
    operation: "PutRecords",
    things: "records",
    taken_by: "Producer::take_failures",
};

/// What the sending thread is asked for.
pub(crate) struct Work {
    /// Send what may go without waiting for fuller batches.
    pub hurry: bool,
    /// Nothing more will be put: end once everything is settled.
    pub closed: bool,
}

/// A record on its way from `put` to the sending thread.
pub(crate) struct UserRecord {
    pub ticket: u64,
    pub entry: PutRecordsEntry,
    /// The partition key's MD5: records sharing it keep their order.
    pub key: u128,
    /// Where Kinesis routes the record.
    pub hash: u128,
}

/// What `put`, `flush` and the sending thread share.
pub(crate) struct Shared {
    pub options: ProducerOptions,
    state: Mutex<State>,
    /// The sending thread waits here for records, flushes and close.
    work: Condvar,
    /// Puts wait here for room.
    space: Condvar,
    /// Flushes wait here for tickets to settle.
    settled: Condvar,
    pub counters: Counters,
}

/// What the sending thread counts, added once per request (the atomics
/// share cache lines).
#[derive(Default)]
pub(crate) struct Counters {
    pub records_sent: AtomicU64,
    pub records_retried: AtomicU64,
    pub records_failed: AtomicU64,
    pub records_throttled: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub kinesis_records_sent: AtomicU64,
    pub requests: AtomicU64,
    pub shards: AtomicU64,
    pub shard_map_refreshes: AtomicU64,
}

struct State {
    /// Put, not yet taken by the sending thread.
    incoming: Vec<UserRecord>,
    /// Its outstanding tickets are what the buffer bound counts.
    ledger: Ledger<FailedRecord>,
    records_put: u64,
    bytes_put: u64,
    /// Set by flush, close and full puts; the sending thread clears it.
    wake: bool,
    /// How many incoming records make the sending thread worth waking.
    sender_needs: usize,
    /// The sending thread waits for a shard's budget: waking it for a
    /// waiting put or flush would not send anything sooner.
    sender_waits_for_budget: bool,
}

impl Default for State {
    fn default() -> Self {
        State {
            incoming: Vec::new(),
            ledger: Ledger::default(),
            records_put: 0,
            bytes_put: 0,
            wake: false,
            sender_needs: 1,
            sender_waits_for_budget: false,
        }
    }
}

impl State {
    fn ledger(&mut self) -> &mut Ledger<FailedRecord> {
        &mut self.ledger
    }
}

impl Shared {
    pub fn new(options: ProducerOptions) -> Shared {
        Shared {
            options,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            space: Condvar::new(),
            settled: Condvar::new(),
            counters: Counters::default(),
        }
    }

    /// Queues a record under the next ticket, waiting while the buffer is
    /// full (until `deadline`, if any).
    pub fn enqueue(
        &self,
        entry: PutRecordsEntry,
        key: u128,
        hash: u128,
        deadline: Option<Instant>,
    ) -> Result<Ticket> {
        let mut state = self.state.lock();
        wait_for_room(
            &mut state,
            State::ledger,
            &self.space,
            self.options.max_queue_size,
            deadline,
            &WORDS,
            |state| self.nudge(state),
        )?;
        let ticket = state.ledger.issue();
        // Counted under the lock already held, before the sending thread
        // can see the record: stats never show more sent than put.
        state.records_put += 1;
        state.bytes_put += entry.data.len() as u64;
        state.incoming.push(UserRecord {
            ticket: ticket.get(),
            entry,
            key,
            hash,
        });
        let wake = state.incoming.len() >= state.sender_needs;
        if wake {
            state.sender_needs = usize::MAX;
        }
        drop(state);
        if wake {
            self.work.notify_one();
        }
        Ok(ticket)
    }

    /// Waits until every ticket issued so far is settled (or `deadline`);
    /// then an error names those among them that failed for good and no
    /// flush reported yet.
    pub fn flush(&self, deadline: Option<Instant>) -> Result<()> {
        let mut state = self.state.lock();
        wait_until_settled(
            &mut state,
            State::ledger,
            &self.settled,
            deadline,
            &WORDS,
            |state| self.nudge(state),
        )
    }

    /// Wakes the sending thread for a waiting put or flush.
    fn nudge(&self, state: &mut State) {
        if !state.sender_waits_for_budget {
            state.wake = true;
            self.work.notify_one();
        }
    }

    /// Refuses further records; the sending thread ends once it sent
    /// what it holds.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.ledger.close();
        self.nudge(&mut state);
    }

    pub fn status(&self, ticket: Ticket) -> Result<RecordStatus> {
        self.state.lock().ledger.status(ticket, "producer")
    }

    pub fn take_failures(&self) -> Vec<FailedRecord> {
        self.state.lock().ledger.take_failures()
    }

    /// Records put, their data bytes, and how many are not yet settled.
    pub fn put_counts(&self) -> (u64, u64, usize) {
        let state = self.state.lock();
        (
            state.records_put,
            state.bytes_put,
            state.ledger.outstanding(),
        )
    }

    /// Settles accepted tickets and failed records; wakes puts and flushes.
    pub fn settle(&self, accepted: &[u64], failed: Vec<FailedRecord>) {
        if accepted.is_empty() && failed.is_empty() {
            return;
        }
        if let Some(first) = failed.first() {
            log::warn!(
                "{} records failed for good, the first ({}): {}",
                failed.len(),
                first.ticket,
                first.error
            );
            self.counters
                .records_failed
                .fetch_add(failed.len() as u64, Ordering::Relaxed);
        }
        let mut state = self.state.lock();
        for &ticket in accepted {
            state.ledger.settle(Ticket::from_u64(ticket));
        }
        for failure in failed {
            state.ledger.fail(failure);
        }
        drop(state);
        self.space.notify_all();
        self.settled.notify_all();
    }

    /// Marks the sending thread as stopped by `error`; waiters return it.
    pub fn stop(&self, error: Error) {
        self.state.lock().ledger.stop(error);
        self.space.notify_all();
        self.settled.notify_all();
    }

    /// For the sending thread: waits up to `pause` unless `needs` records,
    /// a flush, a full buffer or close call for it sooner (only `needs`
    /// records when it waits `for_budget`: nothing else gets sent sooner);
    /// then swaps the records put since the last call into `arrived`
    /// (empty, kept to reuse its room).
    pub fn wait_for_work(
        &self,
        pause: Duration,
        for_budget: bool,
        needs: usize,
        arrived: &mut Vec<UserRecord>,
    ) -> Work {
        let mut state = self.state.lock();
        if state.incoming.len() < needs && (for_budget || !state.wake) && !pause.is_zero() {
            state.sender_needs = needs;
            state.sender_waits_for_budget = for_budget;
            self.work.wait_for(&mut state, pause);
            state.sender_waits_for_budget = false;
        }
        state.sender_needs = usize::MAX;
        state.wake = false;
        std::mem::swap(arrived, &mut state.incoming);
        Work {
            hurry: state.ledger.hurry(),
            closed: state.ledger.is_closed(),
        }
    }
}

impl Failure for FailedRecord {
    fn ticket(&self) -> Ticket {
        self.ticket
    }
    fn error(&self) -> &Error {
        &self.error
    }
}
