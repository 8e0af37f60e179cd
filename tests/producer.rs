//! The producer against the Kinesis emulator: every record stored, in order
//! per partition key; partial failures resubmitted; failures for good
//! reported; flush and close; per-shard pacing; KPL aggregation read back
//! by the consumer; bad input refused at `put`. A loopback proxy in front
//! of the emulator takes some entries out of PutRecords requests and
//! answers for them with the error a test needs.

#[path = "support/stub_server.rs"]
mod stub_server;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use base64::Engine;
use kcheck::kinesis::{IteratorPosition, KinesisClient, Record, StreamRef};
use kcheck::producer::{ProducerBuilder, RecordStatus};
use kcheck::transport::{AwsConfig, Credentials, Environment, RetryPolicy};
use kcheck::{Error, ErrorCode, Producer};
use kcheck_emulators::{Emulators, Options};
use serde_json::{json, Value};
use stub_server::{forward, StubResponse, StubServer};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

/// Test settings with quick retries, so resubmissions take milliseconds.
fn quick_config(endpoint: &str) -> AwsConfig {
    AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .credentials(Credentials::new("AKIDTEST", "test-secret", None, None))
        .environment(Environment::from_vars(Vec::<(String, String)>::new()))
        .retry_policy(RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(100),
        })
        .build()
        .unwrap()
}

fn producer_for(stream: &StreamRef, endpoint: &str) -> ProducerBuilder {
    Producer::builder(stream.as_str())
        .aws_config(quick_config(endpoint))
        .buffer_time(Duration::from_millis(50))
}

/// Every record of every shard, read from the start until a page is empty.
fn read_all(kinesis: &KinesisClient, stream: &StreamRef) -> Vec<Record> {
    let mut records = Vec::new();
    for shard in kinesis.list_shards(stream, None).unwrap() {
        let mut iterator = kinesis
            .get_shard_iterator(stream, &shard.shard_id, &IteratorPosition::TrimHorizon)
            .unwrap();
        loop {
            let page = kinesis.get_records(&iterator, 10_000).unwrap();
            if page.records.is_empty() {
                break;
            }
            records.extend(page.records);
            match page.page.next_shard_iterator {
                Some(next) => iterator = next,
                None => break,
            }
        }
    }
    records
}

/// Payloads per partition key, in stream order.
fn by_key(records: &[(String, Vec<u8>)]) -> BTreeMap<String, Vec<String>> {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, data) in records {
        keys.entry(key.clone())
            .or_default()
            .push(String::from_utf8(data.clone()).unwrap());
    }
    keys
}

fn stored(kinesis: &KinesisClient, stream: &StreamRef) -> Vec<(String, Vec<u8>)> {
    read_all(kinesis, stream)
        .into_iter()
        .map(|r| (r.partition_key, r.data))
        .collect()
}

/// Puts `count` records over `keys` keys, payload `k{key}-{n}`; returns
/// what each key should hold, in order.
fn put_numbered(producer: &Producer, count: usize, keys: usize) -> BTreeMap<String, Vec<String>> {
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0..count {
        let key = format!("key-{}", n % keys);
        let payload = format!("{key}/{n}");
        producer.put(payload.clone(), &key, None).unwrap();
        expected.entry(key).or_default().push(payload);
    }
    expected
}

/// What the proxy answers for a PutRecords entry instead of forwarding it.
type EntryFault = dyn Fn(&[u8]) -> Option<&'static str> + Send + Sync;

/// A proxy in front of `upstream` that takes entries `fault` picks out of
/// PutRecords requests and answers for each with the error code it names;
/// the rest go on to the emulator and keep their own results.
fn entry_fault_proxy(upstream: String, fault: Arc<EntryFault>) -> StubServer {
    StubServer::start(move |request| {
        if request.header("x-amz-target") != Some("Kinesis_20131202.PutRecords") {
            return forward(&upstream, request);
        }
        let mut body: Value = serde_json::from_slice(&request.body).unwrap();
        let entries = body["Records"].as_array().cloned().unwrap_or_default();
        let mut faults = Vec::new();
        let mut passed = Vec::new();
        for entry in entries {
            let data = base64::engine::general_purpose::STANDARD
                .decode(entry["Data"].as_str().unwrap())
                .unwrap();
            match fault(&data) {
                Some(code) => faults.push(Some(code)),
                None => {
                    faults.push(None);
                    passed.push(entry);
                }
            }
        }
        let mut results = Vec::new();
        if !passed.is_empty() {
            body["Records"] = Value::Array(passed);
            let answer = match forward(&upstream, &request.with_body(&body)) {
                StubResponse::Full {
                    status: 200, body, ..
                } => body,
                other => return other,
            };
            let answer: Value = serde_json::from_slice(&answer).unwrap();
            results = answer["Records"].as_array().cloned().unwrap();
        }
        let mut results = results.into_iter();
        let records: Vec<Value> = faults
            .iter()
            .map(|fault| match fault {
                Some(code) => {
                    json!({"ErrorCode": code, "ErrorMessage": "injected by the test proxy"})
                }
                None => results.next().unwrap(),
            })
            .collect();
        let failed = records
            .iter()
            .filter(|r| r.get("ErrorCode").is_some())
            .count();
        StubResponse::json(
            200,
            &json!({"FailedRecordCount": failed, "Records": records}).to_string(),
        )
    })
}

/// `request` with another JSON body (and its length).

#[test]
fn every_record_is_stored_once_in_order_per_partition_key() {
    let (kinesis, stream) = create_stream(4);
    let producer = producer_for(&stream, &emulators().kinesis_url())
        .build()
        .unwrap();
    let expected = put_numbered(&producer, 3000, 40);
    producer.flush_timeout(WAIT).unwrap();
    let stats = producer.stats();
    assert_eq!(stats.records_put, 3000);
    assert_eq!(stats.records_sent, 3000);
    assert_eq!(stats.records_failed, 0);
    assert_eq!(stats.queue_depth, 0);
    assert_eq!(stats.shards, 4);
    assert_eq!(by_key(&stored(&kinesis, &stream)), expected);
    assert_eq!(
        producer
            .status(kcheck::producer::Ticket::from_u64(2999))
            .unwrap(),
        RecordStatus::Accepted
    );
    producer.close().unwrap();
}

#[test]
fn many_threads_put_through_one_producer() {
    fn shareable<T: Send + Sync>(_: &T) {}
    let (kinesis, stream) = create_stream(2);
    let producer = producer_for(&stream, &emulators().kinesis_url())
        .max_queue_size(300)
        .build()
        .unwrap();
    shareable(&producer);
    let expected: BTreeMap<String, Vec<String>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let producer = &producer;
                scope.spawn(move || {
                    let mut mine: BTreeMap<String, Vec<String>> = BTreeMap::new();
                    for n in 0..500 {
                        let key = format!("t{thread}-{}", n % 7);
                        let payload = format!("{key}/{n}");
                        producer.put(payload.clone(), &key, None).unwrap();
                        mine.entry(key).or_default().push(payload);
                    }
                    mine
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    producer.close().unwrap();
    assert_eq!(producer.stats().records_sent, 2000);
    assert_eq!(by_key(&stored(&kinesis, &stream)), expected);
}

#[test]
fn throttled_entries_are_resubmitted_and_keys_keep_their_order() {
    let (kinesis, stream) = create_stream(2);
    // Every third entry of the first 300 the proxy sees is throttled, and
    // one in twenty fails as an internal failure.
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let proxy = entry_fault_proxy(
        emulators().kinesis_url(),
        Arc::new(move |_| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            match n {
                n if n < 300 && n % 3 == 0 => Some("ProvisionedThroughputExceededException"),
                n if n < 300 && n % 20 == 1 => Some("InternalFailure"),
                _ => None,
            }
        }),
    );
    let producer = producer_for(&stream, proxy.url()).build().unwrap();
    let expected = put_numbered(&producer, 1000, 25);
    producer.flush_timeout(WAIT).unwrap();
    let stats = producer.stats();
    assert_eq!(stats.records_sent, 1000);
    assert!(stats.records_throttled >= 100, "{stats:?}");
    assert!(stats.records_retried > stats.records_throttled, "{stats:?}");
    assert_eq!(by_key(&stored(&kinesis, &stream)), expected);
    producer.close().unwrap();
}

#[test]
fn the_emulators_own_throttling_is_absorbed_without_loss_or_reordering() {
    let emulators = Emulators::start_with(Options {
        enforce_limits: true,
        ..Options::default()
    });
    let kinesis = KinesisClient::new(&quick_config(&emulators.kinesis_url())).unwrap();
    let limited_stream = || {
        let stream = StreamRef::from(unique_name("limited"));
        kinesis.create_stream(stream.as_str(), 1).unwrap();
        kinesis
            .wait_for_stream_active(&stream, Duration::from_secs(10))
            .unwrap();
        stream
    };
    // Paced at four times what the shard takes: the shard refuses the rest.
    let stream = limited_stream();
    let producer = producer_for(&stream, &emulators.kinesis_url())
        .put_rate_limit_per_shard(4000.0)
        .build()
        .unwrap();
    let expected = put_numbered(&producer, 2500, 50);
    producer.flush_timeout(WAIT).unwrap();
    let stats = producer.stats();
    assert_eq!(stats.records_sent, 2500);
    assert!(stats.records_throttled > 0, "{stats:?}");
    assert_eq!(by_key(&stored(&kinesis, &stream)), expected);
    producer.close().unwrap();

    // Paced at the shard's limit (the default), hardly anything is refused.
    let stream = limited_stream();
    let producer = producer_for(&stream, &emulators.kinesis_url())
        .build()
        .unwrap();
    let started = Instant::now();
    let expected = put_numbered(&producer, 2500, 50);
    producer.flush_timeout(WAIT).unwrap();
    let elapsed = started.elapsed();
    let stats = producer.stats();
    assert_eq!(stats.records_sent, 2500);
    // About 2.4 s at 1000 a second; the emulator's one-second windows
    // refuse a few records of each burst (about 5 % on the development
    // machine), which are resubmitted.
    assert!(
        elapsed > Duration::from_secs(2) && elapsed < Duration::from_secs(8),
        "{elapsed:?}"
    );
    assert!(stats.records_throttled < 500, "{stats:?}");
    assert_eq!(by_key(&stored(&kinesis, &stream)), expected);
    producer.close().unwrap();
}

#[test]
fn records_failing_for_good_are_reported_and_the_others_land() {
    let (kinesis, stream) = create_stream(2);
    let proxy = entry_fault_proxy(
        emulators().kinesis_url(),
        Arc::new(|data| data.starts_with(b"poison").then_some("ValidationException")),
    );
    let producer = producer_for(&stream, proxy.url()).build().unwrap();
    let mut poisoned = Vec::new();
    for n in 0..300 {
        let payload = match n % 100 {
            7 => format!("poison-{n}"),
            _ => format!("good-{n}"),
        };
        let ticket = producer
            .put(payload.clone(), &format!("k{n}"), None)
            .unwrap();
        if payload.starts_with("poison") {
            poisoned.push(ticket);
        }
    }
    let error = producer.flush_timeout(WAIT).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("3 records failed for good"), "{message}");
    for ticket in &poisoned {
        assert!(message.contains(&ticket.get().to_string()), "{message}");
        assert_eq!(producer.status(*ticket).unwrap(), RecordStatus::Failed);
    }
    assert_eq!(error.code(), Some(&ErrorCode::Validation));
    assert!(error.is_configuration());
    // Reported once; the failures stay to be taken.
    producer.flush_timeout(WAIT).unwrap();
    let failures = producer.take_failures();
    assert_eq!(
        failures.iter().map(|f| f.ticket).collect::<Vec<_>>(),
        poisoned
    );
    assert_eq!(failures[0].data, b"poison-7");
    assert_eq!(failures[0].partition_key, "k7");
    let stored = stored(&kinesis, &stream);
    assert_eq!(stored.len(), 297);
    assert!(stored.iter().all(|(_, data)| data.starts_with(b"good")));
    assert_eq!(producer.stats().records_failed, 3);
    producer.close().unwrap();
}

#[test]
fn a_deleted_stream_fails_records_for_good() {
    let (kinesis, stream) = create_stream(1);
    let producer = producer_for(&stream, &emulators().kinesis_url())
        .build()
        .unwrap();
    producer.put("before", "k", None).unwrap();
    producer.flush_timeout(WAIT).unwrap();
    kinesis.delete_stream(&stream).unwrap();
    for n in 0..10 {
        producer.put(format!("after-{n}"), "k", None).unwrap();
    }
    let error = producer.close().unwrap_err();
    assert!(error.is_configuration(), "{error}");
    assert!(error.to_string().contains("10 records failed"), "{error}");
    assert_eq!(producer.take_failures().len(), 10);
}

#[test]
fn flush_waits_for_acceptance_and_close_flushes() {
    let (kinesis, stream) = create_stream(1);
    // A buffer time far longer than the test: only flush and close send.
    let producer = producer_for(&stream, &emulators().kinesis_url())
        .buffer_time(Duration::from_secs(600))
        .build()
        .unwrap();
    producer.flush_timeout(WAIT).unwrap(); // nothing to wait for
    for n in 0..5 {
        producer.put(format!("first-{n}"), "k", None).unwrap();
    }
    let started = Instant::now();
    producer.flush_timeout(WAIT).unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(stored(&kinesis, &stream).len(), 5, "flush returned early");
    for n in 0..5 {
        producer.put(format!("second-{n}"), "k", None).unwrap();
    }
    producer.close().unwrap();
    let payloads: Vec<String> = stored(&kinesis, &stream)
        .into_iter()
        .map(|(_, data)| String::from_utf8(data).unwrap())
        .collect();
    assert_eq!(payloads.len(), 10);
    assert_eq!(payloads[9], "second-4");
    let error = producer.put("late", "k", None).unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error}");
    assert!(error.to_string().contains("closed"), "{error}");
    producer.close().unwrap(); // idempotent
}

#[test]
fn a_full_buffer_blocks_put_until_records_are_accepted() {
    let (kinesis, stream) = create_stream(1);
    let stalled = Arc::new(AtomicBool::new(true));
    let stall = Arc::clone(&stalled);
    let upstream = emulators().kinesis_url();
    let proxy = StubServer::start(move |request| {
        let put = request.header("x-amz-target") == Some("Kinesis_20131202.PutRecords");
        if put && stall.load(Ordering::Relaxed) {
            return StubResponse::json(
                400,
                r#"{"__type":"ProvisionedThroughputExceededException","message":"stalled"}"#,
            );
        }
        forward(&upstream, request)
    });
    let producer = producer_for(&stream, proxy.url())
        .max_queue_size(10)
        .build()
        .unwrap();
    for n in 0..10 {
        producer
            .put(format!("r-{n}"), &format!("k{n}"), None)
            .unwrap();
    }
    let error = producer
        .put_timeout("r-10", "k10", None, Duration::from_millis(300))
        .unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error}");
    assert_eq!(producer.stats().queue_depth, 10);
    stalled.store(false, Ordering::Relaxed);
    producer
        .put_timeout("r-10", "k10", None, WAIT)
        .expect("room once records are accepted");
    producer.close().unwrap();
    assert_eq!(stored(&kinesis, &stream).len(), 11);
    assert!(producer.stats().records_retried > 0);
}

/// Explicit hash keys that route to the low and the high half of a
/// two-shard stream.
const LOW: &str = "1000";
const HIGH: &str = "300000000000000000000000000000000000000";

#[test]
fn each_shard_is_paced_at_its_own_limit() {
    let (kinesis, stream) = create_stream(3);
    let limit = 200.0;
    let per_shard = 500;
    let producer = producer_for(&stream, &emulators().kinesis_url())
        .put_rate_limit_per_shard(limit)
        .build()
        .unwrap();
    let shards = kinesis.list_shards(&stream, None).unwrap();
    let started = Instant::now();
    for n in 0..per_shard {
        for shard in &shards {
            // Distinct keys: nothing but the limit holds them back.
            let hash_key = &shard.hash_key_range.starting_hash_key;
            producer
                .put(
                    format!("{n}"),
                    &format!("{}-{n}", shard.shard_id),
                    Some(hash_key),
                )
                .unwrap();
        }
    }
    producer.flush_timeout(WAIT).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    // 500 a shard at 200 a second, less the 20 of the first burst: about
    // 2.4 s with a limit per shard, 7.4 s with one limit for the stream.
    let paced = (per_shard as f64 - limit * 0.1) / limit;
    assert!(
        elapsed > paced * 0.9 && elapsed < paced * 2.0,
        "{elapsed:.2} s, expected about {paced:.2} s"
    );
    // Per shard and arrival second (the emulator's clock has whole
    // seconds), never over the limit and a burst.
    let mut per_second: HashMap<(String, u64), usize> = HashMap::new();
    for record in read_all(&kinesis, &stream) {
        let second = record
            .approximate_arrival_timestamp
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let shard = record
            .partition_key
            .split('-')
            .take(2)
            .collect::<Vec<_>>()
            .join("-");
        *per_second.entry((shard, second)).or_default() += 1;
    }
    let busiest = per_second.values().copied().max().unwrap();
    assert!(
        busiest as f64 <= limit * 1.1 + 5.0,
        "{busiest} records in one second to one shard: {per_second:?}"
    );
    let stats = producer.stats();
    assert_eq!(stats.records_sent, 3 * per_shard as u64);
    assert_eq!(stats.records_throttled, 0);
    producer.close().unwrap();
}

#[test]
fn aggregates_are_read_back_by_the_consumer_exactly() {
    let (kinesis, stream) = create_stream(2);
    let producer = producer_for(&stream, &emulators().kinesis_url())
        .aggregate(true)
        .build()
        .unwrap();
    let mut expected = Vec::new();
    for n in 0..2000 {
        // Some keys are pinned to a shard by an explicit hash key.
        let (key, hash_key) = match n % 7 {
            0 => (format!("pinned-{}", n % 2), Some([LOW, HIGH][n % 2])),
            _ => (format!("key-{}", n % 30), None),
        };
        let data = format!("{key}/{n}");
        producer.put(data.clone(), &key, hash_key).unwrap();
        expected.push((key, data.into_bytes()));
    }
    // Too big to share a Kinesis record: it goes on its own.
    let big = vec![b'b'; 1024 * 1024 - 3];
    producer.put(big.clone(), "big", None).unwrap();
    expected.push(("big".into(), big));
    producer.flush_timeout(WAIT).unwrap();
    let stats = producer.stats();
    assert_eq!(stats.records_sent, 2001);
    assert!(
        stats.kinesis_records_sent < 100,
        "aggregated into {} Kinesis records",
        stats.kinesis_records_sent
    );
    assert_eq!(
        read_all(&kinesis, &stream).len() as u64,
        stats.kinesis_records_sent
    );
    producer.close().unwrap();

    let consumer = consumer_for(&stream).build().unwrap();
    let records = take(&consumer, 2001, WAIT);
    consumer.close().unwrap();
    assert_eq!(records.len(), 2001);
    let got: Vec<(String, Vec<u8>)> = records
        .iter()
        .map(|r| (r.partition_key.clone(), r.data.clone()))
        .collect();
    let (mut sorted_got, mut sorted_expected) = (got.clone(), expected.clone());
    sorted_got.sort();
    sorted_expected.sort();
    assert_eq!(sorted_got, sorted_expected, "the same user records");
    assert_eq!(by_key(&got), by_key(&expected), "in order per key");
    // Explicit hash keys travel inside the aggregates.
    assert!(records
        .iter()
        .any(|r| r.explicit_hash_key.as_deref() == Some(LOW) && r.partition_key == "pinned-0"));
}

#[test]
fn throttled_aggregates_are_resubmitted_whole_and_in_order() {
    let (_, stream) = create_stream(2);
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let proxy = entry_fault_proxy(
        emulators().kinesis_url(),
        Arc::new(move |_| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            (n < 40 && n % 2 == 0).then_some("ProvisionedThroughputExceededException")
        }),
    );
    let producer = producer_for(&stream, proxy.url())
        .aggregate(true)
        .build()
        .unwrap();
    let expected = put_numbered(&producer, 3000, 20);
    producer.flush_timeout(WAIT).unwrap();
    let stats = producer.stats();
    assert_eq!(stats.records_sent, 3000);
    assert!(stats.records_throttled > 0, "{stats:?}");
    producer.close().unwrap();
    let consumer = consumer_for(&stream).build().unwrap();
    let records = take(&consumer, 3000, WAIT);
    consumer.close().unwrap();
    let got: Vec<(String, Vec<u8>)> = records
        .into_iter()
        .map(|r| (r.partition_key, r.data))
        .collect();
    assert_eq!(got.len(), 3000);
    assert_eq!(by_key(&got), expected);
}

#[test]
fn resharding_is_followed() {
    let (kinesis, stream) = create_stream(1);
    let producer = producer_for(&stream, &emulators().kinesis_url())
        .build()
        .unwrap();
    let mut expected = put_numbered(&producer, 200, 10);
    producer.flush_timeout(WAIT).unwrap();
    let parent = kinesis.list_shards(&stream, None).unwrap().remove(0);
    kinesis
        .split_shard(&stream, &parent.shard_id, &(u128::MAX / 2).to_string())
        .unwrap();
    kinesis
        .wait_for_stream_active(&stream, Duration::from_secs(10))
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let mut n = 200;
    while producer.stats().shards < 2 {
        assert!(Instant::now() < deadline, "{:?}", producer.stats());
        let key = format!("key-{}", n % 10);
        let payload = format!("{key}/{n}");
        producer.put(payload.clone(), &key, None).unwrap();
        expected.get_mut(&key).unwrap().push(payload);
        producer.flush_timeout(WAIT).unwrap();
        n += 1;
    }
    assert_eq!(by_key(&stored(&kinesis, &stream)), expected);
    producer.close().unwrap();
}

#[test]
fn bad_partition_keys_and_data_are_refused_at_put() {
    let (_, stream) = create_stream(1);
    let producer = producer_for(&stream, &emulators().kinesis_url())
        .build()
        .unwrap();
    let refused = |data: Vec<u8>, key: &str, hash_key: Option<&str>| {
        let error = producer.put(data, key, hash_key).unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_)), "{error}");
        error.to_string()
    };
    assert!(refused(b"x".to_vec(), "", None)
        .contains("partition key must be 1 to 256 characters, got 0"));
    assert!(refused(b"x".to_vec(), &"k".repeat(257), None).contains("got 257"));
    assert!(refused(vec![0; 1024 * 1024], "k", None).contains("must fit in 1048576 bytes"));
    for bad in ["abc", "-1", "340282366920938463463374607431768211456"] {
        assert!(refused(b"x".to_vec(), "k", Some(bad)).contains("explicit hash key"));
    }
    // The limits themselves are fine: 256 characters, and data that fills
    // the megabyte with its key. (Kinesis counts characters; the emulator
    // counts bytes, so the key here is ASCII.)
    producer.put(b"x".to_vec(), &"k".repeat(256), None).unwrap();
    producer.put(vec![0; 1024 * 1024 - 1], "k", None).unwrap();
    producer
        .put(Vec::new(), "k", Some(&u128::MAX.to_string()))
        .unwrap();
    producer.close().unwrap();
    assert_eq!(producer.stats().records_sent, 3);
}

#[test]
fn bad_options_and_a_missing_stream_are_clear_errors() {
    let url = emulators().kinesis_url();
    let missing = producer_for(&StreamRef::from("no-such-stream"), &url)
        .build()
        .unwrap_err();
    assert!(missing.is_configuration(), "{missing}");
    let (_, stream) = create_stream(1);
    for builder in [
        producer_for(&stream, &url).batch_size(0),
        producer_for(&stream, &url).batch_size(501),
        producer_for(&stream, &url).max_queue_size(0),
        producer_for(&stream, &url).put_rate_limit_per_shard(0.0),
        producer_for(&stream, &url).put_bandwidth_limit_per_shard(f64::NAN),
    ] {
        let error = builder.build().unwrap_err();
        assert!(matches!(error, Error::Config(_)), "{error}");
    }
}
