//! Moving a consumer group between Redis and DynamoDB, both ways, and out
//! of async-kinesis's Redis layout, against a real redis-server and the
//! DynamoDB emulator: copies round-trip exactly (SHARD_END'd parents,
//! sub-sequences, pinned starts), a live target is refused unless forced,
//! async-kinesis's keys are read as it writes them, and a consumer started
//! on the target resumes right after the copied positions.
#![cfg(feature = "redis")]

#[path = "support/redis.rs"]
mod redis_server;
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kcheck::checkpoint::{
    copy, AsyncKinesisRedisTable, CheckpointTable, Checkpointer, ConsumerGroup, LeaseState,
    SavedCheckpoint,
};
use kcheck::{Consumer, Error, RedisCheckpointer};
use redis_server::RedisServer;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn redis_checkpointer(server: &RedisServer, group: &str) -> RedisCheckpointer {
    RedisCheckpointer::builder(group)
        .url(server.url())
        .session_timeout(SESSION_TIMEOUT)
        .heartbeat_frequency(HEARTBEAT)
        .auto_checkpoint(false)
        .build()
        .unwrap()
}

fn redis_consumer(
    server: &RedisServer,
    stream: &kcheck::kinesis::StreamRef,
    group: &str,
) -> Consumer {
    consumer_for(stream)
        .checkpointer(redis_checkpointer(server, group))
        .build()
        .unwrap()
}

/// A DynamoDB group whose table exists.
fn dynamodb_group(group: &str, table: &str) -> ConsumerGroup {
    let checkpointer = manual_checkpointer(group, table);
    checkpointer.prepare().unwrap();
    ConsumerGroup::new(&checkpointer)
}

fn saved(group: &str, stream: &str, shard: &str) -> SavedCheckpoint {
    SavedCheckpoint {
        group: group.into(),
        stream: stream.into(),
        shard: shard.into(),
        sequence: None,
        sub_sequence: 0,
        parents: Vec::new(),
        start: None,
    }
}

/// A resharded group on two streams: a parent read to its end, children
/// listing it (one inside a KPL aggregate), a pinned start, and a shard
/// not checkpointed yet.
fn resharded_group(group: &str) -> Vec<SavedCheckpoint> {
    let parent = "shardId-000000000000";
    vec![
        SavedCheckpoint {
            sequence: Some("SHARD_END".into()),
            ..saved(group, "orders", parent)
        },
        SavedCheckpoint {
            sequence: Some("49590338271490256608559692538361571095921575989136588802".into()),
            sub_sequence: 3,
            parents: vec![parent.into()],
            ..saved(group, "orders", "shardId-000000000001")
        },
        SavedCheckpoint {
            parents: vec![parent.into()],
            start: Some("timestamp:1767225600000".into()),
            ..saved(group, "orders", "shardId-000000000002")
        },
        SavedCheckpoint {
            sequence: Some("49590338271490256608559692538361571095921575989136588999".into()),
            ..saved(group, "payments", "shardId-000000000000")
        },
        saved(group, "payments", "shardId-000000000001"),
    ]
}

#[test]
fn a_resharded_group_round_trips_exactly_between_redis_and_dynamodb() {
    let server = RedisServer::start();
    let table = unique_name("leases");
    let group = "migrate";
    let expected = resharded_group(group);
    let redis = redis_checkpointer(&server, group);
    let changes = redis.write(&expected, false).unwrap();
    assert_eq!(changes.len(), expected.len());
    assert_eq!(redis.read().unwrap().checkpoints, expected);

    // Redis → DynamoDB.
    let dynamodb = dynamodb_group(group, &table);
    let (changes, notes) = copy(&redis, &dynamodb, false).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(changes.len(), expected.len());
    assert!(changes
        .iter()
        .all(|c| c.before.is_none() && c.fenced.is_none()));
    assert_eq!(dynamodb.export().unwrap(), expected);
    let leases = dynamodb.leases().unwrap();
    assert_eq!(leases[0].state, LeaseState::Finished);
    assert!(leases[1..].iter().all(|l| l.state == LeaseState::Free));

    // DynamoDB → a fresh Redis server, and over the first one's positions.
    let other = RedisServer::start();
    let back = redis_checkpointer(&other, group);
    copy(&dynamodb, &back, false).unwrap();
    assert_eq!(back.read().unwrap().checkpoints, expected);
    let mut moved = expected.clone();
    moved[3].sequence = Some("49590338271490256608559692538361571095921575989136589000".into());
    moved[3].sub_sequence = 1;
    dynamodb.import(&moved, false).unwrap();
    let (changes, _) = copy(&dynamodb, &redis, false).unwrap();
    assert_eq!(changes[3].before.as_ref().map(ToString::to_string), {
        let old = &expected[3];
        Some(format!("{}/0", old.sequence.as_deref().unwrap()))
    });
    assert_eq!(redis.read().unwrap().checkpoints, moved);
    // The leases the copy wrote are free, their counters moved on.
    let scope = kcheck::checkpoint::LeaseScope {
        group: group.into(),
        stream: "payments".into(),
    };
    let lease = redis
        .lease(&scope, "shardId-000000000000")
        .unwrap()
        .unwrap();
    assert_eq!(lease.owner, None);
    assert!(lease.counter >= 2, "{lease:?}");
}

#[test]
fn a_consumer_resumes_after_the_copied_positions_both_ways() {
    let server = RedisServer::start();
    let (kinesis, stream) = create_stream(2);
    let table = unique_name("leases");
    let mut sent = put_payloads(&kinesis, &stream, 0..30);
    sent.sort();

    // Redis: read 10, checkpoint, stop.
    let first = redis_consumer(&server, &stream, "moving");
    let mut read = payloads(&take(&first, 10, WAIT));
    assert_eq!(read.len(), 10);
    first.checkpoint().unwrap();
    first.close().unwrap();

    // → DynamoDB: the rest, nothing again.
    let redis = redis_checkpointer(&server, "moving");
    copy(&redis, &dynamodb_group("moving", &table), false).unwrap();
    let second = manual_consumer(&stream, "moving", &table);
    let more = payloads(&take(&second, 10, WAIT));
    assert_eq!(more.len(), 10);
    second.checkpoint().unwrap();
    second.close().unwrap();
    read.extend(more);

    // → back to Redis: the last 10 only.
    copy(&dynamodb_group("moving", &table), &redis, false).unwrap();
    let third = redis_consumer(&server, &stream, "moving");
    read.extend(payloads(&take(&third, 11, Duration::from_secs(8))));
    third.close().unwrap();
    read.sort();
    assert_eq!(read, sent, "each record once, none skipped");
}

#[test]
fn a_sub_sequence_copied_from_redis_resumes_inside_the_aggregate() {
    let server = RedisServer::start();
    let (_, stream) = create_stream(1);
    let table = unique_name("leases");
    put_one_aggregate(&stream, 6);
    let worker = redis_consumer(&server, &stream, "kpl");
    let records = take(&worker, 6, WAIT);
    assert_eq!(records.len(), 6);
    assert!(records[2].sub_sequence_number > 0, "aggregated");
    worker.checkpoint_record(&records[2]).unwrap();
    worker.close().unwrap();

    let dynamodb = dynamodb_group("kpl", &table);
    copy(&redis_checkpointer(&server, "kpl"), &dynamodb, false).unwrap();
    assert_eq!(
        dynamodb.export().unwrap()[0].sub_sequence,
        records[2].sub_sequence_number
    );
    let resumed = manual_consumer(&stream, "kpl", &table);
    assert_eq!(payloads(&take(&resumed, 3, WAIT)), payloads(&records[3..]));
    assert!(take(&resumed, 1, Duration::from_millis(500)).is_empty());
    resumed.close().unwrap();
}

#[test]
fn a_copy_into_a_live_group_is_refused_unless_forced_and_names_the_lease() {
    let server = RedisServer::start();
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("leases");
    put_payloads(&kinesis, &stream, 0..10);
    let running = redis_consumer(&server, &stream, "live");
    assert_eq!(take(&running, 4, WAIT).len(), 4);
    running.checkpoint().unwrap();
    let redis = redis_checkpointer(&server, "live");
    let before = redis.read().unwrap().checkpoints;
    assert_eq!(before.len(), 1);
    let shard = before[0].shard.clone();

    // The DynamoDB side holds the group at the start of the shard.
    let dynamodb = dynamodb_group("live", &table);
    let rewound = SavedCheckpoint {
        sequence: None,
        start: Some("timestamp:0".into()),
        ..before[0].clone()
    };
    dynamodb
        .import(std::slice::from_ref(&rewound), false)
        .unwrap();

    let error = copy(&dynamodb, &redis, false).unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&shard) && message.contains(running.owner_id()),
        "{message}"
    );
    assert_eq!(redis.read().unwrap().checkpoints, before, "nothing written");

    let (changes, _) = copy(&dynamodb, &redis, true).unwrap();
    assert_eq!(changes[0].fenced.as_deref(), Some(running.owner_id()));
    assert_eq!(redis.read().unwrap().checkpoints, vec![rewound]);
    running.close().unwrap();
}

/// What async-kinesis's `RedisCheckPointer` writes: `pyredis-NAME-SHARD`
/// holding `json.dumps({"ref": …, "ts": …, "sequence": …})`.
fn async_kinesis_key(
    connection: &mut redis::Connection,
    name: &str,
    shard: &str,
    owner: Option<&str>,
    ts: Option<u64>,
    sequence: Option<&str>,
) {
    let json = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    let value = format!(
        r#"{{"ref": {}, "ts": {}, "sequence": {}}}"#,
        json(owner.map(|o| format!("\"{o}\""))),
        json(ts.map(|t| t.to_string())),
        json(sequence.map(|s| format!("\"{s}\""))),
    );
    redis::cmd("SET")
        .arg(format!("pyredis-{name}-{shard}"))
        .arg(value)
        .query::<()>(connection)
        .unwrap();
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn async_kinesis_redis_keys_are_read_as_it_writes_them_and_a_consumer_resumes_after() {
    let server = RedisServer::start();
    let (kinesis, stream) = create_stream(2);
    let table = unique_name("leases");
    let mut sent = put_payloads(&kinesis, &stream, 0..20);
    sent.sort();
    // The positions async-kinesis would have checkpointed: a few records
    // of each shard.
    let probe = manual_consumer(&stream, "probe", &table);
    let all = take(&probe, 20, WAIT);
    probe.close().unwrap();
    assert_eq!(all.len(), 20);
    let of = |shard: &str| -> Vec<&kcheck::Record> {
        all.iter().filter(|r| &*r.shard_id == shard).collect()
    };
    let shards = ["shardId-000000000000", "shardId-000000000001"];
    let (first, second) = (of(shards[0]), of(shards[1]));
    assert!(
        first.len() >= 3 && second.len() >= 3,
        "both shards hold records"
    );

    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_connection().unwrap();
    // Freed by a consumer that stopped; and taken long ago by a consumer
    // that died (expired).
    async_kinesis_key(
        &mut connection,
        "orders-app",
        shards[0],
        None,
        None,
        Some(&first[1].sequence_number),
    );
    async_kinesis_key(
        &mut connection,
        "orders-app",
        shards[1],
        Some("orders-app/4242"),
        Some(now_seconds() - 3600),
        Some(&second[2].sequence_number),
    );
    // Another app whose name starts the same, and kcheck's own keys: not
    // this app's.
    async_kinesis_key(
        &mut connection,
        "orders-app-b",
        shards[0],
        None,
        None,
        Some("1"),
    );
    let kcheck_layout = redis_checkpointer(&server, "orders-app");
    kcheck_layout
        .write(&[saved("orders-app", "other", shards[0])], false)
        .unwrap();

    let source = AsyncKinesisRedisTable::new(&kcheck_layout, stream.name());
    let read = source.read().unwrap();
    assert_eq!(
        read.checkpoints,
        vec![
            SavedCheckpoint {
                sequence: Some(first[1].sequence_number.clone()),
                ..saved("orders-app", stream.name(), shards[0])
            },
            SavedCheckpoint {
                sequence: Some(second[2].sequence_number.clone()),
                ..saved("orders-app", stream.name(), shards[1])
            },
        ]
    );
    assert!(read.notes[0].contains("no parent shards"), "{read:?}");

    let target = dynamodb_group("orders-app", &table);
    copy(&source, &target, false).unwrap();
    let resumed = manual_consumer(&stream, "orders-app", &table);
    let mut rest = payloads(&take(&resumed, 16, WAIT));
    assert!(take(&resumed, 1, Duration::from_millis(500)).is_empty());
    resumed.close().unwrap();
    let text = |r: &&kcheck::Record| String::from_utf8(r.data.clone()).unwrap();
    let mut expected: Vec<String> = first[2..].iter().chain(&second[3..]).map(text).collect();
    expected.sort();
    rest.sort();
    assert_eq!(rest, expected, "after each copied position, nothing else");
}

#[test]
fn async_kinesis_redis_keys_are_written_as_it_writes_them_and_live_ones_refused() {
    let server = RedisServer::start();
    let kcheck_layout = redis_checkpointer(&server, "app");
    let target = AsyncKinesisRedisTable::new(&kcheck_layout, "orders");
    let mut connection = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let get = |connection: &mut redis::Connection, shard: &str| -> Option<String> {
        redis::cmd("GET")
            .arg(format!("pyredis-app-{shard}"))
            .query(connection)
            .unwrap()
    };
    let entries = vec![
        SavedCheckpoint {
            sequence: Some("4959".into()),
            ..saved("app", "orders", "shardId-000000000001")
        },
        SavedCheckpoint {
            sequence: Some("SHARD_END".into()),
            ..saved("app", "orders", "shardId-000000000000")
        },
        SavedCheckpoint {
            sequence: Some("4960".into()),
            sub_sequence: 2,
            ..saved("app", "orders", "shardId-000000000002")
        },
    ];
    let changes = target.write(&entries, false).unwrap();
    assert_eq!(
        get(&mut connection, "shardId-000000000001").as_deref(),
        Some(r#"{"ref": null, "ts": null, "sequence": "4959"}"#)
    );
    assert_eq!(get(&mut connection, "shardId-000000000000"), None);
    assert_eq!(get(&mut connection, "shardId-000000000002"), None);
    assert!(changes[1].note.as_deref().unwrap().contains("SHARD_END"));
    assert!(changes[2].note.as_deref().unwrap().contains("sub-sequence"));

    // A consumer renewed it just now: alive, refused and named.
    async_kinesis_key(
        &mut connection,
        "app",
        "shardId-000000000001",
        Some("app/77"),
        Some(now_seconds()),
        Some("4959"),
    );
    let moved = [SavedCheckpoint {
        sequence: Some("5000".into()),
        ..entries[0].clone()
    }];
    let error = target.write(&moved, false).unwrap_err().to_string();
    assert!(
        error.contains("shardId-000000000001") && error.contains("app/77"),
        "{error}"
    );
    let changes = target.write(&moved, true).unwrap();
    assert_eq!(changes[0].fenced.as_deref(), Some("app/77"));
    assert!(changes[0].note.as_deref().unwrap().contains("stop app/77"));
    assert_eq!(
        get(&mut connection, "shardId-000000000001").as_deref(),
        Some(r#"{"ref": null, "ts": null, "sequence": "5000"}"#)
    );
    let error = target
        .write(&[saved("app", "payments", "shardId-000000000001")], false)
        .unwrap_err()
        .to_string();
    assert!(error.contains("stream orders only"), "{error}");
}
