//! KPL aggregated records: 4 magic bytes, a protobuf `AggregatedRecord`, then
//! the 16-byte MD5 of the protobuf. Anything else — no magic, a bad digest, a
//! protobuf that does not decode — is a plain record, as in the KCL.

use md5::{Digest, Md5};
use prost::Message;

/// The KPL's magic prefix.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;

/// One user record taken out of an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Position inside the aggregate, from 0.
    pub sub_sequence_number: u64,
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct AggregatedRecord {
    #[prost(string, repeated, tag = "1")]
    partition_key_table: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    explicit_hash_key_table: Vec<String>,
    #[prost(message, repeated, tag = "3")]
    records: Vec<AggregatedEntry>,
}

#[derive(Clone, PartialEq, Message)]
struct AggregatedEntry {
    #[prost(uint64, tag = "1")]
    partition_key_index: u64,
    #[prost(uint64, optional, tag = "2")]
    explicit_hash_key_index: Option<u64>,
    #[prost(bytes = "vec", tag = "3")]
    data: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    tags: Vec<Tag>,
}

#[derive(Clone, PartialEq, Message)]
struct Tag {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, optional, tag = "2")]
    value: Option<String>,
}

/// The user records of a KPL aggregate, or `None` when `data` is a plain
/// record (no magic, wrong digest, undecodable, or indexes out of range).
pub fn deaggregate(data: &[u8]) -> Option<Vec<UserRecord>> {
    let body = data.strip_prefix(&KPL_MAGIC)?;
    if body.len() < DIGEST_LEN {
        return None;
    }
    let (message, digest) = body.split_at(body.len() - DIGEST_LEN);
    if Md5::digest(message).as_slice() != digest {
        return None;
    }
    let aggregate = AggregatedRecord::decode(message).ok()?;
    let mut records = Vec::with_capacity(aggregate.records.len());
    for (index, entry) in aggregate.records.into_iter().enumerate() {
        let partition_key = aggregate
            .partition_key_table
            .get(usize::try_from(entry.partition_key_index).ok()?)?
            .clone();
        let explicit_hash_key = match entry.explicit_hash_key_index {
            Some(i) => Some(
                aggregate
                    .explicit_hash_key_table
                    .get(usize::try_from(i).ok()?)?
                    .clone(),
            ),
            None => None,
        };
        records.push(UserRecord {
            sub_sequence_number: index as u64,
            partition_key,
            explicit_hash_key,
            data: entry.data,
        });
    }
    Some(records)
}

/// Builds a KPL aggregate of `(partition_key, data)` pairs, as the KPL
/// would; kcheck's producer and tests use it.
pub fn aggregate<'a>(records: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut aggregate = AggregatedRecord::default();
    for (key, data) in records {
        let index = match aggregate.partition_key_table.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                aggregate.partition_key_table.push(key.to_owned());
                aggregate.partition_key_table.len() - 1
            }
        };
        aggregate.records.push(AggregatedEntry {
            partition_key_index: index as u64,
            explicit_hash_key_index: None,
            data: data.to_vec(),
            tags: Vec::new(),
        });
    }
    let message = aggregate.encode_to_vec();
    let mut out = Vec::with_capacity(KPL_MAGIC.len() + message.len() + DIGEST_LEN);
    out.extend_from_slice(&KPL_MAGIC);
    out.extend_from_slice(&message);
    out.extend_from_slice(&Md5::digest(&message));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_keys_and_sub_sequence_numbers() {
        let blob = aggregate([("a", &b"one"[..]), ("b", b"two"), ("a", b"three")]);
        let records = deaggregate(&blob).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[2].sub_sequence_number, 2);
        assert_eq!(records[2].partition_key, "a");
        assert_eq!(records[1].data, b"two");
    }

    #[test]
    fn plain_and_damaged_records_are_not_aggregates() {
        assert!(deaggregate(b"plain data").is_none());
        assert!(deaggregate(&KPL_MAGIC).is_none());
        let mut blob = aggregate([("a", &b"one"[..])]);
        let last = blob.len() - 1;
        blob[last] ^= 0xFF; // digest no longer matches
        assert!(deaggregate(&blob).is_none());
        let mut blob = aggregate([("a", &b"one"[..])]);
        blob[6] ^= 0xFF; // payload no longer matches the digest
        assert!(deaggregate(&blob).is_none());
    }

    #[test]
    fn out_of_range_key_index_is_not_an_aggregate() {
        let message = AggregatedRecord {
            partition_key_table: vec!["a".into()],
            explicit_hash_key_table: vec![],
            records: vec![AggregatedEntry {
                partition_key_index: 5,
                explicit_hash_key_index: None,
                data: b"x".to_vec(),
                tags: vec![],
            }],
        }
        .encode_to_vec();
        let mut blob = KPL_MAGIC.to_vec();
        blob.extend_from_slice(&message);
        blob.extend_from_slice(&Md5::digest(&message));
        assert!(deaggregate(&blob).is_none());
    }
}
