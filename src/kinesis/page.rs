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

    mod hostile {
        //! Hostile GetRecords bodies: whatever arrives, a page or an error
        //! with a message, never a panic or a stack overflow.

        use std::time::{Duration, UNIX_EPOCH};

        use proptest::prelude::*;
        use proptest::sample::Index;
        use serde_json::{json, Value};

        use super::*;

        /// Decodes every record; an error must say something.
        fn decode_bytes(body: &[u8]) -> Result<(Vec<Record>, GetRecordsPage), String> {
            let mut seen = Vec::new();
            match decode_page(body, &mut |r| {
                seen.push(r);
                ControlFlow::Continue(())
            }) {
                Ok(page) => Ok((seen, page)),
                Err(error) => {
                    let message = error.to_string();
                    assert!(!message.is_empty(), "an error without a message");
                    Err(message)
                }
            }
        }

        /// A page of one record that arrived at `seconds` (JSON number text).
        fn arriving_at(seconds: &str) -> Vec<u8> {
            format!(
                r#"{{"Records":[{{"SequenceNumber":"1","Data":"","PartitionKey":"k",
                    "ApproximateArrivalTimestamp":{seconds}}}]}}"#
            )
            .into_bytes()
        }

        fn records() -> impl Strategy<Value = Vec<Record>> {
            let record = (
                "[1-9][0-9]{0,56}",
                prop::collection::vec(any::<u8>(), 0..48),
                ".{1,12}",
                prop::option::of(0u64..4_000_000_000),
                prop::option::of("0|[1-9][0-9]{0,38}"),
            )
                .prop_map(
                    |(sequence_number, data, partition_key, seconds, hash)| Record {
                        sequence_number,
                        data,
                        partition_key,
                        approximate_arrival_timestamp: seconds
                            .map(|s| UNIX_EPOCH + Duration::from_secs(s)),
                        explicit_hash_key: hash,
                    },
                );
            prop::collection::vec(record, 0..8)
        }

        fn record_json(record: &Record) -> Value {
            let mut value = json!({
                "SequenceNumber": record.sequence_number,
                "Data": base64_simd::STANDARD.encode_to_string(&record.data),
                "PartitionKey": record.partition_key,
            });
            if let Some(time) = record.approximate_arrival_timestamp {
                let seconds = time.duration_since(UNIX_EPOCH).unwrap().as_secs();
                value["ApproximateArrivalTimestamp"] = json!(seconds);
            }
            if let Some(hash) = &record.explicit_hash_key {
                value["ExplicitHashKey"] = json!(hash);
            }
            value
        }

        fn page_json(records: &[Record], next: Option<&str>, lag: u64) -> Vec<u8> {
            let records: Vec<Value> = records.iter().map(record_json).collect();
            serde_json::to_vec(&json!({
                "Records": records,
                "NextShardIterator": next,
                "MillisBehindLatest": lag,
            }))
            .unwrap()
        }

        /// Any JSON value, nested a little.
        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                ".{0,20}".prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                    prop::collection::hash_map("[A-Za-z]{1,20}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// Bytes that break JSON in interesting places.
        const SNIPPETS: &[&str] = &[
            "1e999999",
            "-1",
            "18446744073709551616",
            "99999999999999999999999999999999999999999",
            "1.7976931348623157e309",
            "\"\\ud800\"",
            "\"\\u0000\"",
            "\\",
            "\"",
            "[",
            "]",
            "{",
            "}",
            ",",
            ":",
            "null",
            "\u{0}",
            "\u{feff}",
            "\"Records\":",
            "\"Data\":\"!!\"",
        ];

        #[derive(Debug, Clone)]
        enum Mutation {
            Replace(Index, u8),
            Insert(Index, &'static str),
            Remove(Index),
            Truncate(Index),
        }

        fn mutation() -> impl Strategy<Value = Mutation> {
            prop_oneof![
                (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
                (any::<Index>(), prop::sample::select(SNIPPETS))
                    .prop_map(|(i, s)| Mutation::Insert(i, s)),
                any::<Index>().prop_map(Mutation::Remove),
                any::<Index>().prop_map(Mutation::Truncate),
            ]
        }

        fn mutate(body: &mut Vec<u8>, mutation: &Mutation) {
            if body.is_empty() {
                return;
            }
            match mutation {
                Mutation::Replace(i, byte) => {
                    let i = i.index(body.len());
                    body[i] = *byte;
                }
                Mutation::Insert(i, text) => {
                    let i = i.index(body.len());
                    body.splice(i..i, text.bytes());
                }
                Mutation::Remove(i) => {
                    body.remove(i.index(body.len()));
                }
                Mutation::Truncate(i) => body.truncate(i.index(body.len())),
            }
        }

        proptest! {
            #[test]
            fn random_bytes_are_a_page_or_an_error(
                body in prop::collection::vec(any::<u8>(), 0..512),
            ) {
                let _ = decode_bytes(&body);
            }

            #[test]
            fn valid_pages_hand_over_every_record(
                records in records(),
                next in prop::option::of("[A-Za-z0-9+/=]{1,64}"),
                lag in any::<u64>(),
            ) {
                let body = page_json(&records, next.as_deref(), lag);
                let (seen, page) = decode_bytes(&body).unwrap();
                prop_assert_eq!(page.record_count, records.len());
                prop_assert_eq!(seen, records);
                prop_assert_eq!(page.next_shard_iterator, next);
                prop_assert_eq!(page.millis_behind_latest, Some(lag));
            }

            #[test]
            fn mutated_and_truncated_pages_are_a_page_or_an_error(
                records in records(),
                mutations in prop::collection::vec(mutation(), 1..6),
            ) {
                let mut body = page_json(&records, Some("next"), 0);
                for m in &mutations {
                    mutate(&mut body, m);
                }
                let _ = decode_bytes(&body);
            }

            #[test]
            fn any_value_in_any_field_is_a_page_or_an_error(
                records in records(),
                field in prop::sample::select(&[
                    "Records", "NextShardIterator", "MillisBehindLatest", "ChildShards", "Unknown",
                ][..]),
                record_field in prop::sample::select(&[
                    "SequenceNumber", "Data", "PartitionKey", "ApproximateArrivalTimestamp",
                    "ExplicitHashKey", "EncryptionType",
                ][..]),
                value in any_json(),
            ) {
                let valid: Value =
                    serde_json::from_slice(&page_json(&records, Some("n"), 1)).unwrap();
                let mut page = valid.clone();
                page[field] = value.clone();
                let _ = decode_bytes(&serde_json::to_vec(&page).unwrap());

                let mut page = valid;
                if let Some(first) = page["Records"].get_mut(0) {
                    first[record_field] = value;
                }
                let _ = decode_bytes(&serde_json::to_vec(&page).unwrap());
            }

            #[test]
            fn huge_and_odd_numbers_are_read_or_refused(
                digits in "-?(0|[1-9][0-9]{0,400})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,6})?",
            ) {
                let lag = format!(r#"{{"MillisBehindLatest":{digits}}}"#);
                match (decode_bytes(lag.as_bytes()), digits.parse::<u64>()) {
                    (Ok((_, page)), Ok(expected)) => {
                        prop_assert_eq!(page.millis_behind_latest, Some(expected))
                    }
                    (Err(_), Err(_)) => {}
                    (outcome, parsed) => {
                        prop_assert!(false, "{digits}: {outcome:?} but {parsed:?}")
                    }
                }
                let _ = decode_bytes(&arriving_at(&digits));
            }

            #[test]
            fn any_arrival_time_is_a_time_or_an_error(
                seconds in any::<f64>().prop_filter("JSON has no NaN", |s| s.is_finite()),
            ) {
                match decode_bytes(&arriving_at(&format!("{seconds:e}"))) {
                    Ok((records, _)) if seconds >= 0.0 => {
                        let time = records[0].approximate_arrival_timestamp.unwrap();
                        prop_assert!(time.duration_since(UNIX_EPOCH).is_ok());
                    }
                    Ok((records, _)) => {
                        prop_assert_eq!(records[0].approximate_arrival_timestamp, None)
                    }
                    Err(message) => prop_assert!(message.contains("out of range"), "{message}"),
                }
            }

            #[test]
            fn deep_nesting_is_refused_without_overflowing_the_stack(
                depth in 0usize..20_000,
                open in prop::sample::select(&["[", "{\"a\":"][..]),
                field in prop::sample::select(
                    &["Unknown", "Records", "ChildShards", "NextShardIterator"][..]
                ),
            ) {
                let close = if open == "[" { "]" } else { "}" };
                let body = format!(
                    r#"{{"{field}":{}1{}}}"#,
                    open.repeat(depth),
                    close.repeat(depth)
                );
                let outcome = decode_bytes(body.as_bytes());
                // serde_json skips unknown fields without recursing, so
                // only typed fields meet its depth limit.
                if depth > 200 && field != "Unknown" {
                    prop_assert!(outcome.is_err(), "depth {depth} accepted");
                }
            }
        }

        #[test]
        fn an_arrival_time_beyond_the_clock_is_an_error_not_a_panic() {
            // Found by `any_arrival_time_is_a_time_or_an_error`: 1e20 seconds
            // overflowed `Duration::from_secs_f64` and panicked.
            for seconds in ["1e20", "1.8446744073709552e19", "9.3e18"] {
                let message = decode_bytes(&arriving_at(seconds)).unwrap_err();
                assert!(message.contains("ApproximateArrivalTimestamp"), "{message}");
            }
        }
    }
}
