//! Drains a pre-filled stream with DynamoDB checkpointing and prints what it
//! cost the client, next to the CPU floor of merely parsing the same
//! GetRecords bodies with serde_json and base64.
//!
//! Run: `cargo bench --bench drain` (env: SHARDS [4], RECORDS_PER_SHARD
//! [50000], RECORD_BYTES [1024], REPEAT [5]: runs, each a new consumer group
//! draining the stream from the start; the median is reported;
//! METRICS_EVERY_MS [0]: render the consumer's Prometheus metrics that often
//! during each drain, to see what scraping costs). The emulators run in a child process (this
//! binary re-executed), so the figures are the client's alone.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use kcheck::kinesis::{IteratorPosition, KinesisClient, PutRecordsEntry, StreamRef};
use kcheck::transport::signing::sign_request;
use kcheck::transport::Credentials;
use kcheck::{Consumer, DynamoDbCheckpointer};
use support::{
    emulator_config, env_number, peak_rss_kib, process_cpu, reset_peak_rss, start_emulators,
};

mod support;

/// CPU per record of async-kinesis 3.0.1 draining the same workload with
/// DynamoDB checkpoints, the middle of 67.2-70.5 us measured on the 2-core
/// development machine by bindings/python/benchmarks/compare_consumers.py.
const ASYNC_KINESIS_US_PER_RECORD: f64 = 69.0;

fn main() {
    if support::serve_emulators_if_asked() {
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let shards: u32 = env_number("SHARDS", 4);
    let per_shard: usize = env_number("RECORDS_PER_SHARD", 50_000);
    let record_bytes: usize = env_number("RECORD_BYTES", 1024);
    let repeat: usize = env_number("REPEAT", 5).max(1);
    // Render the consumer's metrics this often during each drain (0: never).
    let metrics_every = match env_number("METRICS_EVERY_MS", 0) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    };
    let total = shards as usize * per_shard;

    let (mut emulators, kinesis_url, dynamodb_url) = start_emulators();
    let kinesis = KinesisClient::new(&emulator_config(&kinesis_url)).expect("kinesis client");
    let stream = StreamRef::from("bench");
    kinesis
        .create_stream(stream.name(), shards)
        .expect("create stream");
    kinesis
        .wait_for_stream_active(&stream, Duration::from_secs(10))
        .expect("stream active");

    println!("filling {shards} shards x {per_shard} records of {record_bytes} bytes ...");
    let payload = vec![b'x'; record_bytes];
    let batch: Vec<PutRecordsEntry> = (0..500)
        .map(|i| PutRecordsEntry::new(format!("key-{i}"), payload.clone()))
        .collect();
    for _ in 0..total.div_ceil(500) {
        kinesis.put_records_all(&stream, &batch).expect("fill");
    }
    let total = total.div_ceil(500) * 500;

    let floor = parse_floor(&kinesis, &stream, &kinesis_url);

    let checkpointer = |name: &str| {
        DynamoDbCheckpointer::builder(name)
            .aws_config(emulator_config(&dynamodb_url))
            .build()
            .expect("checkpointer")
    };
    // Each run is a new consumer group, so it drains the stream from the start.
    let runs: Vec<Drain> = (1..=repeat)
        .map(|run| {
            let consumer = Consumer::builder(stream.as_str())
                .aws_config(emulator_config(&kinesis_url))
                .checkpointer(checkpointer(&format!("bench-{run}")))
                .build()
                .expect("consumer");
            let drained = drain(consumer, total, metrics_every);
            println!(
                "run {run}: {:.2} us/record, {:.2?}, peak RSS {:.1} MiB",
                drained.us_per_record(),
                drained.elapsed,
                drained.peak_rss_kib as f64 / 1024.0
            );
            drained
        })
        .collect();
    let _ = emulators.kill();

    let mut per_record: Vec<f64> = runs.iter().map(Drain::us_per_record).collect();
    per_record.sort_by(f64::total_cmp);
    let median = per_record[per_record.len() / 2];
    let middle = &runs[runs.len() / 2];
    let range = |values: &[f64]| format!("{:.2}-{:.2}", values[0], values[values.len() - 1]);
    println!(
        "records            {} per run ({:.1} MiB of data), {repeat} runs",
        middle.records,
        middle.bytes as f64 / 1048576.0
    );
    println!(
        "throughput         {:.0} records/s (run {})",
        middle.records as f64 / middle.elapsed.as_secs_f64(),
        runs.len() / 2 + 1
    );
    println!(
        "client CPU         {median:.2} us/record median ({} over the runs)",
        range(&per_record)
    );
    println!(
        "CPU floor          {:.2} us/record (serde_json + the base64 crate on the same GetRecords bodies)",
        floor.base64_crate
    );
    println!(
        "                   {:.2} us/record (serde_json + base64-simd, kcheck's decoder)",
        floor.base64_simd
    );
    println!(
        "client / floor     {:.2}x ({:.2}x of the base64-simd floor)",
        median / floor.base64_crate,
        median / floor.base64_simd
    );
    // Later runs start with what the allocator kept from earlier ones.
    println!(
        "peak RSS           {:.1} MiB (run 1; the process, emulators excluded)",
        runs[0].peak_rss_kib as f64 / 1024.0
    );
    println!(
        "DynamoDB writes    {:.1} per shard ({} checkpoint writes, {} heartbeats, {} shards)",
        (middle.checkpoint_writes + middle.heartbeats) as f64 / shards as f64,
        middle.checkpoint_writes,
        middle.heartbeats,
        shards
    );
    println!(
        "vs Python asyncio  {:.1}x less CPU per record than async-kinesis ({ASYNC_KINESIS_US_PER_RECORD} us/record)",
        ASYNC_KINESIS_US_PER_RECORD / median
    );
}

/// What one drain of the stream cost.
struct Drain {
    records: usize,
    bytes: usize,
    elapsed: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
    checkpoint_writes: u64,
    heartbeats: u64,
}

impl Drain {
    fn us_per_record(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.records as f64
    }
}

/// Reads `total` records in batches, then closes (final checkpoints).
/// Drains the stream; with `metrics_every` set, a thread renders the
/// consumer's metrics that often meanwhile, as a scraped host would.
fn drain(consumer: Consumer, total: usize, metrics_every: Option<Duration>) -> Drain {
    reset_peak_rss();
    let cpu_before = process_cpu();
    let started = Instant::now();
    let mut records = 0usize;
    let mut bytes = 0usize;
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        if let Some(every) = metrics_every {
            let (consumer, done) = (&consumer, &done);
            scope.spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let text = kcheck::metrics::Exposition::new()
                        .add_consumer(consumer)
                        .render();
                    assert!(text.contains("kcheck_consumer_shards"));
                    std::thread::sleep(every);
                }
            });
        }
        while records < total {
            let batch = consumer
                .next_batch(1000, Duration::from_secs(30))
                .expect("records");
            if batch.is_empty() {
                panic!("stalled at {records} of {total} records");
            }
            records += batch.len();
            bytes += batch.iter().map(|r| r.data.len()).sum::<usize>();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let elapsed = started.elapsed();
    let cpu = process_cpu() - cpu_before;
    let heartbeats = consumer.stats().heartbeats;
    consumer.close().expect("close");
    Drain {
        records,
        bytes,
        elapsed,
        cpu,
        peak_rss_kib: peak_rss_kib(),
        checkpoint_writes: consumer.stats().checkpoint_writes,
        heartbeats,
    }
}

/// CPU µs per record of parsing GetRecords bodies with serde_json and a
/// base64 decoder alone: the floor any consumer pays.
struct Floors {
    /// With the common scalar `base64` crate.
    base64_crate: f64,
    /// With `base64-simd`, the decoder kcheck (and the AWS SDK) uses.
    base64_simd: f64,
}

fn parse_floor(kinesis: &KinesisClient, stream: &StreamRef, url: &str) -> Floors {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Page {
        records: Vec<RawRecord>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    #[allow(dead_code)]
    struct RawRecord {
        data: String,
        partition_key: String,
        sequence_number: String,
        approximate_arrival_timestamp: f64,
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut bodies = Vec::new();
    let shard = kinesis
        .list_shards(stream, None)
        .expect("shards")
        .remove(0)
        .shard_id;
    let mut iterator = kinesis
        .get_shard_iterator(stream, &shard, &IteratorPosition::TrimHorizon)
        .expect("iterator");
    while bodies.len() < 5 {
        let mut request = http::Request::post(url)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "Kinesis_20131202.GetRecords")
            .body(format!(r#"{{"ShardIterator":"{iterator}","Limit":10000}}"#).into_bytes())
            .expect("request");
        let credentials = Credentials::new("bench", "bench", None, None);
        sign_request(
            &mut request,
            &credentials,
            "us-east-1",
            "kinesis",
            SystemTime::now(),
        )
        .expect("sign");
        let mut response = agent.run(request).expect("GetRecords");
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .expect("body");
        let next: serde_json::Value = serde_json::from_slice(&body).expect("json");
        iterator = match next["NextShardIterator"].as_str() {
            Some(next) => next.to_owned(),
            None => panic!("GetRecords failed: {}", String::from_utf8_lossy(&body)),
        };
        bodies.push(body);
    }
    let floor = |decode: &dyn Fn(&str) -> Vec<u8>| {
        let mut records = 0usize;
        let cpu_before = process_cpu();
        for _ in 0..3 {
            for body in &bodies {
                let page: Page = serde_json::from_slice(body).expect("page");
                for record in page.records {
                    std::hint::black_box(decode(&record.data));
                    records += 1;
                }
            }
        }
        (process_cpu() - cpu_before).as_secs_f64() * 1e6 / records as f64
    };
    Floors {
        base64_crate: floor(&|text| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .expect("base64")
        }),
        base64_simd: floor(&|text| base64_simd::STANDARD.decode_to_vec(text).expect("base64")),
    }
}
