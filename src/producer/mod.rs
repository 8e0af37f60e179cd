//! The producer: [`Producer::put`] queues a record in a bounded buffer and
//! returns its [`Ticket`]; one sending thread batches queued records into
//! PutRecords calls, paced per shard, resubmits what Kinesis throttles, and
//! settles every ticket as accepted or failed for good. Nothing is dropped:
//! a failure for good is reported by the next [`Producer::flush`] and kept
//! for [`Producer::take_failures`].
//!
//! Records of one partition key reach Kinesis in the order they were put:
//! while one of them is in flight or waiting to be resubmitted, the later
//! ones of the same key wait. Without aggregation that means one record of
//! a key per request (a hot key goes at one record per round trip); with
//! [`ProducerBuilder::aggregate`] they travel together in one KPL aggregate.
//!
//! Delivery is at least once, as with the KPL: a request whose answer was
//! lost (a dropped connection) is sent again and may store records twice.

mod buffer;
mod sender;
mod shards;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::{excerpt, Error, Result};
use crate::kinesis::{KinesisClient, PutRecordsEntry, StreamRef, MAX_PUT_RECORDS};
pub use crate::tickets::{RecordStatus, Ticket};
use crate::transport::ClientSettings;
use buffer::Shared;
use shards::{parse_hash_key, partition_key_hash, ShardLimits, ShardMap};

/// The most a record's data and partition key may weigh together.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// The most a PutRecords request's data and partition keys may weigh.
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// The most characters of a partition key.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// A record Kinesis refused for good (validation, access, a deleted stream).
#[derive(Debug, Clone)]
pub struct FailedRecord {
    pub ticket: Ticket,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
    /// Why: the entry's error code and message, or the request's error.
    pub error: Error,
}

/// Counters of a producer since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerStats {
    /// Records accepted by `put`.
    pub records_put: u64,
    /// Records Kinesis stored.
    pub records_sent: u64,
    /// Resubmissions of records (throttled, internal failures, failed requests).
    pub records_retried: u64,
    /// Records that failed for good.
    pub records_failed: u64,
    /// Record entries Kinesis rejected as over a shard's throughput.
    pub records_throttled: u64,
    /// Data bytes accepted by `put`.
    pub bytes_put: u64,
    /// Bytes (data and partition keys) of the Kinesis records stored.
    pub bytes_sent: u64,
    /// Kinesis records stored: user records, or aggregates of them.
    pub kinesis_records_sent: u64,
    /// PutRecords calls.
    pub requests: u64,
    /// Records put but not yet settled.
    pub queue_depth: u64,
    /// Open shards the producer routes to.
    pub shards: u64,
    /// ListShards reads of the shard map.
    pub shard_map_refreshes: u64,
}

/// Producer options; see [`ProducerBuilder`] for each one's meaning.
#[derive(Debug, Clone)]
pub(crate) struct ProducerOptions {
    pub buffer_time: Duration,
    pub batch_size: usize,
    pub max_queue_size: usize,
    pub limits: ShardLimits,
    pub aggregate: bool,
    pub shard_refresh_interval: Duration,
}

/// Builds a [`Producer`].
#[derive(Debug, Clone)]
pub struct ProducerBuilder {
    stream: String,
    options: ProducerOptions,
    client: ClientSettings,
}

impl ProducerBuilder {
    /// The longest a record waits for others to share its request [0.5 s].
    pub fn buffer_time(mut self, time: Duration) -> Self {
        self.options.buffer_time = time;
        self
    }

    /// Records per PutRecords request, 1 to 500 [500].
    pub fn batch_size(mut self, size: usize) -> Self {
        self.options.batch_size = size;
        self
    }

    /// Records put but not yet settled before `put` blocks [10 000].
    pub fn max_queue_size(mut self, size: usize) -> Self {
        self.options.max_queue_size = size;
        self
    }

    /// Kinesis records per second sent to each shard [1 000, the service's limit].
    pub fn put_rate_limit_per_shard(mut self, records_per_second: f64) -> Self {
        self.options.limits.records_per_second = records_per_second;
        self
    }

    /// Bytes (data and partition key) per second sent to each shard
    /// [1 MiB, the service's limit].
    pub fn put_bandwidth_limit_per_shard(mut self, bytes_per_second: f64) -> Self {
        self.options.limits.bytes_per_second = bytes_per_second;
        self
    }

    /// Packs small records bound for one shard into KPL aggregates, which
    /// kcheck's consumer and the KCL split again [false].
    pub fn aggregate(mut self, aggregate: bool) -> Self {
        self.options.aggregate = aggregate;
        self
    }

    /// How often the shard map is read again even when nothing suggests a
    /// resharding [60 s].
    pub fn shard_refresh_interval(mut self, interval: Duration) -> Self {
        self.options.shard_refresh_interval = interval;
        self
    }

    crate::transport::client_setters!("Kinesis");

    /// Checks the options, reads the stream's shards (failing fast on a
    /// missing stream or missing permissions) and starts the sending thread.
    pub fn build(self) -> Result<Producer> {
        let options = self.options;
        if !(1..=MAX_PUT_RECORDS).contains(&options.batch_size) {
            return Err(Error::Config(format!(
                "batch_size must be 1 to {MAX_PUT_RECORDS}, got {}",
                options.batch_size
            )));
        }
        if options.max_queue_size == 0 {
            return Err(Error::Config("max_queue_size must be at least 1".into()));
        }
        if options.shard_refresh_interval < Duration::from_millis(1) {
            return Err(Error::Config(
                "shard_refresh_interval must be at least 1 ms".into(),
            ));
        }
        if self.stream.trim().is_empty() {
            return Err(Error::Config("stream_name is empty".into()));
        }
        let config = self.client.resolve()?;
        let kinesis = KinesisClient::new(&config)?;
        let stream = StreamRef::from(self.stream.as_str());
        let shards = kinesis.list_shards(&stream, None)?;
        let map = ShardMap::new(&shards, options.limits, &ShardMap::default())?;
        let shared = Arc::new(Shared::new(options));
        shared
            .counters
            .shards
            .store(map.len() as u64, Ordering::Relaxed);
        let thread = sender::start(
            Arc::clone(&shared),
            kinesis,
            stream.clone(),
            map,
            config.retry_policy(),
        )?;
        log::info!("producer for {stream} started");
        Ok(Producer {
            shared,
            stream,
            thread: Mutex::new(Some(thread)),
        })
    }
}

/// Writes records to one stream from any number of threads. `Send + Sync`.
pub struct Producer {
    shared: Arc<Shared>,
    stream: StreamRef,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Producer {
    /// A builder for a producer writing to `stream` (a name, or an ARN).
    pub fn builder(stream: impl Into<String>) -> ProducerBuilder {
        ProducerBuilder {
            stream: stream.into(),
            options: ProducerOptions {
                buffer_time: Duration::from_millis(500),
                batch_size: MAX_PUT_RECORDS,
                max_queue_size: 10_000,
                limits: ShardLimits {
                    records_per_second: 1000.0,
                    bytes_per_second: 1024.0 * 1024.0,
                },
                aggregate: false,
                shard_refresh_interval: Duration::from_secs(60),
            },
            client: ClientSettings::default(),
        }
    }

    /// The stream written to.
    pub fn stream(&self) -> &StreamRef {
        &self.stream
    }

    /// Queues a record, blocking while the buffer is full. Routed by
    /// `explicit_hash_key` (a decimal 128-bit integer) when given, else by
    /// the partition key's MD5. Errors: a partition key that is not 1 to
    /// 256 characters, a bad explicit hash key, data and key over 1 MiB, a
    /// closed producer.
    pub fn put(
        &self,
        data: impl Into<Vec<u8>>,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
    ) -> Result<Ticket> {
        self.put_until(data.into(), partition_key, explicit_hash_key, None)
    }

    /// [`Producer::put`] that gives up with [`Error::Timeout`] when the
    /// buffer stays full for `timeout`.
    pub fn put_timeout(
        &self,
        data: impl Into<Vec<u8>>,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        timeout: Duration,
    ) -> Result<Ticket> {
        let deadline = Instant::now() + timeout;
        self.put_until(
            data.into(),
            partition_key,
            explicit_hash_key,
            Some(deadline),
        )
    }

    /// Returns once every record put before the call is settled: an error
    /// if any of them failed for good (naming how many and which) that no
    /// earlier flush reported.
    pub fn flush(&self) -> Result<()> {
        self.shared.flush(None)
    }

    /// [`Producer::flush`] that gives up with [`Error::Timeout`] after
    /// `timeout` (the records stay queued).
    pub fn flush_timeout(&self, timeout: Duration) -> Result<()> {
        self.shared.flush(Some(Instant::now() + timeout))
    }

    /// Refuses further puts, flushes (waiting, like [`Producer::flush`],
    /// until every record is settled: call [`Producer::flush_timeout`]
    /// first to bound the wait) and stops the sending thread. Idempotent.
    /// Dropping a producer without closing it leaves the thread to send
    /// what is queued in the background.
    pub fn close(&self) -> Result<()> {
        self.shared.close();
        let flushed = self.shared.flush(None);
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
            log::info!("producer for {} closed", self.stream);
        }
        flushed
    }

    /// Where the record of `ticket` stands.
    pub fn status(&self, ticket: Ticket) -> Result<RecordStatus> {
        self.shared.status(ticket)
    }

    /// The records that failed for good since the last call, in ticket
    /// order, with their data. Their status stays [`RecordStatus::Failed`];
    /// a later flush no longer reports them.
    pub fn take_failures(&self) -> Vec<FailedRecord> {
        self.shared.take_failures()
    }

    /// Counters since the producer started.
    pub fn stats(&self) -> ProducerStats {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (records_put, bytes_put, queue_depth) = self.shared.put_counts();
        ProducerStats {
            records_put,
            records_sent: get(&c.records_sent),
            records_retried: get(&c.records_retried),
            records_failed: get(&c.records_failed),
            records_throttled: get(&c.records_throttled),
            bytes_put,
            bytes_sent: get(&c.bytes_sent),
            kinesis_records_sent: get(&c.kinesis_records_sent),
            requests: get(&c.requests),
            queue_depth: queue_depth as u64,
            shards: get(&c.shards),
            shard_map_refreshes: get(&c.shard_map_refreshes),
        }
    }

    fn put_until(
        &self,
        data: Vec<u8>,
        partition_key: &str,
        explicit_hash_key: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<Ticket> {
        let key_chars = partition_key.chars().count();
        if !(1..=MAX_PARTITION_KEY_CHARS).contains(&key_chars) {
            return Err(Error::InvalidArgument(format!(
                "a partition key must be 1 to {MAX_PARTITION_KEY_CHARS} characters, got {key_chars}"
            )));
        }
        let hash = match explicit_hash_key {
            Some(text) => parse_hash_key(text).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "an explicit hash key must be a decimal integer from 0 to 2^128-1, got {}",
                    excerpt(text)
                ))
            })?,
            None => partition_key_hash(partition_key),
        };
        let size = data.len() + partition_key.len();
        if size > MAX_RECORD_BYTES {
            return Err(Error::InvalidArgument(format!(
                "a record's data and partition key must fit in {MAX_RECORD_BYTES} bytes, got {size}"
            )));
        }
        let entry = PutRecordsEntry {
            data,
            partition_key: partition_key.to_owned(),
            explicit_hash_key: explicit_hash_key.map(str::to_owned),
        };
        let key = ordering_key(partition_key, explicit_hash_key, hash);
        self.shared.enqueue(entry, key, hash, deadline)
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// The key the ordering promise is about: the partition key's MD5, which
/// `hash` already is unless an explicit hash key routed the record.
fn ordering_key(partition_key: &str, explicit: Option<&str>, hash: u128) -> u128 {
    match explicit {
        Some(_) => partition_key_hash(partition_key),
        None => hash,
    }
}
