//! The lease protocol's promises under the faults that once broke them: a
//! lease item deleted by hand, racing checkpoints, LATEST at close, lease
//! writes that hang or whose answer is lost, TTL on items still needed, and
//! an error arriving behind records in a full queue. Each test failed on the
//! code before its fix.

#[path = "support/stub_server.rs"]
mod stub_server;
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcheck::checkpoint::{Checkpoint, Checkpointer, LeaseScope};
use kcheck::dynamodb::{
    item, AttributeValue, DeleteItemRequest, Item, PutItemRequest, ScanRequest,
};
use kcheck::{Consumer, DynamoDbCheckpointer, InitialPosition, Record};
use stub_server::{forward, StubRequest, StubResponse, StubServer};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn checkpointer(group: &str, table: &str) -> DynamoDbCheckpointer {
    dynamodb_checkpointer(group, table).build().unwrap()
}

fn is_update_item(request: &StubRequest) -> bool {
    request.header("x-amz-target") == Some("DynamoDB_20120810.UpdateItem")
}

/// Every stored item of `table`, as written.
fn table_items(table: &str) -> Vec<Item> {
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    client
        .scan_all(&ScanRequest::new(table).consistent_read(true), None)
        .unwrap()
}

/// How often each payload was delivered.
fn counts(records: &[Record]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for payload in payloads(records) {
        *counts.entry(payload).or_default() += 1;
    }
    counts
}

/// Reads until `timeout` passes, whatever arrives.
fn read_for(consumer: &Consumer, timeout: Duration) -> Vec<Record> {
    let deadline = Instant::now() + timeout;
    let mut records = Vec::new();
    while Instant::now() < deadline {
        records.extend(
            consumer
                .next_batch(500, Duration::from_millis(100))
                .unwrap(),
        );
    }
    records
}

#[test]
fn a_lease_item_deleted_by_hand_ends_the_live_tenure_before_the_shard_is_taken_again() {
    let (kinesis, stream) = create_stream(3);
    let table = unique_name("deleted-item");
    // Discovery far more often than heartbeats: the consumer sees the
    // re-created free lease (and, being under its share, takes it) long
    // before its next renewal could tell it the old lease is gone.
    let group = || {
        consumer_for(&stream)
            .discovery_interval(Duration::from_millis(100))
            .checkpointer(
                dynamodb_checkpointer("app", &table)
                    .session_timeout(Duration::from_secs(8))
                    .heartbeat_frequency(Duration::from_secs(3))
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let (a, b) = (group(), group());
    let split = wait_until(WAIT, || {
        let mut counts = [a.stats().shards.len(), b.stats().shards.len()];
        counts.sort_unstable();
        counts == [1, 2]
    });
    assert!(split, "{:?} {:?}", a.stats(), b.stats());
    let (single, other) = if a.stats().shards.len() == 1 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let shard = single.stats().shards[0].shard_id.clone();
    let key = LeaseScope {
        group: "app".into(),
        stream: stream.name().to_owned(),
    }
    .key(&shard);
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    client
        .delete_item(&DeleteItemRequest::new(
            &table,
            item([("shard_id", AttributeValue::s(key))]),
        ))
        .unwrap();
    // Discovery re-creates the item free and the same consumer, under its
    // share, takes it again.
    let taken_again = wait_until(WAIT, || {
        let stats = single.stats();
        stats.lease_losses >= 1 && stats.shards.len() == 1
    });
    assert!(taken_again, "{:?}", single.stats());
    assert_eq!(
        single.stats().lease_losses,
        1,
        "the old tenure ended: {:?}",
        single.stats()
    );
    let expected = put_payloads(&kinesis, &stream, 0..300);
    let received = drain(&[single, other], 300, WAIT);
    std::thread::sleep(Duration::from_secs(1)); // a second tenure would deliver again meanwhile
    let mut records: Vec<Record> = received.into_iter().flatten().map(|(_, r)| r).collect();
    records.extend(read_for(single, Duration::from_millis(500)));
    records.extend(read_for(other, Duration::from_millis(500)));
    let got = counts(&records);
    // Every record once: never from two tenures of one shard.
    for payload in &expected {
        assert_eq!(got.get(payload), Some(&1), "{payload}: {got:?}");
    }
}

#[test]
fn concurrent_checkpoints_never_move_the_stored_checkpoint_backwards() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("racing-checkpoints");
    let store = checkpointer("app", &table);
    let consumer = consumer_for(&stream)
        .checkpointer(store.clone())
        .build()
        .unwrap();
    let scope = LeaseScope {
        group: "app".into(),
        stream: stream.name().to_owned(),
    };
    for round in 0..20 {
        put_payloads(&kinesis, &stream, round * 10..round * 10 + 10);
        let records = take(&consumer, 10, WAIT);
        assert_eq!(records.len(), 10);
        let (newer, older) = (&records[9], &records[4]);
        std::thread::scope(|s| {
            s.spawn(|| consumer.checkpoint_record(newer).unwrap());
            s.spawn(|| {
                std::thread::sleep(Duration::from_micros(300));
                consumer.checkpoint_record(older).unwrap();
            });
        });
        let stored = store.leases(&scope).unwrap()[0].checkpoint.clone();
        assert_eq!(
            stored,
            Some(Checkpoint::At(newer.position())),
            "round {round}: the older checkpoint landed last"
        );
    }
}

#[test]
fn a_latest_consumer_that_closes_before_acknowledging_hands_its_records_on() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("latest-close");
    let latest = |table: &str| {
        consumer_for(&stream)
            .initial_position(InitialPosition::Latest)
            .checkpointer(checkpointer("app", table))
            .build()
            .unwrap()
    };
    put_payloads(&kinesis, &stream, 0..5); // before the group started: never read
    let first = latest(&table);
    // The tenure stores where it starts before it reads.
    let pinned = wait_until(WAIT, || {
        let _ = first.next_timeout(Duration::from_millis(10));
        table_items(&table)
            .iter()
            .any(|item| item.contains_key("start_timestamp"))
    });
    assert!(pinned, "{:?}", table_items(&table));
    std::thread::sleep(Duration::from_secs(1)); // LATEST resolved after the pin
    let expected = put_payloads(&kinesis, &stream, 5..15);
    let got = take(&first, 1, WAIT);
    assert_eq!(payloads(&got), ["payload-5"]);
    first.close().unwrap(); // record 5 returned, nothing acknowledged

    let second = latest(&table);
    let got = counts(&read_for(&second, Duration::from_secs(5)));
    for payload in &expected {
        assert!(got.contains_key(payload), "{payload} was skipped: {got:?}");
    }
}

/// While a producer writes to the 1-shard `stream` from record `first` on,
/// `owner` and `successor` read until the successor holds the shard (and a
/// second more), and checks that the owner stopped before the
/// successor began: never two owners delivering at once. Returns the old
/// owner's last delivery.
fn handover_times(
    kinesis: &kcheck::kinesis::KinesisClient,
    stream: &kcheck::kinesis::StreamRef,
    first: usize,
    owner: &Consumer,
    successor: &Consumer,
) -> Instant {
    let running = AtomicBool::new(true);
    let deliveries: Mutex<Vec<(bool, Instant)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut next = first;
            while running.load(Ordering::SeqCst) {
                put_payloads(kinesis, stream, next..next + 5);
                next += 5;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        for (is_owner, consumer) in [(true, owner), (false, successor)] {
            let (deliveries, running) = (&deliveries, &running);
            s.spawn(move || {
                while running.load(Ordering::SeqCst) {
                    let batch = consumer.next_batch(100, Duration::from_millis(50)).unwrap();
                    if !batch.is_empty() {
                        deliveries.lock().unwrap().push((is_owner, Instant::now()));
                    }
                }
            });
        }
        wait_until(WAIT, || successor.stats().shards.len() == 1);
        std::thread::sleep(Duration::from_secs(1));
        running.store(false, Ordering::SeqCst);
    });
    let deliveries = deliveries.into_inner().unwrap();
    let times = |of_owner: bool| {
        deliveries
            .iter()
            .filter(move |(o, _)| *o == of_owner)
            .map(|(_, t)| *t)
    };
    let (Some(last_owner), Some(first_successor)) = (times(true).max(), times(false).min()) else {
        panic!("both consumers should have delivered: {deliveries:?}");
    };
    assert!(
        last_owner < first_successor,
        "the old owner delivered {:?} after its successor started",
        last_owner - first_successor
    );
    last_owner
}

/// A DynamoDB proxy that answers every request normally until `hang` is
/// set, then holds lease writes (UpdateItem) unanswered for `hold`.
fn hanging_dynamodb(hang: Arc<AtomicBool>, hold: Duration) -> StubServer {
    let upstream = emulators().dynamodb_url();
    StubServer::start(move |request| {
        if is_update_item(request) && hang.load(Ordering::SeqCst) {
            std::thread::sleep(hold);
            return StubResponse::Drop;
        }
        forward(&upstream, request)
    })
}

#[test]
fn an_owner_whose_lease_writes_hang_stops_delivering_before_another_takes_over() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("hung-renewals");
    let hang = Arc::new(AtomicBool::new(false));
    let proxy = hanging_dynamodb(hang.clone(), Duration::from_secs(20));
    let hung = consumer_for(&stream)
        .checkpointer(
            dynamodb_checkpointer("app", &table)
                .aws_config(config_for(proxy.url()))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    put_payloads(&kinesis, &stream, 0..10);
    assert_eq!(take(&hung, 10, WAIT).len(), 10);
    let other = consumer_for(&stream)
        .checkpointer(checkpointer("app", &table))
        .build()
        .unwrap();

    hang.store(true, Ordering::SeqCst);
    let hung_at = Instant::now();
    let last_hung = handover_times(&kinesis, &stream, 10, &hung, &other);
    assert!(
        last_hung - hung_at < SESSION_TIMEOUT,
        "fenced within session_timeout"
    );
    assert!(hung.stats().lease_losses >= 1, "{:?}", hung.stats());
    // Close returns in bounded time although every lease write hangs.
    let closing = Instant::now();
    let _ = hung.close();
    assert!(
        closing.elapsed()
            < SESSION_TIMEOUT + kcheck::consumer::CLOSE_GRACE + Duration::from_secs(2),
        "close took {:?}",
        closing.elapsed()
    );
}

#[test]
fn a_lease_write_whose_answer_is_lost_is_not_taken_for_a_lost_lease() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("lost-answers");
    let drop_answers = Arc::new(AtomicU32::new(0));
    let dropped = drop_answers.clone();
    let upstream = emulators().dynamodb_url();
    let proxy = StubServer::start(move |request| {
        let response = forward(&upstream, request);
        let lose = is_update_item(request)
            && dropped
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        // Applied by DynamoDB, but the client never hears of it.
        if lose {
            StubResponse::Drop
        } else {
            response
        }
    });
    let consumer = consumer_for(&stream)
        .checkpointer(
            dynamodb_checkpointer("app", &table)
                .aws_config(config_for(proxy.url()))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    put_payloads(&kinesis, &stream, 0..10);
    assert_eq!(take(&consumer, 10, WAIT).len(), 10);
    drop_answers.store(3, Ordering::SeqCst);
    assert!(wait_until(WAIT, || drop_answers.load(Ordering::SeqCst) == 0));
    std::thread::sleep(HEARTBEAT * 4);
    let stats = consumer.stats();
    assert_eq!(stats.lease_losses, 0, "{stats:?}");
    assert_eq!(stats.shards.len(), 1, "{stats:?}");
    let expected = put_payloads(&kinesis, &stream, 10..20);
    assert_eq!(payloads(&take(&consumer, 10, WAIT)), expected);
    consumer.checkpoint().unwrap();
}

#[test]
fn lease_items_expire_only_after_their_shard_has_left_the_stream() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("ttl");
    let store = dynamodb_checkpointer("app", &table)
        .ttl_hours(1)
        .build()
        .unwrap();
    store.prepare().unwrap();
    let scope = LeaseScope {
        group: "app".into(),
        stream: stream.name().to_owned(),
    };
    let client = store.client();
    let lease_item = |shard: &str, ttl: u64| {
        item([
            ("shard_id", AttributeValue::s(scope.key(shard))),
            ("app", AttributeValue::s("app")),
            ("stream", AttributeValue::s(stream.name())),
            ("shard", AttributeValue::s(shard)),
            ("lease_counter", AttributeValue::n(0)),
            ("sequence", AttributeValue::s("SHARD_END")),
            ("ttl", AttributeValue::n(ttl)),
        ])
    };
    // A live shard's item as older versions wrote it (expiring soon), and
    // the finished item of a parent that has left the stream.
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let mut live = lease_item("shardId-000000000000", soon);
    live.remove("sequence");
    client.put_item(&PutItemRequest::new(&table, live)).unwrap();
    let mut gone = lease_item("shardId-000000000099", 0);
    gone.remove("ttl");
    client.put_item(&PutItemRequest::new(&table, gone)).unwrap();

    let consumer = consumer_for(&stream)
        .checkpointer(store.clone())
        .build()
        .unwrap();
    put_payloads(&kinesis, &stream, 0..5);
    assert_eq!(take(&consumer, 5, WAIT).len(), 5);
    let by_shard = |items: &[Item]| -> HashMap<String, Option<u64>> {
        items
            .iter()
            .map(|item| {
                (
                    item["shard"].as_s().unwrap().to_owned(),
                    item.get("ttl").and_then(AttributeValue::as_u64),
                )
            })
            .collect()
    };
    let settled = wait_until(WAIT, || {
        let ttls = by_shard(&table_items(&table));
        ttls["shardId-000000000000"].is_none() && ttls["shardId-000000000099"].is_some()
    });
    let ttls = by_shard(&table_items(&table));
    assert!(settled, "{ttls:?}");
    assert!(
        ttls["shardId-000000000099"].unwrap() > soon + 3000,
        "expires ttl_hours from now: {ttls:?}"
    );
    // Writes of the live lease never bring an expiry back.
    consumer.checkpoint().unwrap();
    std::thread::sleep(HEARTBEAT * 3);
    assert_eq!(by_shard(&table_items(&table))["shardId-000000000000"], None);
}

#[test]
fn an_error_behind_records_is_the_next_calls_answer() {
    let (kinesis, stream) = create_stream(2);
    // Shard 0 gets two pages of 5 records; shard 1's first read is denied.
    // The proxy orders them in the queue: page 1, the error, page 2.
    let entries: Vec<_> = (0..10)
        .map(|i| kcheck::kinesis::PutRecordsEntry {
            explicit_hash_key: Some("0".into()),
            ..kcheck::kinesis::PutRecordsEntry::new("k", format!("r{i}").into_bytes())
        })
        .collect();
    kinesis.put_records_all(&stream, &entries).unwrap();
    #[derive(Default)]
    struct Order {
        first_page_served: bool,
        denied_at: Option<Instant>,
        shard0_pages: u32,
    }
    let order = Arc::new(Mutex::new(Order::default()));
    let shard1_iterators = Arc::new(Mutex::new(Vec::<String>::new()));
    let (state, iterators, upstream) = (
        order.clone(),
        shard1_iterators.clone(),
        emulators().kinesis_url(),
    );
    let proxy = StubServer::start(move |request| {
        let target = request.header("x-amz-target").unwrap_or("");
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
        if target.ends_with(".GetRecords") {
            let iterator = body["ShardIterator"].as_str().unwrap_or("");
            let denied_once = state.lock().unwrap().denied_at.is_some();
            if !denied_once && iterators.lock().unwrap().iter().any(|i| i == iterator) {
                let _ = wait_until(WAIT, || state.lock().unwrap().first_page_served);
                state.lock().unwrap().denied_at = Some(Instant::now());
                return StubResponse::json(
                    400,
                    r#"{"__type":"AccessDeniedException","message":"denied"}"#,
                );
            }
            let page = {
                let mut state = state.lock().unwrap();
                state.shard0_pages += 1;
                state.shard0_pages
            };
            if page == 2 {
                // After the error has been queued.
                let _ = wait_until(WAIT, || {
                    state
                        .lock()
                        .unwrap()
                        .denied_at
                        .is_some_and(|at| at.elapsed() > Duration::from_millis(500))
                });
            }
            let response = forward(&upstream, request);
            state.lock().unwrap().first_page_served = true;
            return response;
        }
        let response = forward(&upstream, request);
        if target.ends_with(".GetShardIterator") && body["ShardId"] == "shardId-000000000001" {
            if let StubResponse::Full { body, .. } = &response {
                let answer: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                if let Some(iterator) = answer["ShardIterator"].as_str() {
                    iterators.lock().unwrap().push(iterator.to_owned());
                }
            }
        }
        response
    });
    let consumer = consumer_for(&stream)
        .aws_config(config_for(proxy.url()))
        .record_limit(5)
        .build()
        .unwrap();
    // Let all three items reach the queue before reading.
    let queued = wait_until(WAIT, || order.lock().unwrap().shard0_pages >= 3);
    assert!(queued, "the second page was served");
    std::thread::sleep(Duration::from_millis(300));
    let first = consumer.next_batch(100, WAIT).unwrap();
    assert_eq!(payloads(&first), ["r0", "r1", "r2", "r3", "r4"]);
    // The error that came after them is the very next answer: not re-queued
    // behind records that arrived since (nor blocking on a full queue).
    let error = consumer.next_batch(100, WAIT).unwrap_err();
    assert!(error.is_configuration(), "{error}");
    let second = consumer.next_batch(100, WAIT).unwrap();
    assert_eq!(payloads(&second), ["r5", "r6", "r7", "r8", "r9"]);
}

#[test]
fn a_fetcher_stuck_in_get_records_never_stalls_the_renewal_of_other_leases() {
    let (kinesis, stream) = create_stream(3);
    let table = unique_name("stuck-fetcher");
    let hold = Arc::new(AtomicBool::new(false));
    let holding = hold.clone();
    let upstream = emulators().kinesis_url();
    // GetRecords calls sent while `hold` is set are answered 12 s late.
    let proxy = StubServer::start(move |request| {
        let is_get_records = request.header("x-amz-target") == Some("Kinesis_20131202.GetRecords");
        if is_get_records && holding.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(12));
        }
        forward(&upstream, request)
    });
    let group = || {
        consumer_for(&stream)
            .checkpointer(checkpointer("app", &table))
            .discovery_interval(Duration::from_millis(200))
    };
    let stuck = group().aws_config(config_for(proxy.url())).build().unwrap();
    put_payloads(&kinesis, &stream, 0..30);
    assert_eq!(take(&stuck, 30, WAIT).len(), 30);
    hold.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500)); // every fetcher is inside a held call
    let newcomer = group().build().unwrap();

    // shard -> (consumer, when) of every batch delivered
    let deliveries: Mutex<Vec<(String, &str, Instant)>> = Mutex::new(Vec::new());
    let running = AtomicBool::new(true);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut next = 30;
            while running.load(Ordering::SeqCst) {
                put_payloads(&kinesis, &stream, next..next + 6);
                next += 6;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        for (name, consumer) in [("stuck", &stuck), ("newcomer", &newcomer)] {
            let (deliveries, running) = (&deliveries, &running);
            s.spawn(move || {
                while running.load(Ordering::SeqCst) {
                    for record in consumer.next_batch(100, Duration::from_millis(50)).unwrap() {
                        let shard = record.shard_id.to_string();
                        deliveries
                            .lock()
                            .unwrap()
                            .push((shard, name, Instant::now()));
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(16)); // past the held calls
        running.store(false, Ordering::SeqCst);
    });
    let stats = stuck.stats();
    assert_eq!(stats.lease_losses, 0, "renewals went on: {stats:?}");
    assert_eq!(stats.shards.len(), 2, "{stats:?}");
    assert_eq!(newcomer.stats().shards.len(), 1);
    // Per shard, one owner after the other, never both at once.
    let deliveries = deliveries.into_inner().unwrap();
    for shard in [
        "shardId-000000000000",
        "shardId-000000000001",
        "shardId-000000000002",
    ] {
        let mut owners: Vec<(&str, Instant)> = deliveries
            .iter()
            .filter(|(s, _, _)| s == shard)
            .map(|(_, name, at)| (*name, *at))
            .collect();
        owners.sort_by_key(|(_, at)| *at);
        owners.dedup_by_key(|(name, _)| *name);
        assert!(owners.len() <= 2, "{shard} went back and forth: {owners:?}");
        if let [first, _] = owners[..] {
            assert_eq!(first.0, "stuck", "{shard}: {owners:?}");
        }
    }
}

#[test]
fn a_latest_iterator_that_expires_before_anything_was_sent_resumes_at_the_pin() {
    let emulators = kcheck_emulators::Emulators::start_with(kcheck_emulators::Options {
        iterator_ttl_seconds: 1,
        ..kcheck_emulators::Options::default()
    });
    let kinesis =
        kcheck::kinesis::KinesisClient::new(&config_for(&emulators.kinesis_url())).unwrap();
    let stream = kcheck::kinesis::StreamRef::from("latest-expiring");
    kinesis.create_stream(stream.name(), 1).unwrap();
    kinesis
        .wait_for_stream_active(&stream, Duration::from_secs(10))
        .unwrap();
    // GetRecords is throttled until `open`: the fetcher backs off holding
    // the iterator LATEST gave it, which expires meanwhile.
    let open = Arc::new(AtomicBool::new(false));
    let (opened, upstream) = (open.clone(), emulators.kinesis_url());
    let proxy = StubServer::start(move |request| {
        let target = request.header("x-amz-target").unwrap_or("");
        if target.ends_with(".GetRecords") && !opened.load(Ordering::SeqCst) {
            return StubResponse::json(
                400,
                r#"{"__type":"ProvisionedThroughputExceededException","message":"slow down"}"#,
            );
        }
        forward(&upstream, request)
    });
    let consumer = consumer_for(&stream)
        .aws_config(config_for(proxy.url()))
        .initial_position(InitialPosition::Latest)
        .build()
        .unwrap();
    let throttled = wait_until(WAIT, || {
        consumer
            .stats()
            .shards
            .first()
            .is_some_and(|s| s.throttles > 0)
    });
    assert!(throttled, "{:?}", consumer.stats());
    let expected = put_payloads(&kinesis, &stream, 0..10);
    std::thread::sleep(Duration::from_millis(1500)); // the iterator expires
    open.store(true, Ordering::SeqCst);
    assert_eq!(payloads(&take(&consumer, 10, WAIT)), expected);
}

#[test]
fn a_lease_is_timed_from_when_its_take_was_sent_not_from_its_late_answer() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("late-answer");
    let lease_writes = Arc::new(AtomicU32::new(0));
    let (writes, upstream) = (lease_writes.clone(), emulators().dynamodb_url());
    // The take lands at once but is answered 2 s late; every later lease
    // write hangs, so nothing renews the lease.
    let proxy = StubServer::start(move |request| {
        if !is_update_item(request) {
            return forward(&upstream, request);
        }
        if writes.fetch_add(1, Ordering::SeqCst) == 0 {
            let response = forward(&upstream, request);
            std::thread::sleep(Duration::from_secs(2));
            return response;
        }
        std::thread::sleep(Duration::from_secs(20));
        StubResponse::Drop
    });
    put_payloads(&kinesis, &stream, 0..10);
    let late = consumer_for(&stream)
        .checkpointer(
            dynamodb_checkpointer("app", &table)
                .aws_config(config_for(proxy.url()))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert!(wait_until(WAIT, || lease_writes.load(Ordering::SeqCst) > 0));
    let take_sent = Instant::now();
    let other = consumer_for(&stream)
        .checkpointer(checkpointer("app", &table))
        .build()
        .unwrap();
    let last_late = handover_times(&kinesis, &stream, 10, &late, &other);
    // Its lease ran from the take's sending, not from the answer 2 s later.
    assert!(
        last_late < take_sent + SESSION_TIMEOUT,
        "delivered until {:?} after the take was sent",
        last_late - take_sent
    );
    drop(late);
}
