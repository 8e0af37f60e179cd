//! The DynamoDB writer: [`DynamoDbWriter::put`] queues an item in a
//! bounded queue and returns its [`Ticket`]; worker threads group queued
//! writes into `BatchWriteItem` calls of up to 25, pace each table to its
//! `write_capacity` (write units a second, one per started KB of item),
//! resend what DynamoDB leaves unprocessed or throttles after a jittered,
//! growing backoff, and settle every ticket as written or failed for good.
//!
//! When a table pushes back the workers slow down, the queue fills and
//! `put` blocks: the input adapts to the table's capacity, and nothing is
//! dropped. Two writes of one key never share a batch and reach DynamoDB
//! in the order they were put. Writes are retried until written, so a
//! write whose answer was lost may be applied twice: puts and deletes are
//! idempotent, and a later write of the same key still lands last.

mod item;
mod queue;
mod worker;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::dynamodb::{
    DynamoDbClient, Item, KeyType, ScalarAttributeType, TableRequest, WriteRequest, MAX_BATCH_WRITE,
};
use crate::error::{Error, Result};
use crate::rate::TokenBucket;
use crate::tickets::Failure;
pub use crate::tickets::{RecordStatus, Ticket};
use crate::transport::{ClientSettings, RetryPolicy};
use item::KeySchema;
pub use item::MAX_ITEM_BYTES;
use queue::Shared;

/// The most worker threads a writer runs.
pub const MAX_THREADS: usize = 64;
/// A paced table saves up at most this long's worth of write units, so a
/// quiet spell is not followed by a burst over its capacity.
const BURST: Duration = Duration::from_millis(200);

/// A write DynamoDB refused for good (validation, a missing table, access).
#[derive(Debug, Clone)]
pub struct FailedWrite {
    pub ticket: Ticket,
    pub table: String,
    /// The put or delete, with its item or key.
    pub request: WriteRequest,
    pub error: Error,
}

impl Failure for FailedWrite {
    fn ticket(&self) -> Ticket {
        self.ticket
    }
    fn error(&self) -> &Error {
        &self.error
    }
    fn subject(&self) -> Option<String> {
        Some(format!(
            "table {}, {}",
            self.table,
            item::show(&self.request)
        ))
    }
}

/// Counters of a writer since it started, over all its tables.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WriterStats {
    /// Writes accepted by `put`/`delete`/`write`.
    pub items_put: u64,
    /// Writes DynamoDB applied.
    pub items_written: u64,
    /// Writes that failed for good.
    pub items_failed: u64,
    /// Write units consumed.
    pub write_units: f64,
    /// Batches DynamoDB throttled or left partly unprocessed.
    pub throttles: u64,
    /// Writes sent again.
    pub retries: u64,
    /// `BatchWriteItem` calls.
    pub requests: u64,
    /// Writes put but not yet settled.
    pub queue_depth: u64,
    /// Write units a second, averaged over the last seconds.
    pub units_per_second: f64,
}

/// Counters of one table of a writer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableStats {
    pub table: String,
    /// Its pace in write units a second; `None`: unlimited.
    pub write_capacity: Option<f64>,
    pub items_written: u64,
    pub write_units: f64,
    pub throttles: u64,
    pub retries: u64,
    pub requests: u64,
    /// Writes queued or in flight.
    pub queue_depth: u64,
    pub units_per_second: f64,
}

/// Writer options; see [`DynamoDbWriterBuilder`] for each one's meaning.
#[derive(Debug, Clone)]
pub(crate) struct WriterOptions {
    pub threads: usize,
    pub batch_size: usize,
    pub max_queue_size: usize,
    pub buffer_time: Duration,
}

/// Builds a [`DynamoDbWriter`].
#[derive(Debug, Clone)]
pub struct DynamoDbWriterBuilder {
    /// The default table first, then the others, each with its pace.
    tables: Vec<(String, Option<f64>)>,
    options: WriterOptions,
    backoff: RetryPolicy,
    client: ClientSettings,
}

impl DynamoDbWriterBuilder {
    /// The default table's pace in write units a second [unlimited].
    pub fn write_capacity(mut self, units_per_second: f64) -> Self {
        self.tables[0].1 = Some(units_per_second);
        self
    }

    /// Another table with its own pace (`None`: unlimited). Tables never
    /// named here can still be written to, unpaced.
    pub fn table(mut self, name: impl Into<String>, write_capacity: Option<f64>) -> Self {
        let name = name.into();
        match self.tables.iter_mut().find(|(known, _)| *known == name) {
            Some(entry) => entry.1 = write_capacity,
            None => self.tables.push((name, write_capacity)),
        }
        self
    }

    /// Worker threads sending batches, 1 to 64 [4].
    pub fn threads(mut self, threads: usize) -> Self {
        self.options.threads = threads;
        self
    }

    /// Writes per `BatchWriteItem` call, 1 to 25 [25].
    pub fn batch_size(mut self, size: usize) -> Self {
        self.options.batch_size = size;
        self
    }

    /// Writes put but not yet settled before `put` blocks [10 000].
    pub fn max_queue_size(mut self, size: usize) -> Self {
        self.options.max_queue_size = size;
        self
    }

    /// The longest a write waits for others to fill its batch [50 ms].
    pub fn buffer_time(mut self, time: Duration) -> Self {
        self.options.buffer_time = time;
        self
    }

    /// The backoff after a throttled batch: full jitter, doubling from
    /// `base` up to `max` [25 ms to 5 s].
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff.base_delay = base;
        self.backoff.max_delay = max;
        self
    }

    crate::transport::client_setters!("DynamoDB");

    /// Checks the options, reads every named table's key (failing fast on
    /// a missing table or missing permissions) and starts the workers.
    pub fn build(self) -> Result<DynamoDbWriter> {
        let options = self.options;
        if !(1..=MAX_THREADS).contains(&options.threads) {
            return Err(Error::Config(format!(
                "threads must be 1 to {MAX_THREADS}, got {}",
                options.threads
            )));
        }
        if !(1..=MAX_BATCH_WRITE).contains(&options.batch_size) {
            return Err(Error::Config(format!(
                "batch_size must be 1 to {MAX_BATCH_WRITE}, got {}",
                options.batch_size
            )));
        }
        if options.max_queue_size == 0 {
            return Err(Error::Config("max_queue_size must be at least 1".into()));
        }
        let buckets = self
            .tables
            .iter()
            .map(|(name, capacity)| pace(name, *capacity))
            .collect::<Result<Vec<_>>>()?;
        let config = self.client.resolve()?;
        let client = DynamoDbClient::new(&config)?;
        let shared = Arc::new(Shared::new(options.clone()));
        for ((name, _), bucket) in self.tables.iter().zip(buckets) {
            shared.add_table(name, key_schema(&client, name)?, bucket);
        }
        let workers = worker::start(&shared, &client, self.backoff, options.threads)?;
        log::info!(
            "DynamoDB writer for {} started with {} threads",
            self.tables[0].0,
            options.threads
        );
        Ok(DynamoDbWriter {
            shared,
            client,
            default_table: self.tables[0].0.clone(),
            workers: Mutex::new(workers),
        })
    }
}

/// Writes items to DynamoDB tables from any number of threads, paced and
/// batched. `Send + Sync`.
pub struct DynamoDbWriter {
    shared: Arc<Shared>,
    /// For reading the key of a table first written to after `build`.
    client: DynamoDbClient,
    default_table: String,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for DynamoDbWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDbWriter")
            .field("default_table", &self.default_table)
            .finish_non_exhaustive()
    }
}

impl DynamoDbWriter {
    /// A builder for a writer whose default table is `table_name`.
    pub fn builder(table_name: impl Into<String>) -> DynamoDbWriterBuilder {
        DynamoDbWriterBuilder {
            tables: vec![(table_name.into(), None)],
            options: WriterOptions {
                threads: 4,
                batch_size: MAX_BATCH_WRITE,
                max_queue_size: 10_000,
                buffer_time: Duration::from_millis(50),
            },
            backoff: RetryPolicy {
                max_attempts: u32::MAX,
                base_delay: Duration::from_millis(25),
                max_delay: Duration::from_secs(5),
            },
            client: ClientSettings::default(),
        }
    }

    /// The table `put` and `delete` write to.
    pub fn default_table(&self) -> &str {
        &self.default_table
    }

    /// Queues a put of `item` into the default table, blocking while the
    /// queue is full. Errors: an item without the table's key, of the
    /// wrong key type or over 400 KB (the error shows the item), a closed
    /// writer.
    pub fn put(&self, item: Item) -> Result<Ticket> {
        self.write_until(&self.default_table, WriteRequest::put(item), None)
    }

    /// Queues a delete of the item with `key` from the default table.
    pub fn delete(&self, key: Item) -> Result<Ticket> {
        self.write_until(&self.default_table, WriteRequest::delete(key), None)
    }

    /// Queues a put or delete for `table`, any table: one not named in the
    /// builder is written unpaced (its key is read on first use).
    pub fn write(&self, table: &str, request: WriteRequest) -> Result<Ticket> {
        self.write_until(table, request, None)
    }

    /// [`DynamoDbWriter::write`] that gives up with [`Error::Timeout`] when
    /// the queue stays full for `timeout`.
    pub fn write_timeout(
        &self,
        table: &str,
        request: WriteRequest,
        timeout: Duration,
    ) -> Result<Ticket> {
        self.write_until(table, request, Some(Instant::now() + timeout))
    }

    /// Returns once every write put before the call is settled: an error
    /// if any of them failed for good (naming how many, which, and the
    /// first one's table and item) that no earlier flush reported.
    pub fn flush(&self) -> Result<()> {
        self.shared.flush(None)
    }

    /// [`DynamoDbWriter::flush`] that gives up with [`Error::Timeout`]
    /// after `timeout` (the writes stay queued).
    pub fn flush_timeout(&self, timeout: Duration) -> Result<()> {
        self.shared.flush(Some(Instant::now() + timeout))
    }

    /// Refuses further writes, flushes (call [`DynamoDbWriter::flush_timeout`]
    /// first to bound the wait) and stops the workers. Idempotent. Dropping
    /// a writer without closing it leaves the workers to write what is
    /// queued in the background.
    pub fn close(&self) -> Result<()> {
        self.shared.close();
        let flushed = self.shared.flush(None);
        let workers = std::mem::take(&mut *self.workers.lock());
        if !workers.is_empty() {
            for worker in workers {
                let _ = worker.join();
            }
            log::info!("DynamoDB writer for {} closed", self.default_table);
        }
        flushed
    }

    /// Where the write of `ticket` stands.
    pub fn status(&self, ticket: Ticket) -> Result<RecordStatus> {
        self.shared.status(ticket)
    }

    /// The lowest ticket not written yet: every write before it was
    /// applied. A write that failed for good holds it back for ever, so
    /// whatever is derived from a failed write is never taken as done.
    pub fn first_unwritten(&self) -> Ticket {
        self.shared.first_unwritten()
    }

    /// The writes that failed for good since the last call, in ticket
    /// order, with their items. A later flush no longer reports them.
    pub fn take_failures(&self) -> Vec<FailedWrite> {
        self.shared.take_failures()
    }

    /// Counters since the writer started, over all tables.
    pub fn stats(&self) -> WriterStats {
        let (items_put, items_failed, queue_depth) = self.shared.counts();
        let mut stats = WriterStats {
            items_put,
            items_failed,
            queue_depth,
            ..WriterStats::default()
        };
        for table in self.shared.table_stats() {
            stats.items_written += table.items_written;
            stats.write_units += table.write_units;
            stats.throttles += table.throttles;
            stats.retries += table.retries;
            stats.requests += table.requests;
            stats.units_per_second += table.units_per_second;
        }
        stats
    }

    /// Counters of each table written to, the default table first.
    pub fn table_stats(&self) -> Vec<TableStats> {
        self.shared.table_stats()
    }

    fn write_until(
        &self,
        table: &str,
        request: WriteRequest,
        deadline: Option<Instant>,
    ) -> Result<Ticket> {
        let (index, schema) = match self.shared.table(table) {
            Some(known) => known,
            None => {
                if table.is_empty() {
                    return Err(Error::InvalidArgument("the table name is empty".into()));
                }
                let schema = key_schema(&self.client, table)?;
                self.shared.add_table(table, schema, None)
            }
        };
        let weighed = schema.weigh(table, &request)?;
        self.shared.enqueue(index, request, weighed, deadline)
    }
}

impl Drop for DynamoDbWriter {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// The bucket pacing `table`, if it has a capacity.
fn pace(table: &str, capacity: Option<f64>) -> Result<Option<TokenBucket>> {
    capacity
        .map(|rate| {
            TokenBucket::new(rate, (rate * BURST.as_secs_f64()).max(1.0)).map_err(|_| {
                Error::Config(format!(
                    "write_capacity of table {table} must be a positive number of write units a second, got {rate}"
                ))
            })
        })
        .transpose()
}

/// Reads `table`'s primary key.
fn key_schema(client: &DynamoDbClient, table: &str) -> Result<KeySchema> {
    let description = client
        .describe_table(&TableRequest::new(table))?
        .table
        .ok_or_else(|| {
            Error::InvalidArgument(format!("DescribeTable of {table} returned no table"))
        })?;
    let mut key = Vec::new();
    for role in [KeyType::Hash, KeyType::Range] {
        let Some(element) = description.key_schema.iter().find(|e| e.key_type == role) else {
            continue;
        };
        let kind: ScalarAttributeType = description
            .attribute_definitions
            .iter()
            .find(|d| d.attribute_name == element.attribute_name)
            .map(|d| d.attribute_type)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "table {table} does not define the type of its key attribute {}",
                    element.attribute_name
                ))
            })?;
        key.push((element.attribute_name.clone(), kind));
    }
    if key.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "table {table} reports no partition key"
        )));
    }
    Ok(KeySchema(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<DynamoDbWriter>();
        check::<FailedWrite>();
    }

    #[test]
    fn nonsense_options_are_refused_before_any_call() {
        let endpoint = "http://127.0.0.1:9";
        let builder = || {
            DynamoDbWriter::builder("t")
                .endpoint_url(endpoint)
                .region_name("us-east-1")
        };
        for (builder, what) in [
            (builder().threads(0), "threads"),
            (builder().threads(65), "threads"),
            (builder().batch_size(26), "batch_size"),
            (builder().max_queue_size(0), "max_queue_size"),
            (builder().write_capacity(0.0), "write_capacity of table t"),
            (
                builder().table("u", Some(f64::NAN)),
                "write_capacity of table u",
            ),
        ] {
            let error = builder.build().unwrap_err();
            assert!(error.is_configuration(), "{error}");
            assert!(error.to_string().contains(what), "{error}");
        }
    }
}
