//! The consumer → writer pipeline: a process killed with SIGKILL mid-run
//! and restarted leaves every record's item in its shard's table, because a
//! position is checkpointed only once the items derived up to it are
//! written. The tables are paced slower than the stream is read, so at the
//! kill the writer holds items of records already read.

mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kcheck::dynamodb::{item, AttributeValue, DynamoDbClient, ScanRequest};
use kcheck::pipeline::{Pipeline, Write};
use kcheck::{Consumer, DynamoDbWriter, Error};
use support::*;

const SHARDS: u32 = 4;
const RECORDS: usize = 1200;
/// Write units a second per table and process: reading is far faster.
const TABLE_PACE: f64 = 100.0;

/// The table of `shard`'s items.
fn table_of(base: &str, shard: &str) -> String {
    format!("{base}-{shard}")
}

/// Child process: runs a pipeline until killed or orphaned. Does nothing
/// in a normal run.
#[test]
fn pipeline_child() {
    let Ok(stream) = std::env::var("KCHECK_PIPELINE_STREAM") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let base = var("KCHECK_PIPELINE_TABLES");
    let checkpointer = kcheck::DynamoDbCheckpointer::builder("pipeline")
        .table_name(var("KCHECK_PIPELINE_LEASES"))
        .aws_config(config_for(&var("KCHECK_PIPELINE_DYNAMODB")))
        .session_timeout(SESSION_TIMEOUT)
        .heartbeat_frequency(HEARTBEAT)
        .auto_checkpoint(false)
        .build()
        .unwrap();
    let consumer = Consumer::builder(stream)
        .aws_config(config_for(&var("KCHECK_PIPELINE_KINESIS")))
        .discovery_interval(DISCOVERY)
        .idle_poll_interval(Duration::from_millis(100))
        .checkpointer(checkpointer)
        .build()
        .unwrap();
    let shards: Vec<String> = var("KCHECK_PIPELINE_SHARDS")
        .split(',')
        .map(str::to_owned)
        .collect();
    let mut builder = DynamoDbWriter::builder(table_of(&base, &shards[0]))
        .aws_config(config_for(&var("KCHECK_PIPELINE_DYNAMODB")))
        .write_capacity(TABLE_PACE);
    for shard in &shards[1..] {
        builder = builder.table(table_of(&base, shard), Some(TABLE_PACE));
    }
    let writer = builder.build().unwrap();
    let parent = std::os::unix::process::parent_id();
    let mut pipeline = Pipeline::new(&consumer, &writer)
        .unwrap()
        .checkpoint_interval(Duration::from_millis(100));
    pipeline
        .run(
            |record| {
                let item = item([
                    ("pk", AttributeValue::b(record.data.clone())),
                    ("sequence", AttributeValue::s(&record.sequence_number)),
                ]);
                Ok(vec![Write::put(item).to(table_of(&base, &record.shard_id))])
            },
            // An orphan (the test died) stops by itself.
            || std::os::unix::process::parent_id() == parent,
        )
        .unwrap();
}

/// Kills every child still running when the test ends, even by panic.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_pipeline_killed_mid_run_loses_no_item() {
    let (kinesis, stream) = create_stream(SHARDS);
    let dynamodb = DynamoDbClient::new(&dynamodb_config()).unwrap();
    let base = unique_name("items");
    let shards: Vec<String> = kinesis
        .list_shards(&stream, None)
        .unwrap()
        .into_iter()
        .map(|shard| shard.shard_id.to_string())
        .collect();
    for shard in &shards {
        let table = table_of(&base, shard);
        dynamodb
            .create_table(&kcheck::dynamodb::CreateTableRequest::new(
                &table,
                "pk",
                kcheck::dynamodb::ScalarAttributeType::B,
            ))
            .unwrap();
        dynamodb
            .wait_for_table_active(&table, Duration::from_secs(10))
            .unwrap();
    }
    let payloads = put_payloads(&kinesis, &stream, 0..RECORDS);
    let leases = unique_name("pipeline-leases");
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "pipeline_child", "--nocapture"])
            .env("KCHECK_PIPELINE_STREAM", stream.as_str())
            .env("KCHECK_PIPELINE_TABLES", &base)
            .env("KCHECK_PIPELINE_SHARDS", shards.join(","))
            .env("KCHECK_PIPELINE_LEASES", &leases)
            .env("KCHECK_PIPELINE_KINESIS", emulators().kinesis_url())
            .env("KCHECK_PIPELINE_DYNAMODB", emulators().dynamodb_url())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a pipeline process")
    };
    let stored = |dynamodb: &DynamoDbClient| -> BTreeSet<String> {
        shards
            .iter()
            .flat_map(|shard| {
                dynamodb
                    .scan_all(&ScanRequest::new(table_of(&base, shard)), None)
                    .unwrap()
            })
            .map(|item| String::from_utf8(item["pk"].as_b().unwrap().to_vec()).unwrap())
            .collect()
    };
    let mut children = Children(vec![spawn(), spawn()]);
    // Kill the first process once some items are written, but far from all.
    let mut at_kill = 0;
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || {
            at_kill = stored(&dynamodb).len();
            at_kill >= RECORDS / 10
        }),
        "the pipelines wrote nothing in a minute"
    );
    children.0[0].kill().unwrap();
    children.0[0].wait().unwrap();
    assert!(
        at_kill < RECORDS * 3 / 4,
        "the kill came too late to matter: {at_kill} of {RECORDS} items written"
    );
    eprintln!(
        "killed a pipeline after {:?} with {at_kill} of {RECORDS} items written",
        started.elapsed()
    );
    children.0.push(spawn());
    let everything: BTreeSet<String> = payloads.into_iter().collect();
    let complete = wait_until(Duration::from_secs(120), || stored(&dynamodb) == everything);
    let missing: Vec<String> = everything
        .difference(&stored(&dynamodb))
        .take(10)
        .cloned()
        .collect();
    assert!(
        complete,
        "items missing after the restart, e.g. {missing:?}"
    );
}

#[test]
fn a_pipeline_refuses_a_consumer_that_checkpoints_by_itself() {
    let (_, stream) = create_stream(1);
    let consumer = consumer_for(&stream).build().unwrap();
    let dynamodb = DynamoDbClient::new(&dynamodb_config()).unwrap();
    let table = create_table(&dynamodb, false);
    let writer = DynamoDbWriter::builder(&table)
        .aws_config(dynamodb_config())
        .build()
        .unwrap();
    let error = Pipeline::new(&consumer, &writer).err().unwrap();
    assert!(matches!(error, Error::Config(_)), "{error}");
    assert!(
        error.to_string().contains("auto_checkpoint(false)"),
        "{error}"
    );
    consumer.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn a_failed_run_closes_the_consumer_so_its_unfinished_records_are_read_again() {
    let (kinesis, stream) = create_stream(1);
    let dynamodb = DynamoDbClient::new(&dynamodb_config()).unwrap();
    let table = create_table(&dynamodb, false);
    let leases = unique_name("pipeline-leases");
    let sent = put_payloads(&kinesis, &stream, 0..10);
    let consumer_of_group = || {
        consumer_for(&stream)
            .checkpointer(
                dynamodb_checkpointer("failing", &leases)
                    .auto_checkpoint(false)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let writer = DynamoDbWriter::builder(&table)
        .aws_config(dynamodb_config())
        .build()
        .unwrap();
    let consumer = consumer_of_group();
    let mut pipeline = Pipeline::new(&consumer, &writer)
        .unwrap()
        .checkpoint_interval(Duration::ZERO);
    let error = pipeline
        .run(
            |record| {
                if record.data == b"payload-5" {
                    return Err(Error::InvalidArgument("cannot transform payload-5".into()));
                }
                let pk = AttributeValue::s(String::from_utf8_lossy(&record.data));
                Ok(vec![Write::put(item([("pk", pk)]))])
            },
            || true,
        )
        .unwrap_err();
    assert!(error.to_string().contains("payload-5"), "{error}");
    assert!(consumer.is_closed());
    // A second run on the same consumer, with records arriving meanwhile,
    // must not checkpoint past the records the failed run left unfinished.
    let more = put_payloads(&kinesis, &stream, 10..15);
    let started = Instant::now();
    Pipeline::new(&consumer, &writer)
        .unwrap()
        .checkpoint_interval(Duration::ZERO)
        .run(
            |record| {
                let pk = AttributeValue::s(String::from_utf8_lossy(&record.data));
                Ok(vec![Write::put(item([("pk", pk)]))])
            },
            || started.elapsed() < Duration::from_secs(2),
        )
        .unwrap();
    let again = consumer_of_group();
    let replayed = payloads(&take(&again, 15, Duration::from_secs(10)));
    let expected: Vec<String> = sent[5..].iter().chain(&more).cloned().collect();
    assert!(replayed.ends_with(&expected), "{replayed:?}");
    again.close().unwrap();
    writer.close().unwrap();
}
