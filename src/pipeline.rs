//! Consumer → the caller's transform → writer, checkpointing a shard's
//! position only once every item derived from the records up to it is
//! written. A crash anywhere in between makes the next owner of the shard
//! read those records again and rewrite their items (puts are idempotent):
//! nothing is lost. The pipeline runs on the consumer's leases, so several
//! processes share the shards.
//!
//! Glue only: it uses the consumer's and the writer's public API.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::consumer::{Consumer, Record};
use crate::dynamodb::{Item, WriteRequest};
use crate::error::{Error, Result};
use crate::tickets::{RecordStatus, Ticket};
use crate::writer::DynamoDbWriter;

/// One write a record turned into.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The table; `None`: the writer's default table.
    pub table: Option<String>,
    pub request: WriteRequest,
}

impl Write {
    /// Puts `item` into the writer's default table.
    pub fn put(item: Item) -> Write {
        Write {
            table: None,
            request: WriteRequest::put(item),
        }
    }

    /// Deletes the item with `key` from the writer's default table.
    pub fn delete(key: Item) -> Write {
        Write {
            table: None,
            request: WriteRequest::delete(key),
        }
    }

    /// The same write, to `table`.
    pub fn to(mut self, table: impl Into<String>) -> Write {
        self.table = Some(table.into());
        self
    }
}

/// Counters of a pipeline since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub records: u64,
    pub writes: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Records read but not yet checkpointed.
    pub records_pending: u64,
}

/// Reads from a consumer, writes through a writer, checkpoints behind the
/// writes. The consumer must checkpoint on request (its checkpointer built
/// with `auto_checkpoint(false)`): automatic checkpoints would run ahead of
/// the writes.
pub struct Pipeline<'a> {
    consumer: &'a Consumer,
    writer: &'a DynamoDbWriter,
    batch_size: usize,
    poll: Duration,
    checkpoint_interval: Duration,
    /// Records read, in order, each with the ticket after its writes.
    pending: VecDeque<(Record, Ticket)>,
    /// The ticket after the last write so far.
    written_to: Ticket,
    last_checkpoint: Instant,
    stats: PipelineStats,
}

impl<'a> Pipeline<'a> {
    /// A pipeline from `consumer` into `writer`.
    pub fn new(consumer: &'a Consumer, writer: &'a DynamoDbWriter) -> Result<Pipeline<'a>> {
        if consumer.checkpoints_automatically() {
            return Err(Error::Config(
                "a pipeline checkpoints only what is written: build the consumer's checkpointer with auto_checkpoint(false)".into(),
            ));
        }
        Ok(Pipeline {
            consumer,
            writer,
            batch_size: 500,
            poll: Duration::from_millis(200),
            checkpoint_interval: Duration::from_secs(1),
            pending: VecDeque::new(),
            written_to: Ticket::from_u64(0),
            last_checkpoint: Instant::now(),
            stats: PipelineStats::default(),
        })
    }

    /// Records taken from the consumer at a time [500].
    pub fn batch_size(mut self, size: usize) -> Self {
        self.batch_size = size.max(1);
        self
    }

    /// How often written positions are checkpointed [1 s].
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Runs until `keep_going` says no (asked between batches, at least
    /// every 200 ms) or the consumer closes; then waits for the writes and
    /// checkpoints them. Returns the first error of the consumer, the
    /// transform, a write or a checkpoint. A failed run closes the
    /// consumer: records it took but did not finish must not be passed
    /// over by a later checkpoint, so the next owner of each shard reads
    /// everything after the last checkpoint again.
    pub fn run(
        &mut self,
        transform: impl FnMut(&Record) -> Result<Vec<Write>>,
        keep_going: impl FnMut() -> bool,
    ) -> Result<()> {
        let outcome = self.pump(transform, keep_going);
        if let Err(error) = &outcome {
            log::warn!("pipeline stopped: {error}; closing the consumer so its unfinished records are read again");
            if let Err(close) = self.consumer.close() {
                log::warn!("pipeline: closing the consumer failed too: {close}");
            }
        }
        outcome
    }

    fn pump(
        &mut self,
        mut transform: impl FnMut(&Record) -> Result<Vec<Write>>,
        mut keep_going: impl FnMut() -> bool,
    ) -> Result<()> {
        while keep_going() && !self.consumer.is_closed() {
            for record in self.consumer.next_batch(self.batch_size, self.poll)? {
                for write in transform(&record)? {
                    let table = write
                        .table
                        .as_deref()
                        .unwrap_or(self.writer.default_table());
                    let ticket = self.writer.write(table, write.request)?;
                    self.written_to = Ticket::from_u64(ticket.get() + 1);
                    self.stats.writes += 1;
                }
                self.stats.records += 1;
                self.pending.push_back((record, self.written_to));
            }
            if self.last_checkpoint.elapsed() >= self.checkpoint_interval {
                self.checkpoint_written()?;
            }
        }
        self.finish()
    }

    /// Waits for every write so far, then checkpoints what they cover.
    pub fn finish(&mut self) -> Result<()> {
        self.writer.flush()?;
        self.checkpoint_written()
    }

    /// Counters since the pipeline started.
    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            records_pending: self.pending.len() as u64,
            ..self.stats
        }
    }

    /// Checkpoints, per shard, the last record whose writes (and those of
    /// every record read before it) are all written. A write that failed
    /// for good stops the pipeline here with the writer's report.
    fn checkpoint_written(&mut self) -> Result<()> {
        self.last_checkpoint = Instant::now();
        let written = self.writer.first_unwritten();
        let mut latest: HashMap<Arc<str>, Record> = HashMap::new();
        while let Some((_, end)) = self.pending.front() {
            if *end > written {
                break;
            }
            let (record, _) = self.pending.pop_front().expect("a front record");
            latest.insert(Arc::clone(&record.shard_id), record);
        }
        for record in latest.into_values() {
            match self.consumer.checkpoint_record(&record) {
                Ok(()) => self.stats.checkpoints += 1,
                // Another owner has the shard: it starts from the last
                // checkpoint and writes those items again.
                Err(Error::LeaseLost { shard_id }) => {
                    log::info!("pipeline: the lease of {shard_id} was lost; its next owner rewrites what was not checkpointed");
                }
                Err(error) => return Err(error),
            }
        }
        if self.writer.status(written).ok() == Some(RecordStatus::Failed) {
            // Reported by the flush unless the caller took it already.
            self.writer.flush()?;
            return Err(Error::InvalidArgument(format!(
                "write {written} failed for good; the pipeline stops so that nothing read after it is checkpointed"
            )));
        }
        Ok(())
    }
}
