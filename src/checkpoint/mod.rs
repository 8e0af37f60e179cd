//! Checkpointers: where a consumer group keeps its shard leases and
//! checkpoints. Every write is conditional on the lease counter (the KCL's
//! fencing token), so a consumer that lost a lease can neither checkpoint nor
//! release it over the new owner.

mod dynamodb;
mod formats;
mod group;
mod memory;
mod position;
#[cfg(feature = "redis")]
mod redis;
mod snapshot;

use std::fmt;
use std::time::Duration;

pub use dynamodb::{DynamoDbCheckpointer, DynamoDbCheckpointerBuilder};
pub use formats::{copy, AsyncKinesisTable, CheckpointTable, KclTable, ReadCheckpoints};
pub use group::{Backlog, Change, ConsumerGroup, LeaseInfo, LeaseState, ResetTo, SavedCheckpoint};
pub use memory::MemoryCheckpointer;
pub use position::{compare_sequence_numbers, is_sequence_number, Checkpoint, Position};
#[cfg(feature = "redis")]
pub use redis::{AsyncKinesisRedisTable, RedisCheckpointer, RedisCheckpointerBuilder};
pub use snapshot::{SnapshotInfo, Snapshots};

use crate::error::Result;
use crate::kinesis::IteratorPosition;

/// The leases of one consumer group on one stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseScope {
    /// The consumer group (the checkpointer's `name`).
    pub group: String,
    /// The stream's name.
    pub stream: String,
}

impl LeaseScope {
    /// The table key of a shard's lease. Group and stream are part of it so
    /// several groups and streams can share one table without meeting.
    pub fn key(&self, shard_id: &str) -> String {
        format!("{}:{}:{}", self.group, self.stream, shard_id)
    }
}

/// One shard's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub shard_id: String,
    /// The consumer instance holding it; `None` when free.
    pub owner: Option<String>,
    /// Bumped by every owner write: heartbeat and fencing token in one.
    pub counter: u64,
    /// What has been processed; `None` before the first checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// The shard's parents, which must reach SHARD_END before it starts.
    pub parents: Vec<String>,
    /// A consumer that asked the owner to hand this lease over.
    pub handoff_to: Option<String>,
    /// Where reading began before the first checkpoint, once a moving
    /// initial position (LATEST, AT_TIMESTAMP) was resolved: every later
    /// tenure starts there too, so records fetched but not yet processed
    /// are never skipped. Only `AtSequenceNumber` or `AtTimestamp`.
    pub start: Option<IteratorPosition>,
    /// When the store may delete the item (epoch seconds); set only once
    /// the shard has left the stream.
    pub expires_at: Option<u64>,
}

impl Lease {
    /// Whether `owner` holds this lease.
    pub fn is_owned_by(&self, owner: &str) -> bool {
        self.owner.as_deref() == Some(owner)
    }

    /// Whether the shard has been read to its end.
    pub fn is_finished(&self) -> bool {
        self.checkpoint == Some(Checkpoint::ShardEnd)
    }
}

/// The lease timing every checkpointer exposes to the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// A lease seen unchanged this long is dead; an owner that could not
    /// renew for this long stops the shard itself.
    pub session_timeout: Duration,
    /// How often owned leases are renewed.
    pub heartbeat_frequency: Duration,
    /// Whether processed positions are checkpointed automatically.
    pub auto_checkpoint: bool,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            session_timeout: Duration::from_secs(60),
            heartbeat_frequency: Duration::from_secs(15),
            auto_checkpoint: true,
        }
    }
}

impl LeaseSettings {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.session_timeout.is_zero() || self.heartbeat_frequency.is_zero() {
            return Err(crate::Error::Config(
                "session_timeout and heartbeat_frequency must be positive".into(),
            ));
        }
        if self.heartbeat_frequency >= self.session_timeout {
            return Err(crate::Error::Config(format!(
                "heartbeat_frequency ({:?}) must be shorter than session_timeout ({:?})",
                self.heartbeat_frequency, self.session_timeout
            )));
        }
        Ok(())
    }
}

/// The `session_timeout`, `heartbeat_frequency` and `auto_checkpoint`
/// setters of a checkpointer builder whose `settings` field is a
/// [`LeaseSettings`].
macro_rules! lease_setters {
    () => {
        /// A lease unchanged this long is dead [60 s].
        pub fn session_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.settings.session_timeout = timeout;
            self
        }

        /// Owned leases are renewed this often [15 s].
        pub fn heartbeat_frequency(mut self, frequency: std::time::Duration) -> Self {
            self.settings.heartbeat_frequency = frequency;
            self
        }

        /// Checkpoint processed records automatically [true].
        pub fn auto_checkpoint(mut self, auto: bool) -> Self {
            self.settings.auto_checkpoint = auto;
            self
        }
    };
}
pub(crate) use lease_setters;

/// A store of leases and checkpoints shared by a consumer group.
///
/// Owner writes (`renew`, `checkpoint`, `release`) succeed only while the
/// lease still has the owner and counter of `lease`, and fail with
/// [`crate::Error::LeaseLost`] otherwise.
pub trait Checkpointer: Send + Sync + fmt::Debug {
    /// The consumer group's name.
    fn group(&self) -> &str;
    /// Lease timing and checkpoint mode.
    fn settings(&self) -> LeaseSettings;
    /// Makes the store ready (creates the table if so configured).
    fn prepare(&self) -> Result<()>;
    /// Every lease of `scope`.
    fn leases(&self, scope: &LeaseScope) -> Result<Vec<Lease>>;
    /// One lease as stored now (a strongly consistent read); `None` when
    /// there is no such item.
    fn lease(&self, scope: &LeaseScope, shard_id: &str) -> Result<Option<Lease>>;
    /// Creates a free lease for `shard_id` unless one exists.
    fn create_lease(&self, scope: &LeaseScope, shard_id: &str, parents: &[String]) -> Result<()>;
    /// Takes a lease whose counter is still `observed_counter` (free or
    /// dead); `None` when someone else changed it first.
    fn take(
        &self,
        scope: &LeaseScope,
        shard_id: &str,
        owner: &str,
        observed_counter: u64,
    ) -> Result<Option<Lease>>;
    /// Renews an owned lease (a heartbeat).
    fn renew(&self, scope: &LeaseScope, lease: &Lease) -> Result<Lease>;
    /// Records `checkpoint` on an owned lease; renews it too.
    fn checkpoint(
        &self,
        scope: &LeaseScope,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> Result<Lease>;
    /// Gives an owned lease up, to nobody or to the consumer `to`, after
    /// recording `checkpoint` if given.
    fn release(
        &self,
        scope: &LeaseScope,
        lease: &Lease,
        checkpoint: Option<&Checkpoint>,
        to: Option<&str>,
    ) -> Result<()>;
    /// Asks the owner of `lease` to hand it to `asker`; `false` when the
    /// lease changed owner or already has a request.
    fn request_handoff(&self, scope: &LeaseScope, lease: &Lease, asker: &str) -> Result<bool>;
    /// Records where an owned lease without a checkpoint began reading
    /// (see [`Lease::start`]); renews it too.
    fn pin_start(
        &self,
        scope: &LeaseScope,
        lease: &Lease,
        start: &IteratorPosition,
    ) -> Result<Lease>;
    /// Lets the store delete a lease once its shard has left the stream
    /// (`expire`), or keeps it for good while the shard is in the stream.
    /// Does not touch the counter, so owners are not disturbed.
    fn set_expiry(&self, scope: &LeaseScope, shard_id: &str, expire: bool) -> Result<()>;
}

/// A consumer instance's unique id: host, process and a random part, so two
/// containers with the same pid never collide.
pub fn new_owner_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        crate::random::random_u64() as u32
    )
}
