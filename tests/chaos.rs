//! The lease protocol under faults: randomised scenarios of consumers
//! joining, closing, stalling and being dropped while a proxy breaks lease
//! writes and GetRecords and lease items vanish; and a crash loop of
//! consumer processes killed with SIGKILL while a producer writes.
//!
//! Reproduce a scenario: `KCHECK_CHAOS_SEED=<seed> cargo test --test chaos`.
//! More scenarios: `KCHECK_CHAOS_RUNS=50`. The long crash loop:
//! `KCHECK_CRASH_RECORDS=200000 KCHECK_CRASH_SECONDS=120 cargo test --release
//! --test chaos crash_loop -- --nocapture`.

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
#[path = "support/lease_audit.rs"]
mod lease_audit;
mod support;

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fault_proxy::{Fault, FaultProxy, Rule, RuleHandle};
use kcheck::checkpoint::{compare_sequence_numbers, Checkpoint, Checkpointer, LeaseScope};
use kcheck::dynamodb::{item, AttributeValue, DeleteItemRequest};
use kcheck::kinesis::StreamRef;
use kcheck::{Consumer, DynamoDbCheckpointer};
use lease_audit::{
    deliveries_without_lease, lease_log, wall_ms, Observed, Producer, Reader, ShardEvent,
};
use support::*;

const GROUP: &str = "chaos";
/// How long the end of a run may take to deliver what is left: a lease may
/// first have to expire and retries back off for up to 5 s.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The chaos scenarios and the crash loop each load both cores: one at a time.
fn one_heavy_test_at_a_time() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |value| {
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number"))
    })
}

/// SplitMix64: a small deterministic generator, so a seed replays a scenario.
struct Prng(u64);

impl Prng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(self.between(low, high))
    }

    fn index(&mut self, len: usize) -> usize {
        self.between(0, len as u64 - 1) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.between(1, 100) <= percent
    }
}

/// Threads the consumer starts (fetchers, keeper, coordinator), by name;
/// the emulators' runtime threads share the prefix and are left out.
fn consumer_threads() -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| name.starts_with("kcheck-") && name != "kcheck-emulator")
        .collect()
}

// ---------------------------------------------------------------------------
// Randomised scenarios
// ---------------------------------------------------------------------------

#[test]
fn randomised_fault_scenarios_keep_the_lease_invariants() {
    let _heavy = one_heavy_test_at_a_time();
    let seeds = match std::env::var("KCHECK_CHAOS_SEED") {
        Ok(seed) => vec![seed.parse().expect("KCHECK_CHAOS_SEED is a u64")],
        Err(_) => {
            let mut seeds = Prng(wall_ms() ^ u64::from(std::process::id()) << 40);
            let runs = env_number("KCHECK_CHAOS_RUNS", 3);
            (0..runs).map(|_| seeds.next_u64()).collect::<Vec<u64>>()
        }
    };
    lease_log();
    for seed in seeds {
        eprintln!("chaos scenario: KCHECK_CHAOS_SEED={seed}");
        let started = Instant::now();
        let (timeline, violations) = Scenario::run(seed);
        assert!(
            violations.is_empty(),
            "KCHECK_CHAOS_SEED={seed} cargo test --test chaos reproduces this:\n{}\n\nscenario:\n{}",
            violations.join("\n"),
            timeline.join("\n")
        );
        eprintln!(
            "chaos scenario {seed}: ok in {:?}; {}",
            started.elapsed(),
            timeline.last().unwrap()
        );
    }
}

/// Polls the lease table and records any checkpoint that moved backwards.
struct CheckpointWatch {
    /// The last checkpoint seen per shard; held while scanning, so a lease
    /// deleted by hand (which legitimately starts over) is forgotten atomically.
    last: Arc<Mutex<HashMap<String, Checkpoint>>>,
    regressions: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CheckpointWatch {
    fn start(checkpointer: DynamoDbCheckpointer, scope: LeaseScope) -> CheckpointWatch {
        let last = Arc::new(Mutex::new(HashMap::<String, Checkpoint>::new()));
        let regressions = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, found, stopping) = (last.clone(), regressions.clone(), stop.clone());
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                let mut last = seen.lock().unwrap();
                for lease in checkpointer.leases(&scope).unwrap_or_default() {
                    let Some(checkpoint) = lease.checkpoint else {
                        continue;
                    };
                    if let Some(before) = last.get(&lease.shard_id) {
                        if !before.allows(&checkpoint) {
                            found.lock().unwrap().push(format!(
                                "checkpoint of {} went back from {before} to {checkpoint}",
                                lease.shard_id
                            ));
                        }
                    }
                    last.insert(lease.shard_id, checkpoint);
                }
                drop(last);
                thread::sleep(Duration::from_millis(100));
            }
        });
        CheckpointWatch {
            last,
            regressions,
            stop,
            thread: Some(thread),
        }
    }

    /// Deletes a lease item behind the consumers' backs.
    fn delete_lease(&self, checkpointer: &DynamoDbCheckpointer, scope: &LeaseScope, shard: &str) {
        let mut last = self.last.lock().unwrap();
        let key = item([("shard_id", AttributeValue::s(scope.key(shard)))]);
        checkpointer
            .client()
            .delete_item(&DeleteItemRequest::new(checkpointer.table_name(), key))
            .expect("delete a lease item");
        last.remove(shard);
    }

    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("checkpoint watch");
        }
        std::mem::take(&mut *self.regressions.lock().unwrap())
    }
}

/// A consumer of a scenario with its own way to DynamoDB, so a lease fault
/// can cut one owner off while the others carry on.
struct Member {
    reader: Reader,
    dynamodb: Arc<FaultProxy>,
}

/// One randomised run: a stream, a group, proxies in front of both services.
struct Scenario {
    prng: Prng,
    stream: StreamRef,
    shards: Vec<String>,
    table: String,
    scope: LeaseScope,
    checkpointer: DynamoDbCheckpointer,
    /// Every member's DynamoDB proxy, kept to the end for the figures.
    dynamodb_proxies: Vec<Arc<FaultProxy>>,
    kinesis_proxy: Arc<FaultProxy>,
    observed: Arc<Observed>,
    members: Vec<Member>,
    owners: HashSet<String>,
    /// Writes all along, until the scenario settles.
    producer: Option<Producer>,
    /// What the producer wrote, once it stopped.
    written: Vec<String>,
    /// Rules switched off when their time is up.
    timed_rules: Vec<(RuleHandle, Instant)>,
}

impl Scenario {
    /// Runs the scenario of `seed`: what happened, and the invariants it broke.
    fn run(seed: u64) -> (Vec<String>, Vec<String>) {
        let mut prng = Prng(seed);
        let (kinesis, stream) = create_stream(prng.between(2, 4) as u32);
        let shards = kinesis
            .list_shards(&stream, None)
            .unwrap()
            .into_iter()
            .map(|s| s.shard_id)
            .collect();
        let table = unique_name("chaos");
        let scope = LeaseScope {
            group: GROUP.into(),
            stream: stream.name().to_owned(),
        };
        let checkpointer = dynamodb_checkpointer(GROUP, &table).build().unwrap();
        checkpointer.prepare().unwrap();
        let threads_before = consumer_threads();
        let started = Instant::now();
        let mut scenario = Scenario {
            prng,
            producer: Some(Producer::start(
                kinesis,
                stream.clone(),
                10,
                Duration::from_millis(100),
                usize::MAX,
            )),
            stream,
            shards,
            table,
            scope: scope.clone(),
            checkpointer: checkpointer.clone(),
            dynamodb_proxies: Vec::new(),
            kinesis_proxy: Arc::new(FaultProxy::start(&emulators().kinesis_url())),
            observed: Arc::default(),
            members: Vec::new(),
            owners: HashSet::new(),
            written: Vec::new(),
            timed_rules: Vec::new(),
        };
        let watch = CheckpointWatch::start(checkpointer, scope);
        for _ in 0..scenario.prng.between(1, 2) {
            scenario.join();
        }
        let mut timeline = vec![format!("{} shards", scenario.shards.len())];
        for _ in 0..10 {
            let event = scenario.step(&watch);
            timeline.push(format!("{:>6} ms: {event}", started.elapsed().as_millis()));
            let pause = scenario.prng.millis(300, 1200);
            thread::sleep(pause);
        }
        let delivered_everything = scenario.settle();
        let mut violations = Vec::new();
        if !delivered_everything {
            violations.push(scenario.describe_missing());
        }
        for member in std::mem::take(&mut scenario.members) {
            if let Err(error) = member.reader.stop().close() {
                violations.push(format!("close failed: {error}"));
            }
        }
        violations.extend(watch.finish());
        violations.extend(scenario.deliveries_without_lease(started));
        violations.extend(scenario.observed.errors.lock().unwrap().drain(..));
        let threads_left = wait_until(Duration::from_secs(10), || {
            consumer_threads().len() <= threads_before.len()
        });
        if !threads_left {
            violations.push(format!(
                "consumer threads still running after close: {:?} (before: {threads_before:?})",
                consumer_threads()
            ));
        }
        let deliveries = scenario.observed.deliveries.lock().unwrap().len();
        timeline.push(format!(
            "{} records written, {deliveries} delivered, {} faults injected",
            scenario.written.len(),
            scenario.faults_injected()
        ));
        (timeline, violations)
    }

    /// One random event, described.
    fn step(&mut self, watch: &CheckpointWatch) -> String {
        let now = Instant::now();
        self.timed_rules.retain(|(rule, until)| {
            let expired = *until <= now;
            if expired {
                rule.set_active(false);
            }
            !expired
        });
        match self.prng.between(0, 7) {
            0 if self.members.len() < 3 => format!("{} joins", self.join()),
            1 if !self.members.is_empty() => {
                let member = self.members.remove(self.prng.index(self.members.len()));
                let consumer = member.reader.stop();
                if let Err(error) = consumer.close() {
                    self.observed
                        .errors
                        .lock()
                        .unwrap()
                        .push(format!("close failed: {error}"));
                }
                format!("{} closes", consumer.owner_id())
            }
            2 if !self.members.is_empty() => {
                // Dropped without close(): Drop must release as close does.
                let member = self.members.remove(self.prng.index(self.members.len()));
                let consumer = member.reader.stop();
                let owner = consumer.owner_id().to_owned();
                drop(consumer);
                format!("{owner} is dropped")
            }
            3 if !self.members.is_empty() => {
                let stall = self.prng.millis(500, 5000);
                let reader = &self.members[self.prng.index(self.members.len())].reader;
                reader.stall(stall);
                format!("{} stalls for {stall:?}", reader.consumer.owner_id())
            }
            4 | 5 if !self.members.is_empty() => {
                let fault = self.lease_write_fault();
                // Mostly one owner cut off, sometimes everyone.
                let (proxies, whom) = if self.prng.chance(70) {
                    let member = &self.members[self.prng.index(self.members.len())];
                    let owner = member.reader.consumer.owner_id().to_owned();
                    (vec![member.dynamodb.clone()], owner)
                } else {
                    let all = self.members.iter().map(|m| m.dynamodb.clone()).collect();
                    (all, "everyone".to_owned())
                };
                let rule = self.add_rule(&proxies, "UpdateItem", fault);
                format!("{rule} for {whom}")
            }
            6 => {
                let fault = self.get_records_fault();
                let proxy = [Arc::clone(&self.kinesis_proxy)];
                self.add_rule(&proxy, "GetRecords", fault)
            }
            7 => {
                let shard = self.shards[self.prng.index(self.shards.len())].clone();
                watch.delete_lease(&self.checkpointer, &self.scope, &shard);
                format!("the lease of {shard} is deleted")
            }
            _ => "nothing happens".to_owned(),
        }
    }

    /// Starts a consumer reading; its owner id.
    fn join(&mut self) -> String {
        let dynamodb = Arc::new(FaultProxy::start(&emulators().dynamodb_url()));
        self.dynamodb_proxies.push(dynamodb.clone());
        let checkpointer = dynamodb_checkpointer(GROUP, &self.table)
            .aws_config(config_for(dynamodb.url()))
            .build()
            .unwrap();
        let consumer = consumer_for(&self.stream)
            .aws_config(config_for(self.kinesis_proxy.url()))
            .checkpointer(checkpointer)
            .build()
            .unwrap();
        let owner = consumer.owner_id().to_owned();
        self.owners.insert(owner.clone());
        let reader = Reader::start(consumer, &self.observed);
        self.members.push(Member { reader, dynamodb });
        owner
    }

    /// Hangs are the likeliest: they are what outlasts a session.
    fn lease_write_fault(&mut self) -> Fault {
        match self.prng.between(0, 9) {
            0..=2 => Fault::Hang(self.prng.millis(1000, 6000)),
            3 => Fault::Delay(self.prng.millis(100, 1500)),
            4 => Fault::CloseBeforeForwarding,
            5 => Fault::ForwardThenClose,
            6 => Fault::dynamodb_throughput_exceeded(),
            7 => Fault::dynamodb_throttling(),
            8 => Fault::internal_error(),
            _ => Fault::unavailable(),
        }
    }

    fn get_records_fault(&mut self) -> Fault {
        match self.prng.between(0, 8) {
            0 => Fault::Hang(self.prng.millis(500, 3000)),
            1 => Fault::Delay(self.prng.millis(100, 1500)),
            2 => Fault::CloseBeforeForwarding,
            3 => Fault::ForwardThenClose,
            4 => Fault::TruncateBody,
            5 => Fault::Trickle {
                chunk: 512,
                pause: Duration::from_millis(20),
            },
            6 => Fault::kinesis_throughput_exceeded(),
            7 => Fault::internal_error(),
            _ => Fault::unavailable(),
        }
    }

    /// Adds `fault` on `operation` to `proxies`: for one shard or all, for
    /// the first few requests or all, on for 0.5–6 s; described.
    fn add_rule(&mut self, proxies: &[Arc<FaultProxy>], operation: &str, fault: Fault) -> String {
        let shard = self
            .prng
            .chance(50)
            .then(|| self.shards[self.prng.index(self.shards.len())].clone());
        let count = self.prng.chance(50).then(|| self.prng.between(1, 8) as u32);
        let active = self.prng.millis(500, 6000);
        let until = Instant::now() + active;
        for proxy in proxies {
            let mut rule = Rule::on(operation, fault.clone());
            if let Some(shard) = &shard {
                rule = rule.shard(shard);
            }
            if let Some(count) = count {
                rule = rule.first(count);
            }
            self.timed_rules.push((proxy.add(rule), until));
        }
        format!(
            "{fault} on {operation} of {}, {} requests, for {active:?}",
            shard.as_deref().unwrap_or("every shard"),
            count.map_or("all".to_owned(), |c| format!("the first {c}")),
        )
    }

    /// Ends the faults and stalls, makes sure someone reads, and waits until
    /// every record written was delivered; whether that happened.
    fn settle(&mut self) -> bool {
        self.written = self.producer.take().map(Producer::stop).unwrap_or_default();
        for proxy in &self.dynamodb_proxies {
            proxy.clear();
        }
        self.kinesis_proxy.clear();
        for member in &self.members {
            *member.reader.stalled_until.lock().unwrap() = None;
        }
        if self.members.is_empty() {
            self.join();
        }
        wait_until(DRAIN_TIMEOUT, || self.missing().is_empty())
    }

    fn faults_injected(&self) -> usize {
        self.dynamodb_proxies
            .iter()
            .chain([&self.kinesis_proxy])
            .flat_map(|proxy| proxy.requests())
            .filter(|request| request.fault.is_some())
            .count()
    }

    fn missing(&self) -> Vec<&String> {
        let deliveries = self.observed.deliveries.lock().unwrap();
        let delivered: HashSet<&str> = deliveries.iter().map(|d| d.payload.as_str()).collect();
        self.written
            .iter()
            .filter(|payload| !delivered.contains(payload.as_str()))
            .collect()
    }

    fn describe_missing(&self) -> String {
        let missing = self.missing();
        format!(
            "{} of {} records never delivered within {DRAIN_TIMEOUT:?}, e.g. {:?}",
            missing.len(),
            self.written.len(),
            &missing[..missing.len().min(5)]
        )
    }

    /// Deliveries by a consumer that was not the shard's latest lease
    /// gainer, with times since `since`.
    fn deliveries_without_lease(&self, since: Instant) -> Vec<String> {
        let gains: Vec<ShardEvent<Duration>> = lease_log()
            .gains()
            .iter()
            .filter(|gain| gain.at >= since && self.owners.contains(&gain.owner))
            .map(|gain| gain.since(since))
            .collect();
        let deliveries: Vec<ShardEvent<Duration>> = self
            .observed
            .deliveries
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.event.since(since))
            .collect();
        deliveries_without_lease(&deliveries, &gains)
    }
}

// ---------------------------------------------------------------------------
// Crash loop
// ---------------------------------------------------------------------------

/// Child process of the crash loop: consumes and writes every delivery and
/// lease gain to its log file, at once, until killed. Does nothing in a
/// normal run.
#[test]
fn crash_loop_child() {
    let Ok(log_path) = std::env::var("KCHECK_CRASH_CHILD_LOG") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .expect("child log");
    lease_log().mirror_to(log.try_clone().unwrap());
    let checkpointer = DynamoDbCheckpointer::builder(GROUP)
        .table_name(var("KCHECK_CRASH_TABLE"))
        .aws_config(config_for(&var("KCHECK_CRASH_DYNAMODB")))
        .session_timeout(SESSION_TIMEOUT)
        .heartbeat_frequency(HEARTBEAT)
        .build()
        .unwrap();
    let consumer = Consumer::builder(var("KCHECK_CRASH_STREAM"))
        .aws_config(config_for(&var("KCHECK_CRASH_KINESIS")))
        .discovery_interval(DISCOVERY)
        .idle_poll_interval(Duration::from_millis(100))
        .checkpoint_interval(Duration::from_millis(200))
        .checkpointer(checkpointer)
        .build()
        .unwrap();
    writeln!(log, "O {}", consumer.owner_id()).unwrap();
    let parent = std::os::unix::process::parent_id();
    // An orphan (the test died) stops by itself.
    while std::os::unix::process::parent_id() == parent {
        if let Some(record) = consumer.next_timeout(Duration::from_millis(100)).unwrap() {
            let line = format!(
                "D {} {} {} {}\n",
                wall_ms(),
                record.shard_id,
                record.sequence_number,
                String::from_utf8_lossy(&record.data)
            );
            log.write_all(line.as_bytes()).unwrap();
        }
    }
}

/// A running crash-loop child and its log.
struct ChildConsumer {
    process: Child,
    log: PathBuf,
}

/// A record a child delivered, timed in wall-clock milliseconds.
struct ChildDelivery {
    event: ShardEvent<u64>,
    sequence: String,
    payload: String,
}

/// What a child's log holds.
#[derive(Default)]
struct ChildLog {
    owner: Option<String>,
    deliveries: Vec<ChildDelivery>,
    gains: Vec<ShardEvent<u64>>,
}

fn read_child_log(path: &Path) -> ChildLog {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut log = ChildLog::default();
    // A line cut by the kill has fewer fields and is skipped.
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let event = |at: &str, owner: &str, shard: &str| ShardEvent {
            at: at.parse().unwrap_or(0),
            owner: owner.to_owned(),
            shard: shard.to_owned(),
        };
        match (fields.as_slice(), &log.owner) {
            (["O", owner], _) => log.owner = Some((*owner).to_owned()),
            (["G", at, owner, shard], _) => log.gains.push(event(at, owner, shard)),
            (["D", at, shard, sequence, payload], Some(owner)) => {
                log.deliveries.push(ChildDelivery {
                    event: event(at, owner, shard),
                    sequence: (*sequence).to_owned(),
                    payload: (*payload).to_owned(),
                })
            }
            _ => {}
        }
    }
    log
}

/// A SIGKILL: when, whom, and the leases it held with their checkpoints.
struct Kill {
    at: u64,
    owner: String,
    held: HashMap<String, Option<Checkpoint>>,
}

struct CrashLoop {
    stream: StreamRef,
    table: String,
    logs: PathBuf,
    generation: usize,
}

impl CrashLoop {
    fn spawn(&mut self) -> ChildConsumer {
        self.generation += 1;
        let log = self.logs.join(format!("child-{}.log", self.generation));
        let process = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_loop_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("KCHECK_CRASH_CHILD_LOG", &log)
            .env("KCHECK_CRASH_STREAM", self.stream.as_str())
            .env("KCHECK_CRASH_TABLE", &self.table)
            .env("KCHECK_CRASH_KINESIS", emulators().kinesis_url())
            .env("KCHECK_CRASH_DYNAMODB", emulators().dynamodb_url())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a consumer process");
        ChildConsumer { process, log }
    }
}

/// Kills every child still running when the test ends, even by panic.
struct Children(Vec<ChildConsumer>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.process.kill();
            let _ = child.process.wait();
        }
    }
}

#[test]
fn a_crash_loop_of_three_consumer_processes_loses_nothing() {
    let _heavy = one_heavy_test_at_a_time();
    let records = env_number("KCHECK_CRASH_RECORDS", 20_000) as usize;
    let run_for = Duration::from_secs(env_number("KCHECK_CRASH_SECONDS", 30));
    let seed = wall_ms();
    eprintln!("crash loop: {records} records, {run_for:?}, kill schedule seed {seed}");
    let mut prng = Prng(seed);
    let (kinesis, stream) = create_stream(8);
    let logs = std::env::temp_dir().join(unique_name("kcheck-crash-loop"));
    std::fs::create_dir_all(&logs).unwrap();
    let mut crash_loop = CrashLoop {
        stream: stream.clone(),
        table: unique_name("crash-loop"),
        logs,
        generation: 0,
    };
    let checkpointer = dynamodb_checkpointer(GROUP, &crash_loop.table)
        .build()
        .unwrap();
    checkpointer.prepare().unwrap();
    let scope = LeaseScope {
        group: GROUP.into(),
        stream: stream.name().to_owned(),
    };
    let mut children = Children((0..3).map(|_| crash_loop.spawn()).collect());
    let mut logs = Vec::new();

    // The records are spread evenly over three quarters of the run, in small
    // batches so kills land while records are in flight.
    const BATCH: usize = 100;
    let pause = run_for * 3 / 4 / records.div_ceil(BATCH).max(1) as u32;
    let producer = Producer::start(kinesis, stream.clone(), BATCH, pause, records);

    let mut kills = Vec::new();
    let ends_at = Instant::now() + run_for;
    loop {
        let next_kill = Instant::now() + prng.millis(3000, 6000);
        if next_kill >= ends_at {
            break;
        }
        thread::sleep(next_kill - Instant::now());
        let victim = prng.index(children.0.len());
        let mut child = std::mem::replace(&mut children.0[victim], crash_loop.spawn());
        child.process.kill().unwrap();
        let at = wall_ms();
        child.process.wait().unwrap();
        if let Some(owner) = read_child_log(&child.log).owner {
            let held = checkpointer
                .leases(&scope)
                .unwrap()
                .into_iter()
                .filter(|lease| lease.is_owned_by(&owner))
                .map(|lease| (lease.shard_id, lease.checkpoint))
                .collect();
            kills.push(Kill { at, owner, held });
        }
        logs.push(child.log);
    }
    let written = producer.finish();

    let delivered = |logs: &[PathBuf]| -> HashSet<String> {
        logs.iter()
            .flat_map(|path| read_child_log(path).deliveries)
            .map(|delivery| delivery.payload)
            .collect()
    };
    let all_logs = |logs: &[PathBuf], children: &Children| -> Vec<PathBuf> {
        logs.iter()
            .cloned()
            .chain(children.0.iter().map(|c| c.log.clone()))
            .collect()
    };
    let drain_started = Instant::now();
    let drained = wait_until(DRAIN_TIMEOUT, || {
        let seen = delivered(&all_logs(&logs, &children));
        written.iter().all(|payload| seen.contains(payload))
    });
    let drain_time = drain_started.elapsed();
    for mut child in children.0.drain(..) {
        let _ = child.process.kill();
        let _ = child.process.wait();
        logs.push(child.log);
    }

    let child_logs: Vec<ChildLog> = logs.iter().map(|path| read_child_log(path)).collect();
    let report = CrashReport::new(&child_logs, &kills, &written);
    report.print(drain_time);
    let _ = std::fs::remove_dir_all(&crash_loop.logs);
    let mut violations = Vec::new();
    if !drained {
        violations.push(format!(
            "{} records never delivered within {DRAIN_TIMEOUT:?} of the end",
            report.lost
        ));
    }
    violations.extend(report.violations);
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// Why `again`, delivered after `earlier` copies of the same record, breaks
/// the rules, if it does: a record comes again only after an owner that had
/// delivered it was killed, and only if that owner had not checkpointed it.
fn unexplained_redelivery(
    earlier: &[&ChildDelivery],
    again: &ChildDelivery,
    kills: &[Kill],
) -> Option<String> {
    let killed_between = |before: &ChildDelivery| -> Vec<&Kill> {
        kills
            .iter()
            .filter(|kill| {
                kill.owner == before.event.owner
                    && before.event.at <= kill.at
                    && kill.at <= again.event.at
            })
            .collect()
    };
    if earlier
        .iter()
        .all(|before| killed_between(before).is_empty())
    {
        return Some(format!(
            "{} delivered again by {} at {} without a crash in between",
            again.payload, again.event.owner, again.event.at
        ));
    }
    let checkpointed_by_victim = earlier.iter().find_map(|before| {
        killed_between(before).into_iter().find_map(|kill| {
            match kill.held.get(&before.event.shard) {
                Some(Some(Checkpoint::At(position)))
                    if compare_sequence_numbers(&again.sequence, &position.sequence_number)
                        .is_le() =>
                {
                    Some(position)
                }
                _ => None,
            }
        })
    })?;
    Some(format!(
        "{} ({}) delivered again though its killed owner had checkpointed {checkpointed_by_victim}",
        again.payload, again.sequence
    ))
}

/// The crash loop's figures and broken invariants.
struct CrashReport {
    written: usize,
    deliveries: usize,
    lost: usize,
    kills: usize,
    /// From each kill to the next delivery of each shard the victim held,
    /// by another owner.
    failovers: Vec<Duration>,
    violations: Vec<String>,
}

impl CrashReport {
    fn new(logs: &[ChildLog], kills: &[Kill], written: &[String]) -> CrashReport {
        let mut deliveries: Vec<&ChildDelivery> =
            logs.iter().flat_map(|log| &log.deliveries).collect();
        deliveries.sort_by_key(|d| d.event.at);
        let gains: Vec<ShardEvent<u64>> = logs.iter().flat_map(|log| log.gains.clone()).collect();
        let events: Vec<ShardEvent<u64>> = deliveries.iter().map(|d| d.event.clone()).collect();
        let mut violations = deliveries_without_lease(&events, &gains);

        let mut by_payload: HashMap<&str, Vec<&ChildDelivery>> = HashMap::new();
        for delivery in &deliveries {
            by_payload
                .entry(&delivery.payload)
                .or_default()
                .push(delivery);
        }
        let lost = written
            .iter()
            .filter(|p| !by_payload.contains_key(p.as_str()))
            .count();
        for copies in by_payload.values() {
            for (i, again) in copies.iter().enumerate().skip(1) {
                violations.extend(unexplained_redelivery(&copies[..i], again, kills));
            }
        }
        let failovers = kills
            .iter()
            .flat_map(|kill| {
                kill.held.keys().filter_map(|shard| {
                    deliveries
                        .iter()
                        .find(|d| {
                            d.event.at > kill.at
                                && d.event.shard == *shard
                                && d.event.owner != kill.owner
                        })
                        .map(|d| Duration::from_millis(d.event.at - kill.at))
                })
            })
            .collect();
        violations.truncate(20);
        CrashReport {
            written: written.len(),
            deliveries: deliveries.len(),
            lost,
            kills: kills.len(),
            failovers,
            violations,
        }
    }

    fn print(&self, drain_time: Duration) {
        let duplicates = self.deliveries.saturating_sub(self.written - self.lost);
        let mut failovers = self.failovers.clone();
        failovers.sort();
        let at = |fraction: f64| {
            let index = ((failovers.len().max(1) - 1) as f64 * fraction).round() as usize;
            failovers
                .get(index)
                .map_or("-".to_owned(), |d| format!("{d:?}"))
        };
        eprintln!(
            "crash loop: {} written, {} deliveries, {} lost, {} duplicates ({:.2} %), {} kills; \
             failover min/median/max {}/{}/{} over {} shards; drained {:?} after the run",
            self.written,
            self.deliveries,
            self.lost,
            duplicates,
            100.0 * duplicates as f64 / self.written.max(1) as f64,
            self.kills,
            at(0.0),
            at(0.5),
            at(1.0),
            failovers.len(),
            drain_time
        );
    }
}
