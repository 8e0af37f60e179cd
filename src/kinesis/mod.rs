//! Blocking, typed Kinesis Data Streams operations.

pub mod aggregation;
mod page;
mod types;

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use page::GetRecordsPage;
pub(crate) use types::PutRecordsResult;
use types::PutRecordsResults;
pub use types::{
    ChildShard, GetRecordsOutput, HashKeyRange, IteratorPosition, PutRecordsEntry,
    PutRecordsOutput, PutRecordsResultEntry, Record, SequenceNumberRange, Shard, ShardFilter,
    ShardFilterType, StreamRef, StreamSummary,
};

use crate::error::{Error, ErrorCode, Result};
use crate::transport::{AwsConfig, JsonClient, RetryPolicy, Service};

/// Most records one GetRecords call returns.
pub const MAX_GET_RECORDS_LIMIT: u32 = 10_000;
/// Most records one PutRecords call accepts.
pub const MAX_PUT_RECORDS: usize = 500;

/// A Kinesis client. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct KinesisClient {
    client: JsonClient,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct StreamRequest<'a> {
    #[serde(flatten)]
    stream: &'a StreamRef,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListShardsRequest<'a> {
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    stream: Option<&'a StreamRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_filter: Option<&'a ShardFilter>,
    max_results: u32,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ListShardsOutput {
    shards: Vec<Shard>,
    next_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetShardIteratorRequest<'a> {
    #[serde(flatten)]
    stream: &'a StreamRef,
    shard_id: &'a str,
    shard_iterator_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    starting_sequence_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetShardIteratorOutput {
    shard_iterator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetRecordsRequest<'a> {
    shard_iterator: &'a str,
    limit: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsRequest<'a> {
    #[serde(flatten)]
    stream: &'a StreamRef,
    records: &'a [PutRecordsEntry],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateStreamRequest<'a> {
    stream_name: &'a str,
    shard_count: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SplitShardRequest<'a> {
    #[serde(flatten)]
    stream: &'a StreamRef,
    shard_to_split: &'a str,
    new_starting_hash_key: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MergeShardsRequest<'a> {
    #[serde(flatten)]
    stream: &'a StreamRef,
    shard_to_merge: &'a str,
    adjacent_shard_to_merge: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeStreamSummaryOutput {
    stream_description_summary: StreamSummary,
}

/// Outputs of operations that return nothing.
#[derive(Deserialize)]
struct Empty {}

impl KinesisClient {
    /// A client for the Kinesis endpoint `config` resolves.
    pub fn new(config: &AwsConfig) -> Result<KinesisClient> {
        Ok(KinesisClient {
            client: JsonClient::new(config, Service::Kinesis)?,
        })
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        self.client.endpoint()
    }

    /// One ListShards page. Pass the previous page's token to continue (the
    /// stream is then omitted, as the API requires).
    pub fn list_shards_page(
        &self,
        stream: &StreamRef,
        filter: Option<&ShardFilter>,
        next_token: Option<&str>,
    ) -> Result<(Vec<Shard>, Option<String>)> {
        let request = ListShardsRequest {
            stream: next_token.is_none().then_some(stream),
            next_token,
            shard_filter: next_token.is_none().then_some(filter).flatten(),
            max_results: 1000,
        };
        let output: ListShardsOutput = self.client.call("ListShards", &request)?;
        Ok((output.shards, output.next_token))
    }

    /// Every shard of the stream, following NextToken across pages.
    pub fn list_shards(
        &self,
        stream: &StreamRef,
        filter: Option<&ShardFilter>,
    ) -> Result<Vec<Shard>> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let (page, next) = self.list_shards_page(stream, filter, token.as_deref())?;
            shards.extend(page);
            match next {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(shards),
            }
        }
    }

    /// The stream's status, ARN, retention and open shard count.
    pub fn describe_stream_summary(&self, stream: &StreamRef) -> Result<StreamSummary> {
        let output: DescribeStreamSummaryOutput = self
            .client
            .call("DescribeStreamSummary", &StreamRequest { stream })?;
        Ok(output.stream_description_summary)
    }

    /// A shard iterator starting at `position`.
    pub fn get_shard_iterator(
        &self,
        stream: &StreamRef,
        shard_id: &str,
        position: &IteratorPosition,
    ) -> Result<String> {
        let (kind, sequence, timestamp) = match position {
            IteratorPosition::TrimHorizon => ("TRIM_HORIZON", None, None),
            IteratorPosition::Latest => ("LATEST", None, None),
            IteratorPosition::AtTimestamp(time) => {
                ("AT_TIMESTAMP", None, Some(types::epoch_seconds(*time)))
            }
            IteratorPosition::AtSequenceNumber(seq) => {
                ("AT_SEQUENCE_NUMBER", Some(seq.as_str()), None)
            }
            IteratorPosition::AfterSequenceNumber(seq) => {
                ("AFTER_SEQUENCE_NUMBER", Some(seq.as_str()), None)
            }
        };
        let request = GetShardIteratorRequest {
            stream,
            shard_id,
            shard_iterator_type: kind,
            starting_sequence_number: sequence,
            timestamp,
        };
        let output: GetShardIteratorOutput = self.client.call("GetShardIterator", &request)?;
        Ok(output.shard_iterator)
    }

    /// Up to `limit` records (1..=10 000) from `shard_iterator`, retried as
    /// the client's policy allows.
    pub fn get_records(&self, shard_iterator: &str, limit: u32) -> Result<GetRecordsOutput> {
        let request = get_records_request(shard_iterator, limit)?;
        let mut records = Vec::new();
        let page = self.client.call_decoding(
            "GetRecords",
            &request,
            &self.client.retry_policy(),
            |body| {
                records.clear(); // what a failed attempt decoded
                page::decode_page(body, &mut |record| {
                    records.push(record);
                    ControlFlow::Continue(())
                })
            },
        )?;
        Ok(GetRecordsOutput { records, page })
    }

    /// One GetRecords attempt that hands each record to `on_record` as soon
    /// as it is decoded; `on_record` breaks to skip the rest of the page.
    /// Never retried: records already handed over cannot be taken back, so
    /// a failure (even a body that turns out malformed after some records)
    /// is the caller's to resume, e.g. after its last accepted record.
    pub fn get_records_each(
        &self,
        shard_iterator: &str,
        limit: u32,
        mut on_record: impl FnMut(Record) -> ControlFlow<()>,
    ) -> Result<GetRecordsPage> {
        self.client.call_decoding(
            "GetRecords",
            &get_records_request(shard_iterator, limit)?,
            &RetryPolicy::no_retries(),
            |body| page::decode_page(body, &mut on_record),
        )
    }

    /// Writes up to 500 records in one call. Entries can fail individually
    /// (see `failed_record_count`); [`KinesisClient::put_records_all`] retries those.
    pub fn put_records(
        &self,
        stream: &StreamRef,
        records: &[PutRecordsEntry],
    ) -> Result<PutRecordsOutput> {
        self.put_records_with(stream, records, |results| {
            let records: Vec<PutRecordsResultEntry> =
                results.iter().map(PutRecordsResult::to_owned).collect();
            PutRecordsOutput {
                failed_record_count: records.iter().filter(|r| r.error_code.is_some()).count()
                    as u32,
                records,
            }
        })
    }

    /// PutRecords, with the entries' outcomes handed to `summarise` borrowed
    /// from the response rather than copied out of it.
    pub(crate) fn put_records_with<T>(
        &self,
        stream: &StreamRef,
        records: &[PutRecordsEntry],
        mut summarise: impl FnMut(&[PutRecordsResult<'_>]) -> T,
    ) -> Result<T> {
        if records.is_empty() || records.len() > MAX_PUT_RECORDS {
            return Err(Error::Config(format!(
                "PutRecords takes 1 to {MAX_PUT_RECORDS} records, got {}",
                records.len()
            )));
        }
        self.client.call_decoding(
            "PutRecords",
            &PutRecordsRequest { stream, records },
            &self.client.retry_policy(),
            |body| {
                let results: PutRecordsResults<'_> = serde_json::from_slice(body)?;
                Ok(summarise(&results.records))
            },
        )
    }

    /// Writes every record, in batches of 500, resubmitting entries that
    /// failed (throttled) with backoff. Returns each record's sequence number
    /// in input order.
    pub fn put_records_all(
        &self,
        stream: &StreamRef,
        records: &[PutRecordsEntry],
    ) -> Result<Vec<String>> {
        let retry = self.client.retry_policy();
        let mut sequence_numbers = vec![String::new(); records.len()];
        for (chunk_index, chunk) in records.chunks(MAX_PUT_RECORDS).enumerate() {
            let offset = chunk_index * MAX_PUT_RECORDS;
            let mut pending: Vec<usize> = (0..chunk.len()).collect();
            let mut round = 0;
            while !pending.is_empty() {
                let batch: Vec<PutRecordsEntry> =
                    pending.iter().map(|&i| chunk[i].clone()).collect();
                let output = self.put_records(stream, &batch)?;
                let mut still_failing = Vec::new();
                let mut last_error = None;
                for (position, &index) in pending.iter().enumerate() {
                    match output.records.get(position) {
                        Some(PutRecordsResultEntry {
                            sequence_number: Some(seq),
                            error_code: None,
                            ..
                        }) => sequence_numbers[offset + index] = seq.clone(),
                        entry => {
                            last_error = entry.and_then(|e| e.error_code.clone());
                            still_failing.push(index);
                        }
                    }
                }
                pending = still_failing;
                if pending.is_empty() {
                    break;
                }
                round += 1;
                if round >= retry.max_attempts {
                    return Err(Error::Service {
                        operation: "PutRecords",
                        code: ErrorCode::parse(last_error.as_deref().unwrap_or("InternalFailure")),
                        status: 200,
                        message: format!(
                            "{} records still failing after {round} attempts",
                            pending.len()
                        ),
                    });
                }
                std::thread::sleep(retry.backoff(round - 1));
            }
        }
        Ok(sequence_numbers)
    }

    /// Creates a provisioned stream with `shard_count` shards.
    pub fn create_stream(&self, name: &str, shard_count: u32) -> Result<()> {
        let request = CreateStreamRequest {
            stream_name: name,
            shard_count,
        };
        self.client
            .call::<_, Empty>("CreateStream", &request)
            .map(drop)
    }

    /// Deletes a stream.
    pub fn delete_stream(&self, stream: &StreamRef) -> Result<()> {
        self.client
            .call::<_, Empty>("DeleteStream", &StreamRequest { stream })
            .map(drop)
    }

    /// Splits `shard_id` at `new_starting_hash_key` into two children.
    pub fn split_shard(
        &self,
        stream: &StreamRef,
        shard_id: &str,
        new_starting_hash_key: &str,
    ) -> Result<()> {
        let request = SplitShardRequest {
            stream,
            shard_to_split: shard_id,
            new_starting_hash_key,
        };
        self.client
            .call::<_, Empty>("SplitShard", &request)
            .map(drop)
    }

    /// Merges two adjacent shards into one child.
    pub fn merge_shards(
        &self,
        stream: &StreamRef,
        shard_id: &str,
        adjacent_shard_id: &str,
    ) -> Result<()> {
        let request = MergeShardsRequest {
            stream,
            shard_to_merge: shard_id,
            adjacent_shard_to_merge: adjacent_shard_id,
        };
        self.client
            .call::<_, Empty>("MergeShards", &request)
            .map(drop)
    }

    /// Polls DescribeStreamSummary until the stream is ACTIVE, for at most
    /// `timeout`.
    pub fn wait_for_stream_active(
        &self,
        stream: &StreamRef,
        timeout: Duration,
    ) -> Result<StreamSummary> {
        let deadline = Instant::now() + timeout;
        loop {
            let summary = self.describe_stream_summary(stream)?;
            if summary.stream_status == "ACTIVE" {
                return Ok(summary);
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "stream {stream} still {} after {timeout:?}",
                    summary.stream_status
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn get_records_request(shard_iterator: &str, limit: u32) -> Result<GetRecordsRequest<'_>> {
    if !(1..=MAX_GET_RECORDS_LIMIT).contains(&limit) {
        return Err(Error::Config(format!(
            "GetRecords limit must be 1 to {MAX_GET_RECORDS_LIMIT}, got {limit}"
        )));
    }
    Ok(GetRecordsRequest {
        shard_iterator,
        limit,
    })
}
