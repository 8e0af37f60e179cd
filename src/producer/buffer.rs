//! The bounded buffer between `put` and the sending thread, and the
//! ledger of tickets: which are settled, which failed for good and which
//! of those a flush has reported.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::{FailedRecord, ProducerOptions, RecordStatus, Ticket};
use crate::error::{Error, ErrorCode, Result};
use crate::kinesis::PutRecordsEntry;

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
    /// Put and not yet settled: what the buffer bound counts.
    outstanding: usize,
    records_put: u64,
    bytes_put: u64,
    next_ticket: u64,
    /// Every ticket below this is settled.
    settled_below: u64,
    /// Whether each ticket from `settled_below` on is settled.
    settled_flags: VecDeque<bool>,
    /// Failed records not yet taken.
    failures: BTreeMap<u64, FailedRecord>,
    /// Failed tickets no flush has reported yet.
    unreported: BTreeSet<u64>,
    /// Every failed ticket, for `status`.
    failed: HashSet<u64>,
    /// Flushes waiting: the sending thread sends without waiting for more.
    flushing: usize,
    /// Puts waiting for room: the same.
    blocked_puts: usize,
    closed: bool,
    /// Set by flush, close and full puts; the sending thread clears it.
    wake: bool,
    /// How many incoming records make the sending thread worth waking.
    sender_needs: usize,
    /// Why the sending thread stopped early.
    stopped: Option<Error>,
}

impl Default for State {
    fn default() -> Self {
        State {
            incoming: Vec::new(),
            outstanding: 0,
            records_put: 0,
            bytes_put: 0,
            next_ticket: 0,
            settled_below: 0,
            settled_flags: VecDeque::new(),
            failures: Default::default(),
            unreported: BTreeSet::new(),
            failed: HashSet::new(),
            flushing: 0,
            blocked_puts: 0,
            closed: false,
            wake: false,
            sender_needs: 1,
            stopped: None,
        }
    }
}

impl State {
    fn usable(&self) -> Result<()> {
        if let Some(error) = &self.stopped {
            return Err(error.clone());
        }
        if self.closed {
            return Err(Error::InvalidArgument("the producer is closed".into()));
        }
        Ok(())
    }

    fn is_settled(&self, ticket: u64) -> bool {
        ticket < self.settled_below
            || self
                .settled_flags
                .get((ticket - self.settled_below) as usize)
                .copied()
                .unwrap_or(false)
    }

    fn settle(&mut self, ticket: u64) {
        if let Some(flag) = self
            .settled_flags
            .get_mut((ticket - self.settled_below) as usize)
        {
            *flag = true;
        }
        while self.settled_flags.front() == Some(&true) {
            self.settled_flags.pop_front();
            self.settled_below += 1;
        }
        self.outstanding -= 1;
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
        while state.outstanding >= self.options.max_queue_size {
            state.usable()?;
            state.blocked_puts += 1;
            state.wake = true;
            self.work.notify_one();
            let timed_out = match deadline {
                Some(deadline) => self.space.wait_until(&mut state, deadline).timed_out(),
                None => {
                    self.space.wait(&mut state);
                    false
                }
            };
            state.blocked_puts -= 1;
            if timed_out && state.outstanding >= self.options.max_queue_size {
                return Err(Error::Timeout(format!(
                    "the producer's buffer stayed full ({} records)",
                    state.outstanding
                )));
            }
        }
        state.usable()?;
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.settled_flags.push_back(false);
        state.outstanding += 1;
        // Counted under the lock already held, before the sending thread
        // can see the record: stats never show more sent than put.
        state.records_put += 1;
        state.bytes_put += entry.data.len() as u64;
        state.incoming.push(UserRecord {
            ticket,
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
        Ok(Ticket(ticket))
    }

    /// Waits until every ticket issued so far is settled (or `deadline`);
    /// then an error names those among them that failed for good and no
    /// flush reported yet.
    pub fn flush(&self, deadline: Option<Instant>) -> Result<()> {
        let mut state = self.state.lock();
        let target = state.next_ticket;
        state.flushing += 1;
        state.wake = true;
        self.work.notify_one();
        let mut timed_out = false;
        while state.settled_below < target && state.stopped.is_none() && !timed_out {
            timed_out = match deadline {
                Some(deadline) => self.settled.wait_until(&mut state, deadline).timed_out(),
                None => {
                    self.settled.wait(&mut state);
                    false
                }
            };
        }
        state.flushing -= 1;
        if let Some(error) = &state.stopped {
            return Err(error.clone());
        }
        if state.settled_below < target {
            return Err(Error::Timeout(format!(
                "{} records put before the flush are not settled yet",
                (state.settled_below..target)
                    .filter(|&t| !state.is_settled(t))
                    .count()
            )));
        }
        let failed: Vec<u64> = state.unreported.range(..target).copied().collect();
        if failed.is_empty() {
            return Ok(());
        }
        for ticket in &failed {
            state.unreported.remove(ticket);
        }
        Err(failure_report(&state, &failed))
    }

    /// Refuses further records; the sending thread ends once it sent
    /// what it holds.
    pub fn close(&self) {
        let mut state = self.state.lock();
        state.closed = true;
        state.wake = true;
        drop(state);
        self.work.notify_one();
    }

    pub fn status(&self, ticket: Ticket) -> Result<RecordStatus> {
        let state = self.state.lock();
        if ticket.0 >= state.next_ticket {
            return Err(Error::InvalidArgument(format!(
                "ticket {ticket} was never issued by this producer"
            )));
        }
        Ok(if state.failed.contains(&ticket.0) {
            RecordStatus::Failed
        } else if state.is_settled(ticket.0) {
            RecordStatus::Accepted
        } else {
            RecordStatus::Pending
        })
    }

    pub fn take_failures(&self) -> Vec<FailedRecord> {
        let mut state = self.state.lock();
        state.unreported.clear();
        std::mem::take(&mut state.failures).into_values().collect()
    }

    /// Records put, their data bytes, and how many are not yet settled.
    pub fn put_counts(&self) -> (u64, u64, usize) {
        let state = self.state.lock();
        (state.records_put, state.bytes_put, state.outstanding)
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
            state.settle(ticket);
        }
        for failure in failed {
            let ticket = failure.ticket.0;
            state.settle(ticket);
            state.unreported.insert(ticket);
            state.failed.insert(ticket);
            state.failures.insert(ticket, failure);
        }
        drop(state);
        self.space.notify_all();
        self.settled.notify_all();
    }

    /// Marks the sending thread as stopped by `error`; waiters return it.
    pub fn stop(&self, error: Error) {
        self.state.lock().stopped = Some(error);
        self.space.notify_all();
        self.settled.notify_all();
    }

    /// For the sending thread: waits up to `pause` unless `needs` records,
    /// a flush, a full buffer or close call for it sooner; then swaps the
    /// records put since the last call into `arrived` (empty, kept to reuse
    /// its room).
    pub fn wait_for_work(
        &self,
        pause: Duration,
        needs: usize,
        arrived: &mut Vec<UserRecord>,
    ) -> Work {
        let mut state = self.state.lock();
        if state.incoming.len() < needs && !state.wake && !pause.is_zero() {
            state.sender_needs = needs;
            self.work.wait_for(&mut state, pause);
        }
        state.sender_needs = usize::MAX;
        state.wake = false;
        std::mem::swap(arrived, &mut state.incoming);
        Work {
            hurry: state.flushing > 0 || state.blocked_puts > 0 || state.closed,
            closed: state.closed,
        }
    }
}

/// One error naming how many records failed, which, and the first cause.
fn failure_report(state: &State, failed: &[u64]) -> Error {
    const NAMED: usize = 20;
    let mut tickets: Vec<String> = failed.iter().take(NAMED).map(u64::to_string).collect();
    if failed.len() > NAMED {
        tickets.push(format!("and {} more", failed.len() - NAMED));
    }
    let first = &state.failures[&failed[0]].error;
    let message = format!(
        "{} records failed for good (tickets {}; Producer::take_failures has them); the first: {first}",
        failed.len(),
        tickets.join(", "),
    );
    match first {
        Error::Service { code, status, .. } => Error::Service {
            operation: "PutRecords",
            code: code.clone(),
            status: *status,
            message,
        },
        _ => Error::Service {
            operation: "PutRecords",
            code: ErrorCode::Other("RecordsFailed".into()),
            status: 0,
            message,
        },
    }
}
