//! GetRecords pages decoded record by record: each record is handed over as
//! soon as it is parsed, so a page of 10 000 records is never held decoded
//! at once and a consumer's memory stays bounded by its queue.

use std::fmt;
use std::ops::ControlFlow;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::types::{ChildShard, Record};

/// What a GetRecords page says besides its records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetRecordsPage {
    /// How many records the page held.
    pub record_count: usize,
    /// Absent once a closed shard has been read to its end.
    pub next_shard_iterator: Option<String>,
    pub millis_behind_latest: Option<u64>,
    /// Announced at a closed shard's end (AWS only; emulators may omit it,
    /// so ListShards stays the source of truth).
    pub child_shards: Option<Vec<ChildShard>>,
}

impl GetRecordsPage {
    /// Whether this page ends a closed shard.
    pub fn is_shard_end(&self) -> bool {
        self.next_shard_iterator.is_none()
    }
}

/// Parses a GetRecords body, handing each record to `on_record` in order.
/// Once `on_record` breaks, the page's remaining records are skipped
/// without being decoded; its other fields are still read.
pub(crate) fn decode_page(
    body: &[u8],
    on_record: &mut impl FnMut(Record) -> ControlFlow<()>,
) -> serde_json::Result<GetRecordsPage> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let page = PageVisitor { on_record }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(page)
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "PascalCase")]
enum Field {
    Records,
    NextShardIterator,
    MillisBehindLatest,
    ChildShards,
    #[serde(other)]
    Other,
}

struct PageVisitor<'f, F> {
    on_record: &'f mut F,
}

impl<'de, F: FnMut(Record) -> ControlFlow<()>> DeserializeSeed<'de> for PageVisitor<'_, F> {
    type Value = GetRecordsPage;

    fn deserialize<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<GetRecordsPage, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, F: FnMut(Record) -> ControlFlow<()>> Visitor<'de> for PageVisitor<'_, F> {
    type Value = GetRecordsPage;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GetRecords response object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GetRecordsPage, A::Error> {
        let mut page = GetRecordsPage::default();
        while let Some(field) = map.next_key()? {
            match field {
                Field::Records => {
                    page.record_count += map.next_value_seed(RecordsVisitor {
                        on_record: &mut *self.on_record,
                    })?
                }
                Field::NextShardIterator => page.next_shard_iterator = map.next_value()?,
                Field::MillisBehindLatest => page.millis_behind_latest = map.next_value()?,
                Field::ChildShards => page.child_shards = map.next_value()?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(page)
    }
}

/// The `Records` array; its value is how many records it held.
struct RecordsVisitor<'f, F> {
    on_record: &'f mut F,
}

impl<'de, F: FnMut(Record) -> ControlFlow<()>> DeserializeSeed<'de> for RecordsVisitor<'_, F> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Record) -> ControlFlow<()>> Visitor<'de> for RecordsVisitor<'_, F> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while let Some(record) = seq.next_element::<Record>()? {
            count += 1;
            if (self.on_record)(record).is_break() {
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    count += 1;
                }
            }
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sequence: &str) -> String {
        format!(r#"{{"SequenceNumber":"{sequence}","Data":"eA==","PartitionKey":"k"}}"#)
    }

    fn decode_all(body: &str) -> serde_json::Result<(Vec<String>, GetRecordsPage)> {
        let mut seen = Vec::new();
        let page = decode_page(body.as_bytes(), &mut |r: Record| {
            seen.push(r.sequence_number);
            ControlFlow::Continue(())
        })?;
        Ok((seen, page))
    }

    #[test]
    fn records_are_handed_over_in_order_whatever_the_field_order() {
        let body = format!(
            r#"{{"NextShardIterator":"next","Records":[{},{}],"MillisBehindLatest":12,"Extra":{{"a":[1]}}}}"#,
            record("1"),
            record("2")
        );
        let (seen, page) = decode_all(&body).unwrap();
        assert_eq!(seen, ["1", "2"]);
        assert_eq!(page.record_count, 2);
        assert_eq!(page.next_shard_iterator.as_deref(), Some("next"));
        assert_eq!(page.millis_behind_latest, Some(12));
        assert!(!page.is_shard_end());
    }

    #[test]
    fn a_page_without_a_next_iterator_ends_the_shard_and_names_children() {
        let body = r#"{"Records":[],"MillisBehindLatest":0,"ChildShards":[{"ShardId":"c","ParentShards":["p"],"HashKeyRange":{"StartingHashKey":"0","EndingHashKey":"9"}}]}"#;
        let (seen, page) = decode_all(body).unwrap();
        assert!(seen.is_empty());
        assert!(page.is_shard_end());
        assert_eq!(page.child_shards.unwrap()[0].parent_shards, ["p"]);
        let (_, page) = decode_all(r#"{"NextShardIterator":null}"#).unwrap();
        assert_eq!(page.record_count, 0);
        assert!(page.is_shard_end());
    }

    #[test]
    fn breaking_skips_the_remaining_records_but_reads_the_rest_of_the_page() {
        let body = format!(
            r#"{{"Records":[{},{},{}],"NextShardIterator":"next"}}"#,
            record("1"),
            record("2"),
            record("3")
        );
        let mut seen = Vec::new();
        let page = decode_page(body.as_bytes(), &mut |r: Record| {
            seen.push(r.sequence_number);
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(seen, ["1"]);
        assert_eq!(page.record_count, 3);
        assert_eq!(page.next_shard_iterator.as_deref(), Some("next"));
    }

    #[test]
    fn malformed_pages_are_errors() {
        for body in [
            "[]".to_owned(),
            r#"{"Records":[{"SequenceNumber":"1"}]}"#.to_owned(),
            format!(r#"{{"Records":[{}]}} trailing"#, record("1")),
            format!(r#"{{"Records":[{}"#, record("1")),
        ] {
            assert!(decode_all(&body).is_err(), "{body}");
        }
    }

    fn decode_records(records: &str) -> serde_json::Result<Vec<Record>> {
        let mut seen = Vec::new();
        decode_page(
            format!(r#"{{"Records":[{records}]}}"#).as_bytes(),
            &mut |r| {
                seen.push(r);
                ControlFlow::Continue(())
            },
        )?;
        Ok(seen)
    }

    #[test]
    fn records_decode_with_data_timestamp_and_optional_fields() {
        let records = decode_records(
            r#"{"SequenceNumber":"49","Data":"aGVsbG8=","PartitionKey":"pk",
                "ApproximateArrivalTimestamp":1700000000.25,"ExplicitHashKey":"7"},
               {"SequenceNumber":"50","Data":"","PartitionKey":"q"}"#,
        )
        .unwrap();
        assert_eq!(records[0].data, b"hello");
        assert_eq!(
            records[0].approximate_arrival_timestamp,
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_250))
        );
        assert_eq!(records[0].explicit_hash_key.as_deref(), Some("7"));
        assert!(records[1].data.is_empty());
        assert_eq!(records[1].approximate_arrival_timestamp, None);
    }

    #[test]
    fn escaped_slashes_in_data_are_decoded() {
        // JSON may escape '/', which base64 uses.
        let records =
            decode_records(r#"{"SequenceNumber":"1","Data":"\/w==","PartitionKey":"k"}"#).unwrap();
        assert_eq!(records[0].data, [0xff]);
    }

    #[test]
    fn data_that_is_not_base64_is_an_error_naming_it() {
        let error = decode_records(r#"{"SequenceNumber":"1","Data":"no!","PartitionKey":"k"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("Data is not valid base64"), "{error}");
        let error = decode_records(r#"{"SequenceNumber":"1","Data":[1],"PartitionKey":"k"}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("a base64 string"), "{error}");
    }
}
