//! One test per promise of README's Guarantees and Configuration sections
//! that no other test file covers. The lease table is inspected through the
//! DynamoDB API, and calls are counted by loopback proxies in front of the
//! emulators, so no test takes the library's word for what it did.

#[path = "support/stub_server.rs"]
mod stub_server;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kcheck::checkpoint::Checkpointer;
use kcheck::dynamodb::{
    item, AttributeDefinition, AttributeValue, BillingMode, DynamoDbClient, Item, KeySchemaElement,
    KeyType, PutItemRequest, ScalarAttributeType, ScanRequest, TableRequest, TimeToLiveStatus,
    UpdateItemRequest,
};
use kcheck::kinesis::{KinesisClient, StreamRef};
use kcheck::{
    AwsConfig, Consumer, Credentials, Environment, Error, ErrorCode, InitialPosition,
    MemoryCheckpointer, RetryPolicy,
};
use serde_json::Value;
use stub_server::{forward, StubRequest, StubResponse, StubServer};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The operation of an AWS JSON request, e.g. `GetRecords` or `UpdateItem`.
fn operation(request: &StubRequest) -> &str {
    request
        .header("x-amz-target")
        .and_then(|target| target.split('.').nth(1))
        .unwrap_or("")
}

/// One request a [`Recorder`] passed on.
struct Call {
    at: Instant,
    operation: String,
    body: Value,
}

/// A loopback proxy in front of an emulator that notes every request (when,
/// which operation, what body) before forwarding it.
struct Recorder {
    proxy: StubServer,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Recorder {
    fn in_front_of(upstream: String) -> Recorder {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let noted = calls.clone();
        let proxy = StubServer::start(move |request| {
            noted.lock().unwrap().push(Call {
                at: Instant::now(),
                operation: operation(request).to_owned(),
                body: serde_json::from_slice(&request.body).unwrap_or_default(),
            });
            forward(&upstream, request)
        });
        Recorder { proxy, calls }
    }

    fn config(&self) -> AwsConfig {
        config_for(self.proxy.url())
    }

    /// When each call of `operation` whose body satisfies `filter` arrived.
    fn times(&self, operation: &str, filter: impl Fn(&Value) -> bool) -> Vec<Instant> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|call| call.operation == operation && filter(&call.body))
            .map(|call| call.at)
            .collect()
    }

    /// Bodies of the calls of `operation` whose body satisfies `filter`.
    fn bodies(&self, operation: &str, filter: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|call| call.operation == operation && filter(&call.body))
            .map(|call| call.body.clone())
            .collect()
    }
}

fn any(_: &Value) -> bool {
    true
}

/// An UpdateItem that stores a checkpoint (`sequence`).
fn writes_checkpoint(body: &Value) -> bool {
    body["UpdateExpression"]
        .as_str()
        .is_some_and(|expression| expression.contains("#seq = :seq"))
}

/// An UpdateItem that asks an owner to hand its lease over.
fn asks_for_handover(body: &Value) -> bool {
    body["UpdateExpression"]
        .as_str()
        .is_some_and(|expression| expression.starts_with("SET handoff_to"))
}

/// How many of `times` fall in `[from, from + window)`.
fn count_within(times: &[Instant], from: Instant, window: Duration) -> usize {
    times
        .iter()
        .filter(|at| **at >= from && **at < from + window)
        .count()
}

/// Every item of `table`, read through the DynamoDB API.
fn table_items(table: &str) -> Vec<Item> {
    DynamoDbClient::new(&dynamodb_config())
        .unwrap()
        .scan_all(&ScanRequest::new(table).consistent_read(true), None)
        .unwrap()
}

/// The item of `shard` in `table`, found by its `shard` attribute.
fn item_of(table: &str, shard: &str) -> Option<Item> {
    table_items(table)
        .into_iter()
        .find(|item| item.get("shard").and_then(AttributeValue::as_s) == Some(shard))
}

fn epoch_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Reads from every consumer (so hand-overs can complete) until each holds
/// as many shards as `expected` says, in that order.
fn wait_for_shard_counts(consumers: &[&Consumer], expected: &[usize]) {
    let counts = || -> Vec<usize> { consumers.iter().map(|c| c.stats().shards.len()).collect() };
    let reached = wait_until(WAIT, || {
        for consumer in consumers {
            while consumer
                .next_timeout(Duration::from_millis(1))
                .unwrap()
                .is_some()
            {}
        }
        counts() == expected
    });
    assert!(reached, "expected {expected:?} shards, got {:?}", counts());
}

/// Splits the stream's only shard in half and waits until it is active.
fn split_the_only_shard(kinesis: &KinesisClient, stream: &StreamRef) -> String {
    let parent = kinesis.list_shards(stream, None).unwrap().remove(0);
    let start: u128 = parent.hash_key_range.starting_hash_key.parse().unwrap();
    let end: u128 = parent.hash_key_range.ending_hash_key.parse().unwrap();
    kinesis
        .split_shard(
            stream,
            &parent.shard_id,
            &(start + (end - start) / 2).to_string(),
        )
        .unwrap();
    kinesis
        .wait_for_stream_active(stream, Duration::from_secs(10))
        .unwrap();
    parent.shard_id
}

/// A log line as the capturing logger saw it.
#[derive(Debug, Clone)]
struct LogLine {
    level: log::Level,
    target: String,
    message: String,
}

/// The logger of this test binary: keeps every line.
struct CapturingLogger {
    lines: Mutex<Vec<LogLine>>,
}

impl log::Log for CapturingLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        self.lines.lock().unwrap().push(LogLine {
            level: record.level(),
            target: record.target().to_owned(),
            message: record.args().to_string(),
        });
    }

    fn flush(&self) {}
}

static LOGGER: CapturingLogger = CapturingLogger {
    lines: Mutex::new(Vec::new()),
};

/// Starts capturing every log line of this process (down to debug: ureq's
/// trace level dumps every byte sent and received, and kcheck has none).
fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&LOGGER).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// Every line captured so far that satisfies `filter`.
fn logged(filter: impl Fn(&LogLine) -> bool) -> Vec<LogLine> {
    LOGGER
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|line| filter(line))
        .cloned()
        .collect()
}

/// The first line starting with `prefix` (lease events start with the
/// owner id); fails unless it is at `level` with a `kcheck::consumer` target.
fn assert_logged(prefix: &str, level: log::Level) -> LogLine {
    let lines = logged(|line| line.message.starts_with(prefix));
    let Some(line) = lines.first() else {
        panic!("nothing logged starting with {prefix:?}");
    };
    assert_eq!(line.level, level, "{line:?}");
    assert!(line.target.starts_with("kcheck::consumer"), "{line:?}");
    line.clone()
}

// ---------------------------------------------------------------------------
// Guarantees
// ---------------------------------------------------------------------------

#[test]
fn a_full_channel_blocks_the_fetcher_until_the_caller_reads() {
    let (kinesis, stream) = create_stream(1);
    let expected = put_payloads(&kinesis, &stream, 0..200);
    let kinesis_calls = Recorder::in_front_of(emulators().kinesis_url());
    // The queue holds 4 records; the first page of 10 cannot fit.
    let consumer = consumer_for(&stream)
        .aws_config(kinesis_calls.config())
        .max_queue_size(4)
        .record_limit(10)
        .build()
        .unwrap();
    let get_records = || kinesis_calls.times("GetRecords", any).len();
    let fetched = || consumer.stats().shards.first().map_or(0, |s| s.records);
    assert!(wait_until(WAIT, || fetched() >= 4), "the queue filled");
    let blocked_at = get_records();
    // Unblocked, the fetcher would call about 5 times in this window.
    let window = Duration::from_secs(1);
    std::thread::sleep(window);
    assert_eq!(
        get_records(),
        blocked_at,
        "the fetcher went on while the queue was full"
    );
    assert!(
        fetched() <= 5,
        "more decoded than the queue and one chunk hold: {}",
        fetched()
    );
    let got = payloads(&take(&consumer, 200, WAIT));
    assert_eq!(got, expected, "every record once, in order");
    assert!(
        get_records() >= 20,
        "the fetcher resumed: {} calls",
        get_records()
    );
}

/// A DynamoDB proxy through which a consumer's lease writes stamp `ts` with
/// a clock `skew` seconds off (ahead when positive); all else passes as is.
fn skewed_clock(skew: i64) -> StubServer {
    let upstream = emulators().dynamodb_url();
    StubServer::start(move |request| {
        let mut body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let now = body["ExpressionAttributeValues"][":now"]["N"]
            .as_str()
            .and_then(|n| n.parse::<i64>().ok());
        let Some(now) = now else {
            return forward(&upstream, request);
        };
        body["ExpressionAttributeValues"][":now"]["N"] = Value::from((now + skew).to_string());
        let mut skewed = request.clone();
        skewed.body = serde_json::to_vec(&body).unwrap();
        for (name, value) in &mut skewed.headers {
            if name == "content-length" {
                *value = skewed.body.len().to_string();
            }
        }
        forward(&upstream, &skewed)
    })
}

/// A live owner whose clock is `skew` seconds off keeps its lease against a
/// rival that wants it, for twice the session timeout.
fn rival_never_takes_a_lease_renewed_with_skewed_ts(skew: i64) {
    let (_, stream) = create_stream(1);
    let table = unique_name("skew");
    let proxy = skewed_clock(skew);
    let owner = consumer_for(&stream)
        .checkpointer(
            dynamodb_checkpointer("app", &table)
                .aws_config(config_for(proxy.url()))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let stamped = |item: &Item| item["ts"].as_u64().unwrap() as i64 - epoch_seconds() as i64;
    let skewed = wait_until(WAIT, || {
        owner.stats().shards.len() == 1
            && item_of(&table, "shardId-000000000000")
                .is_some_and(|item| (stamped(&item) - skew).abs() < 600)
    });
    assert!(skewed, "{:?}", item_of(&table, "shardId-000000000000"));
    let counter = || item_of(&table, "shardId-000000000000").unwrap()["lease_counter"].as_u64();
    let counter_before = counter();

    let rival = consumer_for(&stream)
        .checkpointer(dynamodb_checkpointer("app", &table).build().unwrap())
        .build()
        .unwrap();
    let stolen = wait_until(SESSION_TIMEOUT * 2, || rival.stats().lease_gains > 0);
    assert!(!stolen, "skew {skew} s: {:?}", rival.stats());
    let stats = owner.stats();
    assert_eq!(
        (stats.lease_losses, stats.shards.len()),
        (0, 1),
        "{stats:?}"
    );
    let item = item_of(&table, "shardId-000000000000").unwrap();
    assert_eq!(item["ref"].as_s(), Some(owner.owner_id()));
    assert!(counter() > counter_before, "the owner renewed: {item:?}");
    assert!(
        (stamped(&item) - skew).abs() < 600,
        "still skewed: {item:?}"
    );
}

#[test]
fn clock_skew_cannot_steal_a_live_lease() {
    const DAY: i64 = 24 * 3600;
    std::thread::scope(|scope| {
        let behind = scope.spawn(|| rival_never_takes_a_lease_renewed_with_skewed_ts(-DAY));
        let ahead = scope.spawn(|| rival_never_takes_a_lease_renewed_with_skewed_ts(DAY));
        behind.join().unwrap();
        ahead.join().unwrap();
    });
}

#[test]
fn a_consumer_under_its_share_asks_the_most_loaded_owner_one_lease_per_cycle() {
    let (_, stream) = create_stream(6);
    let table = unique_name("most-loaded");
    let group = || dynamodb_checkpointer("app", &table);
    let most_loaded = consumer_for(&stream)
        .checkpointer(group().build().unwrap())
        .build()
        .unwrap();
    wait_for_shard_counts(&[&most_loaded], &[6]);
    let least_loaded = consumer_for(&stream)
        .max_shard_consumers(1)
        .checkpointer(group().build().unwrap())
        .build()
        .unwrap();
    wait_for_shard_counts(&[&most_loaded, &least_loaded], &[5, 1]);

    let cycle = Duration::from_millis(600);
    let asker_calls = Recorder::in_front_of(emulators().dynamodb_url());
    let asker = consumer_for(&stream)
        .discovery_interval(cycle)
        .checkpointer(group().aws_config(asker_calls.config()).build().unwrap())
        .build()
        .unwrap();
    // Its share is ceil(6 / 3) = 2; the most loaded has 5, the other 1.
    wait_for_shard_counts(&[&most_loaded, &least_loaded, &asker], &[3, 1, 2]);

    let requests = asker_calls.bodies("UpdateItem", asks_for_handover);
    assert!(requests.len() >= 2, "{requests:?}");
    for request in &requests {
        let values = &request["ExpressionAttributeValues"];
        assert_eq!(values[":owner"]["S"], most_loaded.owner_id(), "{request}");
        assert_eq!(values[":asker"]["S"], asker.owner_id(), "{request}");
    }
    let times = asker_calls.times("UpdateItem", asks_for_handover);
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= cycle / 2,
            "two hand-overs asked {:?} apart, within one cycle",
            pair[1] - pair[0]
        );
    }
    assert_eq!(most_loaded.stats().handoffs_given, 3);
    assert_eq!(least_loaded.stats().handoffs_given, 0);
    assert_eq!(asker.stats().handoffs_received, 2);
}

/// A Kinesis proxy whose ListShards answers leave `hidden` out, as Kinesis
/// does once a shard has left the stream's retention.
fn hiding_shard(hidden: String) -> StubServer {
    let upstream = emulators().kinesis_url();
    StubServer::start(move |request| {
        let response = forward(&upstream, request);
        match response {
            StubResponse::Full {
                status: 200,
                content_type,
                body,
            } if operation(request) == "ListShards" => {
                let mut answer: Value = serde_json::from_slice(&body).unwrap();
                if let Some(shards) = answer["Shards"].as_array_mut() {
                    shards.retain(|shard| shard["ShardId"] != hidden.as_str());
                }
                StubResponse::Full {
                    status: 200,
                    content_type,
                    body: serde_json::to_vec(&answer).unwrap(),
                }
            }
            other => other,
        }
    })
}

#[test]
fn children_of_a_parent_that_left_retention_start_without_it() {
    let (kinesis, stream) = create_stream(1);
    put_payloads(&kinesis, &stream, 0..50); // into the parent, never read
    let parent = split_the_only_shard(&kinesis, &stream);
    let in_children = put_payloads(&kinesis, &stream, 50..150);
    let proxy = hiding_shard(parent);
    // The parent never checkpointed SHARD_END: it has no lease at all.
    let consumer = consumer_for(&stream)
        .aws_config(config_for(proxy.url()))
        .build()
        .unwrap();
    let got: HashSet<String> = payloads(&take(&consumer, in_children.len(), WAIT))
        .into_iter()
        .collect();
    assert_eq!(got, in_children.into_iter().collect::<HashSet<_>>());
}

#[test]
fn children_start_at_trim_horizon_under_a_latest_consumer() {
    let (kinesis, stream) = create_stream(1);
    put_payloads(&kinesis, &stream, 0..10); // before the start: LATEST skips them
    let store = MemoryCheckpointer::new();
    let consumer = consumer_for(&stream)
        .initial_position(InitialPosition::Latest)
        .checkpointer(store.clone())
        .build()
        .unwrap();
    let scope = kcheck::checkpoint::LeaseScope {
        group: store.group().to_owned(),
        stream: stream.name().to_owned(),
    };
    // The parent's tenure pins where LATEST put it before it reads.
    let reading = wait_until(WAIT, || {
        store
            .leases(&scope)
            .unwrap()
            .iter()
            .any(|lease| lease.start.is_some())
    });
    assert!(reading, "{:?}", store.leases(&scope));
    split_the_only_shard(&kinesis, &stream);
    // Written before any child can start: the caller has not yet taken the
    // parent's end, so the parent is not finished.
    let in_children = put_payloads(&kinesis, &stream, 10..110);
    let got: HashSet<String> = payloads(&take(&consumer, in_children.len(), WAIT))
        .into_iter()
        .collect();
    assert_eq!(got, in_children.into_iter().collect::<HashSet<_>>());
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

#[test]
fn checkpoint_interval_coalesces_automatic_checkpoints() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("coalesced");
    let dynamodb_calls = Recorder::in_front_of(emulators().dynamodb_url());
    let interval = Duration::from_secs(1);
    let consumer = consumer_for(&stream)
        .checkpoint_interval(interval)
        .checkpointer(
            dynamodb_checkpointer("app", &table)
                .aws_config(dynamodb_calls.config())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let producing = AtomicBool::new(true);
    let window = Duration::from_secs(4);
    let window_start = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut next = 0;
            while producing.load(Ordering::SeqCst) {
                put_payloads(&kinesis, &stream, next..next + 5);
                next += 5;
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        // The caller processes records all the time: every record moves the
        // processed position, each could be a checkpoint.
        let first = wait_until(WAIT, || {
            take(&consumer, 100, Duration::from_millis(100));
            !dynamodb_calls
                .times("UpdateItem", writes_checkpoint)
                .is_empty()
        });
        assert!(first, "a first automatic checkpoint");
        let start = Instant::now();
        let records = take(&consumer, usize::MAX, window);
        producing.store(false, Ordering::SeqCst);
        assert!(records.len() > 100, "busy: {} records", records.len());
        start
    });
    let times = dynamodb_calls.times("UpdateItem", writes_checkpoint);
    let written = count_within(&times, window_start, window);
    let most = (window.as_millis() / interval.as_millis()) as usize + 1;
    assert!(
        (2..=most).contains(&written),
        "{written} checkpoint writes in {window:?} with checkpoint_interval {interval:?}"
    );
}

/// GetRecords calls through `recorder` in a `window` that opens once the
/// first call was seen, while `reading` runs and until the window closes.
fn get_records_in_window(recorder: &Recorder, window: Duration, reading: impl FnOnce()) -> usize {
    let started = wait_until(WAIT, || !recorder.times("GetRecords", any).is_empty());
    assert!(started, "no GetRecords call");
    let opened = Instant::now();
    reading();
    std::thread::sleep((opened + window).saturating_duration_since(Instant::now()));
    count_within(&recorder.times("GetRecords", any), opened, window)
}

#[test]
fn idle_poll_interval_paces_a_caught_up_shard() {
    let (_, stream) = create_stream(1);
    let kinesis_calls = Recorder::in_front_of(emulators().kinesis_url());
    let interval = Duration::from_millis(500);
    let _consumer = consumer_for(&stream)
        .aws_config(kinesis_calls.config())
        .idle_poll_interval(interval)
        .build()
        .unwrap();
    let window = Duration::from_secs(3);
    let calls = get_records_in_window(&kinesis_calls, window, || {});
    // One call per interval: at most one more for the window's edges, and
    // not slower than one per two intervals.
    let per_window = (window.as_millis() / interval.as_millis()) as usize;
    assert!(
        (per_window / 2..=per_window + 1).contains(&calls),
        "{calls} GetRecords calls in {window:?} with idle_poll_interval {interval:?}"
    );
}

#[test]
fn busy_shards_are_read_at_most_five_calls_a_second() {
    let (kinesis, stream) = create_stream(1);
    put_payloads(&kinesis, &stream, 0..2000);
    let kinesis_calls = Recorder::in_front_of(emulators().kinesis_url());
    let consumer = consumer_for(&stream)
        .aws_config(kinesis_calls.config())
        .record_limit(10)
        .build()
        .unwrap();
    let window = Duration::from_secs(2);
    let mut records = 0;
    let calls = get_records_in_window(&kinesis_calls, window, || {
        records = take(&consumer, usize::MAX, window).len();
    });
    assert!(records >= 50, "the shard was busy: {records} records");
    // Five per second at most (one more for the window's edges), and not
    // slower than half that.
    let most = 5 * window.as_secs() as usize + 1;
    assert!(
        (most / 2..=most).contains(&calls),
        "{calls} GetRecords calls of a busy shard in {window:?}"
    );
}

#[test]
fn the_lease_table_and_its_items_are_laid_out_as_documented() {
    let (kinesis, stream) = create_stream(2);
    let table = unique_name("layout");
    let group = "orders";
    let millis = |time: SystemTime| time.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let start = UNIX_EPOCH + Duration::from_millis(millis(SystemTime::now()) - 60_000);
    let consumer = consumer_for(&stream)
        .initial_position(InitialPosition::AtTimestamp(start))
        .checkpointer(dynamodb_checkpointer(group, &table).build().unwrap())
        .build()
        .unwrap();
    put_payloads(&kinesis, &stream, 0..20);
    let records = take(&consumer, 20, WAIT);
    assert_eq!(records.len(), 20);
    consumer.checkpoint().unwrap();

    let client = DynamoDbClient::new(&dynamodb_config()).unwrap();
    let described = client
        .describe_table(&TableRequest::new(&table))
        .unwrap()
        .table
        .unwrap();
    assert_eq!(
        described.key_schema,
        [KeySchemaElement {
            attribute_name: "shard_id".into(),
            key_type: KeyType::Hash
        }]
    );
    assert_eq!(
        described.attribute_definitions,
        [AttributeDefinition {
            attribute_name: "shard_id".into(),
            attribute_type: ScalarAttributeType::S
        }]
    );
    assert_eq!(
        described.billing_mode_summary.and_then(|s| s.billing_mode),
        Some(BillingMode::PayPerRequest)
    );
    let ttl = client
        .describe_time_to_live(&TableRequest::new(&table))
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert!(
        matches!(
            ttl.time_to_live_status,
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ),
        "{ttl:?}"
    );
    assert_eq!(ttl.attribute_name.as_deref(), Some("ttl"));

    let items = table_items(&table);
    let shards = kinesis.list_shards(&stream, None).unwrap();
    assert_eq!(items.len(), shards.len(), "{items:?}");
    for shard in &shards {
        let key = format!("{group}:{}:{}", stream.name(), shard.shard_id);
        let item = items
            .iter()
            .find(|item| item["shard_id"].as_s() == Some(key.as_str()))
            .unwrap_or_else(|| panic!("no item keyed {key}: {items:?}"));
        let last = records
            .iter()
            .rfind(|r| *r.shard_id == shard.shard_id)
            .unwrap();
        assert_eq!(item["ref"].as_s(), Some(consumer.owner_id()), "{item:?}");
        assert_eq!(item["sequence"].as_s(), Some(last.sequence_number.as_str()));
        assert_eq!(item["sub_sequence"].as_u64(), Some(0));
        assert!(item["lease_counter"].as_u64().is_some(), "{item:?}");
        assert!(item["parents"].as_l().is_some_and(<[_]>::is_empty));
        assert!(
            item["ts"].as_u64().unwrap().abs_diff(epoch_seconds()) < 120,
            "{item:?}"
        );
        assert_eq!(item["start_timestamp"].as_u64(), Some(millis(start)));
        assert!(!item.contains_key("ttl"), "a shard in the stream: {item:?}");
    }
}

#[test]
fn consumers_starting_at_once_create_the_missing_table_safely() {
    let (_, stream) = create_stream(2);
    let table = unique_name("created-at-once");
    let starting = Barrier::new(3);
    let started: Vec<Result<Consumer, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    let checkpointer = dynamodb_checkpointer("app", &table).build().unwrap();
                    starting.wait();
                    consumer_for(&stream).checkpointer(checkpointer).build()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for consumer in &started {
        assert!(consumer.is_ok(), "{:?}", consumer.as_ref().err());
    }
}

#[test]
fn ttl_hours_sets_when_items_of_departed_shards_expire_and_zero_disables_it() {
    let (_, stream) = create_stream(1);
    let departed = "shardId-000000000099";
    let run = |ttl_hours: Option<u32>| {
        let table = unique_name("ttl-hours");
        let mut builder = dynamodb_checkpointer("app", &table);
        if let Some(hours) = ttl_hours {
            builder = builder.ttl_hours(hours);
        }
        let store = builder.build().unwrap();
        store.prepare().unwrap();
        // A finished shard that has left the stream.
        let finished = item([
            (
                "shard_id",
                AttributeValue::s(format!("app:{}:{departed}", stream.name())),
            ),
            ("app", AttributeValue::s("app")),
            ("stream", AttributeValue::s(stream.name())),
            ("shard", AttributeValue::s(departed)),
            ("lease_counter", AttributeValue::n(3)),
            ("sequence", AttributeValue::s("SHARD_END")),
        ]);
        store
            .client()
            .put_item(&PutItemRequest::new(&table, finished))
            .unwrap();
        let consumer = consumer_for(&stream).checkpointer(store).build().unwrap();
        (table, consumer)
    };
    let (default_table, default_consumer) = run(None);
    let (disabled_table, disabled_consumer) = run(Some(0));
    let expiry = |table: &str| item_of(table, departed).unwrap().get("ttl").cloned();
    // Discovery looks at expiry before it takes leases: once both consumers
    // hold their shard, both have judged the departed one.
    let judged = wait_until(WAIT, || {
        expiry(&default_table).is_some()
            && default_consumer.stats().lease_gains == 1
            && disabled_consumer.stats().lease_gains == 1
    });
    assert!(judged, "{:?}", item_of(&default_table, departed));
    let expires_at = expiry(&default_table).unwrap().as_u64().unwrap();
    let day_ahead = epoch_seconds() + 24 * 3600;
    assert!(
        expires_at.abs_diff(day_ahead) < 120,
        "24 h ahead: {expires_at}"
    );
    assert_eq!(expiry(&disabled_table), None);
    let ttl_status = |table: &str| {
        DynamoDbClient::new(&dynamodb_config())
            .unwrap()
            .describe_time_to_live(&TableRequest::new(table))
            .unwrap()
            .time_to_live_description
            .unwrap()
            .time_to_live_status
    };
    assert_eq!(
        ttl_status(&disabled_table),
        Some(TimeToLiveStatus::Disabled)
    );
}

const SECRET_ACCESS_KEY: &str = "promisesSecretKey/NeverShown+0123456789abcdef";
const SESSION_TOKEN: &str = "promisesSessionToken/NeverShown+fedcba9876543210";

/// Credentials the way most deployments pass them: through the environment.
fn secret_environment() -> Environment {
    Environment::from_vars([
        ("AWS_ACCESS_KEY_ID", "AKIDPROMISES"),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ("AWS_SESSION_TOKEN", SESSION_TOKEN),
        ("AWS_REGION", "us-east-1"),
    ])
}

fn secret_config(endpoint: &str) -> AwsConfig {
    AwsConfig::builder()
        .endpoint_url(endpoint)
        .environment(secret_environment())
        .retry_policy(RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        })
        .build()
        .unwrap()
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in [SECRET_ACCESS_KEY, SESSION_TOKEN] {
        assert!(!text.contains(secret), "a secret in {what}: {text}");
    }
}

#[test]
fn secrets_never_appear_in_logs_or_error_messages() {
    capture_logs();
    let (kinesis, stream) = create_stream(1);
    put_payloads(&kinesis, &stream, 0..5);
    let mut errors = Vec::new();

    // A Kinesis endpoint that rejects the credentials, one that fails
    // transiently (retried and logged), and a DynamoDB endpoint that is gone.
    let rejecting = StubServer::start(|_| {
        StubResponse::json(
            400,
            r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#,
        )
    });
    let failing = StubServer::start(|_| {
        StubResponse::json(
            500,
            r#"{"__type":"InternalFailure","message":"secrets-test failure"}"#,
        )
    });
    let gone = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    for endpoint in [rejecting.url(), failing.url()] {
        let error = consumer_for(&stream)
            .aws_config(secret_config(endpoint))
            .build()
            .unwrap_err();
        errors.push(error);
    }
    let unreachable_table = kcheck::DynamoDbCheckpointer::builder("app")
        .table_name(unique_name("secrets"))
        .aws_config(secret_config(&gone))
        .build()
        .unwrap();
    errors.push(
        consumer_for(&stream)
            .checkpointer(unreachable_table)
            .build()
            .unwrap_err(),
    );
    // And a consumer that works, signing every call with the secrets.
    let working = consumer_for(&stream)
        .aws_config(secret_config(&emulators().kinesis_url()))
        .checkpointer(
            kcheck::DynamoDbCheckpointer::builder("app")
                .table_name(unique_name("secrets"))
                .aws_config(secret_config(&emulators().dynamodb_url()))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(take(&working, 5, WAIT).len(), 5);
    let owner = working.owner_id().to_owned();
    working.close().unwrap();

    for error in &errors {
        assert_no_secret("an error message", &format!("{error}"));
        assert_no_secret("an error's Debug", &format!("{error:?}"));
    }
    assert!(
        !logged(|line| line.message.contains("secrets-test failure")).is_empty(),
        "the retries were logged"
    );
    assert!(
        !logged(|line| line.message.starts_with(&owner)).is_empty(),
        "the working consumer was logged"
    );
    for line in logged(|_| true) {
        assert_no_secret("a log line", &line.message);
    }
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let (_, stream) = create_stream(1);
    let config = secret_config(&emulators().kinesis_url());
    let checkpointer = kcheck::DynamoDbCheckpointer::builder("app")
        .table_name(unique_name("secrets-debug"))
        .aws_config(secret_config(&emulators().dynamodb_url()))
        .build()
        .unwrap();
    let explicit = Credentials::new(
        "AKIDPROMISES",
        SECRET_ACCESS_KEY,
        Some(SESSION_TOKEN.into()),
        None,
    );
    assert_no_secret("Credentials", &format!("{explicit:?}"));
    assert_no_secret("AwsConfig", &format!("{config:?}"));
    assert_no_secret("DynamoDbCheckpointer", &format!("{checkpointer:?}"));
    let consumer = Consumer::builder(stream.name())
        .aws_config(config)
        .checkpointer(checkpointer)
        .build()
        .unwrap();
    assert_no_secret("Consumer", &format!("{consumer:?}"));
    assert_no_secret("Environment", &format!("{:?}", secret_environment()));
}

/// A config for `endpoint` with nothing set but what a test needs: HTTP and
/// retry settings stay at their defaults.
fn default_config(endpoint: &str) -> AwsConfig {
    AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .credentials(Credentials::new("AKIDTEST", "test-secret", None, None))
        .environment(Environment::from_vars(Vec::<(String, String)>::new()))
        .build()
        .unwrap()
}

#[test]
fn http_timeouts_default_to_5_s_connect_and_60_s_per_request() {
    // Neither can be waited out here: loopback connects never hang, and a
    // minute per test is too long. These are the values every client uses.
    let options = default_config("http://127.0.0.1:9").http_options();
    assert_eq!(options.connect_timeout, Duration::from_secs(5));
    assert_eq!(options.request_timeout, Duration::from_secs(60));
}

#[test]
fn response_bodies_of_up_to_32_mib_are_read_and_larger_ones_refused() {
    const CAP: usize = 32 << 20;
    let body_size = Arc::new(Mutex::new(0));
    let size = body_size.clone();
    // A ListShards answer padded with spaces to the size asked for.
    let stub = StubServer::start(move |_| {
        let mut body = br#"{"Shards":[]}"#.to_vec();
        body.resize(*size.lock().unwrap(), b' ');
        StubResponse::Full {
            status: 200,
            content_type: "application/x-amz-json-1.1",
            body,
        }
    });
    let config = default_config(stub.url());
    assert_eq!(config.http_options().max_response_bytes, CAP as u64);
    let kinesis = KinesisClient::new(&config).unwrap();
    let stream = StreamRef::from("padded");
    *body_size.lock().unwrap() = CAP + 1;
    let error = kinesis.list_shards_page(&stream, None, None).unwrap_err();
    assert!(
        matches!(error, Error::ResponseTooLarge { operation: "ListShards", limit } if limit == CAP as u64),
        "{error:?}"
    );
    *body_size.lock().unwrap() = CAP;
    let at_cap = kinesis.list_shards_page(&stream, None, None);
    assert!(at_cap.is_ok(), "{at_cap:?}");
}

#[test]
fn transient_failures_are_retried_8_times_with_full_jitter_from_50_ms() {
    capture_logs();
    let marker = unique_name("transient-failure");
    let answer = format!(r#"{{"__type":"InternalFailure","message":"{marker}"}}"#);
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let arrived = arrivals.clone();
    let stub = StubServer::start(move |_| {
        arrived.lock().unwrap().push(Instant::now());
        StubResponse::json(500, &answer)
    });
    let config = default_config(stub.url());
    let policy = RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(5),
    };
    assert_eq!(config.retry_policy(), policy);
    let error = KinesisClient::new(&config)
        .unwrap()
        .list_shards_page(&StreamRef::from("failing"), None, None)
        .unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::InternalFailure), "{error}");
    assert!(error.to_string().contains("ListShards"), "{error}");
    assert!(error.to_string().contains(&marker), "{error}");

    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 8, "attempts");
    // Each pause is at most its ceiling (50 ms doubling), plus the time of a
    // loopback call on a loaded machine; full jitter keeps most below it.
    let pauses: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    let ceilings: Vec<Duration> = (0..7).map(|retry| policy.backoff_ceiling(retry)).collect();
    for (pause, ceiling) in pauses.iter().zip(&ceilings) {
        assert!(
            *pause <= *ceiling + Duration::from_millis(300),
            "{pauses:?}"
        );
    }
    assert!(
        pauses
            .iter()
            .zip(&ceilings)
            .any(|(pause, ceiling)| *pause < ceiling.mul_f64(0.9)),
        "no jitter: {pauses:?}"
    );
    let retries =
        logged(|line| line.message.starts_with("retrying after") && line.message.contains(&marker));
    assert_eq!(retries.len(), 7, "{retries:?}");
    assert!(retries.iter().all(|line| line.level == log::Level::Debug));
}

#[test]
fn final_errors_are_returned_at_once_with_the_service_message_and_operation() {
    let calls = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let counted = calls.clone();
    // Each error's type is the stream name it is asked about.
    let stub = StubServer::start(move |request| {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let kind = body["StreamName"].as_str().unwrap_or_default().to_owned();
        *counted.lock().unwrap().entry(kind.clone()).or_default() += 1;
        StubResponse::json(
            400,
            &format!(r#"{{"__type":"{kind}","message":"message of {kind}"}}"#),
        )
    });
    let kinesis = KinesisClient::new(&default_config(stub.url())).unwrap();
    for kind in [
        "ResourceNotFoundException",
        "ValidationException",
        "AccessDeniedException",
        "KMSAccessDeniedException",
        "ConditionalCheckFailedException",
    ] {
        let error = kinesis
            .list_shards_page(&StreamRef::from(kind), None, None)
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("ListShards"), "{message}");
        assert!(message.contains(&format!("message of {kind}")), "{message}");
        assert_eq!(calls.lock().unwrap()[kind], 1, "{kind} was retried");
    }
}

#[test]
fn lease_changes_are_logged_with_the_owner_id_first() {
    capture_logs();
    let (_, stream) = create_stream(2);
    let table = unique_name("logged");
    let group = || {
        consumer_for(&stream)
            .checkpointer(dynamodb_checkpointer("app", &table).build().unwrap())
            .build()
            .unwrap()
    };
    let first = group();
    wait_for_shard_counts(&[&first], &[2]);
    let second = group();
    wait_for_shard_counts(&[&first, &second], &[1, 1]);
    let (a, b) = (first.owner_id(), second.owner_id());
    assert_logged(
        &format!("{a}: lease taken: shard shardId-"),
        log::Level::Info,
    );
    let handed = assert_logged(&format!("{a}: lease handed over: shard "), log::Level::Info);
    assert!(handed.message.ends_with(&format!(" to {b}")), "{handed:?}");
    let moved = &second.stats().shards[0].shard_id;
    assert_logged(
        &format!("{b}: lease received: shard {moved}"),
        log::Level::Info,
    );

    // Someone else takes the second consumer's lease.
    let key = format!("app:{}:{moved}", stream.name());
    DynamoDbClient::new(&dynamodb_config())
        .unwrap()
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
    assert!(wait_until(WAIT, || second.stats().lease_losses == 1));
    let lost_prefix = format!("{b}: lease lost: shard {moved} (");
    let lost = assert_logged(&lost_prefix, log::Level::Warn);
    let reason = lost.message[lost_prefix.len()..]
        .split_once(')')
        .map(|(reason, _)| reason);
    assert!(
        reason.is_some_and(|r| !r.is_empty()),
        "the reason: {lost:?}"
    );

    let kept = first.stats().shards[0].shard_id.clone();
    first.close().unwrap();
    assert_logged(
        &format!("{a}: lease released: shard {kept}"),
        log::Level::Info,
    );
}

#[test]
fn resharding_is_logged_at_info() {
    capture_logs();
    let (kinesis, stream) = create_stream(1);
    let consumer = consumer_for(&stream).build().unwrap();
    wait_for_shard_counts(&[&consumer], &[1]);
    let parent = split_the_only_shard(&kinesis, &stream);
    let expected = put_payloads(&kinesis, &stream, 0..20);
    assert_eq!(take(&consumer, expected.len(), WAIT).len(), expected.len());
    let found = assert_logged(
        &format!("{stream}: found 2 new shard(s): "),
        log::Level::Info,
    );
    assert!(!found.message.contains(&parent), "{found:?}");
    let ended = logged(|line| line.message == format!("shard {parent} reached its end"));
    assert!(
        ended.iter().any(|line| line.level == log::Level::Info),
        "{ended:?}"
    );
    let owner = consumer.owner_id();
    assert_logged(
        &format!("{owner}: lease released: shard {parent}"),
        log::Level::Info,
    );
}
