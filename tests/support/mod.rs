//! Shared helpers of the integration tests: the emulators of this test binary
//! and clients pointed at them.
#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kcheck::checkpoint::DynamoDbCheckpointerBuilder;
use kcheck::dynamodb::{CreateTableRequest, DynamoDbClient, ScalarAttributeType};
use kcheck::kinesis::{KinesisClient, PutRecordsEntry, StreamRef};
use kcheck::transport::{AwsConfig, Credentials, Environment};
use kcheck::{Consumer, ConsumerBuilder, DynamoDbCheckpointer, Record};
use kcheck_emulators::Emulators;

/// The emulators shared by every test of this binary (started once).
pub fn emulators() -> &'static Emulators {
    static EMULATORS: OnceLock<Emulators> = OnceLock::new();
    EMULATORS.get_or_init(Emulators::start)
}

/// A config for `endpoint` with fixed test credentials and an empty
/// environment, so nothing on the machine leaks into the test.
pub fn config_for(endpoint: &str) -> AwsConfig {
    AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .credentials(Credentials::new("AKIDTEST", "test-secret", None, None))
        .environment(Environment::from_vars(Vec::<(String, String)>::new()))
        .build()
        .expect("test config")
}

/// A config pointed at this binary's Kinesis emulator.
pub fn kinesis_config() -> AwsConfig {
    config_for(&emulators().kinesis_url())
}

/// A config pointed at this binary's DynamoDB emulator.
pub fn dynamodb_config() -> AwsConfig {
    config_for(&emulators().dynamodb_url())
}

/// A name no other test of this run uses, e.g. `orders-3-12345`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}

/// A fresh active table keyed by `pk` (S), plus `sk` (N) when `sorted`.
pub fn create_table(client: &DynamoDbClient, sorted: bool) -> String {
    let name = unique_name("tbl");
    let mut request = CreateTableRequest::new(&name, "pk", ScalarAttributeType::S);
    if sorted {
        request = request.range_key("sk", ScalarAttributeType::N);
    }
    client.create_table(&request).unwrap();
    client
        .wait_for_table_active(&name, Duration::from_secs(10))
        .unwrap();
    name
}

/// Short lease timing so failover tests finish in seconds.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(3);
pub const HEARTBEAT: Duration = Duration::from_millis(500);
pub const DISCOVERY: Duration = Duration::from_millis(300);

/// Creates a stream with `shards` shards and waits until it is active.
pub fn create_stream(shards: u32) -> (KinesisClient, StreamRef) {
    let kinesis = KinesisClient::new(&kinesis_config()).unwrap();
    let name = unique_name("stream");
    kinesis.create_stream(&name, shards).unwrap();
    let stream = StreamRef::from(&name);
    kinesis
        .wait_for_stream_active(&stream, Duration::from_secs(10))
        .unwrap();
    (kinesis, stream)
}

/// Writes records `payload-{i}` for every `i` in `range`, keyed so they
/// spread over the shards; returns the payloads.
pub fn put_payloads(
    kinesis: &KinesisClient,
    stream: &StreamRef,
    range: std::ops::Range<usize>,
) -> Vec<String> {
    let payloads: Vec<String> = range.map(|i| format!("payload-{i}")).collect();
    let entries: Vec<PutRecordsEntry> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| PutRecordsEntry::new(format!("key-{i}-{p}"), p.as_bytes().to_vec()))
        .collect();
    kinesis.put_records_all(stream, &entries).unwrap();
    payloads
}

/// A consumer builder pointed at the emulator, with fast polling and discovery.
pub fn consumer_for(stream: &StreamRef) -> ConsumerBuilder {
    Consumer::builder(stream.as_str())
        .aws_config(kinesis_config())
        .discovery_interval(DISCOVERY)
        .idle_poll_interval(Duration::from_millis(100))
        .checkpoint_interval(Duration::from_millis(200))
}

/// A DynamoDB checkpointer builder pointed at the emulator with short leases.
pub fn dynamodb_checkpointer(name: &str, table: &str) -> DynamoDbCheckpointerBuilder {
    DynamoDbCheckpointer::builder(name)
        .table_name(table)
        .aws_config(dynamodb_config())
        .session_timeout(SESSION_TIMEOUT)
        .heartbeat_frequency(HEARTBEAT)
}

/// A checkpointer of `group` in `table` that checkpoints only when told.
pub fn manual_checkpointer(group: &str, table: &str) -> DynamoDbCheckpointer {
    dynamodb_checkpointer(group, table)
        .auto_checkpoint(false)
        .build()
        .unwrap()
}

/// A consumer of `group` (checkpointing when told) on `stream`.
pub fn manual_consumer(stream: &StreamRef, group: &str, table: &str) -> Consumer {
    consumer_for(stream)
        .checkpointer(manual_checkpointer(group, table))
        .build()
        .unwrap()
}

/// Reads `count` records (within 30 s) and checkpoints the last one;
/// returns them.
pub fn process(consumer: &Consumer, count: usize) -> Vec<Record> {
    let records = take(consumer, count, Duration::from_secs(30));
    assert_eq!(records.len(), count, "records to process");
    consumer.checkpoint_record(records.last().unwrap()).unwrap();
    records
}

/// Takes records until `count` arrived or `timeout` passed.
pub fn take(consumer: &Consumer, count: usize, timeout: Duration) -> Vec<Record> {
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while records.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match consumer.next_timeout(left.min(Duration::from_millis(200))) {
            Ok(Some(record)) => records.push(record),
            Ok(None) => {}
            Err(error) => panic!("consumer error: {error}"),
        }
    }
    records
}

/// Payloads of records, as text.
pub fn payloads(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.data.clone()).unwrap())
        .collect()
}

/// Waits until `condition` holds, for at most `timeout`.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    condition()
}

/// Runs every consumer on its own thread until `total` records arrived
/// between them (or `timeout` passed); returns what each one received, with
/// when it arrived.
pub fn drain(
    consumers: &[&Consumer],
    total: usize,
    timeout: Duration,
) -> Vec<Vec<(Instant, Record)>> {
    let received = AtomicUsize::new(0);
    let deadline = Instant::now() + timeout;
    std::thread::scope(|scope| {
        let handles: Vec<_> = consumers
            .iter()
            .map(|consumer| {
                let received = &received;
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    while received.load(Ordering::SeqCst) < total && Instant::now() < deadline {
                        if let Some(record) =
                            consumer.next_timeout(Duration::from_millis(100)).unwrap()
                        {
                            received.fetch_add(1, Ordering::SeqCst);
                            mine.push((Instant::now(), record));
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The `libkcheck.so` cargo built next to this test binary
/// (target/<profile>/deps/c_programs-<hash>, whatever CARGO_TARGET_DIR is).
/// The copy in deps comes from the same rustc run as the rlib this test
/// links (crate-type cdylib + rlib), so it is always current; `cargo test`
/// does not refresh the uplifted target/<profile>/libkcheck.so (only
/// `cargo build` does), which is only a fallback.
pub fn built_library() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("the test binary's directory");
    let candidates = [
        Some(deps.join("libkcheck.so")),
        deps.parent().map(|p| p.join("libkcheck.so")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no libkcheck.so next to {} (crate-type must include cdylib)",
                exe.display()
            )
        })
}

/// `readelf -d` of an ELF file: its SONAME and the libraries it needs.
pub fn readelf_dynamic(file: &std::path::Path) -> String {
    let output = std::process::Command::new("readelf")
        .arg("-d")
        .arg(file)
        .output()
        .expect("readelf not runnable (binutils)");
    assert!(
        output.status.success(),
        "readelf -d {} failed",
        file.display()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Puts `count` user records (`user-0`, `user-1`, ...) under one partition
/// key through an aggregating producer: one KPL aggregate, so the records
/// carry sub-sequence numbers.
pub fn put_one_aggregate(stream: &StreamRef, count: usize) {
    let producer = kcheck::Producer::builder(stream.as_str())
        .aws_config(kinesis_config())
        .aggregate(true)
        .buffer_time(Duration::from_millis(100))
        .build()
        .unwrap();
    for n in 0..count {
        producer.put(format!("user-{n}"), "one-key", None).unwrap();
    }
    producer.close().unwrap();
}
