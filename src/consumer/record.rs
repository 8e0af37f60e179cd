//! The record a consumer hands to its caller.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::checkpoint::Position;

/// One user record: a plain Kinesis record, or one record out of a KPL
/// aggregate (then `sub_sequence_number` is its index in the aggregate).
#[derive(Clone)]
pub struct Record {
    /// The payload.
    pub data: Vec<u8>,
    /// The partition key.
    pub partition_key: String,
    /// The Kinesis sequence number (of the aggregate, for KPL user records).
    pub sequence_number: String,
    /// Index inside a KPL aggregate; 0 for plain records.
    pub sub_sequence_number: u64,
    /// The shard the record came from.
    pub shard_id: Arc<str>,
    /// When Kinesis accepted the record.
    pub approximate_arrival_timestamp: Option<SystemTime>,
    /// The explicit hash key, when the producer set one.
    pub explicit_hash_key: Option<String>,
    /// The lease tenure that delivered it, so a checkpoint of a record from
    /// a lost lease is recognised. (An id, not a handle: records cross
    /// threads by the million and shared counters would bounce.)
    pub(crate) tenure_id: u64,
    /// The consumer that fetched it (unique in the process), so a record of
    /// another consumer is refused as such.
    pub(crate) consumer_id: u64,
}

impl Record {
    /// The record's position, as checkpoints store it.
    pub fn position(&self) -> Position {
        Position::new(self.sequence_number.clone(), self.sub_sequence_number)
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("shard_id", &self.shard_id)
            .field("sequence_number", &self.sequence_number)
            .field("sub_sequence_number", &self.sub_sequence_number)
            .field("partition_key", &self.partition_key)
            .field("data_len", &self.data.len())
            .field(
                "approximate_arrival_timestamp",
                &self.approximate_arrival_timestamp,
            )
            .finish()
    }
}
