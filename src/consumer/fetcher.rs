//! The fetch thread of one owned shard: GetRecords at a polite pace,
//! de-aggregation, and delivery into the bounded channel (blocking when it is
//! full, so nothing is ever dropped).

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::record::Record;
use super::shard::{OwnedShard, TenureState, WriteOutcome};
use super::{Context, Item};
use crate::checkpoint::{compare_sequence_numbers, Position};
use crate::error::{Error, ErrorCode};
use crate::kinesis::aggregation::deaggregate;
use crate::kinesis::{self, IteratorPosition};
use crate::transport::{deadline, RetryPolicy};

/// Kinesis allows 5 GetRecords calls per second per shard.
const MIN_CALL_INTERVAL: Duration = Duration::from_millis(200);

/// Backoff of one shard after throttling or transient errors.
const SHARD_BACKOFF: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    base_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(10),
};

/// How far before the moment LATEST was resolved a successor starts when
/// no record has been checkpointed yet: covers clock skew between this host
/// and Kinesis's arrival timestamps. Records older than that are delivered
/// again only in that case, none is skipped.
const LATEST_PIN_MARGIN: Duration = Duration::from_secs(10);

/// Where a tenure starts reading.
pub(crate) enum StartFrom {
    /// After this checkpointed position.
    After(Position),
    /// At a position that resolves the same every time (TRIM_HORIZON, or a
    /// start pinned by an earlier tenure).
    At(IteratorPosition),
    /// At a moving initial position (LATEST, AT_TIMESTAMP) not yet pinned:
    /// the tenure stores where it starts before it reads anything.
    Unpinned(IteratorPosition),
}

pub(crate) fn spawn(
    context: Arc<Context>,
    shard: Arc<OwnedShard>,
    start: StartFrom,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("kcheck-fetch-{}", shard.shard_id))
        .spawn(move || Fetcher::new(&context, &shard, start).run())
}

/// The pauses of a caught-up shard: `first`, doubled after each empty poll
/// up to `longest`.
struct IdlePause {
    first: Duration,
    longest: Duration,
}

impl IdlePause {
    fn new(options: &super::ConsumerOptions) -> IdlePause {
        let first = options.idle_poll_interval;
        IdlePause {
            first,
            longest: options.idle_poll_max_interval.unwrap_or(first),
        }
    }

    fn after(&self, pause: Duration) -> Duration {
        pause.saturating_mul(2).min(self.longest)
    }
}

struct Fetcher<'a> {
    context: &'a Context,
    shard: &'a Arc<OwnedShard>,
    start: StartFrom,
    /// The last Kinesis record sent to the caller's queue (chunks end on
    /// whole aggregates), where a new iterator resumes.
    last_sent: Option<String>,
    /// Whether the page being read has sent records already.
    sent_from_page: bool,
    iterator: Option<String>,
    failures: u32,
    /// Records asked per call: `record_limit`, halved when a page exceeds
    /// the client's response cap, doubled back once a page is not full.
    limit: u32,
    /// User records gathered for the next channel item.
    chunk: Vec<Record>,
    /// A fresh shard id per chunk: its reference count is touched by this
    /// thread while the chunk fills and by the caller's thread only after,
    /// instead of one shared counter bouncing between them per record.
    chunk_shard_id: Arc<str>,
}

impl<'a> Fetcher<'a> {
    fn new(context: &'a Context, shard: &'a Arc<OwnedShard>, start: StartFrom) -> Self {
        Fetcher {
            context,
            shard,
            start,
            last_sent: None,
            sent_from_page: false,
            iterator: None,
            failures: 0,
            limit: context.options.record_limit,
            chunk: Vec::with_capacity(context.chunk_size),
            chunk_shard_id: Arc::from(&*shard.shard_id),
        }
    }

    fn running(&self) -> bool {
        self.shard.may_deliver(self.context) && !self.context.is_closing()
    }

    /// Every call is bounded by the lease's safe time: records of a later
    /// answer could not be delivered anyway, and so a fetcher stuck in a
    /// hung call ends soon after its lease (and after close).
    fn run(mut self) {
        let context = self.context;
        let mut last_call = Instant::now() - MIN_CALL_INTERVAL;
        let idle_pause = IdlePause::new(&context.options);
        let mut pause = idle_pause.first;
        while self.running() {
            let iterator = match self.iterator.take() {
                Some(iterator) => iterator,
                None => match deadline::within(self.shard.valid_until(), || self.new_iterator()) {
                    Ok(iterator) => iterator,
                    Err(error) => {
                        self.on_error(error);
                        continue;
                    }
                },
            };
            let wait = MIN_CALL_INTERVAL.saturating_sub(last_call.elapsed());
            if !context.sleep(wait) {
                return;
            }
            last_call = Instant::now();
            // Records are queued as the page is decoded, chunk by chunk.
            let skip_through = self.skip_through();
            self.sent_from_page = false;
            let mut stopped = false;
            let shard = self.shard;
            let response = deadline::within(shard.valid_until(), || {
                context
                    .kinesis
                    .get_records_each(&iterator, self.limit, |record| {
                        if self.accept(record, skip_through.as_ref()) {
                            ControlFlow::Continue(())
                        } else {
                            stopped = true;
                            ControlFlow::Break(())
                        }
                    })
            });
            if stopped {
                return;
            }
            match response {
                Ok(page) => {
                    if !self.send_chunk() {
                        return;
                    }
                    self.failures = 0;
                    if page.record_count < self.limit as usize {
                        self.limit = self
                            .limit
                            .saturating_mul(2)
                            .min(context.options.record_limit);
                    }
                    let caught_up =
                        page.record_count == 0 && page.millis_behind_latest.unwrap_or(0) == 0;
                    if let Some(behind) = page.millis_behind_latest {
                        self.shard
                            .counters
                            .millis_behind_latest
                            .store(behind, Ordering::Relaxed);
                    }
                    match page.next_shard_iterator {
                        Some(next) => self.iterator = Some(next),
                        None => {
                            log::info!("shard {} reached its end", self.shard.shard_id);
                            context.deliver(Item::ShardEnd(self.shard.clone()), self.shard);
                            return;
                        }
                    }
                    if !caught_up {
                        pause = idle_pause.first;
                    } else if !context.sleep(pause) {
                        return;
                    } else {
                        pause = idle_pause.after(pause);
                    }
                }
                Err(error) => {
                    // What the failed page gathered but did not send is read
                    // again. The same iterator serves a retry unless it
                    // expired or part of the page was sent already: then a
                    // new one starts after the last record sent.
                    self.chunk.clear();
                    if error.code() != Some(&ErrorCode::ExpiredIterator) && !self.sent_from_page {
                        self.iterator = Some(iterator);
                    }
                    if matches!(error, Error::ResponseTooLarge { .. }) && self.limit > 1 {
                        // Nothing of it was read: ask again for fewer records.
                        self.shard.counters.errors.fetch_add(1, Ordering::Relaxed);
                        self.limit /= 2;
                        log::warn!(
                            "shard {}: {error}; asking for {} records per call",
                            self.shard.shard_id,
                            self.limit
                        );
                        continue;
                    }
                    self.on_error(error);
                }
            }
        }
    }

    fn new_iterator(&mut self) -> crate::Result<String> {
        let position = match (&self.last_sent, &self.start) {
            (Some(sequence), _) => IteratorPosition::AfterSequenceNumber(sequence.clone()),
            (None, StartFrom::After(position)) => {
                IteratorPosition::AtSequenceNumber(position.sequence_number.clone())
            }
            (None, StartFrom::At(position)) => position.clone(),
            (None, StartFrom::Unpinned(position)) => {
                let position = position.clone();
                return self.pin_and_resolve(position);
            }
        };
        self.context.kinesis.get_shard_iterator(
            &self.context.stream,
            &self.shard.shard_id,
            &position,
        )
    }

    /// Stores where this tenure starts before anything is read, then
    /// resolves the moving position. Later tenures, and this one after an
    /// expired iterator, start at the pin instead of resolving it anew, so
    /// records fetched but not yet processed are never skipped.
    fn pin_and_resolve(&mut self, position: IteratorPosition) -> crate::Result<String> {
        let pin = match &position {
            IteratorPosition::Latest => IteratorPosition::AtTimestamp(
                SystemTime::now()
                    .checked_sub(LATEST_PIN_MARGIN)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            ),
            other => other.clone(),
        };
        let context = self.context;
        self.shard.write(context, Duration::MAX, |lease| {
            context
                .checkpointer
                .pin_start(&context.scope, lease, &pin)
                .map(WriteOutcome::Renewed)
        })?;
        let iterator =
            context
                .kinesis
                .get_shard_iterator(&context.stream, &self.shard.shard_id, &position)?;
        self.start = StartFrom::At(pin);
        Ok(iterator)
    }

    /// The checkpoint whose records a page must skip: until something has
    /// been sent, reading starts at (not after) the checkpointed record.
    fn skip_through(&self) -> Option<Position> {
        match &self.start {
            StartFrom::After(position) if self.last_sent.is_none() => Some(position.clone()),
            _ => None,
        }
    }

    /// Splits an aggregate, skips what the checkpoint covers, and sends the
    /// chunk once it is full. False once the shard must stop.
    fn accept(&mut self, record: kinesis::Record, skip_through: Option<&Position>) -> bool {
        let before = self.chunk.len();
        self.split_into(record);
        if let Some(done) = skip_through {
            let added = self.chunk.split_off(before);
            self.chunk
                .extend(added.into_iter().filter(|user| !covers(done, user)));
        }
        self.chunk.len() < self.context.chunk_size || self.send_chunk()
    }

    /// Sends the records gathered so far as one channel item.
    fn send_chunk(&mut self) -> bool {
        let Some(last) = self.chunk.last() else {
            return true;
        };
        self.last_sent = Some(last.sequence_number.clone());
        self.sent_from_page = true;
        let records =
            std::mem::replace(&mut self.chunk, Vec::with_capacity(self.context.chunk_size));
        self.chunk_shard_id = Arc::from(&*self.shard.shard_id);
        // Counted before sending, so stats never lag behind what the caller got.
        let counters = &self.shard.counters;
        let bytes: usize = records.iter().map(|r| r.data.len()).sum();
        counters.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        counters
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.context
            .deliver(Item::Records(self.shard.clone(), records), self.shard)
    }

    /// Appends the user records of one Kinesis record (one, or the
    /// contents of a KPL aggregate) to the chunk.
    fn split_into(&mut self, record: kinesis::Record) {
        let (tenure_id, consumer_id) = (self.shard.id, self.context.id);
        let shard_id = &self.chunk_shard_id;
        match deaggregate(&record.data) {
            Some(users) => self.chunk.extend(users.into_iter().map(|user| Record {
                data: user.data,
                partition_key: user.partition_key,
                sequence_number: record.sequence_number.clone(),
                sub_sequence_number: user.sub_sequence_number,
                shard_id: shard_id.clone(),
                approximate_arrival_timestamp: record.approximate_arrival_timestamp,
                explicit_hash_key: user.explicit_hash_key,
                tenure_id,
                consumer_id,
            })),
            None => self.chunk.push(Record {
                data: record.data,
                partition_key: record.partition_key,
                sequence_number: record.sequence_number,
                sub_sequence_number: 0,
                shard_id: shard_id.clone(),
                approximate_arrival_timestamp: record.approximate_arrival_timestamp,
                explicit_hash_key: record.explicit_hash_key,
                tenure_id,
                consumer_id,
            }),
        }
    }

    /// Expired iterators are renewed; throttling and transient failures back
    /// off this shard only; configuration problems go to the caller.
    fn on_error(&mut self, error: Error) {
        let counters = &self.shard.counters;
        let shard = &self.shard.shard_id;
        if error.code() == Some(&ErrorCode::ExpiredIterator) {
            log::info!("shard {shard}: iterator expired; resuming after the last fetched record");
            self.iterator = None;
            return;
        }
        if error.is_configuration() {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            log::error!("shard {shard}: {error}; stopping the shard");
            self.context.deliver_error(error);
            // Hand the lease back so the failure is retried by discovery, not here.
            if self
                .shard
                .transition(TenureState::Active, TenureState::HandingOver)
            {
                self.shard.progress.lock().handover = None;
            }
            return;
        }
        if error.is_throttling() {
            counters.throttles.fetch_add(1, Ordering::Relaxed);
            log::debug!("shard {shard}: throttled: {error}");
        } else {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            log::warn!("shard {shard}: {error}; retrying");
        }
        let sleep = SHARD_BACKOFF.backoff(self.failures);
        self.failures = self.failures.saturating_add(1);
        self.context.sleep(sleep);
    }
}

/// Whether `record` is at or before the checkpointed `done`.
fn covers(done: &Position, record: &Record) -> bool {
    compare_sequence_numbers(&record.sequence_number, &done.sequence_number)
        .then(record.sub_sequence_number.cmp(&done.sub_sequence_number))
        .is_le()
}
