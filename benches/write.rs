//! Writes items through the `DynamoDbWriter` and prints, at unlimited
//! capacity, its throughput and what it cost the client per item with 1, 2,
//! 4 and 8 worker threads; then, with a `write_capacity` set and more load
//! offered than it allows, the pace the writer held.
//!
//! Run: `cargo bench --bench write` (env: WRITE_ITEMS [50000] per
//! throughput run, WRITE_ITEM_BYTES [200], WRITE_REPEAT [3]: runs per thread
//! count, the median is reported; WRITE_CAPACITY [500] write units a second,
//! WRITE_SECONDS [10] of offered load per pacing run, WRITE_PUTTERS [4]
//! threads putting during it). The emulators run in a child process (this
//! binary re-executed), so the figures are the client's alone; the tables
//! are on demand, so the emulator never throttles and any pacing is the
//! writer's own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use kcheck::dynamodb::{
    item, AttributeValue, CreateTableRequest, DynamoDbClient, Item, ScalarAttributeType,
    ScanRequest, TableRequest,
};
use kcheck::writer::WriterStats;
use kcheck::DynamoDbWriter;
use support::{emulator_config, env_number, process_cpu, start_emulators};

mod support;

/// Bytes of the key attribute, name included: "pk" and a 14-character key.
const KEY_BYTES: usize = 2 + 14;

fn main() {
    if support::serve_emulators_if_asked() {
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let items: usize = env_number("WRITE_ITEMS", 50_000);
    let item_bytes: usize = env_number("WRITE_ITEM_BYTES", 200);
    let repeat: usize = env_number("WRITE_REPEAT", 3).max(1);
    let capacity: f64 = env_number("WRITE_CAPACITY", 500.0);
    let seconds: f64 = env_number("WRITE_SECONDS", 10.0);
    let putters: usize = env_number("WRITE_PUTTERS", 4).max(1);

    let (mut emulators, _, dynamodb_url) = start_emulators();
    let dynamodb = DynamoDbClient::new(&emulator_config(&dynamodb_url)).expect("dynamodb client");
    let mut tables = 0usize;
    let mut new_table = || {
        tables += 1;
        let name = format!("bench-write-{tables}");
        dynamodb
            .create_table(&CreateTableRequest::new(
                &name,
                "pk",
                ScalarAttributeType::S,
            ))
            .expect("create table");
        dynamodb
            .wait_for_table_active(&name, Duration::from_secs(10))
            .expect("table active");
        name
    };

    println!(
        "unlimited capacity: {items} items of {item_bytes} B per run, put from one thread, {repeat} run(s) per case (medians)"
    );
    println!(
        "threads   items/s   client us/item   BatchWriteItem calls   items/call   throttles   scanned"
    );
    for threads in [1, 2, 4, 8] {
        let mut runs: Vec<Written> = (0..repeat)
            .map(|_| {
                let table = new_table();
                let writer = writer(&table, &dynamodb_url).threads(threads).build();
                let mut written = write_all(&writer.expect("writer"), &table, items, item_bytes);
                written.check_landed(&dynamodb, &table);
                drop_table(&dynamodb, &table);
                written
            })
            .collect();
        runs.sort_by(|a, b| a.us_per_item().total_cmp(&b.us_per_item()));
        let middle = &runs[runs.len() / 2];
        println!(
            "{threads:>7}   {:>7.0}   {:>14.2}   {:>20}   {:>10.1}   {:>9}   {:>7}",
            middle.items as f64 / middle.elapsed.as_secs_f64(),
            middle.us_per_item(),
            middle.stats.requests,
            middle.items as f64 / middle.stats.requests.max(1) as f64,
            middle.stats.throttles,
            middle.landed,
        );
    }
    println!("client: the whole process (put() on the main thread and the writer's threads), from the first put to the end of flush()");

    println!();
    println!(
        "paced: write_capacity {capacity} units/s, {putters} threads putting for {seconds} s, 4 writer threads, queue of 1 s of capacity"
    );
    println!(
        "item B   units/item   items/s   units   elapsed s   units/s   vs capacity   stats units/s   throttles   scanned"
    );
    for paced_bytes in [1000, 2500] {
        let table = new_table();
        let mut run = paced(
            &table,
            &dynamodb_url,
            capacity,
            paced_bytes,
            putters,
            seconds,
        );
        run.written.check_landed(&dynamodb, &table);
        drop_table(&dynamodb, &table);
        let written = &run.written;
        let elapsed = written.elapsed.as_secs_f64();
        let units_per_second = written.stats.write_units / elapsed;
        println!(
            "{paced_bytes:>6}   {:>10.0}   {:>7.1}   {:>5.0}   {elapsed:>9.2}   {units_per_second:>7.1}   {:>+10.2}%   {:>13.1}   {:>9}   {:>7}",
            written.stats.write_units / written.items as f64,
            written.items as f64 / elapsed,
            written.stats.write_units,
            (units_per_second - capacity) * 100.0 / capacity,
            run.last_units_per_second,
            written.stats.throttles,
            written.landed,
        );
    }
    println!("units/s: the writer's write units over the time from the first put to the end of flush() (target: capacity +-5 %)");
    println!("stats units/s: WriterStats::units_per_second just before the putters stopped");
    let _ = emulators.kill();
}

fn writer(table: &str, url: &str) -> kcheck::DynamoDbWriterBuilder {
    DynamoDbWriter::builder(table)
        .endpoint_url(url)
        .region_name("us-east-1")
        .aws_config(emulator_config(url))
}

fn drop_table(dynamodb: &DynamoDbClient, table: &str) {
    // The emulator keeps what it stores: let it go.
    dynamodb
        .delete_table(&TableRequest::new(table))
        .expect("delete table");
}

/// An item weighing exactly `bytes` by DynamoDB's rules, keyed `key`.
fn sized_item(key: u64, bytes: usize) -> Item {
    let pad = bytes.saturating_sub(KEY_BYTES + "data".len()).max(1);
    item([
        ("pk", AttributeValue::S(format!("item-{key:09}"))),
        ("data", AttributeValue::S("x".repeat(pad))),
    ])
}

/// What one run wrote and what it cost.
struct Written {
    items: usize,
    elapsed: Duration,
    cpu: Duration,
    stats: WriterStats,
    /// Items a scan of the table found afterwards.
    landed: usize,
}

impl Written {
    fn us_per_item(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.items as f64
    }

    /// Scans `table` and checks every item put is there, once.
    fn check_landed(&mut self, dynamodb: &DynamoDbClient, table: &str) {
        self.landed = dynamodb
            .scan_all(&ScanRequest::new(table), None)
            .expect("scan")
            .len();
        assert_eq!(self.landed, self.items, "items in {table}");
        assert_eq!(
            self.stats.items_written as usize, self.items,
            "{:?}",
            self.stats
        );
    }
}

/// Puts `total` prebuilt items from this thread, then flushes and closes.
fn write_all(writer: &DynamoDbWriter, table: &str, total: usize, bytes: usize) -> Written {
    let items: Vec<Item> = (0..total as u64).map(|i| sized_item(i, bytes)).collect();
    let cpu_before = process_cpu();
    let started = Instant::now();
    for item in items {
        writer.put(item).expect("put");
    }
    writer.flush().expect("flush");
    let elapsed = started.elapsed();
    let cpu = process_cpu() - cpu_before;
    writer.close().expect("close");
    assert_eq!(writer.table_stats()[0].table, table);
    Written {
        items: total,
        elapsed,
        cpu,
        stats: writer.stats(),
        landed: 0,
    }
}

struct Paced {
    written: Written,
    /// The writer's own moving average as the putters stopped.
    last_units_per_second: f64,
}

/// `putters` threads put items of `bytes` as fast as the writer takes them
/// for `seconds`; then the writer flushes. Elapsed: from the first put to
/// the end of the flush.
fn paced(
    table: &str,
    url: &str,
    capacity: f64,
    bytes: usize,
    putters: usize,
    seconds: f64,
) -> Paced {
    let units_per_item = bytes.div_ceil(1024).max(1) as f64;
    let writer = writer(table, url)
        .write_capacity(capacity)
        .max_queue_size(((capacity / units_per_item) as usize).max(1))
        .build()
        .expect("writer");
    let next_key = AtomicU64::new(0);
    let start = Barrier::new(putters + 1);
    let duration = Duration::from_secs_f64(seconds);
    let cpu_before = process_cpu();
    let started = std::thread::scope(|scope| {
        for _ in 0..putters {
            scope.spawn(|| {
                start.wait();
                let began = Instant::now();
                while began.elapsed() < duration {
                    let key = next_key.fetch_add(1, Ordering::Relaxed);
                    writer.put(sized_item(key, bytes)).expect("put");
                }
            });
        }
        start.wait();
        Instant::now()
    });
    let last_units_per_second = writer.stats().units_per_second;
    writer.flush().expect("flush");
    let elapsed = started.elapsed();
    let cpu = process_cpu() - cpu_before;
    writer.close().expect("close");
    Paced {
        written: Written {
            items: next_key.load(Ordering::Relaxed) as usize,
            elapsed,
            cpu,
            stats: writer.stats(),
            landed: 0,
        },
        last_units_per_second,
    }
}
