//! Checkpoint tables in other consumers' layouts, read and written as
//! [`SavedCheckpoint`]s, so a group moves between kcheck, the Java KCL and
//! async-kinesis in either direction without reprocessing or skipping.
//!
//! - A KCL lease table: `leaseKey` (the shard id, or
//!   `account:stream:creationEpoch:shardId` in multi-stream mode),
//!   `leaseOwner`, `leaseCounter`, `checkpoint` (a sequence number or the
//!   sentinels `TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`, `SHARD_END`),
//!   `checkpointSubSequenceNumber`, `ownerSwitchesSinceCheckpoint`,
//!   `parentShardId` (a string set).
//! - An async-kinesis table: `shard_id` (the bare shard id), `ref` (the
//!   owner), `ts` (its last write, epoch seconds), `sequence`, `ttl`.
//!
//! What a layout cannot hold is never written silently: a position it
//! cannot express is left as it was, with a note saying so.
//!
//! async-kinesis's rules are written once, over [`AsyncKinesisStore`]: its
//! DynamoDB table here, its Redis keys in `redis/async_kinesis.rs`.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::dynamodb::SHARD_END;
use super::group::{Change, ConsumerGroup, Progress, SavedCheckpoint};
use super::Checkpoint;
use crate::dynamodb::{
    item, AttributeValue, DynamoDbClient, GetItemRequest, Item, ScanRequest, UpdateItemRequest,
};
use crate::error::{excerpt, Error, Result};

const TRIM_HORIZON: &str = "TRIM_HORIZON";
const LATEST: &str = "LATEST";
const AT_TIMESTAMP: &str = "AT_TIMESTAMP";

/// Checkpoints read from a table, and what its layout could not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadCheckpoints {
    pub checkpoints: Vec<SavedCheckpoint>,
    pub notes: Vec<String>,
}

/// A table of checkpoints in some consumer's layout.
pub trait CheckpointTable {
    /// Every checkpoint it holds.
    fn read(&self) -> Result<ReadCheckpoints>;
    /// Writes `saved`, refusing before any write when a lease it would move
    /// may be alive, unless `force`. Returns what changed.
    fn write(&self, saved: &[SavedCheckpoint], force: bool) -> Result<Vec<Change>>;
}

impl CheckpointTable for ConsumerGroup {
    fn read(&self) -> Result<ReadCheckpoints> {
        Ok(ReadCheckpoints {
            checkpoints: self.export()?,
            notes: Vec::new(),
        })
    }

    fn write(&self, saved: &[SavedCheckpoint], force: bool) -> Result<Vec<Change>> {
        self.import(saved, force)
    }
}

/// Copies every checkpoint of `from` into `to`: the changes, and the notes
/// of both sides.
pub fn copy(
    from: &dyn CheckpointTable,
    to: &dyn CheckpointTable,
    force: bool,
) -> Result<(Vec<Change>, Vec<String>)> {
    let read = from.read()?;
    let changes = to.write(&read.checkpoints, force)?;
    Ok((changes, read.notes))
}

/// A Java KCL lease table of one application.
#[derive(Debug, Clone)]
pub struct KclTable {
    client: DynamoDbClient,
    table: String,
    application: String,
    /// The stream of a single-stream table's bare shard keys, or the
    /// `account:stream:creationEpoch` identifier of multi-stream keys.
    stream: Option<String>,
    progress: Option<Progress>,
}

impl KclTable {
    /// The lease table `table` of KCL application `application` (used as
    /// the group name of what is read).
    pub fn new(
        client: DynamoDbClient,
        table: impl Into<String>,
        application: impl Into<String>,
    ) -> KclTable {
        KclTable {
            client,
            table: table.into(),
            application: application.into(),
            stream: None,
            progress: None,
        }
    }

    /// Calls `report(written, total)` after each checkpoint a write writes.
    pub fn on_progress(mut self, report: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.progress = Some(Progress::new(report));
        self
    }

    /// The stream of a single-stream table (its keys are bare shard ids);
    /// writing with an `account:stream:creationEpoch` identifier writes
    /// multi-stream keys.
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = Some(stream.into());
        self
    }

    fn key_of(&self, saved: &SavedCheckpoint) -> String {
        match &self.stream {
            Some(identifier) if identifier.matches(':').count() == 2 => {
                format!("{identifier}:{}", saved.shard)
            }
            _ => saved.shard.clone(),
        }
    }

    /// The stream and shard of a lease key.
    fn split_key(&self, key: &str) -> Result<(String, String)> {
        let parts: Vec<&str> = key.split(':').collect();
        match parts.as_slice() {
            [shard] => {
                let stream = self.stream.clone().ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "KCL table {} holds single-stream leases ({}): name their stream",
                        self.table,
                        excerpt(shard)
                    ))
                })?;
                Ok((stream, (*shard).to_owned()))
            }
            [_account, stream, _epoch, shard] => Ok(((*stream).to_owned(), (*shard).to_owned())),
            _ => Err(Error::InvalidArgument(format!(
                "KCL table {} has a lease key of unknown shape: {}",
                self.table,
                excerpt(key)
            ))),
        }
    }
}

impl CheckpointTable for KclTable {
    fn read(&self) -> Result<ReadCheckpoints> {
        let mut read = ReadCheckpoints::default();
        let items = self
            .client
            .scan_all(&ScanRequest::new(&self.table).consistent_read(true), None)?;
        for stored in items {
            let text = |name: &str| stored.get(name).and_then(AttributeValue::as_s);
            let key = text("leaseKey").ok_or_else(|| damaged(&self.table, &stored, "leaseKey"))?;
            let (stream, shard) = self.split_key(key)?;
            let mut saved = SavedCheckpoint {
                group: self.application.clone(),
                stream,
                shard,
                sequence: None,
                sub_sequence: 0,
                parents: parents_of(&stored),
                start: None,
            };
            match text("checkpoint") {
                None | Some(LATEST) => {}
                Some(TRIM_HORIZON) => saved.start = Some("timestamp:0".into()),
                Some(AT_TIMESTAMP) => read.notes.push(format!(
                    "{}: KCL's AT_TIMESTAMP keeps its time outside the table; the consumer's initial position applies",
                    saved.shard
                )),
                Some(sequence) => {
                    saved.sequence = Some(sequence.to_owned());
                    saved.sub_sequence = stored
                        .get("checkpointSubSequenceNumber")
                        .and_then(AttributeValue::as_u64)
                        .unwrap_or(0);
                    saved.checkpoint()?;
                }
            }
            read.checkpoints.push(saved);
        }
        read.checkpoints
            .sort_by(|a, b| (&a.stream, &a.shard).cmp(&(&b.stream, &b.shard)));
        Ok(read)
    }

    fn write(&self, saved: &[SavedCheckpoint], force: bool) -> Result<Vec<Change>> {
        let current = |entry: &SavedCheckpoint| -> Result<Option<Item>> {
            let key = item([("leaseKey", AttributeValue::s(self.key_of(entry)))]);
            Ok(self
                .client
                .get_item(&GetItemRequest::new(&self.table, key).consistent_read(true))?
                .item)
        };
        // KCL tables keep no renewal time: an owned lease may be alive.
        let owned = |stored: &Option<Item>| {
            stored.as_ref().and_then(|s| {
                s.get("leaseOwner")
                    .and_then(AttributeValue::as_s)
                    .map(str::to_owned)
            })
        };
        refuse_live(saved, force, "KCL", |entry| Ok(owned(&current(entry)?)))?;
        let mut changes = Vec::new();
        for entry in saved {
            let checkpoint = entry.checkpoint()?;
            let stored = current(entry)?;
            let mut note = None;
            let value = match (&checkpoint, entry.start_position()?) {
                (Some(Checkpoint::ShardEnd), _) => SHARD_END.to_owned(),
                (Some(Checkpoint::At(position)), _) => position.sequence_number.clone(),
                (None, Some(crate::kinesis::IteratorPosition::AtTimestamp(time)))
                    if time == UNIX_EPOCH =>
                {
                    TRIM_HORIZON.to_owned()
                }
                (None, Some(_)) => {
                    note = Some("KCL cannot start at a pinned position: written as TRIM_HORIZON (records before it are read again)".to_owned());
                    TRIM_HORIZON.to_owned()
                }
                (None, None) => LATEST.to_owned(),
            };
            let sub = match &checkpoint {
                Some(Checkpoint::At(position)) => position.sub_sequence_number,
                _ => 0,
            };
            let mut request = UpdateItemRequest::new(
                &self.table,
                item([("leaseKey", AttributeValue::s(self.key_of(entry)))]),
                if entry.parents.is_empty() {
                    "SET checkpoint = :cp, checkpointSubSequenceNumber = :sub, leaseCounter = if_not_exists(leaseCounter, :zero) + :one, ownerSwitchesSinceCheckpoint = :zero REMOVE leaseOwner, pendingCheckpoint, pendingCheckpointSubSequenceNumber, pendingCheckpointState"
                } else {
                    "SET checkpoint = :cp, checkpointSubSequenceNumber = :sub, leaseCounter = if_not_exists(leaseCounter, :zero) + :one, ownerSwitchesSinceCheckpoint = :zero, parentShardId = :parents REMOVE leaseOwner, pendingCheckpoint, pendingCheckpointSubSequenceNumber, pendingCheckpointState"
                },
            )
            .value(":cp", AttributeValue::s(&value))
            .value(":sub", AttributeValue::n(sub))
            .value(":zero", AttributeValue::n(0))
            .value(":one", AttributeValue::n(1));
            if !entry.parents.is_empty() {
                request = request.value(
                    ":parents",
                    AttributeValue::ss(entry.parents.iter().cloned()),
                );
            }
            let request = unchanged_since_read(
                request,
                "leaseCounter",
                stored.as_ref().and_then(|s| s.get("leaseCounter")),
            );
            written(self.client.update_item(&request), &entry.shard)?;
            changes.push(Change {
                stream: entry.stream.clone(),
                shard: entry.shard.clone(),
                before: stored.as_ref().and_then(kcl_checkpoint),
                after: checkpoint,
                fenced: owned(&stored),
                note,
            });
            Progress::tell(&self.progress, changes.len(), saved.len());
        }
        Ok(changes)
    }
}

/// The checkpoint a KCL item holds, if it is a position.
fn kcl_checkpoint(stored: &Item) -> Option<Checkpoint> {
    let sequence = stored.get("checkpoint").and_then(AttributeValue::as_s)?;
    let saved = SavedCheckpoint {
        group: String::new(),
        stream: String::new(),
        shard: String::new(),
        sequence: Some(sequence.to_owned()),
        sub_sequence: stored
            .get("checkpointSubSequenceNumber")
            .and_then(AttributeValue::as_u64)
            .unwrap_or(0),
        parents: Vec::new(),
        start: None,
    };
    saved.checkpoint().ok().flatten()
}

fn parents_of(stored: &Item) -> Vec<String> {
    let mut parents: Vec<String> = ["parentShardId", "parentShardIds"]
        .iter()
        .filter_map(|name| stored.get(*name))
        .flat_map(|value| match value {
            AttributeValue::Ss(ids) => ids.clone(),
            AttributeValue::S(id) => vec![id.clone()],
            _ => Vec::new(),
        })
        .collect();
    parents.sort();
    parents.dedup();
    parents
}

/// An async-kinesis DynamoDB checkpoint table of one stream.
#[derive(Debug, Clone)]
pub struct AsyncKinesisTable {
    client: DynamoDbClient,
    table: String,
    group: String,
    stream: String,
    session_timeout: Duration,
    progress: Option<Progress>,
}

impl AsyncKinesisTable {
    /// The table of async-kinesis app `group` reading `stream` (its keys
    /// are bare shard ids); an owner that wrote within `session_timeout`
    /// counts as alive.
    pub fn new(
        client: DynamoDbClient,
        table: impl Into<String>,
        group: impl Into<String>,
        stream: impl Into<String>,
        session_timeout: Duration,
    ) -> AsyncKinesisTable {
        AsyncKinesisTable {
            client,
            table: table.into(),
            group: group.into(),
            stream: stream.into(),
            session_timeout,
            progress: None,
        }
    }

    /// Calls `report(written, total)` after each checkpoint a write writes.
    pub fn on_progress(mut self, report: impl Fn(usize, usize) + Send + Sync + 'static) -> Self {
        self.progress = Some(Progress::new(report));
        self
    }
}

impl AsyncKinesisStore for AsyncKinesisTable {
    fn place(&self) -> String {
        format!("async-kinesis table {}", self.table)
    }

    fn entries(&self) -> Result<Vec<(String, AsyncKinesisEntry)>> {
        let items = self
            .client
            .scan_all(&ScanRequest::new(&self.table).consistent_read(true), None)?;
        items
            .iter()
            .map(|stored| {
                let shard = stored
                    .get("shard_id")
                    .and_then(AttributeValue::as_s)
                    .ok_or_else(|| damaged(&self.table, stored, "shard_id"))?;
                Ok((shard.to_owned(), async_kinesis_item(stored)))
            })
            .collect()
    }

    fn entry(&self, shard: &str) -> Result<Option<AsyncKinesisEntry>> {
        let key = item([("shard_id", AttributeValue::s(shard))]);
        let request = GetItemRequest::new(&self.table, key).consistent_read(true);
        Ok(self
            .client
            .get_item(&request)?
            .item
            .as_ref()
            .map(async_kinesis_item))
    }

    fn put(
        &self,
        shard: &str,
        sequence: Option<&str>,
        read: Option<&AsyncKinesisEntry>,
    ) -> Result<bool> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let key = item([("shard_id", AttributeValue::s(shard))]);
        let request = match sequence {
            Some(sequence) => {
                UpdateItemRequest::new(&self.table, key, "SET #seq = :seq, #ts = :now REMOVE #ref")
                    .value(":seq", AttributeValue::s(sequence))
            }
            None => UpdateItemRequest::new(&self.table, key, "SET #ts = :now REMOVE #ref, #seq"),
        }
        .name("#seq", "sequence")
        .name("#ts", "ts")
        .name("#ref", "ref")
        .value(":now", AttributeValue::n(now));
        // No counter in this layout: its last write's time stands in.
        let observed = read.and_then(|entry| entry.observed.as_deref());
        let request =
            unchanged_since_read(request, "#ts", observed.map(AttributeValue::n).as_ref());
        match self.client.update_item(&request) {
            Ok(_) => Ok(true),
            Err(error) if error.is_condition_failed() => Ok(false),
            Err(error) => Err(error.into()),
        }
    }
}

impl CheckpointTable for AsyncKinesisTable {
    fn read(&self) -> Result<ReadCheckpoints> {
        read_async_kinesis(self, &self.group, &self.stream)
    }

    fn write(&self, saved: &[SavedCheckpoint], force: bool) -> Result<Vec<Change>> {
        write_async_kinesis(
            self,
            &self.stream,
            self.session_timeout,
            &self.progress,
            saved,
            force,
        )
    }
}

/// An async-kinesis item as an entry.
fn async_kinesis_item(stored: &Item) -> AsyncKinesisEntry {
    let ts = stored.get("ts").and_then(AttributeValue::as_n);
    AsyncKinesisEntry {
        owner: stored
            .get("ref")
            .and_then(AttributeValue::as_s)
            .map(str::to_owned),
        ts: ts.and_then(|ts| ts.parse().ok()),
        sequence: stored
            .get("sequence")
            .and_then(AttributeValue::as_s)
            .map(str::to_owned),
        observed: ts.map(str::to_owned),
    }
}

/// One shard's entry in an async-kinesis layout, as read.
#[derive(Debug, Clone)]
pub(super) struct AsyncKinesisEntry {
    /// `ref`: the consumer holding it, `NAME/ID`.
    pub(super) owner: Option<String>,
    /// Its owner's last write, epoch seconds.
    pub(super) ts: Option<f64>,
    pub(super) sequence: Option<String>,
    /// What a write must find unchanged (no counter in these layouts).
    pub(super) observed: Option<String>,
}

/// Where async-kinesis keeps one app's checkpoints (its DynamoDB table,
/// its Redis keys): the layout's rules are written once, over this.
pub(super) trait AsyncKinesisStore {
    /// The store, for messages.
    fn place(&self) -> String;
    /// Every shard's entry.
    fn entries(&self) -> Result<Vec<(String, AsyncKinesisEntry)>>;
    /// One shard's entry, if any.
    fn entry(&self, shard: &str) -> Result<Option<AsyncKinesisEntry>>;
    /// Writes `sequence` (or none) as a free entry, only if the entry is
    /// still as `read` (absent when `None`); `false` when it changed.
    fn put(
        &self,
        shard: &str,
        sequence: Option<&str>,
        read: Option<&AsyncKinesisEntry>,
    ) -> Result<bool>;
}

/// Every checkpoint of an async-kinesis store, as `group` on `stream`.
pub(super) fn read_async_kinesis(
    store: &impl AsyncKinesisStore,
    group: &str,
    stream: &str,
) -> Result<ReadCheckpoints> {
    let mut read = ReadCheckpoints::default();
    for (shard, entry) in store.entries()? {
        let saved = SavedCheckpoint {
            group: group.to_owned(),
            stream: stream.to_owned(),
            shard,
            sequence: entry.sequence,
            sub_sequence: 0,
            parents: Vec::new(),
            start: None,
        };
        saved.checkpoint()?;
        read.checkpoints.push(saved);
    }
    read.notes.push(
        "async-kinesis keeps no parent shards: a consumer reads a child only once its parent's lease says SHARD_END".to_owned(),
    );
    read.checkpoints.sort_by(|a, b| a.shard.cmp(&b.shard));
    Ok(read)
}

/// Writes `saved` into an async-kinesis store of `stream`: what the layout
/// cannot hold is left as it was, with a note; a live owner (one that wrote
/// within `session_timeout`) is refused unless `force`.
pub(super) fn write_async_kinesis(
    store: &impl AsyncKinesisStore,
    stream: &str,
    session_timeout: Duration,
    progress: &Option<Progress>,
    saved: &[SavedCheckpoint],
    force: bool,
) -> Result<Vec<Change>> {
    let live = |entry: Option<&AsyncKinesisEntry>| -> Option<String> {
        let entry = entry?;
        let age = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
            - entry.ts?;
        // `ts` has whole seconds: a second of slack.
        (age <= session_timeout.as_secs_f64() + 1.0).then(|| entry.owner.clone())?
    };
    let streams: HashSet<&str> = saved.iter().map(|s| s.stream.as_str()).collect();
    if streams.iter().any(|other| *other != stream) {
        return Err(Error::InvalidArgument(format!(
            "{} holds stream {stream} only, not {}",
            store.place(),
            streams.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    refuse_live(saved, force, "async-kinesis", |entry| {
        Ok(live(store.entry(&entry.shard)?.as_ref()))
    })?;
    let mut changes = Vec::new();
    for entry in saved {
        let checkpoint = entry.checkpoint()?;
        let stored = store.entry(&entry.shard)?;
        let before = stored
            .as_ref()
            .and_then(|s| s.sequence.as_deref())
            .and_then(|sequence| {
                super::is_sequence_number(sequence)
                    .then(|| Checkpoint::At(super::Position::new(sequence, 0)))
            });
        let unwritable = match &checkpoint {
            Some(Checkpoint::ShardEnd) => Some("async-kinesis has no SHARD_END marker".to_owned()),
            Some(Checkpoint::At(position)) if position.sub_sequence_number > 0 => Some(format!(
                "async-kinesis keeps no sub-sequence: resuming after {} would skip the rest of its aggregate",
                position.sequence_number
            )),
            None if entry.start.is_some() => {
                Some("async-kinesis cannot start at a pinned position".to_owned())
            }
            _ => None,
        };
        if let Some(why) = unwritable {
            changes.push(Change {
                stream: entry.stream.clone(),
                shard: entry.shard.clone(),
                before: before.clone(),
                after: before,
                fenced: None,
                note: Some(format!("{why}; left as it was")),
            });
            Progress::tell(progress, changes.len(), saved.len());
            continue;
        }
        let sequence = match &checkpoint {
            Some(Checkpoint::At(position)) => Some(position.sequence_number.as_str()),
            _ => None,
        };
        if !store.put(&entry.shard, sequence, stored.as_ref())? {
            return Err(changed_meanwhile(&entry.shard));
        }
        changes.push(Change {
            stream: entry.stream.clone(),
            shard: entry.shard.clone(),
            before,
            after: checkpoint,
            fenced: live(stored.as_ref()),
            note: None,
        });
        Progress::tell(progress, changes.len(), saved.len());
    }
    Ok(changes)
}

/// `request`, holding only while `attribute` still has the value read
/// (`None`: while the item is still absent).
fn unchanged_since_read(
    request: UpdateItemRequest,
    attribute: &str,
    read: Option<&AttributeValue>,
) -> UpdateItemRequest {
    match read {
        Some(value) => request
            .condition(format!("{attribute} = :observed"))
            .value(":observed", value.clone()),
        None => request.condition(format!("attribute_not_exists({attribute})")),
    }
}

/// Refuses, before any write, entries whose lease `owner_of` says may be
/// alive, unless `force`.
fn refuse_live(
    saved: &[SavedCheckpoint],
    force: bool,
    layout: &str,
    owner_of: impl Fn(&SavedCheckpoint) -> Result<Option<String>>,
) -> Result<()> {
    if force {
        return Ok(());
    }
    let mut live = Vec::new();
    for entry in saved {
        if let Some(owner) = owner_of(entry)? {
            live.push(format!("{} (owner {owner})", entry.shard));
        }
    }
    if live.is_empty() {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "the {layout} table has {} leases that may be alive ({}); stop its consumers, or force to fence them",
        live.len(),
        live.join(", ")
    )))
}

/// A write's outcome: a failed condition means a consumer wrote meanwhile.
fn written<T>(
    outcome: std::result::Result<T, crate::dynamodb::WriteError>,
    shard: &str,
) -> Result<()> {
    match outcome {
        Ok(_) => Ok(()),
        Err(error) if error.is_condition_failed() => Err(changed_meanwhile(shard)),
        Err(error) => Err(error.into()),
    }
}

fn changed_meanwhile(shard: &str) -> Error {
    Error::InvalidArgument(format!(
        "the lease of {shard} changed while it was being written: a consumer is running; stop it, or force"
    ))
}

fn damaged(table: &str, stored: &Item, missing: &str) -> Error {
    let shown = serde_json::to_string(stored).unwrap_or_default();
    Error::InvalidArgument(format!(
        "table {table} holds an item without {missing}: {}",
        excerpt(&shown)
    ))
}
