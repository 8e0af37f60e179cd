//! Produces records through the `Producer` and prints its throughput and
//! what it cost the client per record, next to the CPU floor of merely
//! building and signing the same PutRecords bodies (serde_json, base64 and
//! SigV4 on batches of 500).
//!
//! Run: `cargo bench --bench produce` (env: SHARDS [4], RECORDS [100000]
//! per run, KEYS [10000] distinct partition keys, REPEAT [3]: runs per
//! case, each to a new stream; the median is reported). The emulators run
//! in a child process (this binary re-executed), so the figures are the
//! client's alone. The per-shard limits are lifted: the emulator does not
//! enforce them, and the point is the client's cost.

use std::time::{Duration, Instant, SystemTime};

use kcheck::kinesis::{KinesisClient, PutRecordsEntry, StreamRef, MAX_PUT_RECORDS};
use kcheck::transport::signing::sign_request;
use kcheck::transport::Credentials;
use kcheck::Producer;
use support::{emulator_config, env_number, process_cpu, start_emulators};

mod support;

fn main() {
    if support::serve_emulators_if_asked() {
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and test discovery
    }
    let shards: u32 = env_number("SHARDS", 4);
    let records: usize = env_number("RECORDS", 100_000);
    let key_count: usize = env_number("KEYS", 10_000).max(1);
    let repeat: usize = env_number("REPEAT", 3).max(1);

    let (mut emulators, kinesis_url, _) = start_emulators();
    let config = emulator_config(&kinesis_url);
    let kinesis = KinesisClient::new(&config).expect("kinesis client");
    let keys: Vec<String> = (0..key_count).map(|i| format!("key-{i}")).collect();

    println!(
        "{records} records per run over {key_count} keys, {shards} shards, {repeat} runs per case (medians)"
    );
    println!(
        "case                 records/s   client us/record   floor us/record   bare client us/record   client/floor"
    );
    for (case, (record_bytes, aggregate)) in [(100, false), (1024, false), (100, true)]
        .into_iter()
        .enumerate()
    {
        let payload = vec![b'x'; record_bytes];
        let floor = median((0..repeat).map(|_| build_and_sign_floor(&payload, &keys, records)));
        let on_new_stream = |run: usize, work: &dyn Fn(&StreamRef) -> Produced| {
            let stream = StreamRef::from(format!("bench-{case}-{run}"));
            kinesis
                .create_stream(stream.as_str(), shards)
                .expect("create stream");
            kinesis
                .wait_for_stream_active(&stream, Duration::from_secs(10))
                .expect("stream active");
            let produced = work(&stream);
            // The emulator keeps what it stores: let it go.
            kinesis.delete_stream(&stream).expect("delete stream");
            produced
        };
        let bare = median((0..repeat).map(|run| {
            on_new_stream(run, &|stream| {
                put_records_loop(&kinesis, stream, &payload, &keys, records)
            })
            .us_per_record()
        }));
        let mut runs: Vec<Produced> = (0..repeat)
            .map(|run| {
                on_new_stream(repeat + run, &|stream| {
                    let producer = Producer::builder(stream.as_str())
                        .aws_config(config.clone())
                        .aggregate(aggregate)
                        .put_rate_limit_per_shard(1e9)
                        .put_bandwidth_limit_per_shard(1e12)
                        .build()
                        .expect("producer");
                    produce(&producer, &payload, &keys, records)
                })
            })
            .collect();
        runs.sort_by(|a, b| a.us_per_record().total_cmp(&b.us_per_record()));
        let middle = &runs[runs.len() / 2];
        let name = format!(
            "{record_bytes} B{}",
            if aggregate { ", aggregated" } else { "" }
        );
        println!(
            "{name:<20} {:>9.0}   {:>16.2}   {:>15.2}   {:>21.2}   {:>11.2}x",
            middle.records as f64 / middle.elapsed.as_secs_f64(),
            middle.us_per_record(),
            floor,
            bare,
            middle.us_per_record() / floor
        );
        if aggregate {
            println!(
                "{:<20} {} Kinesis records for {} user records",
                "", middle.kinesis_records, middle.records
            );
        }
    }
    println!(
        "client: the whole process, put() calls (on the calling thread) and the sending thread"
    );
    println!("floor:  building the entries, encoding PutRecords bodies of 500 and signing them");
    println!("bare:   a loop of KinesisClient::put_records with batches of 500, on one thread");
    let _ = emulators.kill();
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// What one run cost.
struct Produced {
    records: usize,
    kinesis_records: u64,
    elapsed: Duration,
    cpu: Duration,
}

impl Produced {
    fn us_per_record(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.records as f64
    }
}

/// Puts `total` records from this thread, then flushes and closes.
fn produce(producer: &Producer, payload: &[u8], keys: &[String], total: usize) -> Produced {
    let cpu_before = process_cpu();
    let started = Instant::now();
    for i in 0..total {
        producer
            .put(payload.to_vec(), &keys[i % keys.len()], None)
            .expect("put");
    }
    producer.close().expect("close");
    let elapsed = started.elapsed();
    let cpu = process_cpu() - cpu_before;
    let stats = producer.stats();
    assert_eq!(stats.records_sent as usize, total, "{stats:?}");
    Produced {
        records: total,
        kinesis_records: stats.kinesis_records_sent,
        elapsed,
        cpu,
    }
}

/// CPU µs per record of building the entries of `total` records, encoding
/// them as PutRecords bodies of 500 and signing each request: the floor
/// any producer pays before the network. Repeated until it used half a
/// second, as the CPU clock ticks in 10 ms.
fn build_and_sign_floor(payload: &[u8], keys: &[String], total: usize) -> f64 {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Body<'a> {
        stream_name: &'a str,
        records: &'a [PutRecordsEntry],
    }
    let credentials = Credentials::new("bench", "bench", None, None);
    let cpu_before = process_cpu();
    let mut batch = Vec::with_capacity(MAX_PUT_RECORDS);
    let mut records = 0usize;
    while records < total || process_cpu() - cpu_before < Duration::from_millis(500) {
        for _ in 0..MAX_PUT_RECORDS {
            batch.push(PutRecordsEntry::new(
                keys[records % keys.len()].clone(),
                payload.to_vec(),
            ));
            records += 1;
        }
        let body = serde_json::to_vec(&Body {
            stream_name: "bench",
            records: &batch,
        })
        .expect("body");
        let mut request = http::Request::post("http://127.0.0.1:1/")
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", "Kinesis_20131202.PutRecords")
            .body(body)
            .expect("request");
        sign_request(
            &mut request,
            &credentials,
            "us-east-1",
            "kinesis",
            SystemTime::now(),
        )
        .expect("sign");
        std::hint::black_box(request);
        batch.clear();
    }
    (process_cpu() - cpu_before).as_secs_f64() * 1e6 / records as f64
}

/// What the same records cost sent by a plain loop of PutRecords calls on
/// one thread: the client's transport without the producer.
fn put_records_loop(
    kinesis: &KinesisClient,
    stream: &StreamRef,
    payload: &[u8],
    keys: &[String],
    total: usize,
) -> Produced {
    let cpu_before = process_cpu();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(MAX_PUT_RECORDS);
    for i in 0..total {
        batch.push(PutRecordsEntry::new(
            keys[i % keys.len()].clone(),
            payload.to_vec(),
        ));
        if batch.len() == MAX_PUT_RECORDS || i + 1 == total {
            let output = kinesis.put_records(stream, &batch).expect("PutRecords");
            assert_eq!(output.failed_record_count, 0);
            batch.clear();
        }
    }
    Produced {
        records: total,
        kinesis_records: total as u64,
        elapsed: started.elapsed(),
        cpu: process_cpu() - cpu_before,
    }
}
