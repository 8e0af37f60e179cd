//! One consumer against the emulators: delivery, checkpoint semantics in
//! automatic and manual mode, restarts, KPL aggregates and bad input.

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use fault_proxy::FaultProxy;
use kcheck::checkpoint::{Checkpoint, Checkpointer, LeaseScope, MemoryCheckpointer, Position};
use kcheck::kinesis::aggregation::aggregate;
use kcheck::kinesis::PutRecordsEntry;
use kcheck::{Consumer, Error};
use support::*;

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn every_record_of_every_shard_is_delivered_once() {
    let (kinesis, stream) = create_stream(4);
    let expected = put_payloads(&kinesis, &stream, 0..400);
    let consumer = consumer_for(&stream).build().unwrap();
    let records = take(&consumer, 400, WAIT);
    let got = payloads(&records);
    assert_eq!(got.len(), 400);
    assert_eq!(
        got.iter().collect::<HashSet<_>>(),
        expected.iter().collect::<HashSet<_>>()
    );
    // Per shard, records arrive in sequence order.
    for shard in records
        .iter()
        .map(|r| r.shard_id.clone())
        .collect::<HashSet<_>>()
    {
        let positions: Vec<_> = records
            .iter()
            .filter(|r| r.shard_id == shard)
            .map(|r| r.position())
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "{shard} out of order"
        );
    }
    let record = &records[0];
    assert!(record.approximate_arrival_timestamp.is_some());
    assert!(record.partition_key.starts_with("key-"));
    assert_eq!(record.sub_sequence_number, 0);
    let stats = consumer.stats();
    assert_eq!(stats.shards.len(), 4);
    assert_eq!(stats.shards.iter().map(|s| s.records).sum::<u64>(), 400);
    assert_eq!(stats.lease_gains, 4);
    consumer.close().unwrap();
    consumer.close().unwrap(); // idempotent
    assert!(consumer
        .next_timeout(Duration::from_millis(10))
        .unwrap()
        .is_none());
}

#[test]
fn iteration_ends_after_idle_timeout() {
    let (kinesis, stream) = create_stream(1);
    put_payloads(&kinesis, &stream, 0..5);
    let consumer = consumer_for(&stream)
        .idle_timeout(Duration::from_millis(1500))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let mut seen = 0;
    for record in &consumer {
        record.unwrap();
        seen += 1;
    }
    assert_eq!(seen, 5);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn automatic_mode_resumes_after_the_last_acknowledged_record() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("auto");
    put_payloads(&kinesis, &stream, 0..20);
    let first = consumer_for(&stream)
        .checkpointer(dynamodb_checkpointer("app", &table).build().unwrap())
        .build()
        .unwrap();
    let got = payloads(&take(&first, 10, WAIT));
    assert_eq!(got.len(), 10);
    // Records 0..9 were returned; asking for the 10th acknowledged 0..8 only.
    first.close().unwrap();
    let second = consumer_for(&stream)
        .checkpointer(dynamodb_checkpointer("app", &table).build().unwrap())
        .build()
        .unwrap();
    let rest = payloads(&take(&second, 11, WAIT));
    assert_eq!(
        rest.first().map(String::as_str),
        Some("payload-9"),
        "the unacknowledged record comes again"
    );
    assert_eq!(rest.len(), 11);
    assert_eq!(rest.last().map(String::as_str), Some("payload-19"));
    assert!(
        take(&second, 1, Duration::from_secs(2)).is_empty(),
        "nothing before the checkpoint again"
    );
}

#[test]
fn manual_mode_close_writes_nothing_and_checkpoint_record_is_exact() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("manual");
    put_payloads(&kinesis, &stream, 0..10);
    let manual = || {
        consumer_for(&stream)
            .checkpointer(
                dynamodb_checkpointer("batch", &table)
                    .auto_checkpoint(false)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    // A batch fetched but never processed: delivered again after restart.
    let consumer = manual();
    assert_eq!(take(&consumer, 10, WAIT).len(), 10);
    consumer.close().unwrap();
    let consumer = manual();
    let records = take(&consumer, 10, WAIT);
    assert_eq!(payloads(&records)[0], "payload-0");
    // Checkpoint up to and including record 3 only.
    consumer.checkpoint_record(&records[3]).unwrap();
    consumer.close().unwrap();
    let consumer = manual();
    let records = take(&consumer, 6, WAIT);
    assert_eq!(payloads(&records)[0], "payload-4");
    // checkpoint() covers everything returned so far.
    consumer.checkpoint().unwrap();
    consumer.close().unwrap();
    let consumer = manual();
    assert!(take(&consumer, 1, Duration::from_secs(2)).is_empty());
    let stats = consumer.stats();
    assert!(stats.shards[0]
        .last_checkpointed
        .as_deref()
        .unwrap()
        .ends_with("/0"));
}

#[test]
fn kpl_aggregates_are_split_and_a_restart_resumes_inside_one() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("kpl");
    let users: Vec<String> = (0..6).map(|i| format!("user-{i}")).collect();
    let blob = aggregate(users.iter().map(|u| ("pk", u.as_bytes())));
    kinesis
        .put_records_all(
            &stream,
            &[
                PutRecordsEntry::new("plain", b"before".to_vec()),
                PutRecordsEntry::new("agg", blob),
                PutRecordsEntry::new("plain", b"after".to_vec()),
            ],
        )
        .unwrap();
    let manual = || {
        consumer_for(&stream)
            .checkpointer(
                dynamodb_checkpointer("kpl", &table)
                    .auto_checkpoint(false)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let consumer = manual();
    let records = take(&consumer, 8, WAIT);
    let got = payloads(&records);
    assert_eq!(got[0], "before");
    assert_eq!(&got[1..7], users.as_slice());
    assert_eq!(got[7], "after");
    assert_eq!(records[3].sub_sequence_number, 2);
    assert_eq!(records[3].sequence_number, records[1].sequence_number);
    assert_eq!(records[3].partition_key, "pk");
    // Processed up to user-2 (sub-sequence 2) inside the aggregate.
    consumer.checkpoint_record(&records[3]).unwrap();
    consumer.close().unwrap();
    let consumer = manual();
    let got = payloads(&take(&consumer, 4, WAIT));
    assert_eq!(got, ["user-3", "user-4", "user-5", "after"]);
}

#[test]
fn checkpoints_never_move_backwards() {
    let (kinesis, stream) = create_stream(1);
    put_payloads(&kinesis, &stream, 0..5);
    let checkpointer = MemoryCheckpointer::with_settings(kcheck::checkpoint::LeaseSettings {
        auto_checkpoint: false,
        ..Default::default()
    })
    .unwrap();
    let consumer = consumer_for(&stream)
        .checkpointer(checkpointer.clone())
        .build()
        .unwrap();
    let records = take(&consumer, 5, WAIT);
    consumer.checkpoint_record(&records[4]).unwrap();
    consumer.checkpoint_record(&records[1]).unwrap();
    let scope = LeaseScope {
        group: checkpointer.group().to_owned(),
        stream: stream.name().to_owned(),
    };
    let lease = checkpointer.leases(&scope).unwrap().remove(0);
    assert_eq!(
        lease.checkpoint,
        Some(Checkpoint::At(Position::new(
            records[4].sequence_number.clone(),
            0
        )))
    );
}

#[test]
fn a_missing_stream_and_bad_options_are_clear_errors() {
    let error = consumer_for(&kcheck::kinesis::StreamRef::from("no-such-stream"))
        .build()
        .unwrap_err();
    assert!(
        error.to_string().contains("no-such-stream") || error.code().is_some(),
        "{error}"
    );
    assert_eq!(error.code(), Some(&kcheck::ErrorCode::ResourceNotFound));
    let (_, stream) = create_stream(1);
    for (builder, needle) in [
        (consumer_for(&stream).record_limit(0), "record_limit"),
        (consumer_for(&stream).record_limit(10_001), "record_limit"),
        (consumer_for(&stream).max_queue_size(0), "max_queue_size"),
        (
            consumer_for(&stream).max_shard_consumers(0),
            "max_shard_consumers",
        ),
    ] {
        let error = builder.build().unwrap_err();
        assert!(
            matches!(error, Error::Config(_)) && error.to_string().contains(needle),
            "{error}"
        );
    }
    let error = Consumer::builder("").build().unwrap_err();
    assert!(error.to_string().contains("stream"), "{error}");
    let error = dynamodb_checkpointer("app", &unique_name("t"))
        .heartbeat_frequency(Duration::from_secs(90))
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("heartbeat_frequency"), "{error}");
    let error = dynamodb_checkpointer("app", "x").build().unwrap_err();
    assert!(error.to_string().contains("table_name"), "{error}");
}

#[test]
fn create_table_false_names_the_missing_table() {
    let (_, stream) = create_stream(1);
    let table = unique_name("absent");
    let error = consumer_for(&stream)
        .checkpointer(
            dynamodb_checkpointer("app", &table)
                .create_table(false)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap_err();
    assert!(error.to_string().contains(&table), "{error}");
}

#[test]
fn records_waiting_behind_a_full_tiny_queue_all_arrive() {
    let (kinesis, stream) = create_stream(2);
    let expected = put_payloads(&kinesis, &stream, 0..300);
    let consumer = consumer_for(&stream)
        .max_queue_size(3)
        .record_limit(50)
        .build()
        .unwrap();
    // Fetchers fill the queue and wait (that they stop fetching: promises.rs).
    std::thread::sleep(Duration::from_millis(800));
    let got = payloads(&take(&consumer, 300, WAIT));
    assert_eq!(
        got.iter().collect::<HashSet<_>>(),
        expected.iter().collect::<HashSet<_>>()
    );
    assert_eq!(got.len(), 300);
}

#[test]
fn closing_while_a_fetcher_waits_inside_a_page_resumes_exactly() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("mid-page");
    let expected = put_payloads(&kinesis, &stream, 0..100);
    let group = || {
        consumer_for(&stream)
            .checkpointer(dynamodb_checkpointer("app", &table).build().unwrap())
            .max_queue_size(8) // one page of 100 records cannot fit: the fetcher waits inside it
    };
    let first = group().build().unwrap();
    assert_eq!(payloads(&take(&first, 10, WAIT)), expected[..10]);
    let started = Instant::now();
    first.close().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let second = group().build().unwrap();
    assert_eq!(
        payloads(&take(&second, 91, WAIT)),
        expected[9..],
        "resumes at the unacknowledged record"
    );
    assert!(take(&second, 1, Duration::from_secs(1)).is_empty());
}

/// GetRecords calls the proxy saw from `since` on.
fn polls_since(proxy: &FaultProxy, since: Instant) -> Vec<Instant> {
    proxy
        .requests()
        .into_iter()
        .filter(|r| r.operation == "GetRecords" && r.at >= since)
        .map(|r| r.at)
        .collect()
}

#[test]
fn a_quiet_shard_is_polled_less_often_up_to_idle_poll_max_interval_and_records_reset_it() {
    let (kinesis, stream) = create_stream(1);
    let proxy = FaultProxy::start(&emulators().kinesis_url());
    let consumer = consumer_for(&stream)
        .endpoint_url(proxy.url())
        .idle_poll_interval(Duration::from_millis(250))
        .idle_poll_max_interval(Duration::from_secs(2))
        .build()
        .unwrap();
    // Pauses of 250, 500, 1000 ms, then 2 s: after 4 s they are at 2 s,
    // and 4 s more see about 2 calls, where a fixed 250 ms pause makes 14.
    std::thread::sleep(Duration::from_secs(4));
    let quiet = Instant::now();
    std::thread::sleep(Duration::from_secs(4));
    let quiet_polls = polls_since(&proxy, quiet).len();
    assert!(
        (1..=4).contains(&quiet_polls),
        "{quiet_polls} GetRecords calls in 4 s of a quiet shard"
    );

    put_payloads(&kinesis, &stream, 0..1);
    let record = take(&consumer, 1, Duration::from_secs(5));
    assert_eq!(
        payloads(&record),
        ["payload-0"],
        "a record on a quiet shard still arrives"
    );
    // Found records bring the pause back to 250 ms (a 2 s pause would
    // allow one call at most).
    let after = Instant::now();
    std::thread::sleep(Duration::from_millis(1200));
    let busy_polls = polls_since(&proxy, after).len();
    assert!(
        busy_polls >= 3,
        "{busy_polls} GetRecords calls in the 1.2 s after a record"
    );
    consumer.close().unwrap();
}

#[test]
fn idle_poll_max_interval_shorter_than_idle_poll_interval_is_refused() {
    let (_, stream) = create_stream(1);
    let error = consumer_for(&stream)
        .idle_poll_interval(Duration::from_secs(2))
        .idle_poll_max_interval(Duration::from_secs(1))
        .build()
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("idle_poll_max_interval") && message.contains("idle_poll_interval"),
        "{message}"
    );
}
