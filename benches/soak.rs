//! Soak: consumers of one group join and leave for a long time while a
//! producer writes, and the process's memory, threads and open files are
//! printed every interval. Flat figures mean nothing leaks: not threads of
//! ended tenures, not connections, not buffers. Every record written is
//! checked to have been delivered at the end.
//!
//! Run: `cargo bench --bench soak` (env: SOAK_MINUTES [30], SOAK_INTERVAL_SECONDS
//! [60], SHARDS [4], CONSUMERS [3], RATE [200 records/s]). Not part of the
//! test command.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kcheck::kinesis::{KinesisClient, PutRecordsEntry, StreamRef};
use kcheck::{Consumer, DynamoDbCheckpointer};
use support::{count_entries, emulator_config, env_number, rss_kib, start_emulators};

mod support;

fn main() {
    if support::serve_emulators_if_asked() || std::env::args().any(|a| a == "--list") {
        return;
    }
    let minutes: u64 = env_number("SOAK_MINUTES", 30);
    let interval = Duration::from_secs(env_number("SOAK_INTERVAL_SECONDS", 60));
    let shards: u32 = env_number("SHARDS", 4);
    let consumers: usize = env_number("CONSUMERS", 3);
    let rate: usize = env_number("RATE", 200);
    let (mut emulators, kinesis_url, dynamodb_url) = start_emulators();
    let kinesis = KinesisClient::new(&emulator_config(&kinesis_url)).expect("kinesis client");
    let stream = StreamRef::from("soak");
    kinesis
        .create_stream(stream.name(), shards)
        .expect("create stream");
    kinesis
        .wait_for_stream_active(&stream, Duration::from_secs(10))
        .expect("stream active");

    let end = Instant::now() + Duration::from_secs(minutes * 60);
    let producing = AtomicBool::new(true);
    let written = AtomicUsize::new(0);
    let delivered: Mutex<Delivered> = Mutex::new(Delivered::default());
    let deliveries = AtomicUsize::new(0);
    println!(
        "soak: {minutes} min, {shards} shards, {consumers} consumers joining and leaving, {rate} records/s"
    );
    println!("minute  rss_mib  threads  fds  written  delivered  duplicates");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while producing.load(Ordering::SeqCst) {
                let first = written.load(Ordering::SeqCst);
                let entries: Vec<PutRecordsEntry> = (first..first + rate / 10)
                    .map(|i| PutRecordsEntry::new(format!("key-{i}"), i.to_string().into_bytes()))
                    .collect();
                kinesis
                    .put_records_all(&stream, &entries)
                    .expect("put records");
                written.fetch_add(entries.len(), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        for worker in 0..consumers {
            let (delivered, deliveries) = (&delivered, &deliveries);
            let (kinesis_url, dynamodb_url, producing) = (&kinesis_url, &dynamodb_url, &producing);
            scope.spawn(move || {
                // Each worker runs consumers of 20-60 s, one after another.
                let mut tenure = 20 + (worker as u64 * 17) % 41;
                while producing.load(Ordering::SeqCst) {
                    let consumer = Consumer::builder("soak")
                        .aws_config(emulator_config(kinesis_url))
                        .discovery_interval(Duration::from_secs(1))
                        .checkpoint_interval(Duration::from_secs(1))
                        .checkpointer(
                            DynamoDbCheckpointer::builder("soak")
                                .aws_config(emulator_config(dynamodb_url))
                                .session_timeout(Duration::from_secs(10))
                                .heartbeat_frequency(Duration::from_secs(2))
                                .build()
                                .expect("checkpointer"),
                        )
                        .build()
                        .expect("consumer");
                    let until = Instant::now() + Duration::from_secs(tenure);
                    while Instant::now() < until && producing.load(Ordering::SeqCst) {
                        let batch = consumer
                            .next_batch(500, Duration::from_millis(200))
                            .expect("next_batch");
                        deliveries.fetch_add(batch.len(), Ordering::Relaxed);
                        let mut seen = delivered.lock().unwrap();
                        for record in batch {
                            seen.insert(record_id(&record));
                        }
                    }
                    consumer.close().expect("close");
                    tenure = 20 + (tenure * 31 + 7) % 41;
                }
            });
        }
        let started = Instant::now();
        while Instant::now() < end {
            std::thread::sleep(interval.min(end.saturating_duration_since(Instant::now())));
            let unique = delivered.lock().unwrap().count;
            println!(
                "{:>6.1}  {:>7.1}  {:>7}  {:>3}  {:>7}  {:>9}  {:>10}",
                started.elapsed().as_secs_f64() / 60.0,
                rss_kib() as f64 / 1024.0,
                count_entries("task"),
                count_entries("fd"),
                written.load(Ordering::SeqCst),
                unique,
                deliveries.load(Ordering::Relaxed).saturating_sub(unique),
            );
        }
        producing.store(false, Ordering::SeqCst);
    });
    // A last group reads whatever the churn left behind.
    let total = written.load(Ordering::SeqCst);
    let last = Consumer::builder("soak")
        .aws_config(emulator_config(&kinesis_url))
        .checkpointer(
            DynamoDbCheckpointer::builder("soak")
                .aws_config(emulator_config(&dynamodb_url))
                .build()
                .expect("checkpointer"),
        )
        .idle_timeout(Duration::from_secs(5))
        .build()
        .expect("consumer");
    let mut seen = delivered.into_inner().unwrap();
    for record in &last {
        seen.insert(record_id(&record.expect("record")));
    }
    last.close().expect("close");
    let missing = (0..total).filter(|i| !seen.contains(*i)).count();
    println!("written {total}, never delivered {missing}");
    drop(emulators.stdin.take());
    let _ = emulators.wait();
    assert_eq!(missing, 0, "records were lost");
}

/// The ids of records delivered, one bit each: the soak's own bookkeeping
/// must not grow the RSS it watches (a set of 360 000 ids would, by MiBs).
#[derive(Default)]
struct Delivered {
    bits: Vec<u64>,
    count: usize,
}

impl Delivered {
    fn insert(&mut self, id: usize) {
        let (word, bit) = (id / 64, 1u64 << (id % 64));
        if word >= self.bits.len() {
            self.bits.resize(word + 1024, 0);
        }
        if self.bits[word] & bit == 0 {
            self.bits[word] |= bit;
            self.count += 1;
        }
    }

    fn contains(&self, id: usize) -> bool {
        self.bits
            .get(id / 64)
            .is_some_and(|w| w & (1u64 << (id % 64)) != 0)
    }
}

fn record_id(record: &kcheck::Record) -> usize {
    String::from_utf8_lossy(&record.data)
        .parse()
        .expect("a record id")
}
