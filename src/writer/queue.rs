//! What `put`, `flush` and the worker threads share: a queue per table,
//! the keys in flight, each table's backoff, and the ledger of tickets.
//!
//! A worker takes a batch of one table's writes under the lock. A write
//! whose key is in flight, or whose key an earlier write in the queue
//! still waits with, stays where it is: writes of one key never share a
//! batch and go in the order they were put.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::item::KeySchema;
use super::{FailedWrite, TableStats, WriterOptions};
use crate::dynamodb::WriteRequest;
use crate::error::{Error, Result};
use crate::rate::TokenBucket;
use crate::tickets::{wait_for_room, wait_until_settled, Ledger, RecordStatus, Ticket, Vocabulary};
use crate::transport::RetryPolicy;

/// The most a `BatchWriteItem` request may weigh.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// How far into a table's queue a worker looks past blocked keys.
const SCAN_LIMIT: usize = 2_000;
/// How quickly the reported rate follows a change: an exponential average
/// over about this long.
const RATE_WINDOW: Duration = Duration::from_secs(2);

const WORDS: Vocabulary = Vocabulary {
    owner: "writer",
    operation: "BatchWriteItem",
    things: "writes",
    taken_by: "DynamoDbWriter::take_failures",
};

/// A write on its way to DynamoDB.
pub(crate) struct Pending {
    pub ticket: Ticket,
    pub request: WriteRequest,
    /// The canonical key: writes sharing it keep their order.
    pub key: Vec<u8>,
    pub bytes: usize,
    pub units: f64,
    pub queued_at: Instant,
    /// Sent in a batch of its own: a batch it was in was refused as a
    /// whole, and only a batch of one names the culprit.
    pub alone: bool,
}

/// Writes of one table taken by a worker.
pub(crate) struct Batch {
    pub table: usize,
    pub name: Arc<str>,
    pub schema: Arc<KeySchema>,
    pub bucket: Option<Arc<TokenBucket>>,
    pub writes: Vec<Pending>,
}

impl Batch {
    pub fn units(&self) -> f64 {
        self.writes.iter().map(|w| w.units).sum()
    }
}

/// What became of a batch.
pub(crate) struct Outcome {
    pub written: Vec<Pending>,
    /// Write units consumed (DynamoDB's figure when it sent one).
    pub units: f64,
    /// To send again, after the table's backoff if `back_off`.
    pub retry: Vec<Pending>,
    /// DynamoDB said the table is over its capacity.
    pub throttled: bool,
    pub back_off: bool,
    pub failed: Vec<(Pending, Error)>,
}

struct Table {
    name: Arc<str>,
    schema: Arc<KeySchema>,
    write_capacity: Option<f64>,
    bucket: Option<Arc<TokenBucket>>,
    queue: VecDeque<Pending>,
    in_flight: HashSet<Vec<u8>>,
    /// No batch goes before this (backoff after throttling).
    not_before: Instant,
    /// Throttled batches in a row.
    backoff: u32,
    items_written: u64,
    write_units: f64,
    throttles: u64,
    retries: u64,
    requests: u64,
    /// Units per second, averaged over `RATE_WINDOW`, as of `rate_at`.
    rate: f64,
    rate_at: Instant,
}

impl Table {
    /// The writes a batch may take now: in queue order, skipping keys in
    /// flight or already passed over, at most `size` and `MAX_BATCH_BYTES`.
    fn take_batch(&mut self, size: usize) -> Vec<Pending> {
        let mut passed: HashSet<&[u8]> = HashSet::new();
        let mut taken: Vec<usize> = Vec::new();
        let mut bytes = 0;
        for (index, write) in self.queue.iter().enumerate().take(SCAN_LIMIT) {
            let first_of_key = passed.insert(&write.key);
            if !first_of_key || self.in_flight.contains(&write.key) {
                continue;
            }
            if write.alone {
                if taken.is_empty() {
                    taken.push(index);
                    break;
                }
                continue;
            }
            if bytes + write.bytes > MAX_BATCH_BYTES {
                break;
            }
            bytes += write.bytes;
            taken.push(index);
            if taken.len() == size {
                break;
            }
        }
        let writes: Vec<Pending> = if taken.last().is_some_and(|&last| last + 1 == taken.len()) {
            self.queue.drain(..taken.len()).collect()
        } else {
            let mut chosen = taken.into_iter().peekable();
            let mut writes = Vec::new();
            let mut rest = VecDeque::with_capacity(self.queue.len());
            for (index, write) in self.queue.drain(..).enumerate() {
                if chosen.next_if_eq(&index).is_some() {
                    writes.push(write);
                } else {
                    rest.push_back(write);
                }
            }
            self.queue = rest;
            writes
        };
        for write in &writes {
            self.in_flight.insert(write.key.clone());
        }
        writes
    }

    /// The rate decayed to `now`.
    fn rate_at(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.rate_at).as_secs_f64();
        self.rate * (-elapsed / RATE_WINDOW.as_secs_f64()).exp()
    }

    fn count_written(&mut self, units: f64, items: usize, now: Instant) {
        self.rate = self.rate_at(now) + units / RATE_WINDOW.as_secs_f64();
        self.rate_at = now;
        self.write_units += units;
        self.items_written += items as u64;
    }
}

struct State {
    tables: Vec<Table>,
    by_name: HashMap<String, usize>,
    ledger: Ledger<FailedWrite>,
    items_put: u64,
    /// Where the next worker starts looking, so every table gets its turn.
    cursor: usize,
}

impl State {
    fn ledger(&mut self) -> &mut Ledger<FailedWrite> {
        &mut self.ledger
    }
}

pub(crate) struct Shared {
    options: WriterOptions,
    state: Mutex<State>,
    /// Workers wait here for writes.
    work: Condvar,
    /// Puts wait here for room.
    space: Condvar,
    /// Flushes wait here for tickets to settle.
    settled: Condvar,
}

impl Shared {
    pub fn new(options: WriterOptions) -> Shared {
        Shared {
            options,
            state: Mutex::new(State {
                tables: Vec::new(),
                by_name: HashMap::new(),
                ledger: Ledger::default(),
                items_put: 0,
                cursor: 0,
            }),
            work: Condvar::new(),
            space: Condvar::new(),
            settled: Condvar::new(),
        }
    }

    /// The table's index and key, if the writer knows it.
    pub fn table(&self, name: &str) -> Option<(usize, Arc<KeySchema>)> {
        let state = self.state.lock();
        let index = *state.by_name.get(name)?;
        Some((index, Arc::clone(&state.tables[index].schema)))
    }

    /// Adds a table (or returns the one added meanwhile by another thread).
    pub fn add_table(
        &self,
        name: &str,
        schema: KeySchema,
        bucket: Option<TokenBucket>,
    ) -> (usize, Arc<KeySchema>) {
        let mut state = self.state.lock();
        if let Some(&index) = state.by_name.get(name) {
            return (index, Arc::clone(&state.tables[index].schema));
        }
        let index = state.tables.len();
        let schema = Arc::new(schema);
        let now = Instant::now();
        state.tables.push(Table {
            name: Arc::from(name),
            schema: Arc::clone(&schema),
            write_capacity: bucket.as_ref().map(TokenBucket::rate),
            bucket: bucket.map(Arc::new),
            queue: VecDeque::new(),
            in_flight: HashSet::new(),
            not_before: now,
            backoff: 0,
            items_written: 0,
            write_units: 0.0,
            throttles: 0,
            retries: 0,
            requests: 0,
            rate: 0.0,
            rate_at: now,
        });
        state.by_name.insert(name.to_owned(), index);
        (index, schema)
    }

    /// Queues a checked write under the next ticket, waiting while the
    /// queue is full (until `deadline`, if any).
    pub fn enqueue(
        &self,
        table: usize,
        request: WriteRequest,
        weighed: super::item::Weighed,
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
            |_| {
                self.work.notify_one();
            },
        )?;
        let ticket = state.ledger.issue();
        state.items_put += 1;
        let queue = &mut state.tables[table].queue;
        queue.push_back(Pending {
            ticket,
            request,
            key: weighed.key,
            bytes: weighed.bytes,
            units: weighed.units,
            queued_at: Instant::now(),
            alone: false,
        });
        // A worker is needed when a timer starts or a batch fills up.
        let wake = queue.len() == 1 || queue.len() % self.options.batch_size == 0;
        drop(state);
        if wake {
            self.work.notify_one();
        }
        Ok(ticket)
    }

    /// For workers: the next batch to send, waiting until one is due;
    /// `None` once the writer is closed and every write settled.
    pub fn next_batch(&self) -> Option<Batch> {
        let buffer_time = self.options.buffer_time;
        let size = self.options.batch_size;
        let mut state = self.state.lock();
        loop {
            if state.ledger.stopped().is_some() {
                return None;
            }
            let now = Instant::now();
            let hurry = state.ledger.hurry();
            let mut wake_at: Option<Instant> = None;
            let count = state.tables.len();
            for step in 0..count {
                let index = (state.cursor + step) % count;
                let table = &mut state.tables[index];
                let Some(oldest) = table.queue.front() else {
                    continue;
                };
                let due = if table.not_before > now {
                    table.not_before
                } else if hurry || table.queue.len() >= size {
                    now
                } else {
                    oldest.queued_at + buffer_time
                };
                if due > now {
                    wake_at = Some(wake_at.map_or(due, |at| at.min(due)));
                    continue;
                }
                let writes = table.take_batch(size);
                if writes.is_empty() {
                    // Every key is in flight: a finished batch wakes us.
                    continue;
                }
                let batch = Batch {
                    table: index,
                    name: Arc::clone(&table.name),
                    schema: Arc::clone(&table.schema),
                    bucket: table.bucket.clone(),
                    writes,
                };
                state.cursor = index + 1;
                return Some(batch);
            }
            if state.ledger.is_closed() && state.ledger.outstanding() == 0 {
                return None;
            }
            match wake_at {
                Some(at) => {
                    self.work.wait_until(&mut state, at);
                }
                None => self.work.wait(&mut state),
            }
        }
    }

    /// Settles what a batch wrote or failed, and queues again (in front,
    /// in put order) what it must retry.
    pub fn finish(&self, table: usize, outcome: Outcome, backoff: &RetryPolicy) {
        let Outcome {
            written,
            units,
            mut retry,
            throttled,
            back_off,
            failed,
        } = outcome;
        if let Some((first, error)) = failed.first() {
            log::warn!(
                "{} writes failed for good, the first ({}): {error}",
                failed.len(),
                first.ticket
            );
        }
        let now = Instant::now();
        let mut state = self.state.lock();
        let state = &mut *state;
        let entry = &mut state.tables[table];
        entry.requests += 1;
        for write in written.iter().chain(&retry) {
            entry.in_flight.remove(&write.key);
        }
        for (write, _) in &failed {
            entry.in_flight.remove(&write.key);
        }
        entry.throttles += u64::from(throttled);
        if back_off {
            entry.not_before = now + backoff.backoff(entry.backoff);
            entry.backoff = entry.backoff.saturating_add(1);
        } else if !written.is_empty() {
            entry.backoff = 0;
        }
        entry.count_written(units, written.len(), now);
        entry.retries += retry.len() as u64;
        retry.sort_by_key(|write| write.ticket);
        for write in retry.into_iter().rev() {
            entry.queue.push_front(write);
        }
        let name = Arc::clone(&entry.name);
        for write in written {
            state.ledger.settle(write.ticket);
        }
        for (write, error) in failed {
            state.ledger.fail(FailedWrite {
                ticket: write.ticket,
                table: name.to_string(),
                request: write.request,
                error,
            });
        }
        self.work.notify_all();
        self.space.notify_all();
        self.settled.notify_all();
    }

    /// Waits until every write put so far is settled (or `deadline`); then
    /// an error names those that failed for good and no flush reported.
    pub fn flush(&self, deadline: Option<Instant>) -> Result<()> {
        let mut state = self.state.lock();
        wait_until_settled(
            &mut state,
            State::ledger,
            &self.settled,
            deadline,
            &WORDS,
            |_| {
                self.work.notify_all();
            },
        )
    }

    /// Refuses further writes; workers end once everything is settled.
    pub fn close(&self) {
        self.state.lock().ledger.close();
        self.work.notify_all();
        self.space.notify_all();
    }

    /// Marks the writer as stopped by `error`; waiters return it.
    pub fn stop(&self, error: Error) {
        self.state.lock().ledger.stop(error);
        self.work.notify_all();
        self.space.notify_all();
        self.settled.notify_all();
    }

    pub fn status(&self, ticket: Ticket) -> Result<RecordStatus> {
        self.state.lock().ledger.status(ticket, "writer")
    }

    pub fn take_failures(&self) -> Vec<FailedWrite> {
        self.state.lock().ledger.take_failures()
    }

    /// The lowest ticket not written yet (pending or failed).
    pub fn first_unwritten(&self) -> Ticket {
        self.state.lock().ledger.first_unsuccessful()
    }

    /// Writes put, failed, and not yet settled.
    pub fn counts(&self) -> (u64, u64, u64) {
        let state = self.state.lock();
        (
            state.items_put,
            state.ledger.failed_count(),
            state.ledger.outstanding() as u64,
        )
    }

    pub fn table_stats(&self) -> Vec<TableStats> {
        let now = Instant::now();
        let state = self.state.lock();
        state
            .tables
            .iter()
            .map(|table| TableStats {
                table: table.name.to_string(),
                write_capacity: table.write_capacity,
                items_written: table.items_written,
                write_units: table.write_units,
                throttles: table.throttles,
                retries: table.retries,
                requests: table.requests,
                queue_depth: (table.queue.len() + table.in_flight.len()) as u64,
                units_per_second: table.rate_at(now),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::{item, AttributeValue, ScalarAttributeType};

    fn shared(batch_size: usize) -> Shared {
        let shared = Shared::new(WriterOptions {
            threads: 1,
            batch_size,
            max_queue_size: 100,
            buffer_time: Duration::ZERO,
        });
        let schema = KeySchema(vec![("pk".into(), ScalarAttributeType::S)]);
        shared.add_table("t", schema, None);
        shared
    }

    fn put(shared: &Shared, pk: &str) -> Ticket {
        let request = WriteRequest::put(item([("pk", AttributeValue::s(pk))]));
        let (_, schema) = shared.table("t").unwrap();
        let weighed = schema.weigh("t", &request).unwrap();
        shared.enqueue(0, request, weighed, None).unwrap()
    }

    fn keys(batch: &Batch) -> Vec<String> {
        batch
            .writes
            .iter()
            .map(|w| match &w.request {
                WriteRequest::Put { item } => item["pk"].as_s().unwrap().to_owned(),
                WriteRequest::Delete { key } => key["pk"].as_s().unwrap().to_owned(),
            })
            .collect()
    }

    fn done(written: Vec<Pending>) -> Outcome {
        Outcome {
            written,
            units: 0.0,
            retry: Vec::new(),
            throttled: false,
            back_off: false,
            failed: Vec::new(),
        }
    }

    #[test]
    fn a_key_in_flight_or_passed_over_holds_back_its_later_writes() {
        let shared = shared(3);
        for pk in ["a", "a", "b", "a", "c", "d"] {
            put(&shared, pk);
        }
        let first = shared.next_batch().unwrap();
        assert_eq!(keys(&first), ["a", "b", "c"]);
        // `a` is in flight: the next batch skips both later `a`s.
        let second = shared.next_batch().unwrap();
        assert_eq!(keys(&second), ["d"]);
        let policy = RetryPolicy::no_retries();
        shared.finish(0, done(first.writes), &policy);
        let third = shared.next_batch().unwrap();
        assert_eq!(keys(&third), ["a"]);
        shared.finish(0, done(second.writes), &policy);
        shared.finish(0, done(third.writes), &policy);
        assert_eq!(keys(&shared.next_batch().unwrap()), ["a"]);
    }

    #[test]
    fn retried_writes_go_back_in_front_in_put_order() {
        let shared = shared(2);
        for pk in ["a", "b", "c"] {
            put(&shared, pk);
        }
        let batch = shared.next_batch().unwrap();
        let mut writes = batch.writes;
        writes.reverse();
        let outcome = Outcome {
            retry: writes,
            ..done(Vec::new())
        };
        shared.finish(0, outcome, &RetryPolicy::no_retries());
        assert_eq!(keys(&shared.next_batch().unwrap()), ["a", "b"]);
        assert_eq!(shared.table_stats()[0].retries, 2);
    }

    #[test]
    fn a_write_marked_alone_travels_alone() {
        let shared = shared(5);
        for pk in ["a", "b", "c"] {
            put(&shared, pk);
        }
        let batch = shared.next_batch().unwrap();
        let mut writes = batch.writes;
        for write in &mut writes {
            write.alone = true;
        }
        let outcome = Outcome {
            retry: writes,
            ..done(Vec::new())
        };
        shared.finish(0, outcome, &RetryPolicy::no_retries());
        for pk in ["a", "b", "c"] {
            assert_eq!(keys(&shared.next_batch().unwrap()), [pk]);
        }
    }

    #[test]
    fn closed_and_settled_ends_the_workers() {
        let shared = shared(5);
        let ticket = put(&shared, "a");
        let batch = shared.next_batch().unwrap();
        shared.close();
        let failed = Outcome {
            failed: batch
                .writes
                .into_iter()
                .map(|w| (w, Error::InvalidArgument("no".into())))
                .collect(),
            ..done(Vec::new())
        };
        shared.finish(0, failed, &RetryPolicy::no_retries());
        assert!(shared.next_batch().is_none());
        assert_eq!(shared.status(ticket).unwrap(), RecordStatus::Failed);
        assert_eq!(shared.first_unwritten(), ticket);
        let error = shared.flush(None).unwrap_err().to_string();
        assert!(error.contains("table t"), "{error}");
    }
}
