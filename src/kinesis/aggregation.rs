//! KPL aggregated records: 4 magic bytes, a protobuf `AggregatedRecord`, then
//! the 16-byte MD5 of the protobuf. Anything else — no magic, a bad digest, a
//! protobuf that does not decode — is a plain record, as in the KCL.
//! So is an aggregate with a key longer than Kinesis allows, which the KPL
//! never writes: every user record gets its own copy of its keys, so one
//! long key shared by many tiny entries would make a 1 MiB record claim
//! gigabytes.

use std::collections::HashMap;

use md5::{Digest, Md5};
use prost::Message;

/// The KPL's magic prefix.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
const DIGEST_LEN: usize = 16;
/// Kinesis's limit on a partition key, which the KPL checks on every user
/// record; explicit hash keys (at most 39 digits) are well within it.
const MAX_KEY_CHARS: usize = 256;

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
/// record (no magic, wrong digest, undecodable, indexes out of range, or a
/// key over 256 characters).
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
    let keys_fit = aggregate
        .partition_key_table
        .iter()
        .chain(&aggregate.explicit_hash_key_table)
        .all(|key| key.len() <= MAX_KEY_CHARS || key.chars().count() <= MAX_KEY_CHARS);
    if !keys_fit {
        return None;
    }
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
/// would (tests write aggregates with it).
pub fn aggregate<'a>(records: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut aggregator = Aggregator::default();
    for (key, data) in records {
        aggregator.push(key, None, data.to_vec());
    }
    aggregator.finish()
}

/// Encodes user records, with their partition and explicit hash keys,
/// into one KPL aggregate.
#[derive(Debug, Default)]
pub struct Aggregator {
    message: AggregatedRecord,
    /// Where each key already is in its table.
    partition_keys: HashMap<String, u64>,
    explicit_hash_keys: HashMap<String, u64>,
}

impl Aggregator {
    /// Adds a user record (keys are stored once per aggregate).
    pub fn push(&mut self, partition_key: &str, explicit_hash_key: Option<&str>, data: Vec<u8>) {
        let partition_key_index = intern(
            &mut self.partition_keys,
            &mut self.message.partition_key_table,
            partition_key,
        );
        let explicit_hash_key_index = explicit_hash_key.map(|key| {
            intern(
                &mut self.explicit_hash_keys,
                &mut self.message.explicit_hash_key_table,
                key,
            )
        });
        self.message.records.push(AggregatedEntry {
            partition_key_index,
            explicit_hash_key_index,
            data,
            tags: Vec::new(),
        });
    }

    /// Magic, protobuf and digest: the data of one Kinesis record.
    pub fn finish(self) -> Vec<u8> {
        let message = self.message.encode_to_vec();
        let mut out = Vec::with_capacity(KPL_MAGIC.len() + message.len() + DIGEST_LEN);
        out.extend_from_slice(&KPL_MAGIC);
        out.extend_from_slice(&message);
        out.extend_from_slice(&Md5::digest(&message));
        out
    }
}

/// The index of `key` in `table`, added if new.
fn intern(known: &mut HashMap<String, u64>, table: &mut Vec<String>, key: &str) -> u64 {
    if let Some(&index) = known.get(key) {
        return index;
    }
    let index = table.len() as u64;
    known.insert(key.to_owned(), index);
    table.push(key.to_owned());
    index
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
    fn explicit_hash_keys_round_trip_and_keys_are_stored_once() {
        let mut aggregator = Aggregator::default();
        let records = [
            ("a", Some("12"), vec![1u8; 300]),
            ("b", None, vec![]),
            ("a", Some("12"), b"x".to_vec()),
        ];
        for (key, hash_key, data) in records {
            aggregator.push(key, hash_key, data);
        }
        assert_eq!(aggregator.message.partition_key_table, ["a", "b"]);
        assert_eq!(aggregator.message.explicit_hash_key_table, ["12"]);
        let blob = aggregator.finish();
        let users = deaggregate(&blob).unwrap();
        assert_eq!(users[0].explicit_hash_key.as_deref(), Some("12"));
        assert_eq!(users[1].explicit_hash_key, None);
        assert_eq!(users[2].data, b"x");
        assert_eq!(users[2].partition_key, "a");
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

    mod hostile {
        //! Hostile aggregates: the digest is no protection (anyone can
        //! compute an MD5), so whatever follows the magic must decode to
        //! user records or to `None`, without panicking or allocating more
        //! than the record's size warrants.

        use proptest::prelude::*;

        use super::*;

        /// `message` framed as the KPL frames it, with a correct digest.
        fn framed(message: &[u8]) -> Vec<u8> {
            let mut blob = KPL_MAGIC.to_vec();
            blob.extend_from_slice(message);
            blob.extend_from_slice(&Md5::digest(message));
            blob
        }

        fn entry() -> impl Strategy<Value = AggregatedEntry> {
            (
                0u64..6,
                prop::option::of(0u64..4),
                prop::collection::vec(any::<u8>(), 0..32),
                prop::collection::vec(
                    (".{0,8}", prop::option::of(".{0,8}"))
                        .prop_map(|(key, value)| Tag { key, value }),
                    0..2,
                ),
            )
                .prop_map(
                    |(partition_key_index, explicit_hash_key_index, data, tags)| AggregatedEntry {
                        partition_key_index,
                        explicit_hash_key_index,
                        data,
                        tags,
                    },
                )
        }

        fn aggregate_record() -> impl Strategy<Value = AggregatedRecord> {
            (
                prop::collection::vec(".{0,300}", 0..5),
                prop::collection::vec("[0-9]{1,39}", 0..3),
                prop::collection::vec(entry(), 0..12),
            )
                .prop_map(|(partition_key_table, explicit_hash_key_table, records)| {
                    AggregatedRecord {
                        partition_key_table,
                        explicit_hash_key_table,
                        records,
                    }
                })
        }

        fn is_valid(aggregate: &AggregatedRecord) -> bool {
            let fits = |key: &String| key.chars().count() <= MAX_KEY_CHARS;
            aggregate.partition_key_table.iter().all(fits)
                && aggregate.explicit_hash_key_table.iter().all(fits)
                && aggregate.records.iter().all(|entry| {
                    (entry.partition_key_index as usize) < aggregate.partition_key_table.len()
                        && entry
                            .explicit_hash_key_index
                            .is_none_or(|i| (i as usize) < aggregate.explicit_hash_key_table.len())
                })
        }

        proptest! {
            #[test]
            fn any_aggregate_gives_its_user_records_or_none(aggregate in aggregate_record()) {
                let users = deaggregate(&framed(&aggregate.encode_to_vec()));
                prop_assert_eq!(users.is_some(), is_valid(&aggregate));
                let Some(users) = users else { return Ok(()) };
                prop_assert_eq!(users.len(), aggregate.records.len());
                for (index, (user, entry)) in users.iter().zip(&aggregate.records).enumerate() {
                    prop_assert_eq!(user.sub_sequence_number, index as u64);
                    prop_assert_eq!(&user.data, &entry.data);
                    prop_assert_eq!(
                        &user.partition_key,
                        &aggregate.partition_key_table[entry.partition_key_index as usize]
                    );
                    prop_assert_eq!(
                        user.explicit_hash_key.as_ref(),
                        entry
                            .explicit_hash_key_index
                            .map(|i| &aggregate.explicit_hash_key_table[i as usize])
                    );
                }
            }

            #[test]
            fn damaged_aggregates_give_user_records_or_none(
                aggregate in aggregate_record(),
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
                cut in any::<prop::sample::Index>(),
            ) {
                let mut message = aggregate.encode_to_vec();
                if !message.is_empty() {
                    for (at, byte) in &flips {
                        let at = at.index(message.len());
                        message[at] = *byte;
                    }
                    message.truncate(cut.index(message.len() + 1));
                }
                let _ = deaggregate(&framed(&message));
            }
        }

        #[test]
        fn one_long_key_shared_by_many_entries_is_not_an_aggregate() {
            // A 64 KiB key and 20 000 empty entries pointing at it: 100 KiB
            // on the wire that used to become 1.3 GB of copied keys.
            let message = AggregatedRecord {
                partition_key_table: vec!["k".repeat(64 * 1024)],
                explicit_hash_key_table: vec![],
                records: vec![AggregatedEntry::default(); 20_000],
            }
            .encode_to_vec();
            assert!(message.len() < 110 * 1024);
            assert!(deaggregate(&framed(&message)).is_none());
        }

        #[test]
        fn keys_of_256_characters_are_accepted() {
            let key = "é".repeat(MAX_KEY_CHARS);
            let blob = aggregate([(key.as_str(), &b"x"[..])]);
            assert_eq!(deaggregate(&blob).unwrap()[0].partition_key, key);
        }
    }
}
