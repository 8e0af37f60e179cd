//! A consumer group's leases and checkpoints seen from outside its
//! consumers: every lease with its state, and the checkpoints exported as
//! JSON lines, imported back (into the same group or another), or reset.
//! Snapshots (`snapshot.rs`) build on export and import.
//!
//! Moving a checkpoint of a running group races its owners, so a write
//! refuses a live lease unless forced; a forced write frees the lease and
//! bumps its counter, which fences the owner as a steal would: its next
//! write fails and it lets the shard go, and the next owner starts from
//! the position written here.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::dynamodb::{parse_lease, SHARD_END};
use super::{Checkpoint, DynamoDbCheckpointer, Lease, LeaseScope, Position};
use crate::dynamodb::{
    AttributeValue, DynamoDbClient, GetItemRequest, ScanRequest, UpdateItemRequest,
};
use crate::error::{excerpt, Error, Result};
use crate::kinesis::{IteratorPosition, KinesisClient, StreamRef};

/// How often a write is tried again when an owner changed the lease
/// between reading and writing it.
const RACE_ATTEMPTS: u32 = 5;

/// A lease's state, judged as the consumers judge it: a lease whose owner
/// has not written for `session_timeout` is expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseState {
    /// Owned, and renewed within the session timeout.
    Alive,
    /// Owned, but not renewed for the session timeout: free to take.
    Expired,
    /// Not owned.
    Free,
    /// Not owned, and read to the end of a closed shard.
    Finished,
}

/// One lease of the group, as the table holds it now.
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    pub stream: String,
    pub lease: Lease,
    pub state: LeaseState,
    /// The owner's last write (the table's `ts`, to the second).
    pub renewed_at: Option<SystemTime>,
}

/// A lease as one JSON object: `stream`, `shard`, `owner`, `state`,
/// `checkpoint` (`SEQUENCE/SUB` or `SHARD_END`), `counter`,
/// `renewed_at_ms` (milliseconds since the epoch), `handoff_to` and `ttl`
/// (when the table may delete the item, epoch seconds); absent values are
/// null.
impl Serialize for LeaseInfo {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            stream: &'a str,
            shard: &'a str,
            owner: Option<&'a str>,
            state: LeaseState,
            checkpoint: Option<String>,
            counter: u64,
            renewed_at_ms: Option<u64>,
            handoff_to: Option<&'a str>,
            ttl: Option<u64>,
        }
        View {
            stream: &self.stream,
            shard: &self.lease.shard_id,
            owner: self.lease.owner.as_deref(),
            state: self.state,
            checkpoint: self.lease.checkpoint.as_ref().map(Checkpoint::to_string),
            counter: self.lease.counter,
            renewed_at_ms: self.renewed_at.map(epoch_millis),
            handoff_to: self.lease.handoff_to.as_deref(),
            ttl: self.lease.expires_at,
        }
        .serialize(serializer)
    }
}

/// Milliseconds since the epoch (0 before it).
pub(super) fn epoch_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One shard's checkpoint, as exported (one JSON line each) and imported.
///
/// `sequence` is the checkpointed sequence number, or `SHARD_END`, or
/// absent before the first checkpoint; `start` is where reading began
/// before it (`sequence:N` or `timestamp:MILLIS`), if pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedCheckpoint {
    pub group: String,
    pub stream: String,
    pub shard: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sub_sequence: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl SavedCheckpoint {
    /// The entry for `lease` of `stream` in `group`.
    pub fn of(group: &str, stream: &str, lease: &Lease) -> SavedCheckpoint {
        let (sequence, sub_sequence) = match &lease.checkpoint {
            None => (None, 0),
            Some(Checkpoint::ShardEnd) => (Some(SHARD_END.to_owned()), 0),
            Some(Checkpoint::At(position)) => (
                Some(position.sequence_number.clone()),
                position.sub_sequence_number,
            ),
        };
        let start = lease.start.as_ref().and_then(|start| match start {
            IteratorPosition::AtSequenceNumber(sequence) => Some(format!("sequence:{sequence}")),
            IteratorPosition::AtTimestamp(time) => Some(format!(
                "timestamp:{}",
                time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
            )),
            _ => None,
        });
        SavedCheckpoint {
            group: group.to_owned(),
            stream: stream.to_owned(),
            shard: lease.shard_id.clone(),
            sequence,
            sub_sequence,
            parents: lease.parents.clone(),
            start,
        }
    }

    /// The checkpoint it holds; an error names the entry and what is wrong.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        match self.sequence.as_deref() {
            None => Ok(None),
            Some(SHARD_END) => Ok(Some(Checkpoint::ShardEnd)),
            Some(sequence) if super::is_sequence_number(sequence) => Ok(Some(Checkpoint::At(
                Position::new(sequence, self.sub_sequence),
            ))),
            Some(other) => Err(self.invalid(&format!(
                "sequence {} is neither a sequence number nor SHARD_END",
                excerpt(other)
            ))),
        }
    }

    /// The pinned start it holds.
    pub fn start_position(&self) -> Result<Option<IteratorPosition>> {
        let Some(start) = self.start.as_deref() else {
            return Ok(None);
        };
        if let Some(sequence) = start.strip_prefix("sequence:") {
            if super::is_sequence_number(sequence) {
                return Ok(Some(IteratorPosition::AtSequenceNumber(
                    sequence.to_owned(),
                )));
            }
        }
        if let Some(millis) = start
            .strip_prefix("timestamp:")
            .and_then(|m| m.parse().ok())
        {
            return Ok(Some(IteratorPosition::AtTimestamp(
                UNIX_EPOCH + Duration::from_millis(millis),
            )));
        }
        Err(self.invalid(&format!(
            "start {} is neither sequence:N nor timestamp:MILLIS",
            excerpt(start)
        )))
    }

    fn invalid(&self, why: &str) -> Error {
        Error::InvalidArgument(format!(
            "checkpoint of {} {} {}: {why}",
            excerpt(&self.group),
            excerpt(&self.stream),
            excerpt(&self.shard)
        ))
    }
}

/// What a write did to one shard's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub stream: String,
    pub shard: String,
    pub before: Option<Checkpoint>,
    pub after: Option<Checkpoint>,
    /// The live owner a forced write fenced.
    pub fenced: Option<String>,
    /// Something the caller should know, e.g. that the shard is no longer
    /// in the stream.
    pub note: Option<String>,
}

/// A change as one JSON object: `stream`, `shard`, `before` and `after`
/// (`SEQUENCE/SUB`, `SHARD_END`, or null for none), `fenced` (the owner a
/// forced write fenced) and `note`; absent values are null.
impl Serialize for Change {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            stream: &'a str,
            shard: &'a str,
            before: Option<String>,
            after: Option<String>,
            fenced: Option<&'a str>,
            note: Option<&'a str>,
        }
        View {
            stream: &self.stream,
            shard: &self.shard,
            before: self.before.as_ref().map(Checkpoint::to_string),
            after: self.after.as_ref().map(Checkpoint::to_string),
            fenced: self.fenced.as_deref(),
            note: self.note.as_deref(),
        }
        .serialize(serializer)
    }
}

/// Where [`ConsumerGroup::reset`] moves a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetTo {
    /// The oldest record still in the shard.
    TrimHorizon,
    /// Records arriving from now on.
    Latest,
    /// Records that arrived at or after this time.
    Timestamp(SystemTime),
    /// Records after this sequence number (as if it was checkpointed).
    Sequence(Position),
}

impl std::str::FromStr for ResetTo {
    type Err = Error;

    /// `trim-horizon`, `latest`, `timestamp:MILLIS` or `sequence:N[/SUB]`.
    fn from_str(text: &str) -> Result<ResetTo> {
        let invalid = || {
            Error::InvalidArgument(format!(
                "a reset goes to trim-horizon, latest, timestamp:MILLIS or sequence:N[/SUB], not {}",
                excerpt(text)
            ))
        };
        match text {
            "trim-horizon" => return Ok(ResetTo::TrimHorizon),
            "latest" => return Ok(ResetTo::Latest),
            _ => {}
        }
        if let Some(millis) = text.strip_prefix("timestamp:") {
            let millis: u64 = millis.parse().map_err(|_| invalid())?;
            return Ok(ResetTo::Timestamp(
                UNIX_EPOCH + Duration::from_millis(millis),
            ));
        }
        let position = text.strip_prefix("sequence:").ok_or_else(invalid)?;
        let (sequence, sub) = position.split_once('/').unwrap_or((position, "0"));
        let sub: u64 = sub.parse().map_err(|_| invalid())?;
        if !super::is_sequence_number(sequence) {
            return Err(invalid());
        }
        Ok(ResetTo::Sequence(Position::new(sequence, sub)))
    }
}

/// What is left to read after a lease's checkpoint, as seen by reading
/// from it (see [`ConsumerGroup::backlog`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Backlog {
    /// Whether a record exists after the checkpoint (after the pinned start
    /// or the trim horizon, before the first checkpoint).
    pub records_after: bool,
    /// Kinesis's `MillisBehindLatest` for a read at that position, when the
    /// service reports it; absent for a finished shard.
    pub millis_behind_latest: Option<u64>,
}

/// GetRecords pages read, at most, looking for a record after a checkpoint
/// (a page may be empty although records follow).
const BACKLOG_PAGES: usize = 5;

/// A consumer group's leases and checkpoints in its DynamoDB table.
#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    client: DynamoDbClient,
    table: String,
    group: String,
    session_timeout: Duration,
    kinesis: Option<KinesisClient>,
    progress: Option<Progress>,
}

/// Told `(written, total)` after each checkpoint a write operation writes.
#[derive(Clone)]
pub(super) struct Progress(std::sync::Arc<dyn Fn(usize, usize) + Send + Sync>);

impl Progress {
    pub(super) fn new(report: impl Fn(usize, usize) + Send + Sync + 'static) -> Progress {
        Progress(std::sync::Arc::new(report))
    }

    pub(super) fn tell(progress: &Option<Progress>, written: usize, total: usize) {
        if let Some(Progress(report)) = progress {
            report(written, total);
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

impl ConsumerGroup {
    /// The group of `checkpointer`, in its table, judged with its
    /// session timeout.
    pub fn new(checkpointer: &DynamoDbCheckpointer) -> ConsumerGroup {
        ConsumerGroup {
            client: checkpointer.client().clone(),
            table: checkpointer.table_name().to_owned(),
            group: super::Checkpointer::group(checkpointer).to_owned(),
            session_timeout: super::Checkpointer::settings(checkpointer).session_timeout,
            kinesis: None,
            progress: None,
        }
    }

    /// Calls `report(written, total)` after each checkpoint an import,
    /// reset or restore writes (for a progress display).
    pub fn on_progress(mut self, report: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.progress = Some(Progress::new(report));
        self
    }

    /// Checks written positions against the streams' shards (a shard that
    /// left the stream is written but noted).
    pub fn with_kinesis(mut self, kinesis: KinesisClient) -> Self {
        self.kinesis = Some(kinesis);
        self
    }

    pub fn name(&self) -> &str {
        &self.group
    }

    pub(crate) fn client(&self) -> &DynamoDbClient {
        &self.client
    }

    /// How long an owner's lease lives without renewal.
    pub(crate) fn session_timeout(&self) -> Duration {
        self.session_timeout
    }

    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Every lease of the group, on every stream, ordered by stream and
    /// shard. A missing table is an error naming it.
    pub fn leases(&self) -> Result<Vec<LeaseInfo>> {
        leases_of(self)
    }

    /// Whether records follow `info`'s checkpoint in its shard, by reading
    /// from there (needs [`ConsumerGroup::with_kinesis`]). A lease without
    /// a checkpoint is read from its pinned start, else the trim horizon
    /// (the consumers' initial position is not stored). A record right at
    /// the checkpoint counts only for the user records of a KPL aggregate
    /// after the checkpointed sub-sequence.
    pub fn backlog(&self, info: &LeaseInfo) -> Result<Backlog> {
        let kinesis = self.kinesis.as_ref().ok_or_else(|| {
            Error::Config("a backlog is read from Kinesis: give the group a KinesisClient".into())
        })?;
        let (from, checkpointed) = match (&info.lease.checkpoint, &info.lease.start) {
            (Some(Checkpoint::ShardEnd), _) => {
                return Ok(Backlog {
                    records_after: false,
                    millis_behind_latest: None,
                })
            }
            (Some(Checkpoint::At(position)), _) => (
                IteratorPosition::AtSequenceNumber(position.sequence_number.clone()),
                Some(position),
            ),
            (None, Some(start)) => (start.clone(), None),
            (None, None) => (IteratorPosition::TrimHorizon, None),
        };
        let stream = StreamRef::from(info.stream.as_str());
        let mut iterator = kinesis.get_shard_iterator(&stream, &info.lease.shard_id, &from)?;
        let mut millis_behind_latest = None;
        for _ in 0..BACKLOG_PAGES {
            let output = kinesis.get_records(&iterator, 2)?;
            millis_behind_latest = output.page.millis_behind_latest.or(millis_behind_latest);
            let after = output.records.iter().any(|record| match checkpointed {
                Some(position) if record.sequence_number == position.sequence_number => {
                    crate::kinesis::aggregation::deaggregate(&record.data)
                        .is_some_and(|users| users.len() as u64 > position.sub_sequence_number + 1)
                }
                _ => true,
            });
            if after {
                return Ok(Backlog {
                    records_after: true,
                    millis_behind_latest,
                });
            }
            match output.page.next_shard_iterator {
                Some(next) if millis_behind_latest != Some(0) => iterator = next,
                _ => break,
            }
        }
        Ok(Backlog {
            records_after: false,
            millis_behind_latest,
        })
    }

    /// Every checkpoint of the group, ordered by stream and shard.
    pub fn export(&self) -> Result<Vec<SavedCheckpoint>> {
        export_of(self)
    }

    /// Writes `saved` into this group (whatever group the entries name, so
    /// a group's checkpoints can seed another). Refuses, before writing
    /// anything, when a lease it would move is alive, unless `force`; a
    /// forced write fences the owner. Returns what changed.
    pub fn import(&self, saved: &[SavedCheckpoint], force: bool) -> Result<Vec<Change>> {
        self.write_all(targets_of(saved)?, force)
    }

    /// Moves the checkpoint of `shard` of `stream` (every shard of the
    /// stream when `None`) to `to`. Refuses live leases unless `force`.
    pub fn reset(
        &self,
        stream: &str,
        shard: Option<&str>,
        to: &ResetTo,
        force: bool,
    ) -> Result<Vec<Change>> {
        let (checkpoint, start) = match to {
            ResetTo::Sequence(position) => (Some(Checkpoint::At(position.clone())), None),
            ResetTo::TrimHorizon => (None, Some(IteratorPosition::AtTimestamp(UNIX_EPOCH))),
            ResetTo::Latest => (None, Some(IteratorPosition::AtTimestamp(SystemTime::now()))),
            ResetTo::Timestamp(time) => (None, Some(IteratorPosition::AtTimestamp(*time))),
        };
        let shards: Vec<String> = match shard {
            Some(shard) => vec![shard.to_owned()],
            None => {
                let known: Vec<String> = self
                    .leases()?
                    .into_iter()
                    .filter(|info| info.stream == stream)
                    .map(|info| info.lease.shard_id)
                    .collect();
                if known.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "group {} has no leases on stream {} in table {}",
                        self.group, stream, self.table
                    )));
                }
                known
            }
        };
        let targets = shards
            .into_iter()
            .map(|shard| Target {
                stream: stream.to_owned(),
                shard,
                checkpoint: checkpoint.clone(),
                start: start.clone(),
                parents: None,
            })
            .collect();
        self.write_all(targets, force)
    }

    /// Writes `targets`, each checked against the streams' shards when
    /// the group has a Kinesis client.
    fn write_all(&self, targets: Vec<Target>, force: bool) -> Result<Vec<Change>> {
        let mut streams = BTreeMap::new();
        write_all(self, &targets, force, &self.progress, |target| {
            self.check_in_stream(target, &mut streams)
        })
    }

    /// What the caller should know about a written position that the
    /// stream no longer holds (its shard gone, or its records past the
    /// retention); a stream that cannot be read is said too. Nothing
    /// without a Kinesis client.
    fn check_in_stream(
        &self,
        target: &Target,
        streams: &mut BTreeMap<String, std::result::Result<HashSet<String>, String>>,
    ) -> Option<String> {
        let kinesis = self.kinesis.as_ref()?;
        let stream = StreamRef::from(target.stream.as_str());
        let shards = streams.entry(target.stream.clone()).or_insert_with(|| {
            kinesis
                .list_shards(&stream, None)
                .map(|shards| shards.into_iter().map(|s| s.shard_id.to_string()).collect())
                .map_err(|e| e.to_string())
        });
        let shards = match shards {
            Ok(shards) => shards,
            Err(error) => {
                return Some(format!(
                    "could not check the position against stream {}: {error}",
                    target.stream
                ))
            }
        };
        if !shards.contains(&target.shard) {
            return Some(format!(
                "shard {} is no longer in stream {}: its records are gone",
                target.shard, target.stream
            ));
        }
        let Some(Checkpoint::At(position)) = &target.checkpoint else {
            return None;
        };
        let oldest = kinesis
            .get_shard_iterator(&stream, &target.shard, &IteratorPosition::TrimHorizon)
            .and_then(|iterator| kinesis.get_records(&iterator, 1));
        match oldest {
            Ok(page) => page.records.first().and_then(|oldest| {
                (super::compare_sequence_numbers(&position.sequence_number, &oldest.sequence_number)
                    == std::cmp::Ordering::Less)
                    .then(|| {
                        format!(
                            "{position} is older than the oldest record still in shard {} ({}): records between them, if any, are past the stream's retention",
                            target.shard, oldest.sequence_number
                        )
                    })
            }),
            Err(error) => Some(format!(
                "could not read the oldest record of shard {}: {error}",
                target.shard
            )),
        }
    }

    /// The update that writes `target` over the lease with counter
    /// `observed` (or creates it), freeing it and bumping its counter.
    fn request(&self, target: &Target, observed: Option<u64>) -> UpdateItemRequest {
        // Every name through a placeholder: `shard` is a reserved word.
        let mut set = vec![
            "#app = :app",
            "#stream = :stream",
            "#shard = :shard",
            "lease_counter = if_not_exists(lease_counter, :zero) + :one",
            "#ts = :now",
        ];
        let mut remove = vec!["#ref", "handoff_to"];
        match &target.checkpoint {
            Some(_) => set.extend(["#seq = :seq", "sub_sequence = :sub"]),
            None => remove.extend(["#seq", "sub_sequence"]),
        }
        match &target.start {
            Some(IteratorPosition::AtSequenceNumber(_)) => {
                set.push("start_sequence = :start");
                remove.push("start_timestamp");
            }
            Some(_) => {
                set.push("start_timestamp = :start");
                remove.push("start_sequence");
            }
            None => remove.extend(["start_sequence", "start_timestamp"]),
        }
        if target.parents.is_some() {
            set.push("#parents = :parents");
        }
        let expression = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
        let key = LeaseScope {
            group: self.group.clone(),
            stream: target.stream.clone(),
        }
        .key(&target.shard);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut request = UpdateItemRequest::new(
            &self.table,
            crate::dynamodb::item([("shard_id", AttributeValue::s(key))]),
            expression,
        )
        .name("#app", "app")
        .name("#ref", "ref")
        .name("#ts", "ts")
        .name("#stream", "stream")
        .name("#shard", "shard")
        .name("#seq", "sequence")
        .value(":app", AttributeValue::s(&self.group))
        .value(":stream", AttributeValue::s(&target.stream))
        .value(":shard", AttributeValue::s(&target.shard))
        .value(":zero", AttributeValue::n(0))
        .value(":one", AttributeValue::n(1))
        .value(":now", AttributeValue::n(now));
        request = match observed {
            Some(counter) => request
                .condition("lease_counter = :observed")
                .value(":observed", AttributeValue::n(counter)),
            None => request.condition("attribute_not_exists(shard_id)"),
        };
        match &target.checkpoint {
            Some(Checkpoint::At(position)) => {
                request = request
                    .value(":seq", AttributeValue::s(&position.sequence_number))
                    .value(":sub", AttributeValue::n(position.sub_sequence_number));
            }
            Some(Checkpoint::ShardEnd) => {
                request = request
                    .value(":seq", AttributeValue::s(SHARD_END))
                    .value(":sub", AttributeValue::n(0));
            }
            None => {}
        }
        match &target.start {
            Some(IteratorPosition::AtSequenceNumber(sequence)) => {
                request = request.value(":start", AttributeValue::s(sequence));
            }
            Some(IteratorPosition::AtTimestamp(time)) => {
                let millis = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
                request = request.value(":start", AttributeValue::n(millis));
            }
            _ => {}
        }
        if let Some(parents) = &target.parents {
            request = request.name("#parents", "parents").value(
                ":parents",
                AttributeValue::l(parents.iter().map(AttributeValue::s).collect::<Vec<_>>()),
            );
        }
        request
    }
}

impl LeaseStore for ConsumerGroup {
    fn group(&self) -> &str {
        &self.group
    }

    fn session_timeout(&self) -> Duration {
        self.session_timeout
    }

    fn stored(&self) -> Result<Vec<StoredLease>> {
        let request = ScanRequest::new(&self.table)
            .filter("#app = :app")
            .name("#app", "app")
            .value(":app", AttributeValue::s(&self.group))
            .consistent_read(true);
        self.client
            .scan_all(&request, None)?
            .iter()
            .map(|item| {
                let stream = item
                    .get("stream")
                    .and_then(AttributeValue::as_s)
                    .unwrap_or_default()
                    .to_owned();
                Ok((stream, parse_lease(item)?, renewed_at(item)))
            })
            .collect()
    }

    fn current(&self, stream: &str, shard: &str) -> Result<Option<(Lease, Option<SystemTime>)>> {
        let key = LeaseScope {
            group: self.group.clone(),
            stream: stream.to_owned(),
        }
        .key(shard);
        let request = GetItemRequest::new(
            &self.table,
            crate::dynamodb::item([("shard_id", AttributeValue::s(key))]),
        )
        .consistent_read(true);
        let Some(item) = self.client.get_item(&request)?.item else {
            return Ok(None);
        };
        Ok(Some((parse_lease(&item)?, renewed_at(&item))))
    }

    fn put(&self, target: &Target, observed: Option<u64>) -> Result<bool> {
        match self.client.update_item(&self.request(target, observed)) {
            Ok(_) => Ok(true),
            Err(error) if error.is_condition_failed() => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}

/// An item's last write (its `ts`, whole seconds).
fn renewed_at(item: &crate::dynamodb::Item) -> Option<SystemTime> {
    item.get("ts")
        .and_then(AttributeValue::as_u64)
        .map(|seconds| UNIX_EPOCH + Duration::from_secs(seconds))
}

/// A lease as a store holds it: its stream, the lease, its last write.
pub(super) type StoredLease = (String, Lease, Option<SystemTime>);

/// Where a group's leases are kept (a DynamoDB table, a Redis server), as
/// the tools outside its consumers need it. Listing, export, import and
/// the refusal of live leases are written once, over this.
pub(super) trait LeaseStore {
    fn group(&self) -> &str;
    /// How long an owner's lease lives without renewal.
    fn session_timeout(&self) -> Duration;
    /// Every lease of the group, on every stream.
    fn stored(&self) -> Result<Vec<StoredLease>>;
    /// One lease and its last write, if it exists.
    fn current(&self, stream: &str, shard: &str) -> Result<Option<(Lease, Option<SystemTime>)>>;
    /// Writes `target` over the lease whose counter is still `observed`
    /// (`None`: over no lease), freeing it and bumping its counter, in one
    /// conditional write; `false` when the lease changed meanwhile.
    fn put(&self, target: &Target, observed: Option<u64>) -> Result<bool>;
}

/// Every lease of `store`'s group with its state, ordered by stream and
/// shard.
pub(super) fn leases_of(store: &impl LeaseStore) -> Result<Vec<LeaseInfo>> {
    let now = SystemTime::now();
    let mut leases: Vec<LeaseInfo> = store
        .stored()?
        .into_iter()
        .map(|(stream, lease, renewed_at)| LeaseInfo {
            state: judge(store.session_timeout(), &lease, renewed_at, now),
            stream,
            lease,
            renewed_at,
        })
        .collect();
    leases.sort_by(|a, b| (&a.stream, &a.lease.shard_id).cmp(&(&b.stream, &b.lease.shard_id)));
    Ok(leases)
}

/// Every checkpoint of `store`'s group, ordered by stream and shard.
pub(super) fn export_of(store: &impl LeaseStore) -> Result<Vec<SavedCheckpoint>> {
    Ok(leases_of(store)?
        .iter()
        .map(|info| SavedCheckpoint::of(store.group(), &info.stream, &info.lease))
        .collect())
}

/// What an import writes: one target per entry, each checked.
pub(super) fn targets_of(saved: &[SavedCheckpoint]) -> Result<Vec<Target>> {
    let mut targets = Vec::with_capacity(saved.len());
    let mut seen = HashSet::new();
    for entry in saved {
        if !seen.insert((entry.stream.as_str(), entry.shard.as_str())) {
            return Err(entry.invalid("the shard appears twice"));
        }
        if entry.stream.is_empty() || entry.shard.is_empty() {
            return Err(entry.invalid("stream and shard must not be empty"));
        }
        targets.push(Target {
            stream: entry.stream.clone(),
            shard: entry.shard.clone(),
            checkpoint: entry.checkpoint()?,
            start: entry.start_position()?,
            parents: Some(entry.parents.clone()),
        });
    }
    Ok(targets)
}

/// Checks every target for live owners, then writes them one by one;
/// `note_of` says what the caller should know about each.
pub(super) fn write_all(
    store: &impl LeaseStore,
    targets: &[Target],
    force: bool,
    progress: &Option<Progress>,
    mut note_of: impl FnMut(&Target) -> Option<String>,
) -> Result<Vec<Change>> {
    if !force {
        let mut live = Vec::new();
        for target in targets {
            if let Some(owner) = live_owner(store, target)?.1 {
                live.push(format!(
                    "{} {} (owner {owner})",
                    target.stream, target.shard
                ));
            }
        }
        if !live.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "group {} is running: {} leases are alive ({}); stop its consumers, or force to fence them",
                store.group(),
                live.len(),
                live.join(", ")
            )));
        }
    }
    targets
        .iter()
        .enumerate()
        .map(|(index, target)| {
            let mut change = write_one(store, target, force)?;
            Progress::tell(progress, index + 1, targets.len());
            change.note = note_of(target);
            Ok(change)
        })
        .collect()
}

/// The target's lease as stored now, and its owner if alive.
fn live_owner(store: &impl LeaseStore, target: &Target) -> Result<(Option<Lease>, Option<String>)> {
    let Some((lease, renewed_at)) = store.current(&target.stream, &target.shard)? else {
        return Ok((None, None));
    };
    let alive = judge(
        store.session_timeout(),
        &lease,
        renewed_at,
        SystemTime::now(),
    ) == LeaseState::Alive;
    let owner = if alive { lease.owner.clone() } else { None };
    Ok((Some(lease), owner))
}

/// One target's write, conditional on the lease it read; read again and
/// retried when an owner wrote in between.
fn write_one(store: &impl LeaseStore, target: &Target, force: bool) -> Result<Change> {
    for _ in 0..RACE_ATTEMPTS {
        let (current, live_owner) = live_owner(store, target)?;
        if live_owner.is_some() && !force {
            return Err(Error::InvalidArgument(format!(
                "the lease of {} {} of group {} became alive; stop its consumers, or force to fence them",
                target.stream,
                target.shard,
                store.group()
            )));
        }
        if store.put(target, current.as_ref().map(|lease| lease.counter))? {
            return Ok(Change {
                stream: target.stream.clone(),
                shard: target.shard.clone(),
                before: current.and_then(|lease| lease.checkpoint),
                after: target.checkpoint.clone(),
                fenced: live_owner,
                note: None,
            });
        }
    }
    Err(Error::Timeout(format!(
        "the lease of {} {} kept changing; {RACE_ATTEMPTS} writes lost the race",
        target.stream, target.shard
    )))
}

/// A lease's state, as the consumers judge it.
fn judge(
    session_timeout: Duration,
    lease: &Lease,
    renewed_at: Option<SystemTime>,
    now: SystemTime,
) -> LeaseState {
    match &lease.owner {
        None if lease.is_finished() => LeaseState::Finished,
        None => LeaseState::Free,
        Some(_) => {
            // `ts` has whole seconds: a second of slack keeps a lease
            // renewed just now from looking older than it is.
            let age = renewed_at
                .and_then(|at| now.duration_since(at).ok())
                .unwrap_or(Duration::ZERO);
            if renewed_at.is_some() && age > session_timeout + Duration::from_secs(1) {
                LeaseState::Expired
            } else {
                LeaseState::Alive
            }
        }
    }
}

/// One shard's checkpoint to write.
pub(super) struct Target {
    pub(super) stream: String,
    pub(super) shard: String,
    pub(super) checkpoint: Option<Checkpoint>,
    pub(super) start: Option<IteratorPosition>,
    /// `None`: keep the stored parents.
    pub(super) parents: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_checkpoints_round_trip_as_json_lines() {
        let lease = Lease {
            shard_id: "shardId-000000000001".into(),
            owner: Some("me".into()),
            counter: 7,
            checkpoint: Some(Checkpoint::At(Position::new("4959", 3))),
            parents: vec!["shardId-000000000000".into()],
            handoff_to: None,
            start: Some(IteratorPosition::AtTimestamp(
                UNIX_EPOCH + Duration::from_millis(1500),
            )),
            expires_at: None,
        };
        let saved = SavedCheckpoint::of("app", "orders", &lease);
        let line = serde_json::to_string(&saved).unwrap();
        assert_eq!(
            line,
            r#"{"group":"app","stream":"orders","shard":"shardId-000000000001","sequence":"4959","sub_sequence":3,"parents":["shardId-000000000000"],"start":"timestamp:1500"}"#
        );
        let back: SavedCheckpoint = serde_json::from_str(&line).unwrap();
        assert_eq!(back, saved);
        assert_eq!(back.checkpoint().unwrap(), lease.checkpoint);
        assert_eq!(back.start_position().unwrap(), lease.start);
        let end = SavedCheckpoint {
            sequence: Some("SHARD_END".into()),
            sub_sequence: 0,
            start: None,
            ..saved.clone()
        };
        assert_eq!(end.checkpoint().unwrap(), Some(Checkpoint::ShardEnd));
    }

    #[test]
    fn bad_entries_are_named() {
        let bad = SavedCheckpoint {
            group: "app".into(),
            stream: "orders".into(),
            shard: "s-1".into(),
            sequence: Some("12x".into()),
            sub_sequence: 0,
            parents: Vec::new(),
            start: Some("yesterday".into()),
        };
        let error = bad.checkpoint().unwrap_err().to_string();
        assert!(
            error.contains("s-1") && error.contains("\"12x\""),
            "{error}"
        );
        let error = bad.start_position().unwrap_err().to_string();
        assert!(error.contains("\"yesterday\""), "{error}");
        assert!(serde_json::from_str::<SavedCheckpoint>(
            r#"{"group":"a","stream":"s","shard":"x","extra":1}"#
        )
        .is_err());
    }

    #[test]
    fn reset_targets_parse() {
        assert_eq!(
            "trim-horizon".parse::<ResetTo>().unwrap(),
            ResetTo::TrimHorizon
        );
        assert_eq!("latest".parse::<ResetTo>().unwrap(), ResetTo::Latest);
        assert_eq!(
            "sequence:4959/2".parse::<ResetTo>().unwrap(),
            ResetTo::Sequence(Position::new("4959", 2))
        );
        assert_eq!(
            "timestamp:1000".parse::<ResetTo>().unwrap(),
            ResetTo::Timestamp(UNIX_EPOCH + Duration::from_secs(1))
        );
        for bad in [
            "",
            "sequence:",
            "sequence:01",
            "sequence:5/x",
            "timestamp:soon",
            "oldest",
        ] {
            let error = bad.parse::<ResetTo>().unwrap_err();
            assert!(
                error.to_string().contains("trim-horizon, latest"),
                "{bad}: {error}"
            );
        }
    }
}
