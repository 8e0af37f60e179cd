//! Every Kinesis operation against the ferrokinesis emulator.

mod support;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use kcheck::kinesis::{IteratorPosition, KinesisClient, PutRecordsEntry, StreamRef};
use kcheck::ErrorCode;

fn client() -> KinesisClient {
    KinesisClient::new(&support::kinesis_config()).unwrap()
}

fn new_stream(client: &KinesisClient, shards: u32) -> StreamRef {
    let name = support::unique_name("stream");
    client.create_stream(&name, shards).unwrap();
    let stream = StreamRef::from(&name);
    client
        .wait_for_stream_active(&stream, Duration::from_secs(10))
        .unwrap();
    stream
}

fn read_all(
    client: &KinesisClient,
    stream: &StreamRef,
    shard_id: &str,
    position: IteratorPosition,
) -> Vec<kcheck::kinesis::Record> {
    let mut iterator = client
        .get_shard_iterator(stream, shard_id, &position)
        .unwrap();
    let mut records = Vec::new();
    for _ in 0..100 {
        let output = client.get_records(&iterator, 1000).unwrap();
        let empty = output.records.is_empty();
        records.extend(output.records);
        match output.page.next_shard_iterator {
            Some(next) if !empty => iterator = next,
            _ => break,
        }
    }
    records
}

#[test]
fn create_describe_and_delete_a_stream() {
    let client = client();
    let stream = new_stream(&client, 3);
    let summary = client.describe_stream_summary(&stream).unwrap();
    assert_eq!(summary.stream_name, stream.name());
    assert_eq!(summary.stream_status, "ACTIVE");
    assert_eq!(summary.open_shard_count, 3);
    assert!(
        summary.stream_arn.starts_with("arn:aws:kinesis:"),
        "{}",
        summary.stream_arn
    );
    assert!(summary.retention_period_hours >= 24);

    // An ARN names the same stream (ferrokinesis validates StreamName only,
    // so requests by StreamARN are checked in tests/transport.rs).
    let by_arn = StreamRef::from(summary.stream_arn.as_str());
    assert!(matches!(by_arn, StreamRef::Arn(_)));
    assert_eq!(by_arn.name(), stream.name());

    client.delete_stream(&stream).unwrap();
    let gone = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.describe_stream_summary(&stream) {
            Err(e) => {
                assert_eq!(e.code(), Some(&ErrorCode::ResourceNotFound), "{e}");
                assert!(e.to_string().starts_with("DescribeStreamSummary: "), "{e}");
                break;
            }
            Ok(_) if std::time::Instant::now() < gone => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Ok(s) => panic!("stream still there: {s:?}"),
        }
    }
}

#[test]
fn a_missing_stream_is_a_final_resource_not_found() {
    let error = client()
        .list_shards(&StreamRef::from("no-such-stream"), None)
        .unwrap_err();
    assert_eq!(error.code(), Some(&ErrorCode::ResourceNotFound));
    assert!(!error.is_retryable());
}

#[test]
fn put_records_and_read_them_back_from_every_iterator_type() {
    let client = client();
    let stream = new_stream(&client, 1);
    let shard = client
        .list_shards(&stream, None)
        .unwrap()
        .remove(0)
        .shard_id;

    let before = SystemTime::now() - Duration::from_secs(1);
    let entries: Vec<_> = (0..20)
        .map(|i| PutRecordsEntry::new(format!("key-{i}"), format!("payload {i}").into_bytes()))
        .collect();
    let sequences = client.put_records_all(&stream, &entries).unwrap();
    assert_eq!(sequences.len(), 20);
    assert!(sequences.iter().all(|s| !s.is_empty()));

    let all = read_all(&client, &stream, &shard, IteratorPosition::TrimHorizon);
    assert_eq!(all.len(), 20);
    assert_eq!(all[3].data, b"payload 3");
    assert_eq!(all[3].partition_key, "key-3");
    assert_eq!(all[3].sequence_number, sequences[3]);
    assert!(all[3].approximate_arrival_timestamp.unwrap() >= before);

    let at = read_all(
        &client,
        &stream,
        &shard,
        IteratorPosition::AtSequenceNumber(sequences[5].clone()),
    );
    assert_eq!(at[0].sequence_number, sequences[5]);
    assert_eq!(at.len(), 15);
    let after = read_all(
        &client,
        &stream,
        &shard,
        IteratorPosition::AfterSequenceNumber(sequences[5].clone()),
    );
    assert_eq!(after[0].sequence_number, sequences[6]);
    assert_eq!(after.len(), 14);
    let timestamp = read_all(
        &client,
        &stream,
        &shard,
        IteratorPosition::AtTimestamp(before),
    );
    assert_eq!(timestamp.len(), 20);
    let latest = read_all(&client, &stream, &shard, IteratorPosition::Latest);
    assert!(latest.is_empty());
}

#[test]
fn get_records_respects_the_limit_and_reports_lag() {
    let client = client();
    let stream = new_stream(&client, 1);
    let shard = client
        .list_shards(&stream, None)
        .unwrap()
        .remove(0)
        .shard_id;
    let entries: Vec<_> = (0..30)
        .map(|i| PutRecordsEntry::new("k", vec![i as u8; 10]))
        .collect();
    client.put_records_all(&stream, &entries).unwrap();
    let iterator = client
        .get_shard_iterator(&stream, &shard, &IteratorPosition::TrimHorizon)
        .unwrap();
    let output = client.get_records(&iterator, 7).unwrap();
    assert_eq!(output.records.len(), 7);
    assert_eq!(output.page.record_count, 7);
    assert!(output.page.next_shard_iterator.is_some());
    assert!(output.page.millis_behind_latest.is_some());
    assert!(client.get_records(&iterator, 0).is_err());
    assert!(client.get_records(&iterator, 10_001).is_err());
}

#[test]
fn more_than_500_records_are_written_in_batches() {
    let client = client();
    let stream = new_stream(&client, 2);
    let entries: Vec<_> = (0..1203)
        .map(|i| PutRecordsEntry::new(format!("pk-{i}"), format!("{i}").into_bytes()))
        .collect();
    let sequences = client.put_records_all(&stream, &entries).unwrap();
    assert_eq!(sequences.iter().collect::<HashSet<_>>().len(), 1203);
    let mut seen = 0;
    for shard in client.list_shards(&stream, None).unwrap() {
        seen += read_all(
            &client,
            &stream,
            &shard.shard_id,
            IteratorPosition::TrimHorizon,
        )
        .len();
    }
    assert_eq!(seen, 1203);
    assert!(client.put_records(&stream, &[]).is_err());
}

#[test]
fn split_and_merge_reshard_the_stream() {
    let client = client();
    let stream = new_stream(&client, 2);
    let shards = client.list_shards(&stream, None).unwrap();
    let parent = &shards[0];
    let start: u128 = parent.hash_key_range.starting_hash_key.parse().unwrap();
    let end: u128 = parent.hash_key_range.ending_hash_key.parse().unwrap();
    let middle = start + (end - start) / 2;
    client
        .put_records_all(
            &stream,
            &[PutRecordsEntry::new("a", b"before split".to_vec())],
        )
        .unwrap();
    client
        .split_shard(&stream, &parent.shard_id, &middle.to_string())
        .unwrap();
    client
        .wait_for_stream_active(&stream, Duration::from_secs(10))
        .unwrap();

    let after_split = client.list_shards(&stream, None).unwrap();
    assert_eq!(after_split.len(), 4);
    let closed = after_split
        .iter()
        .find(|s| s.shard_id == parent.shard_id)
        .unwrap();
    assert!(closed.is_closed());
    let children: Vec<_> = after_split
        .iter()
        .filter(|s| s.parent_shard_id.as_deref() == Some(parent.shard_id.as_str()))
        .collect();
    assert_eq!(children.len(), 2);

    // Reading the closed parent to its end ends without a next iterator.
    let mut iterator = client
        .get_shard_iterator(&stream, &parent.shard_id, &IteratorPosition::TrimHorizon)
        .unwrap();
    let mut ended = false;
    for _ in 0..20 {
        let output = client.get_records(&iterator, 1000).unwrap();
        match output.page.next_shard_iterator {
            Some(next) => iterator = next,
            None => {
                ended = true;
                break;
            }
        }
    }
    assert!(ended, "a closed shard's end must be reported");

    client
        .merge_shards(&stream, &children[0].shard_id, &children[1].shard_id)
        .unwrap();
    client
        .wait_for_stream_active(&stream, Duration::from_secs(10))
        .unwrap();
    let after_merge = client.list_shards(&stream, None).unwrap();
    let merged = after_merge
        .iter()
        .find(|s| s.parents().count() == 2)
        .expect("a merged child with two parents");
    let parents: HashSet<_> = merged.parents().collect();
    assert!(parents.contains(children[0].shard_id.as_str()));
    assert!(parents.contains(children[1].shard_id.as_str()));
}
