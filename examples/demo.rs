//! The main job on the embedded local emulators: start Kinesis (ferrokinesis)
//! and DynamoDB (dynoxide) on loopback, create a stream, produce records, and
//! read every one back, shard by shard.
//!
//! Run: `cargo run --release --example demo [-- RECORDS]`

use std::time::{Duration, Instant};

use kcheck::kinesis::{IteratorPosition, KinesisClient, PutRecordsEntry, StreamRef};
use kcheck::transport::{AwsConfig, Credentials};
use kcheck_emulators::Emulators;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("RECORDS must be a number, got {arg:?}"))?,
        None => 10_000,
    };
    let emulators = Emulators::start();
    println!("Kinesis emulator:  {}", emulators.kinesis_url());
    println!("DynamoDB emulator: {}", emulators.dynamodb_url());

    let config = AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(emulators.kinesis_url())
        .credentials(Credentials::new("demo", "demo", None, None))
        .build()?;
    let kinesis = KinesisClient::new(&config)?;

    let stream = StreamRef::from("kcheck-demo");
    kinesis.create_stream(stream.name(), 4)?;
    kinesis.wait_for_stream_active(&stream, Duration::from_secs(10))?;
    println!("created stream {stream} with 4 shards");

    let started = Instant::now();
    let records: Vec<_> = (0..total)
        .map(|i| {
            PutRecordsEntry::new(
                format!("user-{}", i % 97),
                format!("event {i}").into_bytes(),
            )
        })
        .collect();
    kinesis.put_records_all(&stream, &records)?;
    let produced_in = started.elapsed();
    println!("produced {total} records in {produced_in:.2?}");

    let started = Instant::now();
    let mut read = 0;
    for shard in kinesis.list_shards(&stream, None)? {
        let mut iterator =
            kinesis.get_shard_iterator(&stream, &shard.shard_id, &IteratorPosition::TrimHorizon)?;
        let mut in_shard = 0;
        loop {
            let page = kinesis.get_records(&iterator, 10_000)?;
            in_shard += page.records.len();
            match page.next_shard_iterator {
                Some(next) if !page.records.is_empty() => iterator = next,
                _ => break,
            }
        }
        println!("  {}: {in_shard} records", shard.shard_id);
        read += in_shard;
    }
    let read_in = started.elapsed();
    println!(
        "read back {read} records in {read_in:.2?} ({:.0} records/s)",
        read as f64 / read_in.as_secs_f64()
    );
    if read != total {
        return Err(format!("expected {total} records, read {read}").into());
    }
    println!("every record produced was read back");
    Ok(())
}
