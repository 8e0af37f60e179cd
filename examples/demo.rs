//! The main job on the embedded local emulators: start Kinesis (ferrokinesis)
//! and DynamoDB (dynoxide) on loopback, create a stream, produce records,
//! and consume them with two consumers of one group that share the shards
//! through DynamoDB leases and checkpoints. Then one consumer leaves and the
//! other takes its shards over.
//!
//! Run: `cargo run --release --example demo [-- RECORDS]`

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kcheck::checkpoint::{Checkpointer, LeaseScope};
use kcheck::kinesis::{KinesisClient, StreamRef};
use kcheck::transport::{AwsConfig, Credentials};
use kcheck::{Consumer, DynamoDbCheckpointer, Producer, Record};
use kcheck_emulators::Emulators;

type Failure = Box<dyn std::error::Error>;

fn main() -> Result<(), Failure> {
    let total: usize = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("RECORDS must be a number, got {arg:?}"))?,
        None => 20_000,
    };
    let emulators = Emulators::start();
    println!("Kinesis emulator:  {}", emulators.kinesis_url());
    println!("DynamoDB emulator: {}", emulators.dynamodb_url());
    let config = |url: String| {
        AwsConfig::builder()
            .region("us-east-1")
            .endpoint_url(url)
            .credentials(Credentials::new("demo", "demo", None, None))
            .build()
    };
    let kinesis_config = config(emulators.kinesis_url())?;
    let dynamodb_config = config(emulators.dynamodb_url())?;

    // The stream and the producer.
    let kinesis = KinesisClient::new(&kinesis_config)?;
    let stream = StreamRef::from("kcheck-demo");
    kinesis.create_stream(stream.name(), 4)?;
    kinesis.wait_for_stream_active(&stream, Duration::from_secs(10))?;
    // Two consumers of the group "demo-app", leases in DynamoDB.
    let consumer = || -> Result<Consumer, kcheck::Error> {
        Consumer::builder(stream.as_str())
            .aws_config(kinesis_config.clone())
            .discovery_interval(Duration::from_millis(500))
            .checkpointer(
                DynamoDbCheckpointer::builder("demo-app")
                    .aws_config(dynamodb_config.clone())
                    .session_timeout(Duration::from_secs(10))
                    .heartbeat_frequency(Duration::from_secs(2))
                    .build()?,
            )
            .build()
    };
    let (a, b) = (consumer()?, consumer()?);
    // The second consumer asks the first for its share: leases move one per
    // discovery cycle, each after a checkpoint.
    let balancing = Instant::now();
    while (a.stats().shards.len(), b.stats().shards.len()) != (2, 2) {
        if balancing.elapsed() > Duration::from_secs(20) {
            return Err("the consumers did not balance".into());
        }
        a.next_timeout(Duration::from_millis(50))?;
        b.next_timeout(Duration::from_millis(50))?;
    }
    println!(
        "two consumers of group demo-app balanced 2/2 in {:.2?}",
        balancing.elapsed()
    );

    let started = Instant::now();
    let producer = Producer::builder(stream.as_str())
        .aws_config(kinesis_config.clone())
        .build()?;
    for i in 0..total {
        producer.put(format!("event {i}"), &format!("user-{}", i % 97), None)?;
    }
    producer.close()?;
    println!(
        "produced {total} records into 4 shards in {:.2?}",
        started.elapsed()
    );

    let started = Instant::now();
    let received = AtomicUsize::new(0);
    let (from_a, from_b) = std::thread::scope(|scope| {
        let received = &received;
        let read = move |c: &Consumer| {
            let mut mine: Vec<Record> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while received.load(Ordering::SeqCst) < total && Instant::now() < deadline {
                let batch = c
                    .next_batch(500, Duration::from_millis(200))
                    .expect("records");
                received.fetch_add(batch.len(), Ordering::SeqCst);
                mine.extend(batch);
            }
            mine
        };
        let (a, b) = (&a, &b);
        let a_reader = scope.spawn(move || read(a));
        let b_reader = scope.spawn(move || read(b));
        (
            a_reader.join().expect("reader"),
            b_reader.join().expect("reader"),
        )
    });
    let elapsed = started.elapsed();
    let unique: HashSet<&[u8]> = from_a
        .iter()
        .chain(&from_b)
        .map(|r| r.data.as_slice())
        .collect();
    println!(
        "consumed {} records ({} unique) in {elapsed:.2?}: {} by consumer A, {} by consumer B",
        from_a.len() + from_b.len(),
        unique.len(),
        from_a.len(),
        from_b.len()
    );
    for (name, c) in [("A", &a), ("B", &b)] {
        let stats = c.stats();
        let shards: Vec<_> = stats.shards.iter().map(|s| s.shard_id.as_str()).collect();
        println!("  consumer {name} ({}) holds {shards:?}", stats.owner);
    }

    // B leaves gracefully: final checkpoints, leases released, A takes over.
    b.next_timeout(Duration::from_millis(100))?; // acknowledge B's last record
    b.close()?;
    let handover = Instant::now();
    while a.stats().shards.len() < 4 && handover.elapsed() < Duration::from_secs(10) {
        a.next_timeout(Duration::from_millis(100))?;
    }
    println!(
        "consumer B closed; consumer A holds all {} shards after {:.2?}",
        a.stats().shards.len(),
        handover.elapsed()
    );
    a.next_timeout(Duration::from_millis(100))?;
    a.close()?;

    // The checkpoint table, as another tool would see it.
    let table = DynamoDbCheckpointer::builder("demo-app")
        .aws_config(dynamodb_config)
        .build()?;
    let scope = LeaseScope {
        group: "demo-app".into(),
        stream: stream.name().into(),
    };
    println!("checkpoints in table {}:", table.table_name());
    let mut leases = table.leases(&scope)?;
    leases.sort_by(|x, y| x.shard_id.cmp(&y.shard_id));
    for lease in leases {
        let checkpoint = lease.checkpoint.map(|c| c.to_string()).unwrap_or_default();
        println!(
            "  {}  owner={:?}  checkpoint={checkpoint}",
            lease.shard_id, lease.owner
        );
    }
    if unique.len() != total {
        return Err(format!("expected {total} records, got {}", unique.len()).into());
    }
    println!("every record produced was consumed");
    Ok(())
}
