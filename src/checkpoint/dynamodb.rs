//! Leases and checkpoints in a DynamoDB table laid out as async-kinesis's
//! DynamoDB checkpointer documents it (HASH key `shard_id`, on-demand
//! billing, TTL on `ttl`), with the KCL's counter-based fencing on every
//! write.
//!
//! Item attributes: `shard_id` (key: `{group}:{stream}:{shard}`), `app`,
//! `stream`, `shard`, `ref` (owner; absent when free), `lease_counter`,
//! `sequence` (or `SHARD_END`), `sub_sequence`, `parents`, `handoff_to`,
//! `start_sequence` or `start_timestamp` (a pinned start, milliseconds),
//! `ts` (last write, epoch seconds; informational) and `ttl` (set only once
//! the shard has left the stream).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Checkpoint, Checkpointer, Lease, LeaseScope, LeaseSettings, Position};
use crate::dynamodb::{
    item, AttributeValue, CreateTableRequest, DynamoDbClient, GetItemRequest, Item, PutItemRequest,
    ReturnValues, ScalarAttributeType, ScanRequest, TableRequest, UpdateItemRequest,
    UpdateTimeToLiveRequest, WriteError,
};
use crate::error::{Error, ErrorCode, Result};
use crate::kinesis::IteratorPosition;
use crate::transport::ClientSettings;

pub(super) const SHARD_END: &str = "SHARD_END";
/// How long `prepare` waits for a new table to become ACTIVE.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Builds a [`DynamoDbCheckpointer`]; the parameters of async-kinesis's
/// `DynamoDBCheckPointer`.
#[derive(Debug, Clone)]
pub struct DynamoDbCheckpointerBuilder {
    name: String,
    table_name: Option<String>,
    settings: LeaseSettings,
    create_table: bool,
    ttl_hours: u32,
    client: ClientSettings,
}

impl DynamoDbCheckpointerBuilder {
    /// The table [`kinesis-checkpoints-{name}`]; several groups may share one.
    pub fn table_name(mut self, table_name: impl Into<String>) -> Self {
        self.table_name = Some(table_name.into());
        self
    }

    super::lease_setters!();

    /// Create the table when it is missing [true].
    pub fn create_table(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// Items of shards that have left the stream (past retention) expire
    /// this many hours after a consumer noticed; 0 disables TTL [24]. Items
    /// of shards still in the stream never expire, however long the group
    /// is stopped. TTL only collects garbage: it is never used for liveness.
    pub fn ttl_hours(mut self, hours: u32) -> Self {
        self.ttl_hours = hours;
        self
    }

    crate::transport::client_setters!("DynamoDB");

    /// Validates the parameters and makes the client; the table is checked
    /// (or created) when a consumer starts.
    pub fn build(self) -> Result<DynamoDbCheckpointer> {
        if self.name.trim().is_empty() {
            return Err(Error::Config("DynamoDBCheckPointer name is empty".into()));
        }
        if self.name.contains(':') {
            return Err(Error::Config(format!(
                "DynamoDBCheckPointer name {} must not contain ':'",
                crate::error::excerpt(&self.name)
            )));
        }
        self.settings.validate()?;
        let table_name = self
            .table_name
            .unwrap_or_else(|| format!("kinesis-checkpoints-{}", self.name));
        let valid_table = (3..=255).contains(&table_name.len())
            && table_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !valid_table {
            return Err(Error::Config(format!(
                "table_name {} is not a valid DynamoDB table name (3-255 of a-z, A-Z, 0-9, _ - .)",
                crate::error::excerpt(&table_name)
            )));
        }
        let config = self.client.resolve()?;
        Ok(DynamoDbCheckpointer {
            client: DynamoDbClient::new(&config)?,
            name: self.name,
            table_name,
            settings: self.settings,
            create_table: self.create_table,
            ttl_hours: self.ttl_hours,
        })
    }
}

/// Leases and checkpoints of a consumer group in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbCheckpointer {
    client: DynamoDbClient,
    name: String,
    table_name: String,
    settings: LeaseSettings,
    create_table: bool,
    ttl_hours: u32,
}

impl DynamoDbCheckpointer {
    /// A builder for consumer group `name`.
    pub fn builder(name: impl Into<String>) -> DynamoDbCheckpointerBuilder {
        DynamoDbCheckpointerBuilder {
            name: name.into(),
            table_name: None,
            settings: LeaseSettings::default(),
            create_table: true,
            ttl_hours: 24,
            client: ClientSettings::default(),
        }
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table_name
    }

    /// The DynamoDB client, e.g. to inspect the table.
    pub fn client(&self) -> &DynamoDbClient {
        &self.client
    }

    fn key(&self, scope: &LeaseScope, shard_id: &str) -> Item {
        item([("shard_id", AttributeValue::s(scope.key(shard_id)))])
    }

    fn now_seconds() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// An update of one lease: bumps the counter, stamps `ts`, plus
    /// `set`/`remove` clauses, under `condition`.
    fn lease_update(
        &self,
        scope: &LeaseScope,
        shard_id: &str,
        set: &[&str],
        remove: &[&str],
        condition: &str,
    ) -> UpdateItemRequest {
        let mut sets = vec!["lease_counter = lease_counter + :one", "#ts = :now"];
        sets.extend_from_slice(set);
        let mut expression = format!("SET {}", sets.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        UpdateItemRequest::new(&self.table_name, self.key(scope, shard_id), expression)
            .condition(condition)
            .name("#ts", "ts")
            .value(":one", AttributeValue::n(1))
            .value(":now", AttributeValue::n(Self::now_seconds()))
            .return_values(ReturnValues::AllNew)
            .return_old_on_condition_failure()
    }

    /// Sends a conditional lease write and reads the lease it leaves.
    ///
    /// Retried as the client's policy allows, within the caller's deadline.
    /// A failed condition means the lease is not ours (`None`), unless an
    /// earlier attempt may have been applied without us hearing of it: then
    /// the item sent with the failure tells whether our own write is what
    /// changed it (`landed`, checked against the counter it would have set).
    fn conditional_write(
        &self,
        request: &UpdateItemRequest,
        expected_counter: u64,
        landed: impl Fn(&Lease) -> bool,
    ) -> Result<Option<Lease>> {
        let mut ambiguous = false;
        self.client
            .retry_policy()
            .run(|_| match self.client.update_item_once(request) {
                Ok(output) => parse_lease(&output.attributes.unwrap_or_default()).map(Some),
                Err(error) if error.is_condition_failed() => {
                    let current = match error.current_item() {
                        Some(item) if ambiguous => Some(parse_lease(item)?),
                        _ => None,
                    };
                    Ok(current.filter(|current| {
                        current.counter == expected_counter + 1 && landed(current)
                    }))
                }
                Err(error) => {
                    let error = Error::from(error);
                    ambiguous |= error.is_ambiguous();
                    Err(error)
                }
            })
    }

    /// Sends an owner write: condition failure means the lease is lost.
    fn owner_write(
        &self,
        lease: &Lease,
        request: UpdateItemRequest,
        landed: impl Fn(&Lease) -> bool,
    ) -> Result<Lease> {
        let lost = || Error::LeaseLost {
            shard_id: lease.shard_id.clone(),
        };
        let owner = lease.owner.as_deref().ok_or_else(lost)?;
        let request = request
            .name("#ref", "ref")
            .value(":owner", AttributeValue::s(owner))
            .value(":counter", AttributeValue::n(lease.counter));
        self.conditional_write(&request, lease.counter, landed)?
            .ok_or_else(lost)
    }

    fn create_missing_table(&self) -> Result<()> {
        let request = CreateTableRequest::new(&self.table_name, "shard_id", ScalarAttributeType::S);
        match self.client.create_table(&request) {
            Ok(_) => log::info!("created DynamoDB table {}", self.table_name),
            // Another consumer created it at the same moment.
            Err(error) if error.code() == Some(&ErrorCode::ResourceInUse) => {}
            Err(error) => return Err(error),
        }
        self.client
            .wait_for_table_active(&self.table_name, TABLE_ACTIVE_TIMEOUT)?;
        if self.ttl_hours > 0 {
            let ttl = UpdateTimeToLiveRequest::new(&self.table_name, "ttl", true);
            if let Err(error) = self.client.update_time_to_live(&ttl) {
                log::warn!(
                    "could not enable TTL on {} (items will not expire): {error}",
                    self.table_name
                );
            }
        }
        Ok(())
    }
}

impl Checkpointer for DynamoDbCheckpointer {
    fn group(&self) -> &str {
        &self.name
    }

    fn settings(&self) -> LeaseSettings {
        self.settings
    }

    fn prepare(&self) -> Result<()> {
        match self
            .client
            .describe_table(&TableRequest::new(&self.table_name))
        {
            Ok(_) => self
                .client
                .wait_for_table_active(&self.table_name, TABLE_ACTIVE_TIMEOUT)
                .map(drop),
            Err(error) if error.code() == Some(&ErrorCode::ResourceNotFound) => {
                if self.create_table {
                    self.create_missing_table()
                } else {
                    Err(Error::Config(format!(
                        "DynamoDB table {} does not exist and create_table is false",
                        self.table_name
                    )))
                }
            }
            Err(error) => Err(error),
        }
    }

    fn leases(&self, scope: &LeaseScope) -> Result<Vec<Lease>> {
        let request = ScanRequest::new(&self.table_name)
            .filter("#app = :app AND #stream = :stream")
            .name("#app", "app")
            .name("#stream", "stream")
            .value(":app", AttributeValue::s(&scope.group))
            .value(":stream", AttributeValue::s(&scope.stream))
            .consistent_read(true);
        self.client
            .scan_all(&request, None)?
            .iter()
            .map(parse_lease)
            .collect()
    }

    fn lease(&self, scope: &LeaseScope, shard_id: &str) -> Result<Option<Lease>> {
        let request =
            GetItemRequest::new(&self.table_name, self.key(scope, shard_id)).consistent_read(true);
        self.client
            .get_item(&request)?
            .item
            .as_ref()
            .map(parse_lease)
            .transpose()
    }

    fn create_lease(&self, scope: &LeaseScope, shard_id: &str, parents: &[String]) -> Result<()> {
        let lease = item([
            ("shard_id", AttributeValue::s(scope.key(shard_id))),
            ("app", AttributeValue::s(&scope.group)),
            ("stream", AttributeValue::s(&scope.stream)),
            ("shard", AttributeValue::s(shard_id)),
            ("lease_counter", AttributeValue::n(0)),
            ("ts", AttributeValue::n(Self::now_seconds())),
            (
                "parents",
                AttributeValue::l(parents.iter().map(AttributeValue::s).collect::<Vec<_>>()),
            ),
        ]);
        let request = PutItemRequest::new(&self.table_name, lease)
            .condition("attribute_not_exists(shard_id)");
        match self.client.put_item(&request) {
            Ok(_) => Ok(()),
            Err(error) if error.is_condition_failed() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    fn take(
        &self,
        scope: &LeaseScope,
        shard_id: &str,
        owner: &str,
        observed_counter: u64,
    ) -> Result<Option<Lease>> {
        let request = self
            .lease_update(
                scope,
                shard_id,
                &["#ref = :me"],
                &["handoff_to"],
                "lease_counter = :counter",
            )
            .name("#ref", "ref")
            .value(":me", AttributeValue::s(owner))
            .value(":counter", AttributeValue::n(observed_counter));
        self.conditional_write(&request, observed_counter, |current| {
            current.is_owned_by(owner)
        })
    }

    fn renew(&self, scope: &LeaseScope, lease: &Lease) -> Result<Lease> {
        let request = self.lease_update(scope, &lease.shard_id, &[], &[], OWNED);
        self.owner_write(lease, request, |current| current.owner == lease.owner)
    }

    fn checkpoint(
        &self,
        scope: &LeaseScope,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> Result<Lease> {
        let request = self.lease_update(
            scope,
            &lease.shard_id,
            &["#seq = :seq", "sub_sequence = :sub"],
            &[],
            OWNED,
        );
        self.owner_write(lease, with_checkpoint(request, checkpoint), |current| {
            current.owner == lease.owner && current.checkpoint.as_ref() == Some(checkpoint)
        })
    }

    fn release(
        &self,
        scope: &LeaseScope,
        lease: &Lease,
        checkpoint: Option<&Checkpoint>,
        to: Option<&str>,
    ) -> Result<()> {
        let mut set = Vec::new();
        let mut remove = vec!["handoff_to"];
        if checkpoint.is_some() {
            set.extend(["#seq = :seq", "sub_sequence = :sub"]);
        }
        match to {
            Some(_) => set.push("#ref = :to"),
            None => remove.push("#ref"),
        }
        let mut request = self.lease_update(scope, &lease.shard_id, &set, &remove, OWNED);
        if let Some(checkpoint) = checkpoint {
            request = with_checkpoint(request, checkpoint);
        }
        if let Some(to) = to {
            request = request.value(":to", AttributeValue::s(to));
        }
        self.owner_write(lease, request, |current| {
            current.owner.as_deref() == to
                && checkpoint.is_none_or(|c| current.checkpoint.as_ref() == Some(c))
        })
        .map(drop)
    }

    fn pin_start(
        &self,
        scope: &LeaseScope,
        lease: &Lease,
        start: &IteratorPosition,
    ) -> Result<Lease> {
        let (set, remove, value) = match start {
            IteratorPosition::AtSequenceNumber(sequence) => (
                "start_sequence = :start",
                "start_timestamp",
                AttributeValue::s(sequence),
            ),
            IteratorPosition::AtTimestamp(time) => (
                "start_timestamp = :start",
                "start_sequence",
                AttributeValue::n(epoch_millis(*time)),
            ),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "a pinned start is a sequence number or a timestamp, not {other:?}"
                )))
            }
        };
        let request = self
            .lease_update(scope, &lease.shard_id, &[set], &[remove], OWNED)
            .value(":start", value);
        self.owner_write(lease, request, |current| {
            current.owner == lease.owner && current.start.as_ref() == Some(start)
        })
    }

    fn set_expiry(&self, scope: &LeaseScope, shard_id: &str, expire: bool) -> Result<()> {
        if expire && self.ttl_hours == 0 {
            return Ok(());
        }
        let key = self.key(scope, shard_id);
        let request = if expire {
            let ttl = Self::now_seconds() + u64::from(self.ttl_hours) * 3600;
            UpdateItemRequest::new(&self.table_name, key, "SET #ttl = :ttl")
                .value(":ttl", AttributeValue::n(ttl))
        } else {
            UpdateItemRequest::new(&self.table_name, key, "REMOVE #ttl")
        }
        .name("#ttl", "ttl")
        // Never re-creates an item someone deleted.
        .condition("attribute_exists(shard_id)");
        match self.client.update_item(&request) {
            Ok(_) => Ok(()),
            Err(error) if error.is_condition_failed() => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    fn request_handoff(&self, scope: &LeaseScope, lease: &Lease, asker: &str) -> Result<bool> {
        let Some(owner) = lease.owner.as_deref() else {
            return Ok(false);
        };
        // No counter bump: the owner's own conditional writes keep working.
        let request = UpdateItemRequest::new(
            &self.table_name,
            self.key(scope, &lease.shard_id),
            "SET handoff_to = :asker",
        )
        .condition("#ref = :owner AND attribute_not_exists(handoff_to)")
        .name("#ref", "ref")
        .value(":owner", AttributeValue::s(owner))
        .value(":asker", AttributeValue::s(asker));
        match self.client.update_item(&request) {
            Ok(_) => Ok(true),
            Err(error) if error.is_condition_failed() => Ok(false),
            Err(error) => Err(WriteError::into(error)),
        }
    }
}

/// The condition of every owner write.
const OWNED: &str = "#ref = :owner AND lease_counter = :counter";

fn with_checkpoint(request: UpdateItemRequest, checkpoint: &Checkpoint) -> UpdateItemRequest {
    let (sequence, sub) = match checkpoint {
        Checkpoint::At(position) => (
            position.sequence_number.as_str(),
            position.sub_sequence_number,
        ),
        Checkpoint::ShardEnd => (SHARD_END, 0),
    };
    request
        .name("#seq", "sequence")
        .value(":seq", AttributeValue::s(sequence))
        .value(":sub", AttributeValue::n(sub))
}

fn epoch_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Reads a lease item; a damaged item is an error naming what is wrong.
pub(super) fn parse_lease(stored: &Item) -> Result<Lease> {
    let malformed = |what: &str| Error::MalformedResponse {
        operation: "lease item",
        status: 200,
        detail: format!(
            "{what} in {}",
            crate::error::excerpt(
                stored
                    .get("shard_id")
                    .and_then(AttributeValue::as_s)
                    .unwrap_or("an item without shard_id")
            )
        ),
    };
    let shard_id = stored
        .get("shard")
        .and_then(AttributeValue::as_s)
        .ok_or_else(|| malformed("missing shard"))?
        .to_owned();
    let counter = stored
        .get("lease_counter")
        .and_then(AttributeValue::as_u64)
        .ok_or_else(|| malformed("missing or bad lease_counter"))?;
    let checkpoint = match stored.get("sequence").and_then(AttributeValue::as_s) {
        None => None,
        Some(SHARD_END) => Some(Checkpoint::ShardEnd),
        Some(sequence) if super::is_sequence_number(sequence) => {
            let sub = match stored.get("sub_sequence") {
                None => 0,
                Some(sub) => sub.as_u64().ok_or_else(|| malformed("bad sub_sequence"))?,
            };
            Some(Checkpoint::At(Position::new(sequence, sub)))
        }
        Some(_) => return Err(malformed("bad sequence")),
    };
    // A parent dropped here would let a child start before it: refuse.
    let parents = match stored.get("parents") {
        None => Vec::new(),
        Some(parents) => parents
            .as_l()
            .and_then(|list| {
                list.iter()
                    .map(|p| p.as_s().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| malformed("bad parents"))?,
    };
    let text = |name: &str| {
        stored
            .get(name)
            .and_then(AttributeValue::as_s)
            .map(str::to_owned)
    };
    let start = match (
        text("start_sequence"),
        stored
            .get("start_timestamp")
            .and_then(AttributeValue::as_u64),
    ) {
        (Some(sequence), _) if super::is_sequence_number(&sequence) => {
            Some(IteratorPosition::AtSequenceNumber(sequence))
        }
        (Some(_), _) => return Err(malformed("bad start_sequence")),
        (None, Some(millis)) => Some(IteratorPosition::AtTimestamp(
            UNIX_EPOCH + Duration::from_millis(millis),
        )),
        (None, None) => None,
    };
    Ok(Lease {
        shard_id,
        owner: text("ref"),
        counter,
        checkpoint,
        parents,
        handoff_to: text("handoff_to"),
        start,
        expires_at: stored.get("ttl").and_then(AttributeValue::as_u64),
    })
}
