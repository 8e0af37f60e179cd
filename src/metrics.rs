//! Prometheus text exposition (format 0.0.4) of the figures that
//! [`Consumer::stats`], [`Producer::stats`] and
//! [`DynamoDbWriter::stats`]/[`DynamoDbWriter::table_stats`] already keep:
//! nothing is counted twice, each render reads a fresh snapshot.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(consumer: Arc<kcheck::Consumer>) {
//! let registry = kcheck::metrics::Registry::new();
//! registry.add_consumer(&consumer);
//! let text = registry.render(); // serve as text/plain; version=0.0.4
//! # }
//! ```
//!
//! Names and labels are stable. Consumer families carry `group`, `stream`
//! and `owner` (shard families add `shard`); producer families `stream`;
//! writer families `table` (writer-wide ones `default_table`). Counters end
//! in `_total` and count since the object started; the consumer's record
//! and byte totals cover the shards it holds now (a lost shard's count
//! leaves them, which `rate()` treats as a reset).

use std::fmt::Write as _;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::consumer::{Consumer, ConsumerStats};
use crate::producer::{Producer, ProducerStats};
use crate::writer::{DynamoDbWriter, TableStats, WriterStats};

/// The MIME type of the text [`Registry::render`] returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One metric family: rendered in this table's order, HELP and TYPE once.
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: Kind::Gauge,
        help,
    }
}

macro_rules! families {
    ($($id:ident = $family:expr;)*) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        enum Id { $($id,)* }
        const FAMILIES: &[Family] = &[$($family,)*];
    };
}

families! {
    // Consumer: group, stream, owner.
    ConsumerShards = gauge("kcheck_consumer_shards", "Shards whose lease this consumer holds.");
    ConsumerRecords = counter("kcheck_consumer_records_total", "User records fetched for the caller, over the shards held now.");
    ConsumerBytes = counter("kcheck_consumer_bytes_total", "Payload bytes of the user records fetched, over the shards held now.");
    LeaseGains = counter("kcheck_lease_gains_total", "Free or expired leases taken.");
    LeaseLosses = counter("kcheck_lease_losses_total", "Leases lost: taken by another consumer or not renewed in time.");
    HandoffsGiven = counter("kcheck_lease_handoffs_given_total", "Leases handed over to a consumer that asked for them.");
    HandoffsReceived = counter("kcheck_lease_handoffs_received_total", "Leases handed over to this consumer.");
    CheckpointWrites = counter("kcheck_checkpoint_writes_total", "Checkpoints written.");
    CheckpointFailures = counter("kcheck_checkpoint_failures_total", "Checkpoint writes that failed.");
    Heartbeats = counter("kcheck_lease_heartbeats_total", "Lease renewals without a checkpoint.");
    HeartbeatFailures = counter("kcheck_lease_heartbeat_failures_total", "Lease renewals that failed (retried).");
    DiscoveryFailures = counter("kcheck_discovery_failures_total", "Shard and lease discovery passes that failed.");
    // Shard: group, stream, shard, owner.
    ShardMillisBehind = gauge("kcheck_shard_millis_behind_latest", "MillisBehindLatest of the shard's last GetRecords answer.");
    ShardSecondsSinceCheckpoint = gauge("kcheck_shard_seconds_since_checkpoint", "Seconds since this consumer last wrote the shard's checkpoint (or took its lease).");
    ShardCheckpointBehind = gauge("kcheck_shard_checkpoint_behind", "1 when records returned to the caller lie beyond the stored checkpoint, else 0.");
    ShardRecords = counter("kcheck_shard_records_total", "User records fetched from the shard during this tenure.");
    ShardBytes = counter("kcheck_shard_bytes_total", "Payload bytes fetched from the shard during this tenure.");
    ShardThrottles = counter("kcheck_shard_throttles_total", "GetRecords calls of the shard that were throttled.");
    ShardErrors = counter("kcheck_shard_errors_total", "GetRecords calls of the shard that failed.");
    // Producer: stream.
    ProducerRecordsPut = counter("kcheck_producer_records_put_total", "Records accepted by put.");
    ProducerRecordsSent = counter("kcheck_producer_records_sent_total", "Records Kinesis stored.");
    ProducerRecordsRetried = counter("kcheck_producer_records_retried_total", "Records sent again.");
    ProducerRecordsFailed = counter("kcheck_producer_records_failed_total", "Records that failed for good.");
    ProducerRecordsThrottled = counter("kcheck_producer_records_throttled_total", "Record entries Kinesis rejected as over a shard's throughput.");
    ProducerBytesPut = counter("kcheck_producer_bytes_put_total", "Data bytes accepted by put.");
    ProducerBytesSent = counter("kcheck_producer_bytes_sent_total", "Bytes (data and partition keys) of the Kinesis records stored.");
    ProducerKinesisRecordsSent = counter("kcheck_producer_kinesis_records_sent_total", "Kinesis records stored (user records or aggregates).");
    ProducerRequests = counter("kcheck_producer_requests_total", "PutRecords calls.");
    ProducerShardMapRefreshes = counter("kcheck_producer_shard_map_refreshes_total", "ListShards reads of the shard map.");
    ProducerQueueDepth = gauge("kcheck_producer_queue_depth", "Records put but not yet settled.");
    ProducerShards = gauge("kcheck_producer_shards", "Open shards the producer routes to.");
    // Writer: default_table.
    WriterItemsPut = counter("kcheck_writer_items_put_total", "Writes accepted by put, delete or write, over all tables.");
    WriterItemsFailed = counter("kcheck_writer_items_failed_total", "Writes that failed for good, over all tables.");
    // Writer: table.
    WriterItemsWritten = counter("kcheck_writer_items_written_total", "Writes DynamoDB applied.");
    WriterWriteUnits = counter("kcheck_writer_write_units_total", "Write capacity units consumed.");
    WriterThrottles = counter("kcheck_writer_throttles_total", "Batches DynamoDB throttled or left partly unprocessed.");
    WriterRetries = counter("kcheck_writer_retries_total", "Writes sent again.");
    WriterRequests = counter("kcheck_writer_requests_total", "BatchWriteItem calls.");
    WriterQueueDepth = gauge("kcheck_writer_queue_depth", "Writes queued or in flight.");
    WriterUnitsPerSecond = gauge("kcheck_writer_write_units_per_second", "Write units a second, averaged over the last seconds.");
    WriterCapacity = gauge("kcheck_writer_write_capacity_units_per_second", "The table's configured pace in write units a second (absent: unlimited).");
}

/// A sample value: integers stay exact, floats use Prometheus spelling.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Int(value) => write!(f, "{value}"),
            Value::Float(value) if value.is_nan() => f.write_str("NaN"),
            Value::Float(value) if value.is_infinite() => {
                f.write_str(if value > 0.0 { "+Inf" } else { "-Inf" })
            }
            Value::Float(value) => write!(f, "{value}"),
        }
    }
}

impl From<u64> for Value {
    fn from(value: u64) -> Value {
        Value::Int(value)
    }
}

impl From<f64> for Value {
    fn from(value: f64) -> Value {
        Value::Float(value)
    }
}

/// Samples gathered from any number of consumers, producers and writers,
/// rendered as one text. For a one-off render of objects held by
/// reference; [`Registry`] keeps a list of them.
#[derive(Debug, Default)]
pub struct Exposition {
    /// (family, rendered labels, value), in insertion order per family.
    samples: Vec<(Id, String, Value)>,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Adds a snapshot of `consumer`'s stats.
    pub fn add_consumer(&mut self, consumer: &Consumer) -> &mut Self {
        self.add_consumer_stats(&consumer.stats());
        self
    }

    /// Adds a snapshot of `producer`'s stats.
    pub fn add_producer(&mut self, producer: &Producer) -> &mut Self {
        self.add_producer_stats(&producer.stream().to_string(), &producer.stats());
        self
    }

    /// Adds a snapshot of `writer`'s stats and those of each table.
    pub fn add_writer(&mut self, writer: &DynamoDbWriter) -> &mut Self {
        self.add_writer_stats(
            writer.default_table(),
            &writer.stats(),
            &writer.table_stats(),
        );
        self
    }

    fn push(&mut self, id: Id, labels: &[(&str, &str)], value: impl Into<Value>) {
        self.samples.push((id, render_labels(labels), value.into()));
    }

    pub(crate) fn add_consumer_stats(&mut self, stats: &ConsumerStats) {
        let consumer = [
            ("group", stats.group.as_str()),
            ("stream", stats.stream.as_str()),
            ("owner", stats.owner.as_str()),
        ];
        let (records, bytes) = stats.shards.iter().fold((0u64, 0u64), |(r, b), s| {
            (r.saturating_add(s.records), b.saturating_add(s.bytes))
        });
        self.push(Id::ConsumerShards, &consumer, stats.shards.len() as u64);
        self.push(Id::ConsumerRecords, &consumer, records);
        self.push(Id::ConsumerBytes, &consumer, bytes);
        for (id, value) in [
            (Id::LeaseGains, stats.lease_gains),
            (Id::LeaseLosses, stats.lease_losses),
            (Id::HandoffsGiven, stats.handoffs_given),
            (Id::HandoffsReceived, stats.handoffs_received),
            (Id::CheckpointWrites, stats.checkpoint_writes),
            (Id::CheckpointFailures, stats.checkpoint_failures),
            (Id::Heartbeats, stats.heartbeats),
            (Id::HeartbeatFailures, stats.heartbeat_failures),
            (Id::DiscoveryFailures, stats.discovery_failures),
        ] {
            self.push(id, &consumer, value);
        }
        for shard in &stats.shards {
            let labels = [
                ("group", stats.group.as_str()),
                ("stream", stats.stream.as_str()),
                ("shard", shard.shard_id.as_str()),
                ("owner", shard.owner.as_str()),
            ];
            self.push(Id::ShardMillisBehind, &labels, shard.millis_behind_latest);
            self.push(
                Id::ShardSecondsSinceCheckpoint,
                &labels,
                shard.millis_since_checkpoint as f64 / 1000.0,
            );
            self.push(
                Id::ShardCheckpointBehind,
                &labels,
                u64::from(shard.checkpoint_behind),
            );
            self.push(Id::ShardRecords, &labels, shard.records);
            self.push(Id::ShardBytes, &labels, shard.bytes);
            self.push(Id::ShardThrottles, &labels, shard.throttles);
            self.push(Id::ShardErrors, &labels, shard.errors);
        }
    }

    pub(crate) fn add_producer_stats(&mut self, stream: &str, stats: &ProducerStats) {
        let labels = [("stream", stream)];
        for (id, value) in [
            (Id::ProducerRecordsPut, stats.records_put),
            (Id::ProducerRecordsSent, stats.records_sent),
            (Id::ProducerRecordsRetried, stats.records_retried),
            (Id::ProducerRecordsFailed, stats.records_failed),
            (Id::ProducerRecordsThrottled, stats.records_throttled),
            (Id::ProducerBytesPut, stats.bytes_put),
            (Id::ProducerBytesSent, stats.bytes_sent),
            (Id::ProducerKinesisRecordsSent, stats.kinesis_records_sent),
            (Id::ProducerRequests, stats.requests),
            (Id::ProducerShardMapRefreshes, stats.shard_map_refreshes),
            (Id::ProducerQueueDepth, stats.queue_depth),
            (Id::ProducerShards, stats.shards),
        ] {
            self.push(id, &labels, value);
        }
    }

    pub(crate) fn add_writer_stats(
        &mut self,
        default_table: &str,
        stats: &WriterStats,
        tables: &[TableStats],
    ) {
        let writer = [("default_table", default_table)];
        self.push(Id::WriterItemsPut, &writer, stats.items_put);
        self.push(Id::WriterItemsFailed, &writer, stats.items_failed);
        for table in tables {
            let labels = [("table", table.table.as_str())];
            self.push(Id::WriterItemsWritten, &labels, table.items_written);
            self.push(Id::WriterWriteUnits, &labels, table.write_units);
            self.push(Id::WriterThrottles, &labels, table.throttles);
            self.push(Id::WriterRetries, &labels, table.retries);
            self.push(Id::WriterRequests, &labels, table.requests);
            self.push(Id::WriterQueueDepth, &labels, table.queue_depth);
            self.push(Id::WriterUnitsPerSecond, &labels, table.units_per_second);
            if let Some(capacity) = table.write_capacity {
                self.push(Id::WriterCapacity, &labels, capacity);
            }
        }
    }

    /// The text: each family with samples once, HELP and TYPE first, in a
    /// fixed order; samples in the order they were added.
    pub fn render(&self) -> String {
        let mut order: Vec<usize> = (0..self.samples.len()).collect();
        // Stable: samples of one family keep their order.
        order.sort_by_key(|&i| self.samples[i].0);
        let mut text = String::new();
        let mut current = None;
        for i in order {
            let (id, labels, value) = &self.samples[i];
            let family = &FAMILIES[*id as usize];
            if current != Some(*id) {
                current = Some(*id);
                let kind = match family.kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                };
                let _ = writeln!(text, "# HELP {} {}", family.name, escape_help(family.help));
                let _ = writeln!(text, "# TYPE {} {kind}", family.name);
            }
            let _ = writeln!(text, "{}{labels} {value}", family.name);
        }
        text
    }
}

/// `{a="x",b="y"}` with escaped values; empty without labels.
fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut text = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let _ = write!(text, "{name}=\"{}\"", escape_label_value(value));
    }
    text.push('}');
    text
}

/// A label value: backslash, double quote and line feed escaped.
fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// HELP text: backslash and line feed escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

enum Source {
    Consumer(Weak<Consumer>),
    Producer(Weak<Producer>),
    Writer(Weak<DynamoDbWriter>),
}

/// The consumers, producers and writers a host exposes, rendered as one
/// text. Holds them weakly: one dropped by its owner leaves the next
/// render. `Send + Sync`: render from a server thread while others add.
#[derive(Default)]
pub struct Registry {
    sources: Mutex<Vec<Source>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.sources.lock().len())
            .finish()
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    pub fn add_consumer(&self, consumer: &Arc<Consumer>) {
        self.sources
            .lock()
            .push(Source::Consumer(Arc::downgrade(consumer)));
    }

    pub fn add_producer(&self, producer: &Arc<Producer>) {
        self.sources
            .lock()
            .push(Source::Producer(Arc::downgrade(producer)));
    }

    pub fn add_writer(&self, writer: &Arc<DynamoDbWriter>) {
        self.sources
            .lock()
            .push(Source::Writer(Arc::downgrade(writer)));
    }

    /// A fresh snapshot of every object still alive, as Prometheus text.
    pub fn render(&self) -> String {
        // Upgraded under the lock, read outside it: a render never blocks
        // `add_*` while stats are collected.
        let mut consumers = Vec::new();
        let mut producers = Vec::new();
        let mut writers = Vec::new();
        self.sources.lock().retain(|source| match source {
            Source::Consumer(c) => c.upgrade().map(|c| consumers.push(c)).is_some(),
            Source::Producer(p) => p.upgrade().map(|p| producers.push(p)).is_some(),
            Source::Writer(w) => w.upgrade().map(|w| writers.push(w)).is_some(),
        });
        let mut exposition = Exposition::new();
        for consumer in &consumers {
            exposition.add_consumer(consumer);
        }
        for producer in &producers {
            exposition.add_producer(producer);
        }
        for writer in &writers {
            exposition.add_writer(writer);
        }
        exposition.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consumer::ShardStats;

    fn consumer_stats() -> ConsumerStats {
        ConsumerStats {
            group: "app \"x\"".into(),
            owner: "own\\er".into(),
            stream: "orders\nnew".into(),
            shards: vec![ShardStats {
                shard_id: "shardId-000000000001".into(),
                owner: "own\\er".into(),
                last_delivered: Some("1/0".into()),
                last_checkpointed: None,
                millis_since_checkpoint: 2500,
                checkpoint_behind: true,
                millis_behind_latest: 42,
                records: 7,
                bytes: 70,
                throttles: 1,
                errors: 2,
            }],
            lease_gains: 1,
            lease_losses: 3,
            handoffs_given: 0,
            handoffs_received: 0,
            checkpoint_writes: 5,
            checkpoint_failures: 4,
            heartbeats: 9,
            heartbeat_failures: 0,
            discovery_failures: 0,
        }
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("line\nnext"), "line\\nnext");
        assert_eq!(
            render_labels(&[("a", "1"), ("b", "x\"y")]),
            r#"{a="1",b="x\"y"}"#
        );
        assert_eq!(render_labels(&[]), "");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }

    #[test]
    fn renders_values_in_prometheus_spelling() {
        assert_eq!(Value::Int(u64::MAX).to_string(), "18446744073709551615");
        assert_eq!(Value::Float(2.5).to_string(), "2.5");
        assert_eq!(Value::Float(3.0).to_string(), "3");
        assert_eq!(Value::Float(f64::NAN).to_string(), "NaN");
        assert_eq!(Value::Float(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Value::Float(f64::NEG_INFINITY).to_string(), "-Inf");
    }

    #[test]
    fn renders_a_consumer_exactly() {
        let mut exposition = Exposition::new();
        exposition.add_consumer_stats(&consumer_stats());
        let text = exposition.render();
        let labels = r#"group="app \"x\"",stream="orders\nnew",owner="own\\er""#;
        let shard = r#"group="app \"x\"",stream="orders\nnew",shard="shardId-000000000001",owner="own\\er""#;
        let expected_start = format!(
            "# HELP kcheck_consumer_shards Shards whose lease this consumer holds.\n\
             # TYPE kcheck_consumer_shards gauge\n\
             kcheck_consumer_shards{{{labels}}} 1\n\
             # HELP kcheck_consumer_records_total User records fetched for the caller, over the shards held now.\n\
             # TYPE kcheck_consumer_records_total counter\n\
             kcheck_consumer_records_total{{{labels}}} 7\n"
        );
        assert!(text.starts_with(&expected_start), "{text}");
        for line in [
            format!("kcheck_lease_losses_total{{{labels}}} 3"),
            format!("kcheck_checkpoint_failures_total{{{labels}}} 4"),
            format!("kcheck_shard_millis_behind_latest{{{shard}}} 42"),
            format!("kcheck_shard_seconds_since_checkpoint{{{shard}}} 2.5"),
            format!("kcheck_shard_checkpoint_behind{{{shard}}} 1"),
            format!("kcheck_shard_records_total{{{shard}}} 7"),
            format!("kcheck_shard_errors_total{{{shard}}} 2"),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn help_and_type_once_per_family_across_objects() {
        let mut exposition = Exposition::new();
        let first = consumer_stats();
        let mut second = consumer_stats();
        second.owner = "other".into();
        second.shards[0].owner = "other".into();
        exposition.add_consumer_stats(&first);
        exposition.add_producer_stats("s1", &ProducerStats::default());
        exposition.add_consumer_stats(&second);
        exposition.add_producer_stats("s2", &ProducerStats::default());
        let text = exposition.render();
        let mut seen = std::collections::HashSet::new();
        let mut family = "";
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(seen.insert(name.to_owned()), "{name} twice in\n{text}");
                family = FAMILIES.iter().find(|f| f.name == name).unwrap().name;
            } else if line.starts_with("# TYPE ") {
                assert!(line.starts_with(&format!("# TYPE {family} ")));
            } else {
                // Every sample follows its own family's header.
                assert!(line.starts_with(family), "{line} outside {family}");
                assert!(!family.is_empty());
            }
        }
        let sent: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("kcheck_producer_records_sent_total{"))
            .collect();
        assert_eq!(
            sent,
            [
                r#"kcheck_producer_records_sent_total{stream="s1"} 0"#,
                r#"kcheck_producer_records_sent_total{stream="s2"} 0"#
            ]
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("kcheck_lease_losses_total{"))
                .count(),
            2
        );
    }

    #[test]
    fn writer_families_per_table() {
        let mut exposition = Exposition::new();
        let table = TableStats {
            table: "t1".into(),
            write_capacity: Some(100.0),
            items_written: 3,
            write_units: 4.5,
            ..TableStats::default()
        };
        let unlimited = TableStats {
            table: "t2".into(),
            ..TableStats::default()
        };
        let stats = WriterStats {
            items_put: 5,
            ..WriterStats::default()
        };
        exposition.add_writer_stats("t1", &stats, &[table, unlimited]);
        let text = exposition.render();
        for line in [
            r#"kcheck_writer_items_put_total{default_table="t1"} 5"#,
            r#"kcheck_writer_write_units_total{table="t1"} 4.5"#,
            r#"kcheck_writer_write_units_total{table="t2"} 0"#,
            r#"kcheck_writer_items_written_total{table="t1"} 3"#,
            r#"kcheck_writer_write_capacity_units_per_second{table="t1"} 100"#,
            "# TYPE kcheck_writer_write_units_total counter",
            "# TYPE kcheck_writer_queue_depth gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(!text.contains(r#"kcheck_writer_write_capacity_units_per_second{table="t2"}"#));
    }

    #[test]
    fn family_names_follow_the_conventions() {
        let mut names = std::collections::HashSet::new();
        for family in FAMILIES {
            assert!(names.insert(family.name), "{} twice", family.name);
            assert!(family.name.starts_with("kcheck_"));
            assert_eq!(
                family.kind == Kind::Counter,
                family.name.ends_with("_total"),
                "{}",
                family.name
            );
            assert!(family
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        }
    }

    #[test]
    fn an_empty_registry_renders_nothing() {
        assert_eq!(Registry::new().render(), "");
    }
}
