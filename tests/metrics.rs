//! Prometheus text of a consumer that read records, a producer and a
//! writer on the emulators; the consumer's event callback told of lease
//! gains, a stolen lease and the refused checkpoint.

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fault_proxy::{Fault, FaultProxy, Rule};
use kcheck::checkpoint::LeaseScope;
use kcheck::dynamodb::{item, AttributeValue, UpdateItemRequest};
use kcheck::metrics::{Exposition, Registry};
use kcheck::{ConsumerEvent, ConsumerEventKind, DynamoDbWriter, Producer};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

/// The value of the sample `name{labels}` (labels as rendered, in order).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.parse().unwrap())
}

#[test]
fn a_consumer_that_read_records_renders_its_figures() {
    let (kinesis, stream) = create_stream(2);
    let table = unique_name("metrics");
    let consumer = Arc::new(
        consumer_for(&stream)
            .checkpointer(dynamodb_checkpointer("app", &table).build().unwrap())
            .build()
            .unwrap(),
    );
    let registry = Registry::new();
    registry.add_consumer(&consumer);
    let payloads = put_payloads(&kinesis, &stream, 0..20);
    let bytes: usize = payloads.iter().map(String::len).sum();
    let records = take(&consumer, 20, WAIT);
    assert_eq!(records.len(), 20);
    // Acknowledge the last record; the keeper writes the checkpoints.
    assert!(consumer
        .next_timeout(Duration::from_millis(10))
        .unwrap()
        .is_none());
    assert!(wait_until(WAIT, || consumer
        .stats()
        .shards
        .iter()
        .all(|s| !s.checkpoint_behind)));

    let text = registry.render();
    let owner = consumer.owner_id();
    let labels = format!(
        r#"group="app",stream="{}",owner="{owner}""#,
        stream.as_str()
    );
    assert_eq!(sample(&text, "kcheck_consumer_shards", &labels), Some(2.0));
    assert_eq!(
        sample(&text, "kcheck_consumer_records_total", &labels),
        Some(20.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kcheck_consumer_bytes_total", &labels),
        Some(bytes as f64)
    );
    assert_eq!(
        sample(&text, "kcheck_lease_gains_total", &labels),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "kcheck_lease_losses_total", &labels),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "kcheck_checkpoint_failures_total", &labels),
        Some(0.0)
    );
    assert!(sample(&text, "kcheck_checkpoint_writes_total", &labels).unwrap() >= 1.0);

    let mut shard_records = 0.0;
    for shard in consumer.stats().shards {
        let labels = format!(
            r#"group="app",stream="{}",shard="{}",owner="{owner}""#,
            stream.as_str(),
            shard.shard_id
        );
        shard_records += sample(&text, "kcheck_shard_records_total", &labels).unwrap();
        assert_eq!(
            sample(&text, "kcheck_shard_millis_behind_latest", &labels),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, "kcheck_shard_checkpoint_behind", &labels),
            Some(0.0)
        );
        let age = sample(&text, "kcheck_shard_seconds_since_checkpoint", &labels).unwrap();
        assert!((0.0..30.0).contains(&age), "{age}");
    }
    assert_eq!(shard_records, 20.0);
    // HELP and TYPE once per family.
    assert_eq!(
        text.matches("# TYPE kcheck_shard_records_total counter\n")
            .count(),
        1
    );

    consumer.close().unwrap();
    drop(consumer);
    assert_eq!(
        registry.render(),
        "",
        "a dropped consumer leaves the registry"
    );
}

#[test]
fn producer_and_writer_render_with_their_labels() {
    let (_kinesis, stream) = create_stream(1);
    let producer = Producer::builder(stream.as_str())
        .aws_config(kinesis_config())
        .buffer_time(Duration::from_millis(10))
        .build()
        .unwrap();
    for i in 0..5 {
        producer
            .put(b"hello".to_vec(), &format!("k{i}"), None)
            .unwrap();
    }
    producer.flush().unwrap();
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    let table = create_table(&client, false);
    let writer = DynamoDbWriter::builder(&table)
        .aws_config(dynamodb_config())
        .build()
        .unwrap();
    for i in 0..3 {
        writer
            .put(item([("pk", AttributeValue::s(format!("p{i}")))]))
            .unwrap();
    }
    writer.flush().unwrap();

    let mut exposition = Exposition::new();
    exposition.add_producer(&producer).add_writer(&writer);
    let text = exposition.render();
    let labels = format!(r#"stream="{}""#, stream.as_str());
    assert_eq!(
        sample(&text, "kcheck_producer_records_sent_total", &labels),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kcheck_producer_bytes_put_total", &labels),
        Some(25.0)
    );
    assert_eq!(
        sample(&text, "kcheck_producer_queue_depth", &labels),
        Some(0.0)
    );
    let table_labels = format!(r#"table="{table}""#);
    assert_eq!(
        sample(&text, "kcheck_writer_items_written_total", &table_labels),
        Some(3.0),
        "{text}"
    );
    assert!(sample(&text, "kcheck_writer_write_units_total", &table_labels).unwrap() >= 3.0);
    assert_eq!(
        sample(
            &text,
            "kcheck_writer_items_put_total",
            &format!(r#"default_table="{table}""#)
        ),
        Some(3.0)
    );
    producer.close().unwrap();
    writer.close().unwrap();
}

#[test]
fn events_tell_of_gained_and_stolen_leases() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("events");
    let events: Arc<Mutex<Vec<ConsumerEvent>>> = Arc::default();
    let seen = events.clone();
    let consumer = consumer_for(&stream)
        .checkpointer(
            dynamodb_checkpointer("app", &table)
                .auto_checkpoint(false)
                .build()
                .unwrap(),
        )
        .on_event(move |event| seen.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    put_payloads(&kinesis, &stream, 0..10);
    let records = take(&consumer, 5, WAIT);
    assert_eq!(records.len(), 5);
    let shard = records[0].shard_id.to_string();
    // Told on the consumer's event thread, maybe a moment after the records.
    assert!(wait_until(WAIT, || !events.lock().unwrap().is_empty()));
    {
        let events = events.lock().unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        let gained = &events[0];
        assert_eq!(gained.kind, ConsumerEventKind::LeaseGained);
        assert_eq!(
            (
                gained.group.as_str(),
                gained.stream.as_str(),
                gained.shard_id.as_str()
            ),
            ("app", stream.as_str(), shard.as_str())
        );
        assert_eq!(gained.owner, consumer.owner_id());
    }

    // Someone else takes the lease behind the consumer's back.
    let checkpointer = dynamodb_checkpointer("app", &table).build().unwrap();
    let key = LeaseScope {
        group: "app".into(),
        stream: stream.name().to_owned(),
    }
    .key(&shard);
    checkpointer
        .client()
        .update_item(
            &UpdateItemRequest::new(
                &table,
                item([("shard_id", AttributeValue::s(key))]),
                "SET #ref = :thief, lease_counter = lease_counter + :one",
            )
            .name("#ref", "ref")
            .value(":thief", AttributeValue::s("thief"))
            .value(":one", AttributeValue::n(1)),
        )
        .unwrap();
    let lost = |events: &[ConsumerEvent]| {
        events
            .iter()
            .any(|e| e.kind == ConsumerEventKind::LeaseLost && e.shard_id == shard)
    };
    assert!(wait_until(WAIT, || lost(&events.lock().unwrap())));
    let event = events
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.kind == ConsumerEventKind::LeaseLost)
        .cloned()
        .unwrap();
    assert!(!event.message.is_empty());
    assert_eq!(event.group, "app");
    assert_eq!(consumer.stats().lease_losses, 1);
    consumer.close().unwrap();
    let after_close = events.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        events.lock().unwrap().len(),
        after_close,
        "no event after close"
    );
}

#[test]
fn a_failed_checkpoint_write_is_an_event() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("failing");
    let proxy = FaultProxy::start(&emulators().dynamodb_url());
    let events: Arc<Mutex<Vec<ConsumerEvent>>> = Arc::default();
    let seen = events.clone();
    let consumer = consumer_for(&stream)
        .checkpointer(
            dynamodb_checkpointer("app", &table)
                .aws_config(config_for(proxy.url()))
                .auto_checkpoint(false)
                .build()
                .unwrap(),
        )
        .on_event(move |event| seen.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    put_payloads(&kinesis, &stream, 0..3);
    let records = take(&consumer, 3, WAIT);
    assert_eq!(records.len(), 3);
    // DynamoDB refuses every lease write: the checkpoint fails.
    let refusal = proxy.add(Rule::on(
        "UpdateItem",
        Fault::error(400, "ValidationException"),
    ));
    assert!(consumer.checkpoint_record(&records[2]).is_err());
    let shard = records[2].shard_id.to_string();
    assert!(wait_until(WAIT, || events.lock().unwrap().iter().any(
        |e| { e.kind == ConsumerEventKind::CheckpointFailed && e.shard_id == shard }
    )));
    let failed = events
        .lock()
        .unwrap()
        .iter()
        .find(|e| e.kind == ConsumerEventKind::CheckpointFailed)
        .cloned()
        .unwrap();
    assert!(failed.message.contains("ValidationException"), "{failed:?}");
    assert_eq!(
        (failed.group.as_str(), failed.stream.as_str()),
        ("app", stream.as_str())
    );
    assert!(consumer.stats().checkpoint_failures >= 1);
    let text = Exposition::new().add_consumer(&consumer).render();
    let labels = format!(
        r#"group="app",stream="{}",owner="{}""#,
        stream.as_str(),
        consumer.owner_id()
    );
    assert!(sample(&text, "kcheck_checkpoint_failures_total", &labels).unwrap() >= 1.0);
    refusal.set_active(false);
    let _ = consumer.close();
}
