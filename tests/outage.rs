//! DynamoDB unreachable or hanging for twice the session timeout: owners
//! stop delivering within the session timeout, nobody takes a lease before
//! it expired, everyone resumes when DynamoDB returns, and nothing is lost.

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
#[path = "support/lease_audit.rs"]
mod lease_audit;
mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use fault_proxy::{Fault, FaultProxy, Rule};
use lease_audit::{deliveries_without_lease, lease_log, Observed, Producer, Reader, ShardEvent};
use support::*;

const WAIT: Duration = Duration::from_secs(60);
/// Between a consumer deciding a record may go out and the reader stamping
/// it: scheduling on a loaded machine, not protocol slack.
const STAMP_TOLERANCE: Duration = Duration::from_millis(250);

/// Each test times an outage to the session timeout: one at a time, so the
/// other's load does not blur the timing.
fn one_outage_at_a_time() -> MutexGuard<'static, ()> {
    static OUTAGES: Mutex<()> = Mutex::new(());
    OUTAGES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A 2-shard stream written to every 100 ms, and a group of consumers on it.
struct Setup {
    stream: kcheck::kinesis::StreamRef,
    table: String,
    /// In front of DynamoDB for the consumers that can lose it.
    proxy: FaultProxy,
    observed: Arc<Observed>,
    producer: Option<Producer>,
}

impl Setup {
    fn new() -> Setup {
        lease_log();
        let (kinesis, stream) = create_stream(2);
        let pause = Duration::from_millis(100);
        let producer = Producer::start(kinesis, stream.clone(), 10, pause, usize::MAX);
        Setup {
            stream,
            table: unique_name("outage"),
            proxy: FaultProxy::start(&emulators().dynamodb_url()),
            observed: Arc::default(),
            producer: Some(producer),
        }
    }

    /// A consumer of the group, reaching DynamoDB through the proxy or directly.
    fn reader(&self, through_proxy: bool) -> Reader {
        let mut checkpointer = dynamodb_checkpointer("app", &self.table);
        if through_proxy {
            checkpointer = checkpointer.aws_config(config_for(self.proxy.url()));
        }
        let consumer = consumer_for(&self.stream)
            .checkpointer(checkpointer.build().unwrap())
            .build()
            .unwrap();
        Reader::start(consumer, &self.observed)
    }

    fn deliveries(&self) -> Vec<ShardEvent<Instant>> {
        let deliveries = self.observed.deliveries.lock().unwrap();
        deliveries.iter().map(|d| d.event.clone()).collect()
    }

    /// Waits until every reader delivers, i.e. the shards are split.
    fn wait_for_deliveries_by(&self, readers: &[&Reader], since: Instant) {
        let all_deliver = wait_until(WAIT, || {
            let deliveries = self.deliveries();
            readers.iter().all(|reader| {
                deliveries
                    .iter()
                    .any(|d| d.at > since && d.owner == reader.consumer.owner_id())
            })
        });
        assert!(all_deliver, "not every consumer delivered");
    }

    /// DynamoDB fails with `fault` for the proxied consumers from now until
    /// twice the session timeout has passed; when it started and ended.
    fn outage(&self, fault: impl FnOnce(Instant) -> Fault) -> (Instant, Instant) {
        let start = Instant::now();
        let end = start + SESSION_TIMEOUT * 2;
        let rule = self.proxy.add(Rule::on_every_operation(fault(end)));
        thread::sleep(end.saturating_duration_since(Instant::now()));
        rule.set_active(false);
        (start, Instant::now())
    }

    /// Stops the producer and waits until everything written was delivered;
    /// the payloads never delivered.
    fn drain(&mut self) -> Vec<String> {
        let written = self.producer.take().map(Producer::stop).unwrap_or_default();
        let missing = || {
            let deliveries = self.observed.deliveries.lock().unwrap();
            let delivered: HashSet<&str> = deliveries.iter().map(|d| d.payload.as_str()).collect();
            written
                .iter()
                .filter(|p| !delivered.contains(p.as_str()))
                .cloned()
                .collect::<Vec<_>>()
        };
        wait_until(WAIT, || missing().is_empty());
        missing()
    }

    /// When the last lease write for `shard` that reached DynamoDB was sent.
    fn last_lease_write(&self, shard: &str, before: Instant) -> Option<Instant> {
        self.proxy
            .requests()
            .into_iter()
            .filter(|r| {
                r.operation == "UpdateItem"
                    && r.fault.is_none()
                    && r.shard.as_deref() == Some(shard)
                    && r.at < before
            })
            .map(|r| r.at)
            .max()
    }
}

fn gains_since(since: Instant) -> Vec<ShardEvent<Instant>> {
    lease_log()
        .gains()
        .into_iter()
        .filter(|g| g.at >= since)
        .collect()
}

fn assert_no_delivery_without_lease(
    deliveries: &[ShardEvent<Instant>],
    gains: &[ShardEvent<Instant>],
    start: Instant,
) {
    let relative = |events: &[ShardEvent<Instant>]| -> Vec<ShardEvent<Duration>> {
        events.iter().map(|e| e.since(start)).collect()
    };
    let violations = deliveries_without_lease(&relative(deliveries), &relative(gains));
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// How many events, and the first and last, timed from `start`.
fn describe(events: &[&ShardEvent<Instant>], start: Instant) -> String {
    match (events.first(), events.last()) {
        (Some(first), Some(last)) => format!(
            "{} events, first {:?}, last {:?} (times from the outage's start)",
            events.len(),
            first.since(start),
            last.since(start)
        ),
        _ => "none".to_owned(),
    }
}

fn close_all(readers: Vec<Reader>) {
    for reader in readers {
        reader.stop().close().expect("close");
    }
}

/// Every owner loses DynamoDB (`fault` ends when the outage does).
fn everyone_loses_dynamodb(fault: impl FnOnce(Instant) -> Fault) {
    let _one = one_outage_at_a_time();
    let mut setup = Setup::new();
    let started = Instant::now();
    let readers = vec![setup.reader(true), setup.reader(true)];
    let refs: Vec<&Reader> = readers.iter().collect();
    setup.wait_for_deliveries_by(&refs, started);
    let (outage_start, outage_end) = setup.outage(fault);
    setup.wait_for_deliveries_by(&refs, outage_end);
    let missing = setup.drain();
    let deliveries = setup.deliveries();
    let gains = gains_since(started);
    close_all(readers);

    let fenced_by = outage_start + SESSION_TIMEOUT + STAMP_TOLERANCE;
    let late: Vec<&ShardEvent<Instant>> = deliveries
        .iter()
        .filter(|d| d.at > fenced_by && d.at < outage_end)
        .collect();
    assert!(
        late.is_empty(),
        "delivered later than the session timeout into the outage: {}",
        describe(&late, outage_start)
    );
    let taken_during: Vec<_> = gains
        .iter()
        .filter(|g| g.at > outage_start && g.at < outage_end)
        .collect();
    assert!(
        taken_during.is_empty(),
        "leases taken during the outage: {}",
        describe(&taken_during, outage_start)
    );
    assert_no_delivery_without_lease(&deliveries, &gains, started);
    assert!(
        missing.is_empty(),
        "never delivered: {} e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(setup.observed.errors.lock().unwrap().is_empty());
}

#[test]
fn dynamodb_hanging_for_everyone_stops_every_owner_and_all_resume_after() {
    everyone_loses_dynamodb(Fault::HangUntil);
}

#[test]
fn dynamodb_unreachable_for_everyone_stops_every_owner_and_all_resume_after() {
    everyone_loses_dynamodb(|_| Fault::CloseBeforeForwarding);
}

#[test]
fn an_owner_cut_off_from_dynamodb_stops_before_another_takes_its_lease() {
    let _one = one_outage_at_a_time();
    let mut setup = Setup::new();
    let started = Instant::now();
    let cut_off = setup.reader(true);
    let connected = setup.reader(false);
    setup.wait_for_deliveries_by(&[&cut_off, &connected], started);
    let (cut_off_id, connected_id) = (
        cut_off.consumer.owner_id().to_owned(),
        connected.consumer.owner_id().to_owned(),
    );
    let (outage_start, outage_end) = setup.outage(Fault::HangUntil);
    // Back in touch, the cut-off consumer gets its share again.
    setup.wait_for_deliveries_by(&[&cut_off, &connected], outage_end);
    let missing = setup.drain();
    let deliveries = setup.deliveries();
    let gains = gains_since(started);
    close_all(vec![cut_off, connected]);

    let late: Vec<_> = deliveries
        .iter()
        .filter(|d| {
            d.owner == cut_off_id
                && d.at > outage_start + SESSION_TIMEOUT + STAMP_TOLERANCE
                && d.at < outage_end
        })
        .collect();
    assert!(
        late.is_empty(),
        "the cut-off owner delivered later than the session timeout into the outage: {}",
        describe(&late, outage_start)
    );
    // The connected consumer took the cut-off one's shards, each only once
    // its lease had gone unrenewed for the session timeout.
    let taken: Vec<_> = gains
        .iter()
        .filter(|g| g.owner == connected_id && g.at > outage_start && g.at < outage_end)
        .collect();
    assert!(
        !taken.is_empty(),
        "the connected consumer took nothing over"
    );
    for gain in taken {
        let last_write = setup
            .last_lease_write(&gain.shard, outage_start)
            .expect("the cut-off owner renewed before the outage");
        assert!(
            gain.at >= last_write + SESSION_TIMEOUT,
            "{} taken {:?} after the cut-off owner's last lease write",
            gain.shard,
            gain.at - last_write
        );
    }
    assert_no_delivery_without_lease(&deliveries, &gains, started);
    assert!(
        missing.is_empty(),
        "never delivered: {} e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(setup.observed.errors.lock().unwrap().is_empty());
}
