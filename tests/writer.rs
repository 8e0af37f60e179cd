//! The DynamoDB writer against the dynoxide emulator: items written exactly
//! once across several tables, each paced to its own capacity; writes of
//! one key never share a batch and land in put order; UnprocessedItems and
//! throttling (injected by a loopback proxy that forwards only part of a
//! batch) are retried until written; bad items are refused with the item
//! named, at `put` or, when only DynamoDB can tell, alone in a batch.

#[path = "support/stub_server.rs"]
mod stub_server;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcheck::dynamodb::{item, AttributeValue, DynamoDbClient, Item, ScanRequest, WriteRequest};
use kcheck::writer::{DynamoDbWriterBuilder, RecordStatus};
use kcheck::{DynamoDbWriter, Error, ErrorCode};
use serde_json::{json, Value};
use stub_server::{forward, StubRequest, StubResponse, StubServer};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

fn client() -> DynamoDbClient {
    DynamoDbClient::new(&dynamodb_config()).unwrap()
}

fn writer_for(table: &str, endpoint: &str) -> DynamoDbWriterBuilder {
    DynamoDbWriter::builder(table)
        .aws_config(config_for(endpoint))
        .buffer_time(Duration::from_millis(10))
        .backoff(Duration::from_millis(5), Duration::from_millis(100))
}

fn entry(pk: &str, value: usize) -> Item {
    item([
        ("pk", AttributeValue::s(pk)),
        ("v", AttributeValue::n(value)),
        ("body", AttributeValue::s("x".repeat(100))),
    ])
}

/// Every item of `table`, by `pk`.
fn contents(client: &DynamoDbClient, table: &str) -> BTreeMap<String, Item> {
    client
        .scan_all(&ScanRequest::new(table).consistent_read(true), None)
        .unwrap()
        .into_iter()
        .map(|item| (item["pk"].as_s().unwrap().to_owned(), item))
        .collect()
}

fn is_batch_write(request: &StubRequest) -> bool {
    request.header("x-amz-target") == Some("DynamoDB_20120810.BatchWriteItem")
}

/// The writes of a BatchWriteItem body, by table.
fn batch_writes(request: &StubRequest) -> Vec<(String, Vec<Value>)> {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    body["RequestItems"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(table, writes)| (table.clone(), writes.as_array().unwrap().clone()))
        .collect()
}

#[test]
fn items_are_written_exactly_once_across_tables_each_at_its_own_pace() {
    let client = client();
    let paced = create_table(&client, false);
    let unpaced = create_table(&client, false);
    let unnamed = create_table(&client, false);
    let writer = writer_for(&paced, &emulators().dynamodb_url())
        .write_capacity(400.0)
        .table(&unpaced, None)
        .threads(4)
        .build()
        .unwrap();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (table, count) in [(&paced, 300), (&unpaced, 500), (&unnamed, 200)] {
            let writer = &writer;
            scope.spawn(move || {
                for n in 0..count {
                    let request = WriteRequest::put(entry(&format!("{table}-{n}"), n));
                    writer.write(table, request).unwrap();
                }
            });
        }
    });
    writer.flush().unwrap();
    let elapsed = started.elapsed();
    for (table, count) in [(&paced, 300), (&unpaced, 500), (&unnamed, 200)] {
        let stored = contents(&client, table);
        assert_eq!(stored.len(), count, "{table}");
        for n in 0..count {
            assert_eq!(
                stored[&format!("{table}-{n}")],
                entry(&format!("{table}-{n}"), n)
            );
        }
    }
    // 300 one-unit items at 400 units a second, 80 of them from the burst.
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    let stats = writer.stats();
    assert_eq!((stats.items_put, stats.items_written), (1000, 1000));
    assert_eq!((stats.items_failed, stats.queue_depth), (0, 0));
    assert!(stats.write_units >= 1000.0, "{stats:?}");
    let tables = writer.table_stats();
    assert_eq!(tables[0].table, paced);
    assert_eq!(tables[0].write_capacity, Some(400.0));
    assert_eq!(tables[0].items_written, 300);
    assert!(tables[0].requests >= 12, "{:?}", tables[0]);
    assert_eq!(tables.len(), 3);
    writer.close().unwrap();
}

#[test]
fn unprocessed_items_and_throttling_are_retried_until_written() {
    let client = client();
    let table = create_table(&client, false);
    let upstream = emulators().dynamodb_url();
    let calls = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&calls);
    // Every third call is throttled; the others forward only the first
    // half of their writes and hand the rest back unprocessed.
    let proxy = StubServer::start(move |request| {
        if !is_batch_write(request) {
            return forward(&upstream, request);
        }
        let call = seen.fetch_add(1, Ordering::SeqCst);
        if call % 3 == 2 {
            return StubResponse::json(
                400,
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"injected"}"#,
            );
        }
        let (table, writes) = batch_writes(request).remove(0);
        let (sent, kept) = writes.split_at(writes.len().div_ceil(2));
        let body = json!({"RequestItems": {&table: sent}});
        match forward(&upstream, &request.with_body(&body)) {
            StubResponse::Full { status: 200, .. } => {}
            other => return other,
        }
        let unprocessed = if kept.is_empty() {
            json!({})
        } else {
            json!({ &table: kept })
        };
        StubResponse::json(200, &json!({ "UnprocessedItems": unprocessed }).to_string())
    });
    let writer = writer_for(&table, proxy.url()).threads(2).build().unwrap();
    for n in 0..200 {
        writer.put(entry(&format!("k{n}"), n)).unwrap();
    }
    writer.flush().unwrap();
    let stored = contents(&client, &table);
    assert_eq!(stored.len(), 200);
    let stats = writer.stats();
    assert_eq!(stats.items_written, 200);
    assert!(stats.throttles > 0 && stats.retries > 0, "{stats:?}");
    assert!(calls.load(Ordering::SeqCst) > 16);
    writer.close().unwrap();
}

#[test]
fn writes_of_one_key_never_share_a_batch_and_land_in_put_order() {
    let client = client();
    let table = create_table(&client, false);
    let upstream = emulators().dynamodb_url();
    let doubled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&doubled);
    let batches = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&batches);
    let proxy = StubServer::start(move |request| {
        if is_batch_write(request) {
            counted.fetch_add(1, Ordering::SeqCst);
            let (_, writes) = batch_writes(request).remove(0);
            let mut keys: Vec<String> = writes
                .iter()
                .map(|w| {
                    let attributes = w
                        .get("PutRequest")
                        .map(|p| &p["Item"])
                        .unwrap_or_else(|| &w["DeleteRequest"]["Key"]);
                    attributes["pk"]["S"].as_str().unwrap().to_owned()
                })
                .collect();
            keys.sort();
            if keys.windows(2).any(|pair| pair[0] == pair[1]) {
                flag.store(true, Ordering::SeqCst);
            }
        }
        forward(&upstream, request)
    });
    let writer = writer_for(&table, proxy.url()).threads(8).build().unwrap();
    // Five hot keys written 60 times each, interleaved; some writes are
    // deletes, among them the last write of `hot-4`.
    for round in 0..60 {
        for key in 0..5 {
            let pk = format!("hot-{key}");
            if (round % 10 == 9 && round < 50) || (key == 4 && round == 59) {
                writer
                    .delete(item([("pk", AttributeValue::s(&pk))]))
                    .unwrap();
            } else {
                writer.put(entry(&pk, round)).unwrap();
            }
        }
    }
    writer.close().unwrap();
    assert!(!doubled.load(Ordering::SeqCst), "one key twice in a batch");
    let stored = contents(&client, &table);
    assert_eq!(stored.len(), 4, "{stored:?}");
    for key in 0..4 {
        assert_eq!(stored[&format!("hot-{key}")]["v"].as_u64(), Some(59));
    }
    // Each batch held at most one write per key: at least 60 of them.
    assert!(batches.load(Ordering::SeqCst) >= 60);
}

#[test]
fn bad_items_are_refused_at_put_with_the_item_named() {
    let client = client();
    let table = create_table(&client, true);
    let writer = writer_for(&table, &emulators().dynamodb_url())
        .build()
        .unwrap();
    let cases = [
        (
            WriteRequest::put(item([("pk", AttributeValue::s("a"))])),
            "key attribute sk is missing",
        ),
        (
            WriteRequest::put(item([
                ("pk", AttributeValue::s("a")),
                ("sk", AttributeValue::s("one")),
            ])),
            "sk must be of type N",
        ),
        (
            WriteRequest::put(item([
                ("pk", AttributeValue::s("a")),
                ("sk", AttributeValue::N("1.2.3".into())),
            ])),
            "sk is not a number",
        ),
        (
            WriteRequest::put(item([
                ("pk", AttributeValue::s("big")),
                ("sk", AttributeValue::n(1)),
                ("blob", AttributeValue::b(vec![7u8; 410 * 1024])),
            ])),
            "at most 409600 bytes",
        ),
        (
            WriteRequest::delete(item([
                ("pk", AttributeValue::s("a")),
                ("sk", AttributeValue::n(1)),
                ("v", AttributeValue::n(1)),
            ])),
            "not the attribute v",
        ),
    ];
    for (request, why) in cases {
        let error = writer.write(&table, request).unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_)), "{error}");
        let text = error.to_string();
        assert!(text.contains(why), "{text}");
        assert!(text.contains(&format!("table {table}")), "{text}");
        assert!(text.len() < 600, "the item is shown shortened: {text}");
    }
    let error = writer
        .write("no-such-table", WriteRequest::put(entry("a", 1)))
        .unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::ResourceNotFound), "{error}");
    assert_eq!(writer.stats().items_put, 0);
    writer.close().unwrap();

    let error = writer_for("no-such-table", &emulators().dynamodb_url())
        .build()
        .unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::ResourceNotFound), "{error}");
}

#[test]
fn a_write_dynamodb_refuses_fails_alone_and_the_rest_land() {
    let client = client();
    let table = create_table(&client, false);
    let writer = writer_for(&table, &emulators().dynamodb_url())
        .buffer_time(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut tickets = Vec::new();
    for n in 0..10 {
        tickets.push(writer.put(entry(&format!("good-{n}"), n)).unwrap());
    }
    // An empty set passes kcheck's checks; DynamoDB refuses it.
    let bad = item([
        ("pk", AttributeValue::s("bad")),
        ("tags", AttributeValue::Ss(Vec::new())),
    ]);
    let bad_ticket = writer.put(bad.clone()).unwrap();
    let error = writer.flush().unwrap_err().to_string();
    assert!(error.contains("1 writes failed for good"), "{error}");
    assert!(error.contains(&format!("table {table}")), "{error}");
    assert!(error.contains(r#""S":"bad""#), "{error}");
    assert_eq!(contents(&client, &table).len(), 10);
    for ticket in tickets {
        assert_eq!(writer.status(ticket).unwrap(), RecordStatus::Accepted);
    }
    assert_eq!(writer.status(bad_ticket).unwrap(), RecordStatus::Failed);
    writer.flush().expect("a failure is reported once");
    let failures = writer.take_failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].ticket, bad_ticket);
    assert_eq!(failures[0].request, WriteRequest::put(bad));
    assert_eq!(failures[0].error.code(), Some(&ErrorCode::Validation));
    assert_eq!(writer.stats().items_failed, 1);
    writer.close().unwrap();
}

#[test]
fn a_full_queue_blocks_put_until_writes_land() {
    let client = client();
    let table = create_table(&client, false);
    let upstream = emulators().dynamodb_url();
    let stalled = Arc::new(AtomicBool::new(true));
    let stall = Arc::clone(&stalled);
    let proxy = StubServer::start(move |request| {
        if is_batch_write(request) && stall.load(Ordering::SeqCst) {
            return StubResponse::json(
                400,
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"stalled"}"#,
            );
        }
        forward(&upstream, request)
    });
    let writer = writer_for(&table, proxy.url())
        .max_queue_size(10)
        .build()
        .unwrap();
    for n in 0..10 {
        writer.put(entry(&format!("k{n}"), n)).unwrap();
    }
    let error = writer
        .write_timeout(
            &table,
            WriteRequest::put(entry("k10", 10)),
            Duration::from_millis(300),
        )
        .unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error}");
    let error = writer
        .flush_timeout(Duration::from_millis(200))
        .unwrap_err();
    assert!(error.to_string().contains("10 writes"), "{error}");
    assert!(writer.stats().throttles > 0);
    stalled.store(false, Ordering::SeqCst);
    writer
        .write_timeout(&table, WriteRequest::put(entry("k10", 10)), WAIT)
        .expect("room once writes land");
    writer.close().unwrap();
    assert_eq!(contents(&client, &table).len(), 11);
    let error = writer.put(entry("late", 0)).unwrap_err();
    assert!(error.to_string().contains("closed"), "{error}");
}

#[test]
fn a_lost_answer_is_resent_and_the_last_write_of_a_key_still_wins() {
    let client = client();
    let table = create_table(&client, false);
    let upstream = emulators().dynamodb_url();
    let dropped = Arc::new(Mutex::new(HashMap::<String, u32>::new()));
    let drops = Arc::clone(&dropped);
    // The first batch of every table goes through, and its answer is lost.
    let proxy = StubServer::start(move |request| {
        let answer = forward(&upstream, request);
        if is_batch_write(request) {
            let (table, _) = batch_writes(request).remove(0);
            let mut drops = drops.lock().unwrap();
            let count = drops.entry(table).or_default();
            *count += 1;
            if *count == 1 {
                return StubResponse::Drop;
            }
        }
        answer
    });
    let writer = writer_for(&table, proxy.url()).threads(1).build().unwrap();
    for version in 0..5 {
        writer.put(entry("only", version)).unwrap();
    }
    writer.close().unwrap();
    let stored = contents(&client, &table);
    assert_eq!(stored["only"]["v"].as_u64(), Some(4));
    assert!(dropped.lock().unwrap()[&table] >= 2);
    assert!(writer.stats().retries >= 1);
}
