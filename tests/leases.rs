//! Several consumers of one group coordinating through leases: even split,
//! graceful and hard failover, hand-overs without duplicates, fencing, and
//! groups and streams sharing a table. Every test runs once per lease store
//! (`dynamodb::…`, and with the `redis` feature `redis::…`); the Redis-only
//! tests (a restart, lost answers) are at the end.

#[cfg(feature = "redis")]
#[path = "support/redis.rs"]
mod redis_server;
mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcheck::checkpoint::{Checkpoint, Checkpointer, LeaseScope, Position};
use kcheck::kinesis::StreamRef;
use kcheck::{Consumer, Error, Record};
use support::*;

const WAIT: Duration = Duration::from_secs(30);

/// A lease store the tests run against.
enum Backend {
    DynamoDb,
    /// A redis-server of the test's own, killed when the test ends.
    #[cfg(feature = "redis")]
    Redis(redis_server::RedisServer),
}

impl Backend {
    fn dynamodb() -> Backend {
        Backend::DynamoDb
    }

    #[cfg(feature = "redis")]
    fn redis() -> Backend {
        Backend::Redis(redis_server::RedisServer::start())
    }

    /// A checkpointer of `group` with the short test lease timing; `table`
    /// is the DynamoDB table (Redis keys are namespaced by group and stream
    /// on the test's own server).
    fn checkpointer(&self, group: &str, table: &str) -> Spec<'_> {
        Spec {
            backend: self,
            group: group.to_owned(),
            table: table.to_owned(),
            session_timeout: SESSION_TIMEOUT,
            auto_checkpoint: true,
        }
    }

    /// The environment a child process needs to reach this store.
    fn child_env(&self) -> Vec<(&'static str, String)> {
        match self {
            Backend::DynamoDb => vec![("KCHECK_CHILD_DYNAMODB", emulators().dynamodb_url())],
            #[cfg(feature = "redis")]
            Backend::Redis(server) => vec![("KCHECK_CHILD_REDIS", server.url())],
        }
    }
}

/// A checkpointer being configured for a [`Backend`].
struct Spec<'a> {
    backend: &'a Backend,
    group: String,
    table: String,
    session_timeout: Duration,
    auto_checkpoint: bool,
}

impl Spec<'_> {
    fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    fn auto_checkpoint(mut self, auto: bool) -> Self {
        self.auto_checkpoint = auto;
        self
    }

    fn build(self) -> Arc<dyn Checkpointer> {
        match self.backend {
            Backend::DynamoDb => Arc::new(
                dynamodb_checkpointer(&self.group, &self.table)
                    .session_timeout(self.session_timeout)
                    .auto_checkpoint(self.auto_checkpoint)
                    .build()
                    .unwrap(),
            ),
            #[cfg(feature = "redis")]
            Backend::Redis(server) => Arc::new(
                kcheck::RedisCheckpointer::builder(&self.group)
                    .url(server.url())
                    .session_timeout(self.session_timeout)
                    .heartbeat_frequency(HEARTBEAT)
                    .auto_checkpoint(self.auto_checkpoint)
                    .build()
                    .unwrap(),
            ),
        }
    }
}

fn group_consumer(backend: &Backend, stream: &StreamRef, group: &str, table: &str) -> Consumer {
    consumer_for(stream)
        .shared_checkpointer(backend.checkpointer(group, table).build())
        .build()
        .unwrap()
}

/// Generates one `#[test]` per backend for each shared test body: module
/// `dynamodb`, and with the `redis` feature module `redis`.
macro_rules! for_each_backend {
    ($($name:ident),* $(,)?) => {
        mod dynamodb {
            $(#[test] fn $name() { super::$name(&super::Backend::dynamodb()) })*
        }
        #[cfg(feature = "redis")]
        mod redis {
            $(#[test] fn $name() { super::$name(&super::Backend::redis()) })*
        }
    };
}

for_each_backend!(
    two_consumers_split_four_shards_and_deliver_everything,
    three_consumers_split_eight_shards_evenly,
    a_new_consumer_gets_its_share_by_hand_over_without_duplicates,
    a_gracefully_closed_consumer_hands_its_shards_over_at_once,
    a_killed_consumer_loses_its_shards_after_session_timeout_and_nothing_is_lost,
    a_consumer_whose_lease_is_taken_stops_the_shard_and_cannot_checkpoint_it,
    two_groups_share_a_table_and_each_reads_everything,
    one_group_reads_two_streams_through_one_table,
    owner_ids_are_unique_per_instance,
    slow_processing_never_costs_the_lease,
);

/// What each consumer received, without arrival times.
fn drain_records(consumers: &[&Consumer], total: usize, timeout: Duration) -> Vec<Vec<Record>> {
    drain(consumers, total, timeout)
        .into_iter()
        .map(|received| received.into_iter().map(|(_, record)| record).collect())
        .collect()
}

fn shard_counts(consumers: &[&Consumer]) -> Vec<usize> {
    let mut counts: Vec<usize> = consumers.iter().map(|c| c.stats().shards.len()).collect();
    counts.sort_unstable();
    counts
}

fn all_payloads(per_consumer: &[Vec<Record>]) -> Vec<String> {
    per_consumer
        .iter()
        .flat_map(|records| payloads(records))
        .collect()
}

fn assert_exactly_once(got: &[String], expected: &[String]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for payload in got {
        *counts.entry(payload.as_str()).or_default() += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicates.is_empty(), "delivered twice: {duplicates:?}");
    let missing: Vec<_> = expected
        .iter()
        .filter(|p| !counts.contains_key(p.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "never delivered: {} e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

/// Reads on until the consumers hold `expected` shards each, so hand-overs
/// can complete; returns what arrived meanwhile, for the caller's
/// exactly-once check (a hand-over that duplicates shows there).
fn wait_for_split(consumers: &[&Consumer], expected: &[usize]) -> Vec<Record> {
    let mut read = Vec::new();
    let ok = wait_until(WAIT, || {
        for consumer in consumers {
            while let Some(record) = consumer.next_timeout(Duration::from_millis(1)).unwrap() {
                read.push(record);
            }
        }
        shard_counts(consumers) == expected
    });
    assert!(
        ok,
        "expected split {expected:?}, got {:?}",
        shard_counts(consumers)
    );
    read
}

/// Waits for a split before any record is written: nothing may arrive.
fn wait_for_split_of_empty_stream(consumers: &[&Consumer], expected: &[usize]) {
    let read = wait_for_split(consumers, expected);
    assert!(read.is_empty(), "nothing was written yet: {read:?}");
}

fn two_consumers_split_four_shards_and_deliver_everything(backend: &Backend) {
    let (kinesis, stream) = create_stream(4);
    let table = unique_name("two");
    let a = group_consumer(backend, &stream, "app", &table);
    let b = group_consumer(backend, &stream, "app", &table);
    wait_for_split_of_empty_stream(&[&a, &b], &[2, 2]);
    let expected = put_payloads(&kinesis, &stream, 0..400);
    let got = drain_records(&[&a, &b], 400, WAIT);
    assert_exactly_once(&all_payloads(&got), &expected);
    assert!(
        got.iter().all(|records| !records.is_empty()),
        "both consumers worked"
    );
}

fn three_consumers_split_eight_shards_evenly(backend: &Backend) {
    let (kinesis, stream) = create_stream(8);
    let table = unique_name("three");
    let consumers: Vec<Consumer> = (0..3)
        .map(|_| group_consumer(backend, &stream, "app", &table))
        .collect();
    let refs: Vec<&Consumer> = consumers.iter().collect();
    wait_for_split_of_empty_stream(&refs, &[2, 3, 3]);
    let expected = put_payloads(&kinesis, &stream, 0..800);
    let got = drain_records(&refs, 800, WAIT);
    assert_exactly_once(&all_payloads(&got), &expected);
}

fn a_new_consumer_gets_its_share_by_hand_over_without_duplicates(backend: &Backend) {
    let (kinesis, stream) = create_stream(4);
    let table = unique_name("handover");
    let with_discovery = |interval: Duration| {
        consumer_for(&stream)
            .discovery_interval(interval)
            .shared_checkpointer(backend.checkpointer("app", &table).build())
            .build()
            .unwrap()
    };
    // The owner looks at the table rarely, the newcomer often: hand-overs
    // take several of the newcomer's cycles to land.
    let a = with_discovery(Duration::from_secs(1));
    wait_for_split_of_empty_stream(&[&a], &[4]);
    let expected = put_payloads(&kinesis, &stream, 0..2000);
    let mut got = drain_records(&[&a], 500, WAIT);
    let b = with_discovery(Duration::from_millis(50));
    // Both read while the leases move; every record still arrives once,
    // counting what arrives until the split is complete.
    got.extend(drain_records(&[&a, &b], 1500, WAIT));
    got.push(wait_for_split(&[&a, &b], &[2, 2]));
    assert_exactly_once(&all_payloads(&got), &expected);
    let more = put_payloads(&kinesis, &stream, 2000..2400);
    let got = drain_records(&[&a, &b], 400, WAIT);
    assert_exactly_once(&all_payloads(&got), &more);
    // Exactly two leases moved: the newcomer never asked for more than its
    // share, so none came back.
    let moved = (a.stats().handoffs_given, b.stats().handoffs_given);
    assert_eq!(moved, (2, 0), "{:?} {:?}", a.stats(), b.stats());
}

fn a_gracefully_closed_consumer_hands_its_shards_over_at_once(backend: &Backend) {
    let (kinesis, stream) = create_stream(4);
    let table = unique_name("graceful");
    // A session timeout far longer than the hand-over may take, so only a
    // release (not expiry) can explain the takeover, even on a loaded machine.
    let session_timeout = Duration::from_secs(30);
    let consumer = || {
        consumer_for(&stream)
            .shared_checkpointer(
                backend
                    .checkpointer("app", &table)
                    .session_timeout(session_timeout)
                    .build(),
            )
            .build()
            .unwrap()
    };
    let (a, b) = (consumer(), consumer());
    wait_for_split_of_empty_stream(&[&a, &b], &[2, 2]);
    let first = put_payloads(&kinesis, &stream, 0..200);
    let got = drain_records(&[&a, &b], 200, WAIT);
    assert_exactly_once(&all_payloads(&got), &first);
    // Acknowledge b's last record, then close it: final checkpoint + release.
    assert!(b
        .next_timeout(Duration::from_millis(200))
        .unwrap()
        .is_none());
    let closed_at = Instant::now();
    b.close().unwrap();
    // Everything was acknowledged before the close: nothing comes again.
    wait_for_split_of_empty_stream(&[&a], &[4]);
    // Released leases are free at once: no session_timeout wait.
    assert!(
        closed_at.elapsed() < session_timeout / 3,
        "took {:?}",
        closed_at.elapsed()
    );
    let second = put_payloads(&kinesis, &stream, 200..400);
    let got = drain_records(&[&a], 200, WAIT);
    assert_exactly_once(&all_payloads(&got), &second);
}

/// Child process for the SIGKILL test: consumes with automatic checkpoints
/// and prints every payload until it is killed. Does nothing in a normal run.
#[test]
fn child_consumer_process() {
    let Ok(stream) = std::env::var("KCHECK_CHILD_STREAM") else {
        return;
    };
    let table = std::env::var("KCHECK_CHILD_TABLE").unwrap();
    let kinesis = config_for(&std::env::var("KCHECK_CHILD_KINESIS").unwrap());
    let checkpointer: Arc<dyn Checkpointer> = match std::env::var("KCHECK_CHILD_DYNAMODB") {
        Ok(dynamodb) => Arc::new(
            kcheck::DynamoDbCheckpointer::builder("app")
                .table_name(table)
                .aws_config(config_for(&dynamodb))
                .session_timeout(SESSION_TIMEOUT)
                .heartbeat_frequency(HEARTBEAT)
                .build()
                .unwrap(),
        ),
        #[cfg(feature = "redis")]
        Err(_) => Arc::new(
            kcheck::RedisCheckpointer::builder("app")
                .url(std::env::var("KCHECK_CHILD_REDIS").unwrap())
                .session_timeout(SESSION_TIMEOUT)
                .heartbeat_frequency(HEARTBEAT)
                .build()
                .unwrap(),
        ),
        #[cfg(not(feature = "redis"))]
        Err(_) => panic!("KCHECK_CHILD_DYNAMODB is not set"),
    };
    let consumer = Consumer::builder(stream)
        .aws_config(kinesis)
        .discovery_interval(DISCOVERY)
        .idle_poll_interval(Duration::from_millis(100))
        .checkpoint_interval(Duration::from_millis(200))
        .shared_checkpointer(checkpointer)
        .build()
        .unwrap();
    loop {
        if let Some(record) = consumer.next_timeout(Duration::from_millis(100)).unwrap() {
            println!(
                "RECORD {} {} {} {}",
                record.shard_id,
                record.sequence_number,
                record.sub_sequence_number,
                String::from_utf8_lossy(&record.data)
            );
            std::thread::sleep(Duration::from_millis(5)); // processing
        }
    }
}

fn a_killed_consumer_loses_its_shards_after_session_timeout_and_nothing_is_lost(backend: &Backend) {
    let (kinesis, stream) = create_stream(2);
    let table = unique_name("killed");
    let expected = put_payloads(&kinesis, &stream, 0..600);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_consumer_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KCHECK_CHILD_STREAM", stream.as_str())
        .env("KCHECK_CHILD_TABLE", &table)
        .env("KCHECK_CHILD_KINESIS", emulators().kinesis_url())
        .env_remove("KCHECK_CHILD_DYNAMODB")
        .envs(backend.child_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // (shard, position, payload) of every record the child processed.
    let mut seen_by_child: Vec<(String, Position, String)> = Vec::new();
    let deadline = Instant::now() + WAIT;
    while seen_by_child.len() < 300 && Instant::now() < deadline {
        match lines.next() {
            // libtest may print "test child_consumer_process ... " before the first line.
            Some(Ok(line)) => {
                if let Some(at) = line.find("RECORD ") {
                    let fields: Vec<&str> = line[at + 7..].splitn(4, ' ').collect();
                    let position = Position::new(fields[1], fields[2].parse().unwrap());
                    seen_by_child.push((fields[0].to_owned(), position, fields[3].to_owned()));
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    assert_eq!(seen_by_child.len(), 300, "the child consumed");
    child.kill().unwrap(); // SIGKILL: no final checkpoint, no release
    child.wait().unwrap();
    let killed_at = Instant::now();

    // What the dead consumer had checkpointed.
    let checkpointer = backend.checkpointer("app", &table).build();
    let scope = LeaseScope {
        group: "app".into(),
        stream: stream.name().to_owned(),
    };
    let checkpoints: HashMap<String, Option<Checkpoint>> = checkpointer
        .leases(&scope)
        .unwrap()
        .into_iter()
        .map(|l| (l.shard_id, l.checkpoint))
        .collect();
    assert!(
        checkpoints.values().any(Option::is_some),
        "the child checkpointed: {checkpoints:?}"
    );

    let survivor = group_consumer(backend, &stream, "app", &table);
    let first = take(&survivor, 1, WAIT);
    let waited = killed_at.elapsed();
    assert!(
        waited >= SESSION_TIMEOUT,
        "taken after {waited:?}, before the session timeout"
    );
    assert!(waited < SESSION_TIMEOUT * 4, "taken after {waited:?}");
    let mut got = first;
    got.extend(take(&survivor, 600, Duration::from_secs(5)));
    // Nothing at or before a checkpoint comes again...
    for record in &got {
        if let Some(Some(Checkpoint::At(position))) = checkpoints.get(&*record.shard_id) {
            assert!(
                record.position() > *position,
                "{record:?} is before the checkpoint {position}"
            );
        }
    }
    // ...and everything the child did not checkpoint does, including what
    // it had processed after its last checkpoint.
    let survivor_got: HashSet<String> = payloads(&got).into_iter().collect();
    let checkpointed = |shard: &str, position: &Position| {
        checkpoints
            .get(shard)
            .and_then(Option::as_ref)
            .is_some_and(|c| c.covers(position))
    };
    let redelivered_after_crash: Vec<&String> = seen_by_child
        .iter()
        .filter(|(shard, position, _)| !checkpointed(shard, position))
        .map(|(_, _, payload)| payload)
        .collect();
    for payload in &redelivered_after_crash {
        assert!(
            survivor_got.contains(*payload),
            "{payload} was processed after the last checkpoint but not delivered again"
        );
    }
    let done_by_child: HashSet<&String> = seen_by_child
        .iter()
        .filter(|(shard, position, _)| checkpointed(shard, position))
        .map(|(_, _, payload)| payload)
        .collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|p| !survivor_got.contains(*p) && !done_by_child.contains(p))
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
}

fn a_consumer_whose_lease_is_taken_stops_the_shard_and_cannot_checkpoint_it(backend: &Backend) {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("stolen");
    let consumer = consumer_for(&stream)
        .shared_checkpointer(
            backend
                .checkpointer("app", &table)
                .auto_checkpoint(false)
                .build(),
        )
        .build()
        .unwrap();
    put_payloads(&kinesis, &stream, 0..10);
    let records = take(&consumer, 5, WAIT);
    assert_eq!(records.len(), 5);
    // Someone else takes the lease behind the consumer's back.
    let checkpointer = backend.checkpointer("app", &table).build();
    let scope = LeaseScope {
        group: "app".into(),
        stream: stream.name().to_owned(),
    };
    let shard = &records[0].shard_id;
    // A conditional take at the counter read; a heartbeat in between only
    // means another try.
    let stolen = wait_until(WAIT, || {
        let current = checkpointer.lease(&scope, shard).unwrap().unwrap();
        checkpointer
            .take(&scope, shard, "thief", current.counter)
            .unwrap()
            .is_some()
    });
    assert!(stolen, "the thief took the lease");
    let lost = wait_until(WAIT, || consumer.stats().lease_losses == 1);
    assert!(lost, "{:?}", consumer.stats());
    assert!(consumer.stats().shards.is_empty());
    // Undelivered records of that shard are dropped: records 5..10 were
    // fetched, but the thief owns them now.
    assert!(take(&consumer, 1, Duration::from_millis(1500)).is_empty());
    // Its checkpoint is refused.
    let error = consumer.checkpoint_record(&records[4]).unwrap_err();
    assert!(matches!(error, Error::LeaseLost { .. }), "{error:?}");
    assert!(consumer.checkpoint().is_err());
}

fn two_groups_share_a_table_and_each_reads_everything(backend: &Backend) {
    let (kinesis, stream) = create_stream(2);
    let table = unique_name("shared");
    let analytics = group_consumer(backend, &stream, "analytics", &table);
    let archival = group_consumer(backend, &stream, "archival", &table);
    let expected = put_payloads(&kinesis, &stream, 0..200);
    let got = drain_records(&[&analytics], 200, WAIT);
    assert_exactly_once(&all_payloads(&got), &expected);
    let got = drain_records(&[&archival], 200, WAIT);
    assert_exactly_once(&all_payloads(&got), &expected);
    assert_eq!(analytics.stats().shards.len(), 2);
    assert_eq!(archival.stats().shards.len(), 2);
}

fn one_group_reads_two_streams_through_one_table(backend: &Backend) {
    let (kinesis, first) = create_stream(2);
    let (_, second) = create_stream(2);
    let table = unique_name("streams");
    let on_first = group_consumer(backend, &first, "app", &table);
    let on_second = group_consumer(backend, &second, "app", &table);
    let expected_first = put_payloads(&kinesis, &first, 0..100);
    let expected_second = put_payloads(&kinesis, &second, 100..200);
    assert_exactly_once(
        &all_payloads(&drain_records(&[&on_first], 100, WAIT)),
        &expected_first,
    );
    assert_exactly_once(
        &all_payloads(&drain_records(&[&on_second], 100, WAIT)),
        &expected_second,
    );
    assert_eq!(on_first.stats().shards.len(), 2);
    assert_eq!(on_second.stats().shards.len(), 2);
}

fn owner_ids_are_unique_per_instance(backend: &Backend) {
    let (_, stream) = create_stream(1);
    let table = unique_name("ids");
    let ids = Mutex::new(HashSet::new());
    for _ in 0..3 {
        let consumer = group_consumer(backend, &stream, "app", &table);
        let id = consumer.owner_id().to_owned();
        assert!(id.contains(&std::process::id().to_string()), "{id}");
        assert!(ids.lock().unwrap().insert(id));
    }
}

fn slow_processing_never_costs_the_lease(backend: &Backend) {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("slow");
    let consumer = group_consumer(backend, &stream, "app", &table);
    let rival = group_consumer(backend, &stream, "app", &table);
    let expected = put_payloads(&kinesis, &stream, 0..3);
    let mut got = Vec::new();
    let taken = wait_until(WAIT, || {
        consumer.stats().shards.len() + rival.stats().shards.len() == 1
    });
    assert!(taken, "one of them holds the shard");
    let owner = if consumer.stats().shards.is_empty() {
        &rival
    } else {
        &consumer
    };
    for _ in 0..3 {
        got.extend(payloads(&take(owner, 1, WAIT)));
        std::thread::sleep(SESSION_TIMEOUT + SESSION_TIMEOUT / 2); // "processing"
    }
    assert_eq!(got, expected);
    assert_eq!(owner.stats().lease_losses, 0);
    assert_eq!(owner.stats().shards.len(), 1);
}

/// Redis-only: a server restart, lost answers, configuration.
#[cfg(feature = "redis")]
mod redis_only {
    use super::*;
    use kcheck::{Environment, RedisCheckpointer};
    use redis_server::{RedisProxy, RedisServer};

    fn scope(stream: &str) -> LeaseScope {
        LeaseScope {
            group: "app".into(),
            stream: stream.into(),
        }
    }

    #[test]
    fn a_redis_restart_mid_run_loses_no_record() {
        let backend = Backend::redis();
        let Backend::Redis(server) = &backend else {
            unreachable!()
        };
        let (kinesis, stream) = create_stream(2);
        let consumer = group_consumer(&backend, &stream, "app", "unused");
        let expected = put_payloads(&kinesis, &stream, 0..200);
        let mut got = payloads(&take(&consumer, 100, WAIT));
        // Not persisted: the restarted server has no leases or checkpoints
        // at all, so the consumer must notice, re-create its leases and
        // read again (from the initial position: duplicates, never a gap).
        server.stop();
        std::thread::sleep(HEARTBEAT * 2);
        server.start_again();
        let more = put_payloads(&kinesis, &stream, 200..300);
        let all: HashSet<String> = expected.iter().chain(&more).cloned().collect();
        let complete = wait_until(WAIT * 2, || {
            got.extend(payloads(&take(&consumer, 1000, Duration::from_millis(200))));
            let seen: HashSet<&String> = got.iter().collect();
            all.iter().all(|p| seen.contains(p))
        });
        let seen: HashSet<&String> = got.iter().collect();
        let missing: Vec<_> = all.iter().filter(|p| !seen.contains(p)).collect();
        assert!(
            complete,
            "lost after the restart: {} e.g. {:?}",
            missing.len(),
            missing.first()
        );
        assert!(wait_until(WAIT, || consumer.stats().shards.len() == 2));
    }

    #[test]
    fn writes_whose_answer_was_lost_are_recognised_when_retried() {
        let server = RedisServer::start();
        let proxy = RedisProxy::start(server.port());
        let checkpointer = RedisCheckpointer::builder("app")
            .url(proxy.url())
            .build()
            .unwrap();
        let scope = scope("lost-answers");
        for shard in ["warm-up", "s-1"] {
            checkpointer.create_lease(&scope, shard, &[]).unwrap();
        }
        // Loads the write script, so the next calls run it at once.
        checkpointer
            .take(&scope, "warm-up", "me", 0)
            .unwrap()
            .unwrap();

        proxy.lose_script_answers(1);
        let lease = checkpointer.take(&scope, "s-1", "me", 0).unwrap();
        assert_eq!(proxy.lost(), 1);
        let lease = lease.expect("the landed take is ours, not someone else's");
        assert_eq!((lease.owner.as_deref(), lease.counter), (Some("me"), 1));

        proxy.lose_script_answers(1);
        let lease = checkpointer.renew(&scope, &lease).unwrap();
        assert_eq!(lease.counter, 2);

        proxy.lose_script_answers(1);
        let at = Checkpoint::At(Position::new(
            "49590338271490256608559692538361571095921575989136588802",
            3,
        ));
        let lease = checkpointer.checkpoint(&scope, &lease, &at).unwrap();
        assert_eq!((lease.counter, lease.checkpoint.as_ref()), (3, Some(&at)));

        proxy.lose_script_answers(1);
        checkpointer
            .release(&scope, &lease, Some(&Checkpoint::ShardEnd), None)
            .unwrap();
        assert_eq!(proxy.lost(), 4);
        let stored = checkpointer.lease(&scope, "s-1").unwrap().unwrap();
        assert_eq!(stored.owner, None);
        assert_eq!(stored.counter, 4);
        assert!(stored.is_finished());

        // A stale owner is still refused, lost answers or not.
        proxy.lose_script_answers(1);
        let stale = checkpointer.renew(&scope, &lease).unwrap_err();
        assert!(matches!(stale, Error::LeaseLost { .. }), "{stale:?}");
    }

    #[test]
    fn the_store_keeps_sub_sequences_shard_end_parents_starts_and_expiry() {
        let server = RedisServer::start();
        let checkpointer = RedisCheckpointer::builder("app")
            .url(server.url())
            .build()
            .unwrap();
        let scope = scope("fields");
        checkpointer
            .create_lease(&scope, "child", &["p-1".into(), "p-2".into()])
            .unwrap();
        checkpointer.create_lease(&scope, "child", &[]).unwrap(); // exists: kept
        let lease = checkpointer
            .take(&scope, "child", "me", 0)
            .unwrap()
            .unwrap();
        assert_eq!(lease.parents, vec!["p-1".to_owned(), "p-2".to_owned()]);
        assert_eq!(
            checkpointer.take(&scope, "child", "rival", 0).unwrap(),
            None
        );
        let start = kcheck::kinesis::IteratorPosition::AtSequenceNumber("123".into());
        let lease = checkpointer.pin_start(&scope, &lease, &start).unwrap();
        assert_eq!(lease.start, Some(start));
        let at = Checkpoint::At(Position::new("124", 7));
        let lease = checkpointer.checkpoint(&scope, &lease, &at).unwrap();
        assert!(checkpointer
            .request_handoff(&scope, &lease, "asker")
            .unwrap());
        assert!(!checkpointer
            .request_handoff(&scope, &lease, "other")
            .unwrap());
        let stored = checkpointer.lease(&scope, "child").unwrap().unwrap();
        assert_eq!(stored.checkpoint, Some(at));
        assert_eq!(stored.handoff_to.as_deref(), Some("asker"));
        // The handoff request did not bump the counter: the owner goes on.
        let lease = checkpointer.renew(&scope, &lease).unwrap();
        checkpointer
            .release(&scope, &lease, None, Some("asker"))
            .unwrap();
        let stored = checkpointer.lease(&scope, "child").unwrap().unwrap();
        assert_eq!(
            (stored.owner.as_deref(), stored.handoff_to),
            (Some("asker"), None)
        );
        checkpointer.set_expiry(&scope, "child", true).unwrap();
        assert!(checkpointer
            .lease(&scope, "child")
            .unwrap()
            .unwrap()
            .expires_at
            .is_some());
        checkpointer.set_expiry(&scope, "child", false).unwrap();
        assert_eq!(
            checkpointer
                .lease(&scope, "child")
                .unwrap()
                .unwrap()
                .expires_at,
            None
        );
        checkpointer.set_expiry(&scope, "gone", true).unwrap(); // never re-created
        assert_eq!(checkpointer.lease(&scope, "gone").unwrap(), None);
        assert_eq!(checkpointer.leases(&scope).unwrap().len(), 1);
    }

    #[test]
    fn the_server_comes_from_the_url_or_the_environment_and_the_password_never_shows() {
        let server = RedisServer::start_with(&["--requirepass", "s3cr3t-pw"]);
        let env = Environment::from_vars([
            ("REDIS_HOST", "127.0.0.1".to_owned()),
            ("REDIS_PORT", server.port().to_string()),
            ("REDIS_PASSWORD", "s3cr3t-pw".to_owned()),
            ("REDIS_DB", "2".to_owned()),
        ]);
        let from_env = RedisCheckpointer::builder("app")
            .environment(env)
            .build()
            .unwrap();
        from_env.prepare().unwrap();
        assert_eq!(
            from_env.endpoint(),
            format!("redis://127.0.0.1:{}/2", server.port())
        );
        let url = format!("redis://:s3cr3t-pw@127.0.0.1:{}/1", server.port());
        let from_url = RedisCheckpointer::builder("app").url(&url).build().unwrap();
        from_url.prepare().unwrap();
        assert!(!format!("{from_url:?}").contains("s3cr3t-pw"));

        let wrong = RedisCheckpointer::builder("app")
            .url(format!("redis://:wr0ng-pw@127.0.0.1:{}/0", server.port()))
            .build()
            .unwrap();
        let error = wrong.prepare().unwrap_err();
        assert!(error.is_configuration(), "{error:?}");
        assert!(
            !format!("{error} {error:?}").contains("wr0ng-pw"),
            "{error:?}"
        );

        server.stop();
        let refused = RedisCheckpointer::builder("app")
            .url(&url)
            .retry_policy(kcheck::RetryPolicy::no_retries())
            .build()
            .unwrap();
        let error = refused.prepare().unwrap_err();
        assert!(error.is_retryable() && error.is_ambiguous(), "{error:?}");
        assert!(
            !format!("{error} {error:?}").contains("s3cr3t-pw"),
            "{error:?}"
        );
    }
}
