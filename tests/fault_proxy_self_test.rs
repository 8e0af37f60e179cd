//! The fault proxy does what each fault says, seen through kcheck's own
//! Kinesis and DynamoDB clients.

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
mod support;

use std::time::{Duration, Instant};

use fault_proxy::{Fault, FaultProxy, Rule};
use kcheck::dynamodb::{
    item, AttributeValue, CreateTableRequest, DynamoDbClient, GetItemRequest, Item, PutItemRequest,
    ScalarAttributeType, UpdateItemRequest,
};
use kcheck::kinesis::{IteratorPosition, KinesisClient, StreamRef};
use kcheck::transport::{AwsConfig, Credentials, Environment, HttpOptions};
use kcheck::{Error, ErrorCode, RetryPolicy};
use support::*;

/// A config for `endpoint` that gives up after `request_timeout` and retries
/// as `retry` says, so each fault's effect reaches the test directly.
fn impatient_config(endpoint: &str, request_timeout: Duration, retry: RetryPolicy) -> AwsConfig {
    AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .credentials(Credentials::new("AKIDTEST", "test-secret", None, None))
        .environment(Environment::from_vars(Vec::<(String, String)>::new()))
        .http_options(HttpOptions {
            request_timeout,
            ..HttpOptions::default()
        })
        .retry_policy(retry)
        .build()
        .unwrap()
}

fn kinesis_via(proxy: &FaultProxy) -> KinesisClient {
    let config = impatient_config(
        proxy.url(),
        Duration::from_secs(10),
        RetryPolicy::no_retries(),
    );
    KinesisClient::new(&config).unwrap()
}

fn dynamodb_via(proxy: &FaultProxy, request_timeout: Duration) -> DynamoDbClient {
    let config = impatient_config(proxy.url(), request_timeout, RetryPolicy::no_retries());
    DynamoDbClient::new(&config).unwrap()
}

/// A table with lease-like items `{group}:{stream}:{shard}` holding `n = 0`.
fn lease_table(shards: &[&str]) -> (DynamoDbClient, String) {
    let direct = DynamoDbClient::new(&dynamodb_config()).unwrap();
    let table = unique_name("proxy-self-test");
    direct
        .create_table(&CreateTableRequest::new(
            &table,
            "shard_id",
            ScalarAttributeType::S,
        ))
        .unwrap();
    direct
        .wait_for_table_active(&table, Duration::from_secs(10))
        .unwrap();
    for shard in shards {
        let lease = item([
            ("shard_id", AttributeValue::s(lease_key(shard))),
            ("n", AttributeValue::n(0)),
        ]);
        direct
            .put_item(&PutItemRequest::new(&table, lease))
            .unwrap();
    }
    (direct, table)
}

fn lease_key(shard: &str) -> String {
    format!("app:stream:{shard}")
}

fn key(shard: &str) -> Item {
    item([("shard_id", AttributeValue::s(lease_key(shard)))])
}

fn increment(table: &str, shard: &str) -> UpdateItemRequest {
    UpdateItemRequest::new(table, key(shard), "SET n = n + :one")
        .value(":one", AttributeValue::n(1))
}

fn stored_n(direct: &DynamoDbClient, table: &str, shard: &str) -> u64 {
    let output = direct
        .get_item(&GetItemRequest::new(table, key(shard)).consistent_read(true))
        .unwrap();
    output.item.unwrap()["n"].as_u64().unwrap()
}

/// A one-shard stream with `records` records and the proxy's view of it.
fn stream_with_records(records: usize) -> (FaultProxy, KinesisClient, StreamRef, String) {
    let (kinesis, stream) = create_stream(1);
    put_payloads(&kinesis, &stream, 0..records);
    let shard = kinesis.list_shards(&stream, None).unwrap()[0]
        .shard_id
        .clone();
    let proxy = FaultProxy::start(&emulators().kinesis_url());
    let client = kinesis_via(&proxy);
    (proxy, client, stream, shard)
}

#[test]
fn requests_are_forwarded_and_recorded_with_operation_and_shard() {
    let (proxy, client, stream, shard) = stream_with_records(5);
    let iterator = client
        .get_shard_iterator(&stream, &shard, &IteratorPosition::TrimHorizon)
        .unwrap();
    let first = client.get_records(&iterator, 3).unwrap();
    assert_eq!(first.records.len(), 3);
    // The next page's iterator came from a response: the proxy still knows its shard.
    let next = first.page.next_shard_iterator.clone().unwrap();
    assert_eq!(client.get_records(&next, 10).unwrap().records.len(), 2);
    let seen: Vec<(String, Option<String>)> = proxy
        .requests()
        .into_iter()
        .map(|r| (r.operation, r.shard))
        .collect();
    let on_shard = |op: &str| (op.to_owned(), Some(shard.clone()));
    assert_eq!(
        seen,
        [
            on_shard("GetShardIterator"),
            on_shard("GetRecords"),
            on_shard("GetRecords")
        ]
    );
}

#[test]
fn answers_are_injected_by_operation_shard_and_count() {
    let (proxy, client, stream, shard) = stream_with_records(1);
    let other_shard =
        proxy.add(Rule::on("GetRecords", Fault::internal_error()).shard("shardId-000000000009"));
    let throttled =
        proxy.add(Rule::on("GetRecords", Fault::kinesis_throughput_exceeded()).first(1));
    let unavailable = proxy.add(Rule::on("GetRecords", Fault::unavailable()).first(1));
    let iterator = client
        .get_shard_iterator(&stream, &shard, &IteratorPosition::TrimHorizon)
        .unwrap();
    let codes: Vec<Option<ErrorCode>> = (0..3)
        .map(|_| {
            client
                .get_records(&iterator, 10)
                .err()
                .and_then(|e| e.code().cloned())
        })
        .collect();
    assert_eq!(
        codes,
        [
            Some(ErrorCode::ProvisionedThroughputExceeded),
            Some(ErrorCode::ServiceUnavailable),
            None
        ]
    );
    assert_eq!(
        (other_shard.hits(), throttled.hits(), unavailable.hits()),
        (0, 1, 1)
    );
    let faults: Vec<bool> = proxy.requests().iter().map(|r| r.fault.is_some()).collect();
    assert_eq!(faults, [false, true, true, false]);
}

#[test]
fn dynamodb_faults_match_the_shard_in_the_lease_key_and_a_predicate() {
    let (direct, table) = lease_table(&["shardId-1", "shardId-2"]);
    let proxy = FaultProxy::start(&emulators().dynamodb_url());
    let client = dynamodb_via(&proxy, Duration::from_secs(10));
    let throughput =
        proxy.add(Rule::on("UpdateItem", Fault::dynamodb_throughput_exceeded()).shard("shardId-1"));
    let throttling = proxy.add(
        Rule::on("GetItem", Fault::dynamodb_throttling())
            .matching(|request| request.body["ConsistentRead"] == true),
    );
    let code = |result: Result<(), Error>| result.err().and_then(|e| e.code().cloned());
    let update = |shard| {
        code(
            client
                .update_item(&increment(&table, shard))
                .map(drop)
                .map_err(Error::from),
        )
    };
    assert_eq!(
        update("shardId-1"),
        Some(ErrorCode::ProvisionedThroughputExceeded)
    );
    assert_eq!(update("shardId-2"), None);
    let get = |consistent| {
        code(
            client
                .get_item(
                    &GetItemRequest::new(&table, key("shardId-1")).consistent_read(consistent),
                )
                .map(drop),
        )
    };
    assert_eq!(get(true), Some(ErrorCode::Throttling));
    assert_eq!(get(false), None);
    assert_eq!((throughput.hits(), throttling.hits()), (1, 1));
    // Switched off, the rule no longer applies.
    throughput.set_active(false);
    assert_eq!(update("shardId-1"), None);
    assert_eq!(stored_n(&direct, &table, "shardId-1"), 1);
    assert_eq!(stored_n(&direct, &table, "shardId-2"), 1);
    let shards: Vec<Option<String>> = proxy.requests().into_iter().map(|r| r.shard).collect();
    assert!(shards
        .iter()
        .all(|s| s.as_deref().is_some_and(|s| s.starts_with("shardId-"))));
}

#[test]
fn a_write_closed_before_forwarding_is_not_applied_and_one_closed_after_is() {
    let (direct, table) = lease_table(&["shardId-1"]);
    let proxy = FaultProxy::start(&emulators().dynamodb_url());
    let client = dynamodb_via(&proxy, Duration::from_secs(10));
    proxy.add(Rule::on("UpdateItem", Fault::CloseBeforeForwarding).first(1));
    proxy.add(Rule::on("UpdateItem", Fault::ForwardThenClose).first(1));
    let lost = client
        .update_item(&increment(&table, "shardId-1"))
        .unwrap_err();
    assert!(matches!(lost.error, Error::Transport { .. }), "{lost:?}");
    assert_eq!(stored_n(&direct, &table, "shardId-1"), 0, "never applied");
    let unheard = client
        .update_item(&increment(&table, "shardId-1"))
        .unwrap_err();
    assert!(
        matches!(unheard.error, Error::Transport { .. }),
        "{unheard:?}"
    );
    assert_eq!(
        stored_n(&direct, &table, "shardId-1"),
        1,
        "applied, answer lost"
    );
    // The next request on a new connection goes through.
    client.update_item(&increment(&table, "shardId-1")).unwrap();
    assert_eq!(stored_n(&direct, &table, "shardId-1"), 2);
}

#[test]
fn a_hang_holds_without_answering_and_a_delay_answers_late() {
    let (direct, table) = lease_table(&["shardId-1"]);
    let proxy = FaultProxy::start(&emulators().dynamodb_url());
    let hang = Duration::from_millis(600);
    proxy.add(Rule::on("UpdateItem", Fault::Hang(hang)).first(1));
    proxy.add(Rule::on("UpdateItem", Fault::Delay(hang)).first(1));
    proxy.add(Rule::on("UpdateItem", Fault::Hang(Duration::from_secs(20))).first(1));
    let patient = dynamodb_via(&proxy, Duration::from_secs(10));
    let started = Instant::now();
    let hung = patient
        .update_item(&increment(&table, "shardId-1"))
        .unwrap_err();
    assert!(matches!(hung.error, Error::Transport { .. }), "{hung:?}");
    assert!(started.elapsed() >= hang, "{:?}", started.elapsed());
    assert_eq!(stored_n(&direct, &table, "shardId-1"), 0);
    let started = Instant::now();
    patient
        .update_item(&increment(&table, "shardId-1"))
        .unwrap();
    assert!(started.elapsed() >= hang, "{:?}", started.elapsed());
    assert_eq!(stored_n(&direct, &table, "shardId-1"), 1);
    // A client that gives up first sees its own timeout.
    let impatient = dynamodb_via(&proxy, Duration::from_millis(500));
    let started = Instant::now();
    assert!(impatient
        .update_item(&increment(&table, "shardId-1"))
        .is_err());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Dropping the proxy ends the 20 s hang at once.
    let dropped_at = Instant::now();
    drop(proxy);
    assert!(
        dropped_at.elapsed() < Duration::from_secs(5),
        "{:?}",
        dropped_at.elapsed()
    );
}

#[test]
fn truncated_bodies_fail_and_trickled_bodies_arrive_slowly_but_whole() {
    let (proxy, client, stream, shard) = stream_with_records(20);
    let iterator = client
        .get_shard_iterator(&stream, &shard, &IteratorPosition::TrimHorizon)
        .unwrap();
    let pause = Duration::from_millis(20);
    proxy.add(Rule::on("GetRecords", Fault::TruncateBody).first(1));
    proxy.add(Rule::on("GetRecords", Fault::Trickle { chunk: 256, pause }).first(1));
    let truncated = client.get_records(&iterator, 100).unwrap_err();
    assert!(
        matches!(
            truncated,
            Error::Transport { .. } | Error::MalformedResponse { .. }
        ),
        "{truncated:?}"
    );
    let started = Instant::now();
    let page = client.get_records(&iterator, 100).unwrap();
    assert_eq!(page.records.len(), 20);
    // 20 records of JSON are well over 1 KiB: at least four pauses.
    assert!(started.elapsed() >= pause * 4, "{:?}", started.elapsed());
}

#[test]
fn concurrent_keep_alive_clients_are_all_served_and_drop_stops_the_proxy() {
    let (proxy, client, stream, shard) = stream_with_records(1);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..10 {
                    client
                        .get_shard_iterator(&stream, &shard, &IteratorPosition::TrimHorizon)
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(proxy.requests().len(), 40);
    drop(client);
    let address = proxy.url().trim_start_matches("http://").to_owned();
    drop(proxy);
    assert!(
        std::net::TcpStream::connect(&address).is_err(),
        "nothing listens after drop"
    );
}
