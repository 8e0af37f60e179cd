//! Several consumers of one group coordinating through DynamoDB leases:
//! even split, graceful and hard failover, hand-overs without duplicates,
//! fencing, and groups and streams sharing a table.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kcheck::checkpoint::{Checkpoint, Checkpointer, LeaseScope, Position};
use kcheck::dynamodb::{item, AttributeValue, UpdateItemRequest};
use kcheck::kinesis::StreamRef;
use kcheck::{Consumer, Error, Record};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn group_consumer(stream: &StreamRef, group: &str, table: &str) -> Consumer {
    consumer_for(stream)
        .checkpointer(dynamodb_checkpointer(group, table).build().unwrap())
        .build()
        .unwrap()
}

/// What each consumer received, without arrival times.
fn drain_records(consumers: &[&Consumer], total: usize, timeout: Duration) -> Vec<Vec<Record>> {
    drain(consumers, total, timeout)
        .into_iter()
        .map(|received| received.into_iter().map(|(_, record)| record).collect())
        .collect()
}

fn shard_counts(consumers: &[&Consumer]) -> Vec<usize> {
    let mut counts: Vec<usize> = consumers.iter().map(|c| c.stats().shards.len()).collect();
    counts.sort_unstable();
    counts
}

fn all_payloads(per_consumer: &[Vec<Record>]) -> Vec<String> {
    per_consumer
        .iter()
        .flat_map(|records| payloads(records))
        .collect()
}

fn assert_exactly_once(got: &[String], expected: &[String]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for payload in got {
        *counts.entry(payload.as_str()).or_default() += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "delivered twice: {duplicates:?}");
    let missing: Vec<_> = expected
        .iter()
        .filter(|p| !counts.contains_key(p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "never delivered: {} e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

/// Reads on until the consumers hold `expected` shards each, so hand-overs
/// can complete; returns what arrived meanwhile, for the caller's
/// exactly-once check (a hand-over that duplicates shows there).
fn wait_for_split(consumers: &[&Consumer], expected: &[usize]) -> Vec<Record> {
    let mut read = Vec::new();
    let ok = wait_until(WAIT, || {
        for consumer in consumers {
            while let Some(record) = consumer.next_timeout(Duration::from_millis(1)).unwrap() {
                read.push(record);
            }
        }
        shard_counts(consumers) == expected
    });
    assert!(
        ok,
        "expected split {expected:?}, got {:?}",
        shard_counts(consumers)
    );
    read
}

/// Waits for a split before any record is written: nothing may arrive.
fn wait_for_split_of_empty_stream(consumers: &[&Consumer], expected: &[usize]) {
    let read = wait_for_split(consumers, expected);
    assert!(read.is_empty(), "nothing was written yet: {read:?}");
}

#[test]
fn two_consumers_split_four_shards_and_deliver_everything() {
    let (kinesis, stream) = create_stream(4);
    let table = unique_name("two");
    let a = group_consumer(&stream, "app", &table);
    let b = group_consumer(&stream, "app", &table);
    wait_for_split_of_empty_stream(&[&a, &b], &[2, 2]);
    let expected = put_payloads(&kinesis, &stream, 0..400);
    let got = drain_records(&[&a, &b], 400, WAIT);
    assert_exactly_once(&all_payloads(&got), &expected);
    assert!(
        got.iter().all(|records| !records.is_empty()),
        "both consumers worked"
    );
}

#[test]
fn three_consumers_split_eight_shards_evenly() {
    let (kinesis, stream) = create_stream(8);
    let table = unique_name("three");
    let consumers: Vec<Consumer> = (0..3)
        .map(|_| group_consumer(&stream, "app", &table))
        .collect();
    let refs: Vec<&Consumer> = consumers.iter().collect();
    wait_for_split_of_empty_stream(&refs, &[2, 3, 3]);
    let expected = put_payloads(&kinesis, &stream, 0..800);
    let got = drain_records(&refs, 800, WAIT);
    assert_exactly_once(&all_payloads(&got), &expected);
}

#[test]
fn a_new_consumer_gets_its_share_by_hand_over_without_duplicates() {
    let (kinesis, stream) = create_stream(4);
    let table = unique_name("handover");
    let with_discovery = |interval: Duration| {
        consumer_for(&stream)
            .discovery_interval(interval)
            .checkpointer(dynamodb_checkpointer("app", &table).build().unwrap())
            .build()
            .unwrap()
    };
    // The owner looks at the table rarely, the newcomer often: hand-overs
    // take several of the newcomer's cycles to land.
    let a = with_discovery(Duration::from_secs(1));
    wait_for_split_of_empty_stream(&[&a], &[4]);
    let expected = put_payloads(&kinesis, &stream, 0..2000);
    let mut got = drain_records(&[&a], 500, WAIT);
    let b = with_discovery(Duration::from_millis(50));
    // Both read while the leases move; every record still arrives once,
    // counting what arrives until the split is complete.
    got.extend(drain_records(&[&a, &b], 1500, WAIT));
    got.push(wait_for_split(&[&a, &b], &[2, 2]));
    assert_exactly_once(&all_payloads(&got), &expected);
    let more = put_payloads(&kinesis, &stream, 2000..2400);
    let got = drain_records(&[&a, &b], 400, WAIT);
    assert_exactly_once(&all_payloads(&got), &more);
    // Exactly two leases moved: the newcomer never asked for more than its
    // share, so none came back.
    let moved = (a.stats().handoffs_given, b.stats().handoffs_given);
    assert_eq!(moved, (2, 0), "{:?} {:?}", a.stats(), b.stats());
}

#[test]
fn a_gracefully_closed_consumer_hands_its_shards_over_at_once() {
    let (kinesis, stream) = create_stream(4);
    let table = unique_name("graceful");
    // A session timeout far longer than the hand-over may take, so only a
    // release (not expiry) can explain the takeover, even on a loaded machine.
    let session_timeout = Duration::from_secs(30);
    let consumer = || {
        consumer_for(&stream)
            .checkpointer(
                dynamodb_checkpointer("app", &table)
                    .session_timeout(session_timeout)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let (a, b) = (consumer(), consumer());
    wait_for_split_of_empty_stream(&[&a, &b], &[2, 2]);
    let first = put_payloads(&kinesis, &stream, 0..200);
    let got = drain_records(&[&a, &b], 200, WAIT);
    assert_exactly_once(&all_payloads(&got), &first);
    // Acknowledge b's last record, then close it: final checkpoint + release.
    assert!(b
        .next_timeout(Duration::from_millis(200))
        .unwrap()
        .is_none());
    let closed_at = Instant::now();
    b.close().unwrap();
    // Everything was acknowledged before the close: nothing comes again.
    wait_for_split_of_empty_stream(&[&a], &[4]);
    // Released leases are free at once: no session_timeout wait.
    assert!(
        closed_at.elapsed() < session_timeout / 3,
        "took {:?}",
        closed_at.elapsed()
    );
    let second = put_payloads(&kinesis, &stream, 200..400);
    let got = drain_records(&[&a], 200, WAIT);
    assert_exactly_once(&all_payloads(&got), &second);
}

/// Child process for the SIGKILL test: consumes with automatic checkpoints
/// and prints every payload until it is killed. Does nothing in a normal run.
#[test]
fn child_consumer_process() {
    let Ok(stream) = std::env::var("KCHECK_CHILD_STREAM") else {
        return;
    };
    let table = std::env::var("KCHECK_CHILD_TABLE").unwrap();
    let kinesis = config_for(&std::env::var("KCHECK_CHILD_KINESIS").unwrap());
    let dynamodb = config_for(&std::env::var("KCHECK_CHILD_DYNAMODB").unwrap());
    let consumer = Consumer::builder(stream)
        .aws_config(kinesis)
        .discovery_interval(DISCOVERY)
        .idle_poll_interval(Duration::from_millis(100))
        .checkpoint_interval(Duration::from_millis(200))
        .checkpointer(
            kcheck::DynamoDbCheckpointer::builder("app")
                .table_name(table)
                .aws_config(dynamodb)
                .session_timeout(SESSION_TIMEOUT)
                .heartbeat_frequency(HEARTBEAT)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    loop {
        if let Some(record) = consumer.next_timeout(Duration::from_millis(100)).unwrap() {
            println!(
                "RECORD {} {} {} {}",
                record.shard_id,
                record.sequence_number,
                record.sub_sequence_number,
                String::from_utf8_lossy(&record.data)
            );
            std::thread::sleep(Duration::from_millis(5)); // processing
        }
    }
}

#[test]
fn a_killed_consumer_loses_its_shards_after_session_timeout_and_nothing_is_lost() {
    let (kinesis, stream) = create_stream(2);
    let table = unique_name("killed");
    let expected = put_payloads(&kinesis, &stream, 0..600);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_consumer_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KCHECK_CHILD_STREAM", stream.as_str())
        .env("KCHECK_CHILD_TABLE", &table)
        .env("KCHECK_CHILD_KINESIS", emulators().kinesis_url())
        .env("KCHECK_CHILD_DYNAMODB", emulators().dynamodb_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // (shard, position, payload) of every record the child processed.
    let mut seen_by_child: Vec<(String, Position, String)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while seen_by_child.len() < 300 && Instant::now() < deadline {
        match lines.next() {
            // libtest may print "test child_consumer_process ... " before the first line.
            Some(Ok(line)) => {
                if let Some(at) = line.find("RECORD ") {
                    let fields: Vec<&str> = line[at + 7..].splitn(4, ' ').collect();
                    let position = Position::new(fields[1], fields[2].parse().unwrap());
                    seen_by_child.push((fields[0].to_owned(), position, fields[3].to_owned()));
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    assert_eq!(seen_by_child.len(), 300, "the child consumed");
    child.kill().unwrap(); // SIGKILL: no final checkpoint, no release
    child.wait().unwrap();
    let killed_at = Instant::now();

    // What the dead consumer had checkpointed.
    let checkpointer = dynamodb_checkpointer("app", &table).build().unwrap();
    let scope = LeaseScope {
        group: "app".into(),
        stream: stream.name().to_owned(),
    };
    let checkpoints: HashMap<String, Option<Checkpoint>> = checkpointer
        .leases(&scope)
        .unwrap()
        .into_iter()
        .map(|l| (l.shard_id, l.checkpoint))
        .collect();
    assert!(
        checkpoints.values().any(Option::is_some),
        "the child checkpointed: {checkpoints:?}"
    );

    let survivor = group_consumer(&stream, "app", &table);
    let first = take(&survivor, 1, WAIT);
    let waited = killed_at.elapsed();
    assert!(
        waited >= SESSION_TIMEOUT,
        "taken after {waited:?}, before the session timeout"
    );
    assert!(waited < SESSION_TIMEOUT * 4, "taken after {waited:?}");
    let mut got = first;
    got.extend(take(&survivor, 600, Duration::from_secs(5)));
    // Nothing at or before a checkpoint comes again...
    for record in &got {
        if let Some(Some(Checkpoint::At(position))) = checkpoints.get(&*record.shard_id) {
            assert!(
                record.position() > *position,
                "{record:?} is before the checkpoint {position}"
            );
        }
    }
    // ...and everything the child did not checkpoint does, including what
    // it had processed after its last checkpoint.
    let survivor_got: HashSet<String> = payloads(&got).into_iter().collect();
    let checkpointed = |shard: &str, position: &Position| {
        checkpoints
            .get(shard)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.covers(position))
    };
    let redelivered_after_crash: Vec<&String> = seen_by_child
        .iter()
        .filter(|(shard, position, _)| !checkpointed(shard, position))
        .map(|(_, _, payload)| payload)
        .collect();
    for payload in &redelivered_after_crash {
        assert!(
            survivor_got.contains(*payload),
            "{payload} was processed after the last checkpoint but not delivered again"
        );
    }
    let done_by_child: HashSet<&String> = seen_by_child
        .iter()
        .filter(|(shard, position, _)| checkpointed(shard, position))
        .map(|(_, _, payload)| payload)
        .collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|p| !survivor_got.contains(*p) && !done_by_child.contains(p))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
}

#[test]
fn a_consumer_whose_lease_is_taken_stops_the_shard_and_cannot_checkpoint_it() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("stolen");
    let consumer = consumer_for(&stream)
        .checkpointer(
            dynamodb_checkpointer("app", &table)
                .auto_checkpoint(false)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    put_payloads(&kinesis, &stream, 0..10);
    let records = take(&consumer, 5, WAIT);
    assert_eq!(records.len(), 5);
    // Someone else takes the lease behind the consumer's back.
    let checkpointer = dynamodb_checkpointer("app", &table).build().unwrap();
    let key = LeaseScope {
        group: "app".into(),
        stream: stream.name().to_owned(),
    }
    .key(&records[0].shard_id);
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
    let lost = wait_until(WAIT, || consumer.stats().lease_losses == 1);
    assert!(lost, "{:?}", consumer.stats());
    assert!(consumer.stats().shards.is_empty());
    // Undelivered records of that shard are dropped: records 5..10 were
    // fetched, but the thief owns them now.
    assert!(take(&consumer, 1, Duration::from_millis(1500)).is_empty());
    // Its checkpoint is refused.
    let error = consumer.checkpoint_record(&records[4]).unwrap_err();
    assert!(matches!(error, Error::LeaseLost { .. }), "{error:?}");
    assert!(consumer.checkpoint().is_err());
}

#[test]
fn two_groups_share_a_table_and_each_reads_everything() {
    let (kinesis, stream) = create_stream(2);
    let table = unique_name("shared");
    let analytics = group_consumer(&stream, "analytics", &table);
    let archival = group_consumer(&stream, "archival", &table);
    let expected = put_payloads(&kinesis, &stream, 0..200);
    let got = drain_records(&[&analytics], 200, WAIT);
    assert_exactly_once(&all_payloads(&got), &expected);
    let got = drain_records(&[&archival], 200, WAIT);
    assert_exactly_once(&all_payloads(&got), &expected);
    assert_eq!(analytics.stats().shards.len(), 2);
    assert_eq!(archival.stats().shards.len(), 2);
}

#[test]
fn one_group_reads_two_streams_through_one_table() {
    let (kinesis, first) = create_stream(2);
    let (_, second) = create_stream(2);
    let table = unique_name("streams");
    let on_first = group_consumer(&first, "app", &table);
    let on_second = group_consumer(&second, "app", &table);
    let expected_first = put_payloads(&kinesis, &first, 0..100);
    let expected_second = put_payloads(&kinesis, &second, 100..200);
    assert_exactly_once(
        &all_payloads(&drain_records(&[&on_first], 100, WAIT)),
        &expected_first,
    );
    assert_exactly_once(
        &all_payloads(&drain_records(&[&on_second], 100, WAIT)),
        &expected_second,
    );
    assert_eq!(on_first.stats().shards.len(), 2);
    assert_eq!(on_second.stats().shards.len(), 2);
}

#[test]
fn owner_ids_are_unique_per_instance() {
    let (_, stream) = create_stream(1);
    let table = unique_name("ids");
    let ids = Mutex::new(HashSet::new());
    for _ in 0..3 {
        let consumer = group_consumer(&stream, "app", &table);
        let id = consumer.owner_id().to_owned();
        assert!(id.contains(&std::process::id().to_string()), "{id}");
        assert!(ids.lock().unwrap().insert(id));
    }
}

#[test]
fn slow_processing_never_costs_the_lease() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("slow");
    let consumer = group_consumer(&stream, "app", &table);
    let rival = group_consumer(&stream, "app", &table);
    let expected = put_payloads(&kinesis, &stream, 0..3);
    let mut got = Vec::new();
    let taken = wait_until(WAIT, || {
        consumer.stats().shards.len() + rival.stats().shards.len() == 1
    });
    assert!(taken, "one of them holds the shard");
    let owner = if consumer.stats().shards.is_empty() {
        &rival
    } else {
        &consumer
    };
    for _ in 0..3 {
        got.extend(payloads(&take(owner, 1, WAIT)));
        std::thread::sleep(SESSION_TIMEOUT + SESSION_TIMEOUT / 2); // "processing"
    }
    assert_eq!(got, expected);
    assert_eq!(owner.stats().lease_losses, 0);
    assert_eq!(owner.stats().shards.len(), 1);
}
