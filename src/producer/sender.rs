//! The sending thread: routes queued records to per-shard lanes, builds
//! PutRecords requests within each shard's budget and the request limits,
//! keeps each partition key's records in order, and settles every ticket.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::buffer::{Shared, UserRecord, Work};
use super::shards::ShardMap;
use super::{FailedRecord, Ticket, MAX_RECORD_BYTES, MAX_REQUEST_BYTES};
use crate::error::{panic_message, Error, ErrorCode, Result};
use crate::kinesis::aggregation::{deaggregate, Aggregator};
use crate::kinesis::{KinesisClient, PutRecordsEntry, PutRecordsResult, StreamRef};
use crate::transport::RetryPolicy;

/// Units of a lane looked at per request: bounds the work a hot key (whose
/// records go one per request) costs each request.
const SCAN_WINDOW: usize = 2 * crate::kinesis::MAX_PUT_RECORDS;
/// A user record's share of an aggregate, beyond its data and keys, at
/// most: field tags, lengths and key indexes.
const AGGREGATE_ENTRY_OVERHEAD: usize = 32;
/// The magic and the digest around an aggregate's protobuf.
const AGGREGATE_FRAME: usize = 20;
/// The soonest a shard map is read again after the last read.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(1);
/// The longest the thread sleeps while records wait for a shard's budget
/// or a resubmission, so new records and flushes are looked at.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Partition keys by their MD5 (see [`KeyHasher`]).
type KeySet = HashSet<u128, BuildHasherDefault<KeyHasher>>;

/// Hashes a partition key's MD5 by its low bits: it is uniform already,
/// and SipHash on every record showed in profiles.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

/// Starts the sending thread.
pub(crate) fn start(
    shared: Arc<Shared>,
    kinesis: KinesisClient,
    stream: StreamRef,
    map: ShardMap,
    retry: RetryPolicy,
) -> Result<JoinHandle<()>> {
    let lanes = (0..map.len()).map(|_| Lane::default()).collect();
    let refresh_at = Instant::now() + shared.options.shard_refresh_interval;
    let mut sender = Sender {
        shared,
        kinesis,
        stream,
        map,
        lanes,
        unrouted: Vec::new(),
        oldest: None,
        refreshed: Instant::now(),
        refresh_at,
        next_lane: 0,
        retry,
    };
    std::thread::Builder::new()
        .name("kcheck-producer".into())
        .spawn(move || {
            let shared = Arc::clone(&sender.shared);
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| sender.run())) {
                let message = panic_message(&*panic);
                log::error!("the producer's sending thread panicked: {message}");
                shared.stop(Error::Internal(format!(
                    "the producer's sending thread panicked: {message}"
                )));
            }
        })
        .map_err(|e| Error::Internal(format!("cannot start the producer's thread: {e}")))
}

/// User records in one Kinesis record.
enum Members {
    One(Member),
    /// A KPL aggregate's, in order.
    Many(Vec<Member>),
}

#[derive(Clone, Copy)]
struct Member {
    ticket: u64,
    /// The partition key's MD5 (what ordering is about).
    key: u128,
}

impl Members {
    fn as_slice(&self) -> &[Member] {
        match self {
            Members::One(member) => std::slice::from_ref(member),
            Members::Many(members) => members,
        }
    }
}

/// One Kinesis record on its way: a user record, or an aggregate of them.
struct Unit {
    entry: PutRecordsEntry,
    hash: u128,
    members: Members,
    attempts: u32,
    not_before: Option<Instant>,
}

impl Unit {
    /// What Kinesis counts against its limits: data and partition key.
    fn size(&self) -> usize {
        self.entry.data.len() + self.entry.partition_key.len()
    }

    fn first_ticket(&self) -> u64 {
        self.members.as_slice()[0].ticket
    }

    fn keys(&self) -> impl Iterator<Item = u128> + '_ {
        self.members.as_slice().iter().map(|m| m.key)
    }

    /// Its bound on the size it adds to an aggregate.
    fn aggregated_size(&self) -> usize {
        self.size()
            + self.entry.explicit_hash_key.as_ref().map_or(0, String::len)
            + AGGREGATE_ENTRY_OVERHEAD
    }
}

impl From<UserRecord> for Unit {
    fn from(record: UserRecord) -> Unit {
        Unit {
            entry: record.entry,
            hash: record.hash,
            members: Members::One(Member {
                ticket: record.ticket,
                key: record.key,
            }),
            attempts: 0,
            not_before: None,
        }
    }
}

/// The queue of one open shard, in put order but for resubmissions, which
/// go back to the front.
#[derive(Default)]
struct Lane {
    units: VecDeque<Unit>,
    records: usize,
    bytes: usize,
    /// Units being resubmitted (those that may have to wait).
    resubmissions: usize,
    /// The shard's budget ran out last time: wait for a worthwhile chunk
    /// of it rather than sending a record at a time.
    starved: bool,
}

impl Lane {
    fn push_back(&mut self, unit: Unit) {
        self.count(&unit, true);
        self.units.push_back(unit);
    }

    fn push_front(&mut self, unit: Unit) {
        self.count(&unit, true);
        self.units.push_front(unit);
    }

    fn pop_front(&mut self) -> Option<Unit> {
        let unit = self.units.pop_front()?;
        self.count(&unit, false);
        Some(unit)
    }

    fn count(&mut self, unit: &Unit, added: bool) {
        let (records, bytes) = (unit.members.as_slice().len(), unit.size());
        let resubmission = usize::from(unit.attempts > 0);
        if added {
            self.records += records;
            self.bytes += bytes;
            self.resubmissions += resubmission;
        } else {
            self.records -= records;
            self.bytes -= bytes;
            self.resubmissions -= resubmission;
        }
    }

    /// The units being resubmitted (walking no further than the last).
    fn resubmitted(&self) -> impl Iterator<Item = &Unit> {
        self.units
            .iter()
            .filter(|unit| unit.attempts > 0)
            .take(self.resubmissions)
    }
}

/// A request being built: entries and, beside them, where each came from.
struct Request {
    entries: Vec<PutRecordsEntry>,
    origins: Vec<Origin>,
    bytes: usize,
    /// Keys of records in this request or waiting for a resubmission.
    busy: KeySet,
}

/// A unit without its entry (which travels in the request), and its lane.
struct Origin {
    lane: usize,
    hash: u128,
    members: Members,
    attempts: u32,
}

impl Request {
    fn add(&mut self, unit: Unit, lane: usize) {
        self.bytes += unit.size();
        self.busy.extend(unit.keys());
        self.entries.push(unit.entry);
        self.origins.push(Origin {
            lane,
            hash: unit.hash,
            members: unit.members,
            attempts: unit.attempts,
        });
    }
}

/// Small records of one lane being gathered into a KPL aggregate.
#[derive(Default)]
struct Gathering {
    units: Vec<Unit>,
    keys: KeySet,
    size: usize,
}

impl Gathering {
    /// One unit as it is, several as an aggregate routed like the first.
    fn finish(self) -> Option<Unit> {
        let mut units = self.units.into_iter();
        let first = units.next()?;
        let Some(second) = units.next() else {
            return Some(first);
        };
        let mut aggregator = Aggregator::default();
        let mut members = Vec::new();
        let (partition_key, hash) = (first.entry.partition_key.clone(), first.hash);
        for unit in [first, second].into_iter().chain(units) {
            let entry = unit.entry;
            aggregator.push(
                &entry.partition_key,
                entry.explicit_hash_key.as_deref(),
                entry.data,
            );
            members.extend_from_slice(unit.members.as_slice());
        }
        Some(Unit {
            entry: PutRecordsEntry {
                data: aggregator.finish(),
                partition_key,
                explicit_hash_key: Some(hash.to_string()),
            },
            hash,
            members: Members::Many(members),
            attempts: 0,
            not_before: None,
        })
    }
}

struct Sender {
    shared: Arc<Shared>,
    kinesis: KinesisClient,
    stream: StreamRef,
    map: ShardMap,
    /// One per open shard of `map`, same order.
    lanes: Vec<Lane>,
    /// Records no open shard of `map` holds (the map is stale).
    unrouted: Vec<Unit>,
    /// When the oldest record waiting to be sent arrived.
    oldest: Option<Instant>,
    refreshed: Instant,
    refresh_at: Instant,
    /// Lanes take turns at filling requests first.
    next_lane: usize,
    retry: RetryPolicy,
}

impl Sender {
    fn run(&mut self) {
        let mut pause = Duration::ZERO;
        let mut for_budget = false;
        // Swapped with the shared one, so neither regrows for every batch.
        let mut arrived = Vec::new();
        loop {
            // Idle, the first record starts the buffer time; then a full
            // batch is worth waking for.
            let queued = self.queued();
            let needs = match queued {
                0 => 1,
                _ => self.shared.options.batch_size.saturating_sub(queued).max(1),
            };
            let Work { hurry, closed } =
                self.shared
                    .wait_for_work(pause, for_budget, needs, &mut arrived);
            for_budget = false;

            let now = Instant::now();
            if !arrived.is_empty() && self.oldest.is_none() {
                self.oldest = Some(now);
            }
            for record in arrived.drain(..) {
                self.route(Unit::from(record));
            }
            if now >= self.refresh_at || (!self.unrouted.is_empty() && self.may_refresh(now)) {
                self.refresh();
            }
            let queued = self.queued();
            if queued == 0 {
                self.oldest = None;
                if closed {
                    return;
                }
                pause = self.refresh_at.saturating_duration_since(now);
                continue;
            }
            let due = self
                .oldest
                .map_or(now, |t| t + self.shared.options.buffer_time);
            if !hurry && queued < self.shared.options.batch_size && now < due {
                pause = due - now;
                continue;
            }
            let (request, wait) = self.build_request(now);
            pause = if request.entries.is_empty() {
                for_budget = true;
                wait.clamp(Duration::from_millis(1), MAX_PAUSE)
            } else {
                self.send(request);
                Duration::ZERO
            };
        }
    }

    /// User records held here, not in flight.
    fn queued(&self) -> usize {
        self.lanes.iter().map(|l| l.records).sum::<usize>() + self.unrouted.len()
    }

    fn route(&mut self, unit: Unit) {
        match self.map.route(unit.hash) {
            Some(lane) => self.lanes[lane].push_back(unit),
            None => self.unrouted.push(unit),
        }
    }

    fn may_refresh(&self, now: Instant) -> bool {
        now >= self.refreshed + MIN_REFRESH_GAP
    }

    /// Reads the shard map again and routes every waiting record anew, in
    /// ticket order, so no key's records change order.
    fn refresh(&mut self) {
        let now = Instant::now();
        self.refreshed = now;
        self.refresh_at = now + self.shared.options.shard_refresh_interval;
        let counters = &self.shared.counters;
        counters.shard_map_refreshes.fetch_add(1, Ordering::Relaxed);
        let map = self
            .kinesis
            .list_shards(&self.stream, None)
            .and_then(|shards| ShardMap::new(&shards, self.shared.options.limits, &self.map));
        let map = match map {
            Ok(map) => map,
            Err(error) => {
                log::warn!("cannot read the shards of {}: {error}", self.stream);
                if error.is_configuration() {
                    // No shard map will come: the records cannot be routed.
                    let stranded = std::mem::take(&mut self.unrouted);
                    let failed = stranded
                        .into_iter()
                        .flat_map(|unit| failures(unit.entry, &unit.members, &error))
                        .collect();
                    self.shared.settle(&[], failed);
                }
                self.refresh_at = now + MIN_REFRESH_GAP.max(self.retry.base_delay);
                return;
            }
        };
        counters.shards.store(map.len() as u64, Ordering::Relaxed);
        let mut units: Vec<Unit> = std::mem::take(&mut self.unrouted);
        for mut lane in std::mem::take(&mut self.lanes) {
            units.extend(std::iter::from_fn(|| lane.pop_front()));
        }
        units.sort_by_key(Unit::first_ticket);
        self.map = map;
        self.lanes = (0..self.map.len()).map(|_| Lane::default()).collect();
        for unit in units {
            self.route(unit);
        }
    }

    /// What may go now, within every limit; when nothing may, how long
    /// until something might.
    fn build_request(&mut self, now: Instant) -> (Request, Duration) {
        let batch_size = self.shared.options.batch_size;
        let mut request = Request {
            entries: Vec::with_capacity(batch_size),
            origins: Vec::with_capacity(batch_size),
            bytes: 0,
            busy: KeySet::with_capacity_and_hasher(2 * batch_size, <_>::default()),
        };
        let mut wait = MAX_PAUSE;
        // Records waiting for a resubmission hold back their keys everywhere.
        for lane in &self.lanes {
            for unit in lane.resubmitted() {
                if let Some(at) = unit.not_before.filter(|&at| at > now) {
                    request.busy.extend(unit.keys());
                    wait = wait.min(at - now);
                }
            }
        }
        let lanes = self.lanes.len();
        for turn in 0..lanes {
            let lane = (self.next_lane + turn) % lanes;
            if request.entries.len() >= batch_size {
                break;
            }
            if let Some(lane_wait) = self.take_from_lane(lane, &mut request, now) {
                wait = wait.min(lane_wait);
            }
        }
        self.next_lane = (self.next_lane + 1) % lanes.max(1);
        (request, wait)
    }

    /// Moves what may go from one lane into `request`; returns how long the
    /// shard's budget holds the rest back, if it does.
    fn take_from_lane(
        &mut self,
        index: usize,
        request: &mut Request,
        now: Instant,
    ) -> Option<Duration> {
        let aggregate = self.shared.options.aggregate;
        let batch_size = self.shared.options.batch_size;
        let budget = self.map.budget(index);
        let lane = &mut self.lanes[index];
        if lane.units.is_empty() {
            return None;
        }
        let chunk_records = if aggregate { 1 } else { lane.records };
        if lane.starved {
            let chunk_wait = budget.wait_for_chunk(chunk_records, lane.bytes);
            if !chunk_wait.is_zero() {
                return Some(chunk_wait);
            }
        }
        let mut held_back = Vec::new();
        let mut gathering = Gathering::default();
        let mut allowance = budget.allowance();
        let (mut drawn_records, mut drawn_bytes) = (0, 0);
        lane.starved = false;
        for _ in 0..lane.units.len().min(SCAN_WINDOW) {
            let Some(unit) = lane.pop_front() else { break };
            // Fresh records small enough join the lane's aggregate; a
            // resubmission goes as it went before.
            let gathers = aggregate
                && unit.attempts == 0
                && unit.aggregated_size() + AGGREGATE_FRAME + unit.entry.partition_key.len()
                    <= MAX_RECORD_BYTES;
            let waiting = unit.not_before.is_some_and(|at| at > now);
            // A key already in this request may only follow itself into
            // the same aggregate.
            let blocked = unit.keys().any(|key| {
                request.busy.contains(&key) && !(gathers && gathering.keys.contains(&key))
            });
            if waiting || blocked {
                request.busy.extend(unit.keys());
                held_back.push(unit);
                continue;
            }
            let new_record = !gathers || gathering.units.is_empty();
            let entries = request.entries.len() + usize::from(!gathering.units.is_empty());
            let (size, frame) = match gathers {
                true => (unit.aggregated_size(), AGGREGATE_FRAME),
                false => (unit.size(), 0),
            };
            // The aggregate goes under its first record's partition key.
            let aggregate_key = gathering
                .units
                .first()
                .unwrap_or(&unit)
                .entry
                .partition_key
                .len();
            let room = (!new_record || entries < batch_size)
                && request.bytes + gathering.size + size + frame <= MAX_REQUEST_BYTES
                && (!gathers || gathering.size + size + frame + aggregate_key <= MAX_RECORD_BYTES);
            let records = usize::from(new_record);
            if !(room && allowance.try_draw(records, unit.size())) {
                lane.starved = room;
                lane.push_front(unit);
                break;
            }
            drawn_records += records;
            drawn_bytes += unit.size();
            if gathers {
                gathering.size += size;
                gathering.keys.extend(unit.keys());
                request.busy.extend(unit.keys());
                gathering.units.push(unit);
            } else {
                request.add(unit, index);
            }
        }
        budget.spend(drawn_records, drawn_bytes);
        for unit in held_back.into_iter().rev() {
            lane.push_front(unit);
        }
        if let Some(unit) = gathering.finish() {
            request.add(unit, index);
        }
        lane.starved
            .then(|| budget.wait_for_chunk(chunk_records, lane.bytes))
    }

    /// Sends one request and settles, resubmits or fails each entry.
    fn send(&mut self, request: Request) {
        let counters = &self.shared.counters;
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let Request {
            entries, origins, ..
        } = request;
        let map = &self.map;
        // Each entry's outcome, decided while the response is at hand.
        let outcomes = self
            .kinesis
            .put_records_with(&self.stream, &entries, |results| {
                origins
                    .iter()
                    .enumerate()
                    .map(|(index, origin)| classify(results.get(index), map.id(origin.lane)))
                    .collect::<Vec<_>>()
            });
        let mut accepted = Vec::new();
        let mut failed = Vec::new();
        let mut again = Vec::new();
        let mut stale = false;
        let (mut stored, mut stored_bytes, mut throttled) = (0, 0, 0);
        for (index, (entry, origin)) in entries.into_iter().zip(origins).enumerate() {
            let result = match &outcomes {
                Ok(outcomes) => outcomes[index].clone(),
                Err(error) if error.is_retryable() => Outcome::Again { throttled: false },
                Err(error) => Outcome::Failed(error.clone()),
            };
            match result {
                Outcome::Stored { moved } => {
                    stale |= moved;
                    accepted.extend(origin.members.as_slice().iter().map(|m| m.ticket));
                    stored += 1;
                    stored_bytes += entry.data.len() + entry.partition_key.len();
                }
                Outcome::Again { throttled: refused } => {
                    throttled += u64::from(refused);
                    again.push((entry, origin));
                }
                Outcome::Failed(error) => {
                    failed.extend(failures(entry, &origin.members, &error));
                }
            }
        }
        if let Err(error) = &outcomes {
            log::warn!("PutRecords to {} failed: {error}", self.stream);
        }
        let add = |counter: &AtomicU64, n: u64| counter.fetch_add(n, Ordering::Relaxed);
        add(&counters.records_sent, accepted.len() as u64);
        add(&counters.kinesis_records_sent, stored);
        add(&counters.bytes_sent, stored_bytes as u64);
        add(&counters.records_throttled, throttled);
        self.resubmit(again);
        self.shared.settle(&accepted, failed);
        if stale && self.may_refresh(Instant::now()) {
            // Kinesis put a record elsewhere than the map said: resharded.
            self.refresh_at = Instant::now();
        }
    }

    /// Puts entries back at the front of their lanes, in order, to be sent
    /// again after a backoff.
    fn resubmit(&mut self, again: Vec<(PutRecordsEntry, Origin)>) {
        let now = Instant::now();
        let retried: usize = again.iter().map(|(_, o)| o.members.as_slice().len()).sum();
        self.shared
            .counters
            .records_retried
            .fetch_add(retried as u64, Ordering::Relaxed);
        for (entry, origin) in again.into_iter().rev() {
            let unit = Unit {
                entry,
                hash: origin.hash,
                members: origin.members,
                attempts: origin.attempts + 1,
                not_before: Some(now + self.retry.backoff(origin.attempts)),
            };
            self.lanes[origin.lane].push_front(unit);
        }
    }
}

/// What became of one entry.
#[derive(Clone)]
enum Outcome {
    /// `moved`: to another shard than its lane's (the map is stale).
    Stored {
        moved: bool,
    },
    Again {
        throttled: bool,
    },
    Failed(Error),
}

/// An entry's outcome from its `result`, which Kinesis should have stored
/// in the shard `lane_shard`.
fn classify(result: Option<&PutRecordsResult<'_>>, lane_shard: &str) -> Outcome {
    // A response shorter than the request says nothing of the rest.
    let Some(result) = result else {
        return Outcome::Again { throttled: false };
    };
    match (&result.error_code, &result.sequence_number) {
        (None, Some(_)) => Outcome::Stored {
            moved: result
                .shard_id
                .as_ref()
                .is_some_and(|id| id.0 != lane_shard),
        },
        (None, None) => Outcome::Again { throttled: false },
        (Some(code), _) => {
            let code = ErrorCode::parse(&code.0);
            if code.is_throttling() {
                Outcome::Again { throttled: true }
            } else if matches!(
                code,
                ErrorCode::InternalFailure | ErrorCode::ServiceUnavailable
            ) {
                Outcome::Again { throttled: false }
            } else {
                Outcome::Failed(Error::Service {
                    operation: "PutRecords",
                    code,
                    status: 200,
                    message: result
                        .error_message
                        .as_ref()
                        .map_or_else(String::new, |m| m.0.clone().into_owned()),
                })
            }
        }
    }
}

/// The failed records of one Kinesis record: its user records, taken out
/// of the aggregate if it is one.
fn failures(entry: PutRecordsEntry, members: &Members, error: &Error) -> Vec<FailedRecord> {
    let failure = |ticket: u64, partition_key, explicit_hash_key, data| FailedRecord {
        ticket: Ticket::from_u64(ticket),
        partition_key,
        explicit_hash_key,
        data,
        error: error.clone(),
    };
    match members {
        Members::One(member) => vec![failure(
            member.ticket,
            entry.partition_key,
            entry.explicit_hash_key,
            entry.data,
        )],
        Members::Many(members) => {
            // The aggregate is ours, so it always splits; a member without
            // its record would still be settled, with nothing to show.
            let mut users = deaggregate(&entry.data).unwrap_or_default().into_iter();
            members
                .iter()
                .map(|member| match users.next() {
                    Some(user) => failure(
                        member.ticket,
                        user.partition_key,
                        user.explicit_hash_key,
                        user.data,
                    ),
                    None => failure(member.ticket, String::new(), None, Vec::new()),
                })
                .collect()
        }
    }
}
