//! One consumer process owning every shard of a large stream: what it costs
//! to hold N leases while the shards are idle, how fast it catches up when
//! they all get records, how much memory and how many threads it takes, and
//! how late its heartbeats are.
//!
//! Run: `cargo bench --bench scale` (env: SCALE_SHARDS ["200,1000"]: the
//! stream sizes, each on fresh emulators; RECORDS_PER_SHARD [10]; IDLE_SECS
//! [10]: the idle window; HEARTBEAT_SECS [5] with a session timeout four
//! times that; IDLE_POLL_MAX_SECS [5]: each size runs once with the default
//! polling and once with `idle_poll_max_interval` at this). The emulators run in a child process (this binary
//! re-executed), so the figures are the client's alone.
//!
//! Phases per stream size: the consumer starts and takes every lease; an
//! idle window measures CPU per second of wall time; a heartbeat window
//! reads the lease table every 250 ms and takes, for every lease, the
//! longest gap between two renewals it saw (its lateness is that gap beyond
//! the heartbeat period); then RECORDS_PER_SHARD records go to every shard
//! and the time and CPU until the caller has them all is the catch-up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kcheck::checkpoint::ConsumerGroup;
use kcheck::kinesis::{KinesisClient, PutRecordsEntry, StreamRef};
use kcheck::{Consumer, DynamoDbCheckpointer};
use support::{
    count_entries, emulator_config, env_number, peak_rss_kib, process_cpu, reset_peak_rss,
    start_emulators_with_shard_limit,
};

mod support;

fn main() {
    if support::serve_emulators_if_asked() {
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let sizes: Vec<u32> = std::env::var("SCALE_SHARDS")
        .unwrap_or_else(|_| "200,1000".into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .expect("SCALE_SHARDS: numbers separated by commas")
        })
        .collect();
    let per_shard: usize = env_number("RECORDS_PER_SHARD", 10);
    let idle_secs: u64 = env_number("IDLE_SECS", 10);
    let heartbeat = Duration::from_secs(env_number("HEARTBEAT_SECS", 5));
    let idle_poll_max = Duration::from_secs(env_number("IDLE_POLL_MAX_SECS", 5));

    let mut rows = Vec::new();
    for shards in sizes {
        for max_pause in [None, Some(idle_poll_max)] {
            let idle = Duration::from_secs(idle_secs);
            let row = run(shards, per_shard, idle, heartbeat, max_pause);
            println!("{shards} shards, idle_poll_max_interval {max_pause:?}: {row:?}");
            rows.push((shards, max_pause, row));
        }
    }
    println!();
    println!(
        "shards   idle_poll_max_interval   start-up   idle CPU/s   catch-up            peak RSS    threads   heartbeat lateness (max, period {heartbeat:?})"
    );
    for (shards, max_pause, row) in rows {
        let setting = max_pause.map_or_else(|| "off".to_owned(), |max| format!("{max:?}"));
        println!(
            "{shards:>6}   {setting:>22}   {:>7.1?}   {:>10.3}   {:>6.2?} {:>7.0} ms CPU   {:>6.1} MiB   {:>7}   {:.2?}",
            row.start_up,
            row.idle_cpu_per_second,
            row.catch_up,
            row.catch_up_cpu.as_secs_f64() * 1e3,
            row.peak_rss_kib as f64 / 1024.0,
            row.threads,
            row.heartbeat_lateness,
        );
    }
    println!(
        "idle CPU/s: CPU-seconds per second while every shard is empty; catch-up: from the first put of {per_shard} records per shard until the caller has them all"
    );
}

#[derive(Debug)]
struct Row {
    start_up: Duration,
    idle_cpu_per_second: f64,
    catch_up: Duration,
    catch_up_cpu: Duration,
    peak_rss_kib: u64,
    threads: usize,
    heartbeat_lateness: Duration,
}

fn run(
    shards: u32,
    per_shard: usize,
    idle: Duration,
    heartbeat: Duration,
    idle_poll_max: Option<Duration>,
) -> Row {
    let (mut emulators, kinesis_url, dynamodb_url) = start_emulators_with_shard_limit(shards);
    let kinesis = KinesisClient::new(&emulator_config(&kinesis_url)).expect("kinesis client");
    let stream = StreamRef::from("scale");
    kinesis
        .create_stream(stream.name(), shards)
        .expect("create stream");
    kinesis
        .wait_for_stream_active(&stream, Duration::from_secs(60))
        .expect("stream active");
    let hash_keys: Vec<String> = kinesis
        .list_shards(&stream, None)
        .expect("shards")
        .iter()
        .map(|shard| shard.hash_key_range.starting_hash_key.clone())
        .collect();
    let checkpointer = DynamoDbCheckpointer::builder("scale")
        .aws_config(emulator_config(&dynamodb_url))
        .heartbeat_frequency(heartbeat)
        .session_timeout(heartbeat * 4)
        .build()
        .expect("checkpointer");
    let group = ConsumerGroup::new(&checkpointer);

    reset_peak_rss();
    let started = Instant::now();
    let mut builder = Consumer::builder(stream.as_str())
        .aws_config(emulator_config(&kinesis_url))
        .checkpointer(checkpointer)
        .max_shard_consumers(shards as usize);
    if let Some(max) = idle_poll_max {
        builder = builder.idle_poll_max_interval(max);
    }
    let consumer = builder.build().expect("consumer");
    let received = Arc::new(AtomicUsize::new(0));
    let consumer = Arc::new(consumer);
    let reader = {
        let (consumer, received) = (Arc::clone(&consumer), Arc::clone(&received));
        std::thread::spawn(move || {
            while !consumer.is_closed() {
                match consumer.next_batch(1000, Duration::from_millis(200)) {
                    Ok(batch) => received.fetch_add(batch.len(), Ordering::Relaxed),
                    Err(_) => break,
                };
            }
        })
    };
    while consumer.stats().shards.len() < shards as usize {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "took {} of {shards} leases in 5 minutes",
            consumer.stats().shards.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let start_up = started.elapsed();
    // Let every shard's polls settle (pauses grown to their longest)
    // before measuring.
    std::thread::sleep(idle_poll_max.unwrap_or(Duration::ZERO) * 2 + Duration::from_secs(3));

    let (cpu_before, idle_started) = (process_cpu(), Instant::now());
    std::thread::sleep(idle);
    let idle_cpu_per_second =
        (process_cpu() - cpu_before).as_secs_f64() / idle_started.elapsed().as_secs_f64();
    let threads = count_entries("task");

    let heartbeat_lateness = heartbeat_lateness(&group, heartbeat);

    let (cpu_before, catch_up_started) = (process_cpu(), Instant::now());
    let entries: Vec<PutRecordsEntry> = hash_keys
        .iter()
        .flat_map(|hash_key| {
            (0..per_shard).map(move |i| PutRecordsEntry {
                data: format!("record {i}").into_bytes(),
                partition_key: "scale".into(),
                explicit_hash_key: Some(hash_key.clone()),
            })
        })
        .collect();
    kinesis.put_records_all(&stream, &entries).expect("put");
    while received.load(Ordering::Relaxed) < entries.len() {
        assert!(
            catch_up_started.elapsed() < Duration::from_secs(120),
            "caught up {} of {} records in 2 minutes",
            received.load(Ordering::Relaxed),
            entries.len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let catch_up = catch_up_started.elapsed();
    let catch_up_cpu = process_cpu() - cpu_before;
    let peak_rss_kib = peak_rss_kib();

    consumer.close().expect("close");
    reader.join().expect("reader");
    let _ = emulators.kill();
    Row {
        start_up,
        idle_cpu_per_second,
        catch_up,
        catch_up_cpu,
        peak_rss_kib,
        threads,
        heartbeat_lateness,
    }
}

/// Watches every lease's counter for three heartbeat periods; returns the
/// longest gap between two renewals of one lease beyond `heartbeat`.
fn heartbeat_lateness(group: &ConsumerGroup, heartbeat: Duration) -> Duration {
    let mut last_change: HashMap<String, (u64, Instant)> = HashMap::new();
    let mut longest = Duration::ZERO;
    let watched = Instant::now();
    while watched.elapsed() < heartbeat * 3 {
        let now = Instant::now();
        for info in group.leases().expect("leases") {
            let lease = &info.lease;
            match last_change.get(&lease.shard_id) {
                Some(&(counter, _)) if counter == lease.counter => {}
                Some(&(_, at)) => {
                    longest = longest.max(now - at);
                    last_change.insert(lease.shard_id.clone(), (lease.counter, now));
                }
                None => {
                    last_change.insert(lease.shard_id.clone(), (lease.counter, now));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    longest.saturating_sub(heartbeat)
}
