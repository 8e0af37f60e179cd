//! Faults on the way to Kinesis: expired iterators, throttling of one shard,
//! dropped connections, access denied and a deleted stream. A loopback proxy
//! in front of the emulator injects what the emulator cannot.

#[path = "support/stub_server.rs"]
mod stub_server;
mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcheck::kinesis::{KinesisClient, PutRecordsEntry, StreamRef};
use kcheck::transport::{AwsConfig, Credentials, Environment, HttpOptions};
use kcheck::{Consumer, ErrorCode};
use kcheck_emulators::{Emulators, Options};
use stub_server::{forward, StubRequest, StubResponse, StubServer};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn operation(request: &StubRequest) -> &str {
    request
        .header("x-amz-target")
        .and_then(|t| t.strip_prefix("Kinesis_20131202."))
        .unwrap_or("")
}

fn body(request: &StubRequest) -> serde_json::Value {
    serde_json::from_slice(&request.body).unwrap_or_default()
}

fn via(proxy: &StubServer, stream: &StreamRef) -> Consumer {
    consumer_for(stream)
        .aws_config(config_for(proxy.url()))
        .build()
        .unwrap()
}

#[test]
fn expired_iterators_are_renewed_after_the_last_fetched_record() {
    let emulators = Emulators::start_with(Options {
        iterator_ttl_seconds: 1,
        ..Options::default()
    });
    let kinesis = KinesisClient::new(&config_for(&emulators.kinesis_url())).unwrap();
    // Count the expiries the emulator reports, to be sure they happened.
    let upstream = emulators.kinesis_url();
    let expiries = Arc::new(AtomicU32::new(0));
    let count = expiries.clone();
    let proxy = StubServer::start(move |request| {
        let response = forward(&upstream, request);
        if let StubResponse::Full { body, .. } = &response {
            if String::from_utf8_lossy(body).contains("ExpiredIteratorException") {
                count.fetch_add(1, Ordering::SeqCst);
            }
        }
        response
    });
    let stream = StreamRef::from("expiring");
    kinesis.create_stream(stream.name(), 1).unwrap();
    kinesis
        .wait_for_stream_active(&stream, Duration::from_secs(10))
        .unwrap();
    let expected = put_payloads(&kinesis, &stream, 0..40);
    // A tiny queue: the fetcher waits with its iterator while the caller is slow.
    let consumer = consumer_for(&stream)
        .aws_config(config_for(proxy.url()))
        .max_queue_size(2)
        .record_limit(5)
        .build()
        .unwrap();
    let mut got = payloads(&take(&consumer, 5, WAIT));
    std::thread::sleep(Duration::from_millis(2500));
    got.extend(payloads(&take(&consumer, 35, WAIT)));
    assert_eq!(got, expected, "in order, none lost, none twice");
    assert!(expiries.load(Ordering::SeqCst) > 0, "the iterator expired");
}

#[test]
fn a_throttled_shard_backs_off_alone() {
    let (kinesis, stream) = create_stream(2);
    let shards = kinesis.list_shards(&stream, None).unwrap();
    let throttled_shard = shards[0].shard_id.clone();
    let iterators: Arc<Mutex<HashSet<String>>> = Arc::default();
    let throttles = Arc::new(AtomicU32::new(0));
    let throttled_for = Duration::from_secs(6);
    let until = Instant::now() + throttled_for;
    let upstream = emulators().kinesis_url();
    let (seen, count) = (iterators.clone(), throttles.clone());
    let proxy = StubServer::start(move |request| {
        let input = body(request);
        match operation(request) {
            "GetShardIterator" if input["ShardId"] == throttled_shard.as_str() => {
                let response = forward(&upstream, request);
                remember_iterator(&response, "ShardIterator", &seen);
                response
            }
            "GetRecords"
                if seen
                    .lock()
                    .unwrap()
                    .contains(input["ShardIterator"].as_str().unwrap_or("")) =>
            {
                if Instant::now() < until {
                    count.fetch_add(1, Ordering::SeqCst);
                    return StubResponse::json(
                        400,
                        r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard"}"#,
                    );
                }
                let response = forward(&upstream, request);
                remember_iterator(&response, "NextShardIterator", &seen);
                response
            }
            _ => forward(&upstream, request),
        }
    });
    let expected = put_payloads(&kinesis, &stream, 0..200);
    let consumer = via(&proxy, &stream);
    let records = take(&consumer, 200, WAIT);
    let got = payloads(&records);
    assert_eq!(
        got.iter().collect::<HashSet<_>>(),
        expected.iter().collect::<HashSet<_>>()
    );
    assert_eq!(got.len(), 200);
    // Backed off: pacing alone (5 calls/s) would have made 30 calls.
    let throttled_calls = throttles.load(Ordering::SeqCst);
    assert!(
        (1..=15).contains(&throttled_calls),
        "{throttled_calls} throttled calls in {throttled_for:?}"
    );
    // The other shard was read while this one waited.
    let position_of_first =
        |shard: &str| records.iter().position(|r| &*r.shard_id == shard).unwrap();
    assert!(position_of_first(&shards[1].shard_id) < position_of_first(&shards[0].shard_id));
    let stats: HashMap<String, u64> = consumer
        .stats()
        .shards
        .into_iter()
        .map(|s| (s.shard_id, s.throttles))
        .collect();
    assert!(stats[&shards[0].shard_id] > 0, "{stats:?}");
    assert_eq!(stats[&shards[1].shard_id], 0, "{stats:?}");
}

fn remember_iterator(response: &StubResponse, field: &str, seen: &Mutex<HashSet<String>>) {
    if let StubResponse::Full { body, .. } = response {
        let output: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        if let Some(iterator) = output[field].as_str() {
            seen.lock().unwrap().insert(iterator.to_owned());
        }
    }
}

#[test]
fn dropped_connections_are_retried_and_counted() {
    let (kinesis, stream) = create_stream(1);
    let upstream = emulators().kinesis_url();
    let calls = AtomicU32::new(0);
    let proxy = StubServer::start(move |request| {
        if operation(request) == "GetRecords" && calls.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
            StubResponse::Drop
        } else {
            forward(&upstream, request)
        }
    });
    let expected = put_payloads(&kinesis, &stream, 0..50);
    let consumer = via(&proxy, &stream);
    let got = payloads(&take(&consumer, 50, WAIT));
    assert_eq!(got, expected);
    assert!(consumer.stats().shards[0].errors > 0);
}

#[test]
fn a_page_that_breaks_off_after_records_were_queued_resumes_after_them() {
    let (kinesis, stream) = create_stream(1);
    let expected = put_payloads(&kinesis, &stream, 0..50);
    // The first page with records is cut in half: the records before the cut
    // are queued as they are decoded, then the body turns out malformed.
    let upstream = emulators().kinesis_url();
    let cut = Arc::new(AtomicU32::new(0));
    let cuts = cut.clone();
    let proxy = StubServer::start(move |request| {
        let response = forward(&upstream, request);
        match response {
            StubResponse::Full {
                status: 200,
                content_type,
                body,
            } if operation(request) == "GetRecords"
                && String::from_utf8_lossy(&body).contains("payload-")
                && cuts.fetch_add(1, Ordering::SeqCst) == 0 =>
            {
                StubResponse::Full {
                    status: 200,
                    content_type,
                    body: body[..body.len() / 2].to_vec(),
                }
            }
            other => other,
        }
    });
    // One record per channel item, so records are queued before the cut.
    let consumer = consumer_for(&stream)
        .aws_config(config_for(proxy.url()))
        .max_queue_size(8)
        .build()
        .unwrap();
    let got = payloads(&take(&consumer, 50, WAIT));
    assert_eq!(got, expected, "every record once, in order");
    assert!(cut.load(Ordering::SeqCst) > 0, "a page was cut");
    assert!(
        take(&consumer, 1, Duration::from_millis(500)).is_empty(),
        "nothing is delivered twice"
    );
    assert!(consumer.stats().shards[0].errors > 0);
}

#[test]
fn pages_larger_than_the_response_cap_are_asked_again_with_fewer_records() {
    let (kinesis, stream) = create_stream(1);
    let entries: Vec<_> = (0..60)
        .map(|i| PutRecordsEntry::new(format!("key-{i}"), vec![b'a' + (i % 26) as u8; 1024]))
        .collect();
    kinesis.put_records_all(&stream, &entries).unwrap();
    // One page of 60 records of 1 KiB is about 90 KB; the cap is 16 KB.
    let small_cap = AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(emulators().kinesis_url())
        .credentials(Credentials::new("AKIDTEST", "test-secret", None, None))
        .environment(Environment::from_vars(Vec::<(String, String)>::new()))
        .http_options(HttpOptions {
            max_response_bytes: 16 << 10,
            ..HttpOptions::default()
        })
        .build()
        .unwrap();
    let consumer = consumer_for(&stream).aws_config(small_cap).build().unwrap();
    let got = take(&consumer, 60, WAIT);
    let data: Vec<Vec<u8>> = got.into_iter().map(|r| r.data).collect();
    let expected: Vec<Vec<u8>> = entries.into_iter().map(|e| e.data).collect();
    assert_eq!(data, expected, "every record once, in order");
    assert!(consumer.stats().shards[0].errors > 0, "the cap was hit");
}

#[test]
fn access_denied_reaches_the_caller_instead_of_spinning() {
    let (kinesis, stream) = create_stream(1);
    put_payloads(&kinesis, &stream, 0..5);
    let upstream = emulators().kinesis_url();
    let denied = Arc::new(AtomicU32::new(0));
    let count = denied.clone();
    let proxy = StubServer::start(move |request| {
        if operation(request) == "GetRecords" {
            count.fetch_add(1, Ordering::SeqCst);
            StubResponse::json(
                400,
                r#"{"__type":"AccessDeniedException","message":"User is not authorized to perform kinesis:GetRecords"}"#,
            )
        } else {
            forward(&upstream, request)
        }
    });
    let consumer = via(&proxy, &stream);
    let error = consumer.next_timeout(WAIT).unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::AccessDenied), "{error}");
    assert!(error.to_string().contains("GetRecords"), "{error}");
    // The shard is not retried in a tight loop: at most one try per discovery cycle.
    let before = denied.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(1));
    let during = denied.load(Ordering::SeqCst) - before;
    assert!(
        during <= 1 + (1000 / DISCOVERY.as_millis() as u32),
        "{during} calls in 1 s"
    );
}

#[test]
fn a_deleted_stream_is_reported_to_the_caller() {
    let (kinesis, stream) = create_stream(1);
    put_payloads(&kinesis, &stream, 0..3);
    let consumer = consumer_for(&stream).build().unwrap();
    assert_eq!(take(&consumer, 3, WAIT).len(), 3);
    kinesis.delete_stream(&stream).unwrap();
    let deadline = Instant::now() + WAIT;
    let error = loop {
        match consumer.next_timeout(Duration::from_millis(200)) {
            Err(error) => break error,
            Ok(_) if Instant::now() < deadline => continue,
            Ok(_) => panic!("no error after the stream was deleted"),
        }
    };
    assert_eq!(error.code(), Some(&ErrorCode::ResourceNotFound), "{error}");
}

/// A proxy in front of DynamoDB that throttles or drops lease writes
/// (UpdateItem) while `failing` says so.
fn dynamodb_proxy(
    failing: Arc<dyn Fn() -> Option<StubResponse> + Send + Sync>,
) -> (StubServer, Arc<AtomicU32>) {
    let upstream = emulators().dynamodb_url();
    let injected = Arc::new(AtomicU32::new(0));
    let count = injected.clone();
    let proxy = StubServer::start(move |request| {
        let is_lease_write = request.header("x-amz-target") == Some("DynamoDB_20120810.UpdateItem");
        match failing() {
            Some(fault) if is_lease_write => {
                count.fetch_add(1, Ordering::SeqCst);
                fault
            }
            _ => forward(&upstream, request),
        }
    });
    (proxy, injected)
}

fn checkpointer_via(proxy: &StubServer, table: &str) -> kcheck::DynamoDbCheckpointer {
    dynamodb_checkpointer("app", table)
        .aws_config(config_for(proxy.url()))
        .build()
        .unwrap()
}

#[test]
fn throttled_heartbeats_are_retried_and_the_lease_is_kept() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("throttled-heartbeats");
    let throttling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let throttled = throttling.clone();
    let (proxy, injected) = dynamodb_proxy(Arc::new(move || {
        throttled.load(Ordering::SeqCst).then(|| {
            StubResponse::json(
                400,
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"throttled"}"#,
            )
        })
    }));
    let consumer = consumer_for(&stream)
        .checkpointer(checkpointer_via(&proxy, &table))
        .build()
        .unwrap();
    let expected = put_payloads(&kinesis, &stream, 0..20);
    let got = payloads(&take(&consumer, 20, WAIT));
    assert_eq!(got, expected);
    // Throttle the renewals of the held lease for half a session.
    throttling.store(true, Ordering::SeqCst);
    std::thread::sleep(SESSION_TIMEOUT / 2);
    throttling.store(false, Ordering::SeqCst);
    let throttled_heartbeats = injected.load(Ordering::SeqCst);
    assert!(
        throttled_heartbeats >= 2,
        "{throttled_heartbeats} heartbeats throttled"
    );
    let heartbeats = consumer.stats().heartbeats;
    assert!(
        wait_until(SESSION_TIMEOUT, || consumer.stats().heartbeats > heartbeats),
        "renewals resumed: {:?}",
        consumer.stats()
    );
    let stats = consumer.stats();
    assert_eq!(stats.lease_losses, 0, "{stats:?}");
    assert_eq!(stats.shards.len(), 1);
    assert!(stats.heartbeat_failures >= 2, "{stats:?}");
    let more = put_payloads(&kinesis, &stream, 20..30);
    assert_eq!(payloads(&take(&consumer, 10, WAIT)), more);
    consumer.checkpoint().unwrap();
}

#[test]
fn an_owner_that_cannot_renew_for_session_timeout_stops_the_shard_itself() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("fenced");
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let is_broken = broken.clone();
    let (proxy, _) = dynamodb_proxy(Arc::new(move || {
        is_broken
            .load(Ordering::SeqCst)
            .then_some(StubResponse::Drop)
    }));
    let consumer = consumer_for(&stream)
        .checkpointer(checkpointer_via(&proxy, &table))
        .build()
        .unwrap();
    put_payloads(&kinesis, &stream, 0..5);
    assert_eq!(take(&consumer, 5, WAIT).len(), 5);
    broken.store(true, Ordering::SeqCst);
    let broken_at = Instant::now();
    let fenced = wait_until(SESSION_TIMEOUT * 2, || consumer.stats().lease_losses == 1);
    assert!(fenced, "{:?}", consumer.stats());
    // Not before its lease could have run out: the last renewal was sent at
    // most a heartbeat before the break, and holds 90% of a session.
    let fenced_after = broken_at.elapsed();
    assert!(
        fenced_after >= SESSION_TIMEOUT * 9 / 10 - HEARTBEAT,
        "fenced after {fenced_after:?}"
    );
    assert!(consumer.stats().shards.is_empty());
    assert!(consumer.stats().heartbeat_failures > 0);
}
