//! Labelled versions of a group's checkpoints, kept in a history table
//! (HASH `group`, RANGE `snapshot`; on-demand billing, TTL on `ttl`, created
//! on first use like the lease table), and restored from it.
//!
//! A snapshot is every checkpoint of the group — all its streams and
//! shards, sub-sequences and SHARD_END markers — as JSON lines in one or
//! more items (`{label}#{part}`), written in one transaction: it appears
//! whole or not at all. Restoring is an import (see [`ConsumerGroup`]): it
//! refuses a running group unless forced, and a forced restore fences the
//! owners of the leases it moves.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::group::{epoch_millis, Change, ConsumerGroup, SavedCheckpoint};
use crate::dynamodb::{
    item, AttributeValue, CreateTableRequest, DynamoDbClient, PutItemRequest, QueryRequest,
    ScalarAttributeType, TransactWriteItemsRequest, UpdateTimeToLiveRequest,
};
use crate::error::{excerpt, Error, ErrorCode, Result};

/// The most JSON one item of a snapshot holds (items hold 400 KB).
const PART_BYTES: usize = 300 * 1024;
/// A transaction writes at most 100 items.
const MAX_PARTS: usize = 100;
/// How long creating the history table may take.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// One snapshot in the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub label: String,
    pub created_at: SystemTime,
    /// Shard checkpoints it holds.
    pub checkpoints: usize,
}

/// A snapshot as one JSON object: `label`, `created_at` (milliseconds since
/// the epoch) and `checkpoints`.
impl Serialize for SnapshotInfo {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            label: &'a str,
            created_at: u64,
            checkpoints: usize,
        }
        View {
            label: &self.label,
            created_at: epoch_millis(self.created_at),
            checkpoints: self.checkpoints,
        }
        .serialize(serializer)
    }
}

/// The snapshots of one consumer group.
#[derive(Debug, Clone)]
pub struct Snapshots {
    group: ConsumerGroup,
    client: DynamoDbClient,
    table: String,
    retention: Option<Duration>,
}

impl Snapshots {
    /// The snapshots of `group`, in the table `{lease table}-history`.
    pub fn new(group: ConsumerGroup) -> Snapshots {
        let table = format!("{}-history", group.table_name());
        Snapshots {
            client: group.client().clone(),
            group,
            table,
            retention: None,
        }
    }

    /// Another history table (several groups may share one).
    pub fn table_name(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// New snapshots expire after this long [kept for ever].
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = Some(retention);
        self
    }

    pub fn history_table(&self) -> &str {
        &self.table
    }

    /// Stores every checkpoint of the group under `label`; a label already
    /// taken is an error.
    pub fn snapshot(&self, label: &str) -> Result<SnapshotInfo> {
        if label.is_empty() || label.contains('#') {
            return Err(Error::InvalidArgument(format!(
                "a snapshot label is not empty and has no '#', got {}",
                excerpt(label)
            )));
        }
        let checkpoints = self.group.export()?;
        let mut parts = vec![String::new()];
        for saved in &checkpoints {
            let line = serde_json::to_string(saved)
                .map_err(|e| Error::Internal(format!("cannot encode a checkpoint: {e}")))?;
            let last = parts.last_mut().expect("one part");
            if !last.is_empty() && last.len() + line.len() + 1 > PART_BYTES {
                parts.push(String::new());
            }
            let last = parts.last_mut().expect("one part");
            last.push_str(&line);
            last.push('\n');
        }
        if parts.len() > MAX_PARTS {
            return Err(Error::InvalidArgument(format!(
                "group {} has {} checkpoints, more than one snapshot holds ({} parts of {PART_BYTES} bytes)",
                self.group.name(),
                checkpoints.len(),
                MAX_PARTS
            )));
        }
        self.prepare()?;
        let created_at = SystemTime::now();
        let created_ms = created_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let expires = self.retention.map(|retention| {
            (created_at + retention)
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        });
        let count = parts.len();
        let mut transaction = TransactWriteItemsRequest::default();
        for (index, lines) in parts.into_iter().enumerate() {
            let mut snapshot = item([
                ("group", AttributeValue::s(self.group.name())),
                ("snapshot", AttributeValue::s(format!("{label}#{index:03}"))),
                ("label", AttributeValue::s(label)),
                ("part", AttributeValue::n(index)),
                ("parts", AttributeValue::n(count)),
                ("checkpoints", AttributeValue::n(checkpoints.len())),
                ("created_at", AttributeValue::n(created_ms)),
                ("lines", AttributeValue::s(lines)),
            ]);
            if let Some(expires) = expires {
                snapshot.insert("ttl".into(), AttributeValue::n(expires));
            }
            transaction = transaction.action(
                PutItemRequest::new(&self.table, snapshot)
                    .condition("attribute_not_exists(#snapshot)")
                    .name("#snapshot", "snapshot"),
            );
        }
        match self.client.transact_write_items(&transaction) {
            Ok(_) => {}
            Err(error) if error.is_transaction_canceled() => {
                return Err(Error::InvalidArgument(format!(
                    "group {} already has a snapshot {} in {}",
                    self.group.name(),
                    excerpt(label),
                    self.table
                )))
            }
            Err(error) => return Err(error.into()),
        }
        log::info!(
            "snapshot {label} of group {}: {} checkpoints",
            self.group.name(),
            checkpoints.len()
        );
        Ok(SnapshotInfo {
            label: label.to_owned(),
            created_at,
            checkpoints: checkpoints.len(),
        })
    }

    /// The group's snapshots, oldest first. No history table yet: none.
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let mut found: BTreeMap<String, SnapshotInfo> = BTreeMap::new();
        for part in self.parts(None)? {
            found.entry(part.label.clone()).or_insert(SnapshotInfo {
                label: part.label,
                created_at: part.created_at,
                checkpoints: part.checkpoints,
            });
        }
        let mut snapshots: Vec<SnapshotInfo> = found.into_values().collect();
        snapshots.sort_by_key(|snapshot| snapshot.created_at);
        Ok(snapshots)
    }

    /// The checkpoints a snapshot holds.
    pub fn checkpoints(&self, label: &str) -> Result<Vec<SavedCheckpoint>> {
        let parts = self.parts(Some(label))?;
        let expected = parts.first().map(|part| part.parts).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "group {} has no snapshot {} in {}",
                self.group.name(),
                excerpt(label),
                self.table
            ))
        })?;
        if parts.len() != expected {
            return Err(Error::InvalidArgument(format!(
                "snapshot {} of group {} is damaged: {} of its {expected} parts are there",
                excerpt(label),
                self.group.name(),
                parts.len()
            )));
        }
        let mut checkpoints = Vec::new();
        for part in parts {
            for line in part.lines.lines().filter(|line| !line.is_empty()) {
                checkpoints.push(serde_json::from_str(line).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "snapshot {} holds a bad line ({e}): {}",
                        excerpt(label),
                        excerpt(line)
                    ))
                })?);
            }
        }
        Ok(checkpoints)
    }

    /// Writes a snapshot's checkpoints back (see [`ConsumerGroup::import`]).
    pub fn restore(&self, label: &str, force: bool) -> Result<Vec<Change>> {
        let checkpoints = self.checkpoints(label)?;
        self.group.import(&checkpoints, force)
    }

    /// The stored parts of every snapshot, or of `label`'s, in order.
    fn parts(&self, label: Option<&str>) -> Result<Vec<Part>> {
        let mut request = QueryRequest::new(&self.table, "#group = :group")
            .name("#group", "group")
            .value(":group", AttributeValue::s(self.group.name()))
            .consistent_read(true);
        if let Some(label) = label {
            request = QueryRequest {
                key_condition_expression: "#group = :group AND begins_with(#snapshot, :label)"
                    .into(),
                ..request
            }
            .name("#snapshot", "snapshot")
            .value(":label", AttributeValue::s(format!("{label}#")));
        }
        let items = match self.client.query_all(&request, None) {
            Err(error) if error.code() == Some(&ErrorCode::ResourceNotFound) => Vec::new(),
            other => other?,
        };
        items
            .iter()
            .map(|stored| {
                let text = |name: &str| stored.get(name).and_then(AttributeValue::as_s);
                let number = |name: &str| stored.get(name).and_then(AttributeValue::as_u64);
                let damaged = || {
                    Error::InvalidArgument(format!(
                        "the history table {} holds a damaged item {}",
                        self.table,
                        excerpt(text("snapshot").unwrap_or(""))
                    ))
                };
                Ok(Part {
                    label: text("label").ok_or_else(damaged)?.to_owned(),
                    parts: number("parts").ok_or_else(damaged)? as usize,
                    checkpoints: number("checkpoints").ok_or_else(damaged)? as usize,
                    created_at: UNIX_EPOCH
                        + Duration::from_millis(number("created_at").ok_or_else(damaged)?),
                    lines: text("lines").ok_or_else(damaged)?.to_owned(),
                })
            })
            .collect()
    }

    /// Creates the history table unless it exists.
    fn prepare(&self) -> Result<()> {
        let request = CreateTableRequest::new(&self.table, "group", ScalarAttributeType::S)
            .range_key("snapshot", ScalarAttributeType::S);
        match self.client.create_table(&request) {
            Ok(_) => log::info!("created the history table {}", self.table),
            Err(error) if error.code() == Some(&ErrorCode::ResourceInUse) => {}
            Err(error) => return Err(error),
        }
        self.client
            .wait_for_table_active(&self.table, TABLE_ACTIVE_TIMEOUT)?;
        if self.retention.is_some() {
            let ttl = UpdateTimeToLiveRequest::new(&self.table, "ttl", true);
            if let Err(error) = self.client.update_time_to_live(&ttl) {
                log::debug!("TTL on {} not enabled: {error}", self.table);
            }
        }
        Ok(())
    }
}

/// One stored item of a snapshot.
struct Part {
    label: String,
    parts: usize,
    checkpoints: usize,
    created_at: SystemTime,
    lines: String,
}
