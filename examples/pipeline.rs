//! Stream to DynamoDB, end to end on the embedded local emulators: a
//! producer feeds a 4-shard stream with JSON events; two pipeline
//! processes share the shards through DynamoDB leases and store each event
//! in its shard's table, the tables paced at different rates (two at 200
//! write units a second, two at 100). A shard's position is checkpointed
//! only once the items of its records are written.
//!
//! Run: `cargo run --release --example pipeline [-- EVENTS]`

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kcheck::dynamodb::{
    item, AttributeValue, CreateTableRequest, DynamoDbClient, ScalarAttributeType, ScanRequest,
};
use kcheck::kinesis::{KinesisClient, StreamRef};
use kcheck::pipeline::{Pipeline, Write};
use kcheck::transport::{AwsConfig, Credentials};
use kcheck::{Consumer, DynamoDbCheckpointer, DynamoDbWriter, Producer};
use kcheck_emulators::Emulators;

type Failure = Box<dyn std::error::Error>;

const STREAM: &str = "kcheck-pipeline";
/// Write units a second of each shard's table, in shard order.
const PACES: [f64; 4] = [200.0, 200.0, 100.0, 100.0];

fn config(url: &str) -> Result<AwsConfig, kcheck::Error> {
    AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(url)
        .credentials(Credentials::new("demo", "demo", None, None))
        .build()
}

/// The table of a shard's events.
fn table_of(shard: &str) -> String {
    format!("events-{shard}")
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [role, name, kinesis, dynamodb, shards] if role == "--pipeline-process" => {
            pipeline_process(name, kinesis, dynamodb, shards)
        }
        [] => orchestrate(2_000),
        [events] => orchestrate(
            events
                .parse()
                .map_err(|_| format!("EVENTS must be a number, got {events:?}"))?,
        ),
        _ => Err("usage: pipeline [EVENTS]".into()),
    }
}

/// Starts the emulators, the stream, the tables and two pipeline
/// processes; produces the events and waits until every one is stored.
fn orchestrate(events: usize) -> Result<(), Failure> {
    let emulators = Emulators::start();
    let (kinesis_url, dynamodb_url) = (emulators.kinesis_url(), emulators.dynamodb_url());
    let kinesis = KinesisClient::new(&config(&kinesis_url)?)?;
    let stream = StreamRef::from(STREAM);
    kinesis.create_stream(STREAM, 4)?;
    kinesis.wait_for_stream_active(&stream, Duration::from_secs(10))?;
    let shards: Vec<String> = kinesis
        .list_shards(&stream, None)?
        .into_iter()
        .map(|shard| shard.shard_id.to_string())
        .collect();
    let dynamodb = DynamoDbClient::new(&config(&dynamodb_url)?)?;
    for shard in &shards {
        let table = table_of(shard);
        dynamodb.create_table(&CreateTableRequest::new(
            &table,
            "id",
            ScalarAttributeType::N,
        ))?;
        dynamodb.wait_for_table_active(&table, Duration::from_secs(10))?;
    }

    let spawn = |name: &str| -> Result<Child, Failure> {
        Ok(Command::new(std::env::current_exe()?)
            .args([
                "--pipeline-process",
                name,
                &kinesis_url,
                &dynamodb_url,
                &shards.join(","),
            ])
            .stdin(Stdio::piped())
            .spawn()?)
    };
    let mut processes = vec![spawn("A")?, spawn("B")?];

    let started = Instant::now();
    let producer = Producer::builder(STREAM)
        .aws_config(config(&kinesis_url)?)
        .build()?;
    for id in 0..events {
        let event = format!(
            r#"{{"id":{id},"user":"user-{}","amount":{}}}"#,
            id % 97,
            id % 500
        );
        producer.put(event, &format!("user-{}", id % 97), None)?;
    }
    producer.close()?;
    println!("produced {events} events into 4 shards");

    let stored = |dynamodb: &DynamoDbClient| -> Result<Vec<usize>, kcheck::Error> {
        shards
            .iter()
            .map(|shard| {
                Ok(dynamodb
                    .scan_all(&ScanRequest::new(table_of(shard)), None)?
                    .len())
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let counts = loop {
        let counts = stored(&dynamodb)?;
        if counts.iter().sum::<usize>() >= events || Instant::now() > deadline {
            break counts;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let elapsed = started.elapsed();
    for ((shard, count), pace) in shards.iter().zip(&counts).zip(PACES) {
        println!(
            "  {}: {count} items (paced at {pace} write units/s per process)",
            table_of(shard)
        );
    }
    // Closing their stdin asks the processes to finish: final checkpoints.
    for process in &mut processes {
        drop(process.stdin.take());
    }
    for process in &mut processes {
        process.wait()?;
    }
    let total: usize = counts.iter().sum();
    if total != events {
        return Err(format!("expected {events} items, found {total}").into());
    }
    println!("all {events} events stored in {elapsed:.2?}, one table per shard");
    Ok(())
}

/// One pipeline process: runs until its stdin closes.
fn pipeline_process(
    name: &str,
    kinesis: &str,
    dynamodb: &str,
    shards: &str,
) -> Result<(), Failure> {
    let shards: Vec<&str> = shards.split(',').collect();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        stopping.store(true, Ordering::SeqCst);
    });
    let consumer = Consumer::builder(STREAM)
        .aws_config(config(kinesis)?)
        .discovery_interval(Duration::from_millis(500))
        .checkpointer(
            DynamoDbCheckpointer::builder("pipeline-example")
                .aws_config(config(dynamodb)?)
                .session_timeout(Duration::from_secs(10))
                .heartbeat_frequency(Duration::from_secs(2))
                .auto_checkpoint(false)
                .build()?,
        )
        .build()?;
    let mut writer = DynamoDbWriter::builder(table_of(shards[0]))
        .aws_config(config(dynamodb)?)
        .write_capacity(PACES[0]);
    for (shard, pace) in shards.iter().zip(PACES).skip(1) {
        writer = writer.table(table_of(shard), Some(pace));
    }
    let writer = writer.build()?;
    let mut pipeline = Pipeline::new(&consumer, &writer)?;
    pipeline.run(
        |record| {
            let event: serde_json::Value = serde_json::from_slice(&record.data)
                .map_err(|e| kcheck::Error::InvalidArgument(format!("not an event: {e}")))?;
            let event = item([
                ("id", AttributeValue::n(&event["id"])),
                (
                    "user",
                    AttributeValue::s(event["user"].as_str().unwrap_or("")),
                ),
                ("amount", AttributeValue::n(&event["amount"])),
                ("shard", AttributeValue::s(&*record.shard_id)),
            ]);
            Ok(vec![Write::put(event).to(table_of(&record.shard_id))])
        },
        || !stop.load(Ordering::SeqCst),
    )?;
    let stats = pipeline.stats();
    consumer.close()?;
    writer.close()?;
    let tables: Vec<String> = writer
        .table_stats()
        .iter()
        .filter(|table| table.items_written > 0)
        .map(|table| format!("{} {}", table.table, table.items_written))
        .collect();
    println!(
        "  process {name}: {} records, {} checkpoints; items written: {}",
        stats.records,
        stats.checkpoints,
        tables.join(", ")
    );
    Ok(())
}
