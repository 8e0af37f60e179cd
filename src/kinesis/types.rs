//! Request and response shapes of the Kinesis Data Streams JSON API.
//! Responses tolerate absent optional fields; requests send only what is set.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::page::GetRecordsPage;

/// A stream named by name or by ARN (anything starting with `arn:`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub enum StreamRef {
    /// `StreamName` in requests.
    #[serde(rename = "StreamName")]
    Name(String),
    /// `StreamARN` in requests.
    #[serde(rename = "StreamARN")]
    Arn(String),
}

impl StreamRef {
    /// The name or ARN as given.
    pub fn as_str(&self) -> &str {
        match self {
            StreamRef::Name(s) | StreamRef::Arn(s) => s,
        }
    }

    /// The stream name (the last ARN segment for an ARN).
    pub fn name(&self) -> &str {
        match self {
            StreamRef::Name(name) => name,
            StreamRef::Arn(arn) => arn.rsplit('/').next().unwrap_or(arn),
        }
    }
}

impl From<&str> for StreamRef {
    fn from(stream: &str) -> Self {
        if stream.starts_with("arn:") {
            StreamRef::Arn(stream.to_owned())
        } else {
            StreamRef::Name(stream.to_owned())
        }
    }
}

impl From<String> for StreamRef {
    fn from(stream: String) -> Self {
        StreamRef::from(stream.as_str())
    }
}

impl From<&String> for StreamRef {
    fn from(stream: &String) -> Self {
        StreamRef::from(stream.as_str())
    }
}

impl std::fmt::Display for StreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a new shard iterator starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IteratorPosition {
    /// The oldest record still retained.
    TrimHorizon,
    /// Just after the newest record.
    Latest,
    /// The first record at or after this arrival time.
    AtTimestamp(SystemTime),
    /// The record with this sequence number.
    AtSequenceNumber(String),
    /// The record after this sequence number.
    AfterSequenceNumber(String),
}

/// A shard's hash key range (decimal strings of 128-bit values).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HashKeyRange {
    pub starting_hash_key: String,
    pub ending_hash_key: String,
}

/// A shard's sequence number range; `ending` is set once the shard is closed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct SequenceNumberRange {
    pub starting_sequence_number: String,
    pub ending_sequence_number: Option<String>,
}

/// A shard as ListShards describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Shard {
    pub shard_id: String,
    pub parent_shard_id: Option<String>,
    pub adjacent_parent_shard_id: Option<String>,
    pub hash_key_range: HashKeyRange,
    pub sequence_number_range: SequenceNumberRange,
}

impl Shard {
    /// Whether the shard was closed by a split or merge.
    pub fn is_closed(&self) -> bool {
        self.sequence_number_range.ending_sequence_number.is_some()
    }

    /// The parents this shard was made from (none, one or two).
    pub fn parents(&self) -> impl Iterator<Item = &str> {
        self.parent_shard_id
            .iter()
            .chain(self.adjacent_parent_shard_id.iter())
            .map(String::as_str)
    }
}

/// Which shards ListShards returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ShardFilter {
    #[serde(rename = "Type")]
    pub filter_type: ShardFilterType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_id: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_epoch_seconds"
    )]
    pub timestamp: Option<SystemTime>,
}

/// ListShards filter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShardFilterType {
    AfterShardId,
    AtTrimHorizon,
    FromTrimHorizon,
    AtLatest,
    AtTimestamp,
    FromTimestamp,
}

/// Stream summary fields kcheck uses.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct StreamSummary {
    pub stream_name: String,
    #[serde(rename = "StreamARN")]
    pub stream_arn: String,
    pub stream_status: String,
    pub retention_period_hours: u32,
    pub open_shard_count: u32,
    pub encryption_type: Option<String>,
}

/// A record as GetRecords returns it (plain; KPL aggregates not yet split).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Record {
    pub sequence_number: String,
    #[serde(deserialize_with = "deserialize_base64")]
    pub data: Vec<u8>,
    pub partition_key: String,
    #[serde(default, deserialize_with = "deserialize_epoch_seconds")]
    pub approximate_arrival_timestamp: Option<SystemTime>,
    #[serde(default)]
    pub explicit_hash_key: Option<String>,
}

/// A child shard announced at a closed shard's end.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ChildShard {
    pub shard_id: String,
    pub parent_shards: Vec<String>,
    pub hash_key_range: HashKeyRange,
}

/// One GetRecords page, its records collected.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetRecordsOutput {
    pub records: Vec<Record>,
    /// The page's other fields: next iterator, lag, child shards.
    pub page: GetRecordsPage,
}

/// One record for PutRecords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutRecordsEntry {
    #[serde(serialize_with = "serialize_base64")]
    pub data: Vec<u8>,
    pub partition_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explicit_hash_key: Option<String>,
}

impl PutRecordsEntry {
    /// A record routed by its partition key.
    pub fn new(partition_key: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        PutRecordsEntry {
            data: data.into(),
            partition_key: partition_key.into(),
            explicit_hash_key: None,
        }
    }
}

/// The outcome of one PutRecords entry, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct PutRecordsResultEntry {
    pub sequence_number: Option<String>,
    pub shard_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// The outcome of one PutRecords entry, borrowed from the response body: a
/// producer reads 500 of them per call and keeps none of their text.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct PutRecordsResult<'a> {
    #[serde(borrow)]
    pub sequence_number: Option<Text<'a>>,
    #[serde(borrow)]
    pub shard_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub error_code: Option<Text<'a>>,
    #[serde(borrow)]
    pub error_message: Option<Text<'a>>,
}

impl PutRecordsResult<'_> {
    pub(crate) fn to_owned(&self) -> PutRecordsResultEntry {
        let owned = |text: &Option<Text<'_>>| text.as_ref().map(|t| t.0.clone().into_owned());
        PutRecordsResultEntry {
            sequence_number: owned(&self.sequence_number),
            shard_id: owned(&self.shard_id),
            error_code: owned(&self.error_code),
            error_message: owned(&self.error_message),
        }
    }
}

/// A JSON string borrowed from the body, or copied where it had escapes.
/// (serde's own `Option<Cow<str>>` always copies.)
#[derive(Debug, Default)]
pub(crate) struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Decodes a PutRecords response's entries without copying their text.
#[derive(Deserialize)]
pub(crate) struct PutRecordsResults<'a> {
    #[serde(borrow, rename = "Records", default)]
    pub records: Vec<PutRecordsResult<'a>>,
}

/// PutRecords output.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct PutRecordsOutput {
    pub failed_record_count: u32,
    pub records: Vec<PutRecordsResultEntry>,
}

/// Decodes straight from the JSON text: no intermediate String per record,
/// and no UTF-8 check of text that base64 decoding checks anyway.
fn deserialize_base64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    struct Base64;
    impl serde::de::Visitor<'_> for Base64 {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a base64 string")
        }
        fn visit_bytes<E: serde::de::Error>(self, encoded: &[u8]) -> Result<Vec<u8>, E> {
            base64_simd::STANDARD
                .decode_to_vec(encoded)
                .map_err(|_| E::custom("Data is not valid base64"))
        }
        fn visit_str<E: serde::de::Error>(self, encoded: &str) -> Result<Vec<u8>, E> {
            self.visit_bytes(encoded.as_bytes())
        }
    }
    deserializer.deserialize_bytes(Base64)
}

fn serialize_base64<S: Serializer>(data: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&base64_simd::STANDARD.encode_to_string(data))
}

/// Kinesis sends timestamps as epoch seconds with a fraction. A time the
/// clock cannot hold is an error: converting it would panic.
fn deserialize_epoch_seconds<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SystemTime>, D::Error> {
    let Some(seconds) = Option::<f64>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Ok(None);
    }
    Duration::try_from_secs_f64(seconds)
        .ok()
        .and_then(|since_epoch| UNIX_EPOCH.checked_add(since_epoch))
        .map(Some)
        .ok_or_else(|| {
            serde::de::Error::custom(format_args!(
                "ApproximateArrivalTimestamp {seconds:e} is out of range"
            ))
        })
}

pub(crate) fn epoch_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn serialize_epoch_seconds<S: Serializer>(
    time: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serializer.serialize_f64(epoch_seconds(*time)),
        None => serializer.serialize_none(),
    }
}
