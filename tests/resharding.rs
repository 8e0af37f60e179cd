//! Splits and merges while consumers read: parents are drained (their end
//! checkpointed) before any child record is delivered, and nothing is lost.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kcheck::checkpoint::{Checkpoint, Checkpointer, LeaseScope};
use kcheck::kinesis::{KinesisClient, Shard, StreamRef};
use kcheck::Consumer;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

/// (when received, shard, payload) across all consumers, until `total`.
fn drain_timed(consumers: &[&Consumer], total: usize) -> Vec<(Instant, String, String)> {
    drain(consumers, total, WAIT)
        .into_iter()
        .flatten()
        .map(|(at, r)| {
            (
                at,
                r.shard_id.to_string(),
                String::from_utf8(r.data).unwrap(),
            )
        })
        .collect()
}

fn split_in_half(kinesis: &KinesisClient, stream: &StreamRef, shard: &Shard) {
    let start: u128 = shard.hash_key_range.starting_hash_key.parse().unwrap();
    let end: u128 = shard.hash_key_range.ending_hash_key.parse().unwrap();
    kinesis
        .split_shard(
            stream,
            &shard.shard_id,
            &(start + (end - start) / 2).to_string(),
        )
        .unwrap();
    kinesis
        .wait_for_stream_active(stream, Duration::from_secs(10))
        .unwrap();
}

#[test]
fn split_and_merge_during_consumption_keep_parents_before_children() {
    let (kinesis, stream) = create_stream(2);
    let table = unique_name("reshard");
    let consumer = || {
        consumer_for(&stream)
            .checkpointer(dynamodb_checkpointer("app", &table).build().unwrap())
            .build()
            .unwrap()
    };
    let (a, b) = (consumer(), consumer());
    let mut expected = put_payloads(&kinesis, &stream, 0..300);
    let mut got = drain_timed(&[&a, &b], 150);

    let parent = kinesis.list_shards(&stream, None).unwrap().remove(0);
    split_in_half(&kinesis, &stream, &parent);
    expected.extend(put_payloads(&kinesis, &stream, 300..600));
    let children: Vec<Shard> = kinesis
        .list_shards(&stream, None)
        .unwrap()
        .into_iter()
        .filter(|s| s.parent_shard_id.as_deref() == Some(parent.shard_id.as_str()))
        .collect();
    assert_eq!(children.len(), 2);
    kinesis
        .merge_shards(&stream, &children[0].shard_id, &children[1].shard_id)
        .unwrap();
    kinesis
        .wait_for_stream_active(&stream, Duration::from_secs(10))
        .unwrap();
    expected.extend(put_payloads(&kinesis, &stream, 600..900));

    got.extend(drain_timed(&[&a, &b], 900 - got.len()));
    let payloads: Vec<&String> = got.iter().map(|(_, _, p)| p).collect();
    let unique: HashSet<&String> = payloads.iter().copied().collect();
    assert_eq!(unique.len(), payloads.len(), "no record twice");
    let missing: Vec<_> = expected.iter().filter(|p| !unique.contains(p)).collect();
    assert!(
        missing.is_empty(),
        "lost {} records, e.g. {:?}",
        missing.len(),
        missing.first()
    );

    // Every parent's last record came before its children's first.
    let shards = kinesis.list_shards(&stream, None).unwrap();
    let last_of = |shard: &str| {
        got.iter()
            .filter(|(_, s, _)| s == shard)
            .map(|(t, _, _)| *t)
            .max()
    };
    let first_of = |shard: &str| {
        got.iter()
            .filter(|(_, s, _)| s == shard)
            .map(|(t, _, _)| *t)
            .min()
    };
    let mut checked = 0;
    for child in &shards {
        for parent in child.parents() {
            if let (Some(parent_end), Some(child_start)) =
                (last_of(parent), first_of(&child.shard_id))
            {
                assert!(
                    parent_end <= child_start,
                    "{} delivered before parent {parent} ended",
                    child.shard_id
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 3,
        "split and merge children both read ({checked} parent links checked)"
    );

    // Closed parents are recorded as finished in the lease table.
    let checkpointer = dynamodb_checkpointer("app", &table).build().unwrap();
    let scope = LeaseScope {
        group: "app".into(),
        stream: stream.name().to_owned(),
    };
    let checkpoints = || -> HashMap<String, Option<Checkpoint>> {
        checkpointer
            .leases(&scope)
            .unwrap()
            .into_iter()
            .map(|l| (l.shard_id, l.checkpoint))
            .collect()
    };
    let closed: Vec<&str> = shards
        .iter()
        .filter(|s| s.is_closed())
        .map(|s| s.shard_id.as_str())
        .collect();
    assert_eq!(closed.len(), 3, "one split parent and two merged parents");
    let finished = wait_until(Duration::from_secs(5), || {
        let checkpoints = checkpoints();
        closed
            .iter()
            .all(|id| checkpoints.get(*id) == Some(&Some(Checkpoint::ShardEnd)))
    });
    assert!(
        finished,
        "closed shards not at SHARD_END: {:?}",
        checkpoints()
    );
}
