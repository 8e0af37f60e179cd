//! Checkpoints you can see, back up, restore and move, against the
//! emulators (the library side of the `kcheck checkpoints` commands): leases listed with their state; export and import (into the
//! same group or another) with a consumer resuming exactly after each
//! imported position, sub-sequences included; a running group refused
//! unless forced, and fenced when forced; resets; labelled snapshots and
//! the process → snapshot → crash → restore → restart flow, which reads
//! exactly the unsnapshotted batch again; copies through the Java KCL's
//! and async-kinesis's table layouts.

mod support;

use std::time::Duration;

use kcheck::checkpoint::{
    Checkpoint, ConsumerGroup, LeaseState, Position, ResetTo, SavedCheckpoint, Snapshots,
};
use kcheck::kinesis::KinesisClient;
use kcheck::Error;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn group(name: &str, table: &str) -> ConsumerGroup {
    ConsumerGroup::new(&manual_checkpointer(name, table))
        .with_kinesis(KinesisClient::new(&kinesis_config()).unwrap())
}

#[test]
fn exported_checkpoints_seed_another_group_which_resumes_right_after() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("leases");
    let sent = put_payloads(&kinesis, &stream, 0..20);
    let first = manual_consumer(&stream, "origin", &table);
    assert_eq!(payloads(&process(&first, 8)), sent[..8]);
    first.close().unwrap();

    let origin = group("origin", &table);
    let leases = origin.leases().unwrap();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].state, LeaseState::Free);
    assert_eq!(leases[0].stream, stream.name());
    let exported = origin.export().unwrap();
    let lines: Vec<String> = exported
        .iter()
        .map(|saved| serde_json::to_string(saved).unwrap())
        .collect();
    let read_back: Vec<SavedCheckpoint> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();

    let copy = group("copy", &table);
    let changes = copy.import(&read_back, false).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].before, None);
    assert_eq!(changes[0].after, leases[0].lease.checkpoint);
    assert_eq!(changes[0].note, None);
    let second = manual_consumer(&stream, "copy", &table);
    assert_eq!(payloads(&take(&second, 12, WAIT)), sent[8..]);
    assert!(take(&second, 1, Duration::from_millis(500)).is_empty());
    second.close().unwrap();
}

#[test]
fn a_running_group_is_refused_unless_forced_and_a_forced_import_fences_its_owner() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("leases");
    let sent = put_payloads(&kinesis, &stream, 0..10);
    let running = manual_consumer(&stream, "live", &table);
    assert_eq!(payloads(&process(&running, 6)), sent[..6]);
    let admin = group("live", &table);
    assert!(wait_until(WAIT, || admin.leases().unwrap()[0].state
        == LeaseState::Alive));
    let saved = admin.export().unwrap();
    let mut rewound = saved.clone();
    rewound[0].sequence = None; // back to the start of the shard
    rewound[0].start = Some("timestamp:0".into());

    let error = admin.import(&rewound, false).unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error}");
    assert!(error.to_string().contains("leases are alive"), "{error}");
    assert_eq!(admin.export().unwrap(), saved, "nothing written");

    let changes = admin.import(&rewound, true).unwrap();
    assert_eq!(changes[0].fenced.as_deref(), Some(running.owner_id()));
    // Records read ahead before the fence may still come (at least
    // once); then the fenced owner lets go, takes the lease again and
    // starts over from the imported position: the whole shard.
    let mut replayed = Vec::new();
    assert!(
        wait_until(WAIT, || {
            replayed.extend(payloads(&take(&running, 1, Duration::from_millis(200))));
            replayed.ends_with(&sent)
        }),
        "{replayed:?}"
    );
    assert!(replayed.len() <= 14, "{replayed:?}");
    running.close().unwrap();
}

#[test]
fn resets_move_one_shard_or_all() {
    let (kinesis, stream) = create_stream(2);
    let table = unique_name("leases");
    let sent = put_payloads(&kinesis, &stream, 0..20);
    let first = manual_consumer(&stream, "resets", &table);
    let all = take(&first, 20, WAIT);
    assert_eq!(all.len(), 20);
    first.checkpoint().unwrap();
    first.close().unwrap();
    let admin = group("resets", &table);

    // One shard back to a sequence number: resume right after it.
    let shard = all[3].shard_id.to_string();
    let of_shard: Vec<&kcheck::Record> = all.iter().filter(|r| *r.shard_id == *shard).collect();
    let to = ResetTo::Sequence(of_shard[1].position());
    let changes = admin
        .reset(stream.name(), Some(&shard), &to, false)
        .unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        changes[0].after,
        Some(Checkpoint::At(of_shard[1].position()))
    );
    let second = manual_consumer(&stream, "resets", &table);
    let again = take(&second, of_shard.len() - 2, WAIT);
    assert_eq!(
        payloads(&again),
        payloads(
            &of_shard[2..]
                .iter()
                .map(|r| (*r).clone())
                .collect::<Vec<_>>()
        )
    );
    assert!(take(&second, 1, Duration::from_millis(500)).is_empty());
    second.close().unwrap();

    // Every shard to the trim horizon: everything again; the progress is
    // told after each checkpoint written.
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tell = std::sync::Arc::clone(&told);
    let changes = admin
        .clone()
        .on_progress(move |written, total| tell.lock().unwrap().push((written, total)))
        .reset(stream.name(), None, &ResetTo::TrimHorizon, false)
        .unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(*told.lock().unwrap(), [(1, 2), (2, 2)]);
    let third = manual_consumer(&stream, "resets", &table);
    let mut everything = payloads(&take(&third, 20, WAIT));
    everything.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(everything, expected);
    third.close().unwrap();

    // A position older than any record still in the shard is said.
    let changes = admin
        .reset(
            stream.name(),
            Some(&shard),
            &ResetTo::Sequence(Position::new("1", 0)),
            false,
        )
        .unwrap();
    let note = changes[0].note.as_deref().unwrap_or_default();
    assert!(note.contains("older than the oldest record"), "{changes:?}");

    let error = admin
        .reset("no-such-stream", None, &ResetTo::Latest, false)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("no leases on stream no-such-stream"),
        "{error}"
    );
}

#[test]
fn process_snapshot_crash_restore_restart_reads_the_unsnapshotted_batch_again() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("leases");
    let sent = put_payloads(&kinesis, &stream, 0..30);
    let snapshots = Snapshots::new(group("spark", &table)).retention(Duration::from_secs(86_400));
    assert!(
        snapshots.snapshots().unwrap().is_empty(),
        "no history table yet"
    );

    let worker = manual_consumer(&stream, "spark", &table);
    let batch_1 = process(&worker, 10);
    assert_eq!(payloads(&batch_1), sent[..10]);
    let info = snapshots.snapshot("batch-1").unwrap();
    assert_eq!(info.checkpoints, 1);
    // The second batch is processed and checkpointed, then the job
    // crashes before its snapshot: its output is lost.
    let batch_2 = process(&worker, 10);
    assert_eq!(payloads(&batch_2), sent[10..20]);
    worker.close().unwrap();

    let listed = snapshots.snapshots().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].label, "batch-1");
    let restored = snapshots.restore("batch-1", false).unwrap();
    assert_eq!(restored.len(), 1);
    assert_eq!(
        restored[0].before,
        Some(Checkpoint::At(batch_2.last().unwrap().position()))
    );
    assert_eq!(
        restored[0].after,
        Some(Checkpoint::At(batch_1.last().unwrap().position()))
    );
    let restarted = manual_consumer(&stream, "spark", &table);
    assert_eq!(payloads(&take(&restarted, 20, WAIT)), sent[10..]);
    restarted.close().unwrap();

    let error = snapshots.snapshot("batch-1").unwrap_err();
    assert!(
        error.to_string().contains("already has a snapshot"),
        "{error}"
    );
    let error = snapshots.restore("batch-9", false).unwrap_err();
    assert!(
        error.to_string().contains("no snapshot \"batch-9\""),
        "{error}"
    );
    let error = snapshots.snapshot("a#b").unwrap_err();
    assert!(error.to_string().contains("no '#'"), "{error}");
}

#[test]
fn a_restored_sub_sequence_resumes_inside_the_aggregate() {
    let (_, stream) = create_stream(1);
    let table = unique_name("leases");
    put_one_aggregate(&stream, 6);
    let worker = manual_consumer(&stream, "kpl", &table);
    let records = take(&worker, 6, WAIT);
    assert_eq!(payloads(&records).len(), 6);
    assert!(records[2].sub_sequence_number > 0, "aggregated");
    worker.checkpoint_record(&records[2]).unwrap();
    worker.close().unwrap();
    let snapshots = Snapshots::new(group("kpl", &table));
    snapshots.snapshot("mid-aggregate").unwrap();
    let saved = snapshots.checkpoints("mid-aggregate").unwrap();
    assert_eq!(saved[0].sub_sequence, records[2].sub_sequence_number);
    // Move on, then come back.
    group("kpl", &table)
        .reset(
            stream.name(),
            None,
            &ResetTo::Sequence(Position::new(
                records[5].sequence_number.clone(),
                records[5].sub_sequence_number,
            )),
            false,
        )
        .unwrap();
    snapshots.restore("mid-aggregate", false).unwrap();
    let resumed = manual_consumer(&stream, "kpl", &table);
    assert_eq!(payloads(&take(&resumed, 3, WAIT)), payloads(&records[3..]));
    resumed.close().unwrap();
}

#[test]
fn a_restored_shard_that_left_the_stream_is_noted() {
    let (_, stream) = create_stream(1);
    let table = unique_name("leases");
    let admin = group("gone", &table);
    let saved = SavedCheckpoint {
        group: "gone".into(),
        stream: stream.name().to_owned(),
        shard: "shardId-000000000099".into(),
        sequence: Some("SHARD_END".into()),
        sub_sequence: 0,
        parents: Vec::new(),
        start: None,
    };
    // The lease table does not exist yet: a consumer creates it.
    let creator = manual_consumer(&stream, "gone", &table);
    creator.close().unwrap();
    let changes = admin.import(&[saved], false).unwrap();
    let note = changes[0].note.as_deref().unwrap_or_default();
    assert!(note.contains("no longer in stream"), "{changes:?}");
    assert_eq!(
        admin
            .leases()
            .unwrap()
            .iter()
            .find(|info| info.lease.shard_id == "shardId-000000000099")
            .unwrap()
            .state,
        LeaseState::Finished
    );
}

#[test]
fn the_backlog_tells_whether_records_follow_the_checkpoint() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("leases");
    put_payloads(&kinesis, &stream, 0..5);
    let first = manual_consumer(&stream, "backlog", &table);
    process(&first, 3);
    first.close().unwrap();
    let admin = group("backlog", &table);
    let leases = admin.leases().unwrap();
    let backlog = admin.backlog(&leases[0]).unwrap();
    assert!(backlog.records_after, "{backlog:?}");

    let second = manual_consumer(&stream, "backlog", &table);
    process(&second, 2);
    second.close().unwrap();
    let leases = admin.leases().unwrap();
    assert!(!admin.backlog(&leases[0]).unwrap().records_after);
    // Without a Kinesis client there is nothing to read with.
    let error = ConsumerGroup::new(&manual_checkpointer("backlog", &table))
        .backlog(&leases[0])
        .unwrap_err();
    assert!(error.to_string().contains("KinesisClient"), "{error}");
}

/// A table laid out as the Java KCL writes its leases.
fn kcl_table(client: &kcheck::dynamodb::DynamoDbClient) -> String {
    let name = unique_name("kcl");
    client
        .create_table(&kcheck::dynamodb::CreateTableRequest::new(
            &name,
            "leaseKey",
            kcheck::dynamodb::ScalarAttributeType::S,
        ))
        .unwrap();
    client.wait_for_table_active(&name, WAIT).unwrap();
    name
}

/// A table laid out as async-kinesis's DynamoDB checkpointer writes it.
fn async_kinesis_table(client: &kcheck::dynamodb::DynamoDbClient) -> String {
    let name = unique_name("async-kinesis");
    client
        .create_table(&kcheck::dynamodb::CreateTableRequest::new(
            &name,
            "shard_id",
            kcheck::dynamodb::ScalarAttributeType::S,
        ))
        .unwrap();
    client.wait_for_table_active(&name, WAIT).unwrap();
    name
}

#[test]
fn a_kcl_shaped_table_is_read_as_the_kcl_wrote_it() {
    use kcheck::checkpoint::{CheckpointTable, KclTable};
    use kcheck::dynamodb::{item, AttributeValue, PutItemRequest};
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    let table = kcl_table(&client);
    let lease = |key: &str, checkpoint: &str, sub: u64| {
        let mut lease = item([
            ("leaseKey", AttributeValue::s(key)),
            ("leaseOwner", AttributeValue::s("worker-1")),
            ("leaseCounter", AttributeValue::n(42)),
            ("checkpoint", AttributeValue::s(checkpoint)),
            ("checkpointSubSequenceNumber", AttributeValue::n(sub)),
            ("ownerSwitchesSinceCheckpoint", AttributeValue::n(0)),
        ]);
        if key.ends_with('2') {
            lease.insert(
                "parentShardId".into(),
                AttributeValue::ss(["shardId-000000000000", "shardId-000000000001"]),
            );
        }
        client
            .put_item(&PutItemRequest::new(&table, lease))
            .unwrap();
    };
    lease("shardId-000000000000", "SHARD_END", 0);
    lease(
        "shardId-000000000001",
        "49590338271490256608559692538361571095921575989136588898",
        7,
    );
    lease("shardId-000000000002", "TRIM_HORIZON", 0);
    let read = KclTable::new(client.clone(), &table, "kcl-app")
        .stream("orders")
        .read()
        .unwrap();
    type Row = (String, Option<Checkpoint>, Option<String>, Vec<String>);
    let by_shard: Vec<Row> = read
        .checkpoints
        .iter()
        .map(|s| {
            (
                s.shard.clone(),
                s.checkpoint().unwrap(),
                s.start.clone(),
                s.parents.clone(),
            )
        })
        .collect();
    assert_eq!(
        by_shard,
        [
            (
                "shardId-000000000000".into(),
                Some(Checkpoint::ShardEnd),
                None,
                vec![]
            ),
            (
                "shardId-000000000001".into(),
                Some(Checkpoint::At(Position::new(
                    "49590338271490256608559692538361571095921575989136588898",
                    7
                ))),
                None,
                vec![]
            ),
            (
                "shardId-000000000002".into(),
                None,
                Some("timestamp:0".into()),
                vec!["shardId-000000000000".into(), "shardId-000000000001".into()]
            ),
        ]
    );
    assert!(read
        .checkpoints
        .iter()
        .all(|s| s.stream == "orders" && s.group == "kcl-app"));
    // Owned leases: a KCL table keeps no renewal time, so writing refuses.
    let error = KclTable::new(client.clone(), &table, "kcl-app")
        .stream("orders")
        .write(&read.checkpoints, false)
        .unwrap_err();
    assert!(
        error.to_string().contains("3 leases that may be alive"),
        "{error}"
    );
    // Without a stream, bare shard keys cannot be placed.
    let error = KclTable::new(client, &table, "kcl-app").read().unwrap_err();
    assert!(error.to_string().contains("name their stream"), "{error}");
}

#[test]
fn checkpoints_round_trip_through_the_kcl_and_async_kinesis_layouts() {
    use kcheck::checkpoint::{copy, AsyncKinesisTable, KclTable};
    let (_, stream) = create_stream(1);
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    let table = unique_name("leases");
    let origin = group("round", &table);
    let entry = |shard: &str, sequence: Option<&str>, sub: u64| SavedCheckpoint {
        group: "round".into(),
        stream: stream.name().to_owned(),
        shard: shard.into(),
        sequence: sequence.map(str::to_owned),
        sub_sequence: sub,
        parents: Vec::new(),
        start: None,
    };
    let seeded = vec![
        entry("shardId-000000000000", Some("SHARD_END"), 0),
        entry(
            "shardId-000000000001",
            Some("4959033827149025660855969253836157109592157598913658"),
            3,
        ),
        entry(
            "shardId-000000000002",
            Some("4959033827149025660855969253836157109592157598913699"),
            0,
        ),
    ];
    // The lease table exists once a consumer prepared it.
    manual_consumer(&stream, "round", &table).close().unwrap();
    origin.import(&seeded, false).unwrap();

    // kcheck → KCL → kcheck: every position kept, sub-sequences and SHARD_END too.
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let tell = std::sync::Arc::clone(&told);
    let kcl = KclTable::new(client.clone(), kcl_table(&client), "round")
        .stream(stream.name())
        .on_progress(move |written, total| tell.lock().unwrap().push((written, total)));
    copy(&origin, &kcl, false).unwrap();
    assert_eq!(*told.lock().unwrap(), [(1, 3), (2, 3), (3, 3)]);
    let back = group("round-kcl", &table);
    copy(&kcl, &back, false).unwrap();
    let positions = |group: &ConsumerGroup| -> Vec<(String, Option<Checkpoint>)> {
        group
            .export()
            .unwrap()
            .iter()
            .map(|s| (s.shard.clone(), s.checkpoint().unwrap()))
            .collect()
    };
    assert_eq!(positions(&back), positions(&origin));

    // → async-kinesis (from the copy that went through KCL): what the
    // layout cannot hold is left, and said.
    let async_table = async_kinesis_table(&client);
    let async_kinesis = AsyncKinesisTable::new(
        client.clone(),
        &async_table,
        "round",
        stream.name(),
        SESSION_TIMEOUT,
    );
    let (changes, _) = copy(&back, &async_kinesis, false).unwrap();
    let notes: Vec<&str> = changes.iter().filter_map(|c| c.note.as_deref()).collect();
    assert_eq!(notes.len(), 2, "{changes:?}");
    assert!(notes[0].contains("no SHARD_END marker"), "{notes:?}");
    assert!(notes[1].contains("no sub-sequence"), "{notes:?}");
    let again = group("round-async", &table);
    let (_, read_notes) = copy(&async_kinesis, &again, false).unwrap();
    assert!(read_notes[0].contains("no parent shards"), "{read_notes:?}");
    assert_eq!(
        positions(&again),
        [(
            "shardId-000000000002".to_owned(),
            seeded[2].checkpoint().unwrap()
        )]
    );
    // A live async-kinesis owner is refused unless forced.
    let live = kcheck::dynamodb::item([
        (
            "shard_id",
            kcheck::dynamodb::AttributeValue::s("shardId-000000000002"),
        ),
        ("ref", kcheck::dynamodb::AttributeValue::s("async-worker")),
        (
            "ts",
            kcheck::dynamodb::AttributeValue::n(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            ),
        ),
    ]);
    client
        .put_item(&kcheck::dynamodb::PutItemRequest::new(&async_table, live))
        .unwrap();
    let error = copy(&origin, &async_kinesis, false).unwrap_err();
    assert!(error.to_string().contains("may be alive"), "{error}");
    let (changes, _) = copy(&origin, &async_kinesis, true).unwrap();
    assert_eq!(changes[2].fenced.as_deref(), Some("async-worker"));
}
