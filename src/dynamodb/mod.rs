//! Blocking, typed DynamoDB operations over the JSON 1.0 protocol: the table,
//! item, query, batch and transaction calls kcheck's leases and checkpoints
//! are built on, plus pagination, batch-resubmission and table-wait helpers.
//!
//! Every call goes through the shared JSON-protocol client (signing, retries of
//! throttling and 5xx, AWS error parsing). The writes that can be rejected by
//! a condition (`PutItem`, `UpdateItem`, `DeleteItem`, `TransactWriteItems`)
//! fail with a [`WriteError`], which adds what DynamoDB sends with such a
//! rejection: the current item (`ALL_OLD`) and the per-action
//! cancellation reasons.

mod attribute;
mod model;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use attribute::{item, AttributeValue, Item};
pub use model::{
    AttributeDefinition, BatchWriteItemOutput, BatchWriteItemRequest, BillingMode,
    BillingModeSummary, CancellationReason, ConditionCheck, ConsumedCapacity, CreateTableOutput,
    CreateTableRequest, DeleteItemOutput, DeleteItemRequest, DeleteTableOutput, DeleteTableRequest,
    DescribeTableOutput, DescribeTableRequest, DescribeTimeToLiveOutput, DescribeTimeToLiveRequest,
    Expressions, GetItemOutput, GetItemRequest, ItemsPage, KeySchemaElement, KeyType,
    ProvisionedThroughput, PutItemOutput, PutItemRequest, QueryOutput, QueryRequest, ReturnValues,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, ScanOutput, ScanRequest,
    TableDescription, TableDescriptionOutput, TableRequest, TableStatus, TimeToLiveDescription,
    TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, TransactWriteItemsOutput,
    TransactWriteItemsRequest, UpdateItemOutput, UpdateItemRequest, UpdateTimeToLiveOutput,
    UpdateTimeToLiveRequest, WriteItemOutput, WriteRequest,
};

use crate::error::{Error, ErrorCode, Result};
use crate::transport::{AwsConfig, JsonClient, RetryPolicy, Service};

/// Most writes one `BatchWriteItem` call accepts.
pub const MAX_BATCH_WRITE: usize = 25;

/// Longest pause between two polls of [`DynamoDbClient::wait_for_table_active`].
const MAX_TABLE_POLL: Duration = Duration::from_millis(500);

/// A DynamoDB client. Cheap to clone; clones share connections.
#[derive(Clone, Debug)]
pub struct DynamoDbClient {
    client: JsonClient,
    retry: RetryPolicy,
}

/// A failed conditional write: the error, plus what DynamoDB sent along with
/// a rejected condition or a cancelled transaction.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct WriteError {
    /// The error as the rest of kcheck sees it; `ConditionalCheckFailed` and
    /// `TransactionCanceled` are [`Error::Service`] codes.
    pub error: Error,
    /// For `ConditionalCheckFailed` with `ReturnValuesOnConditionCheckFailure`
    /// `ALL_OLD`: the item as it is now (`None` if there is no such item or
    /// it was not asked for).
    pub current_item: Option<Box<Item>>,
    /// For `TransactionCanceled`: one reason per action, in request order.
    pub cancellation_reasons: Vec<CancellationReason>,
}

impl WriteError {
    /// The AWS error code, when the service returned one.
    pub fn code(&self) -> Option<&ErrorCode> {
        self.error.code()
    }

    /// Whether the write's condition did not hold.
    pub fn is_condition_failed(&self) -> bool {
        self.code() == Some(&ErrorCode::ConditionalCheckFailed)
    }

    /// Whether a transaction was cancelled (see `cancellation_reasons`).
    pub fn is_transaction_canceled(&self) -> bool {
        self.code() == Some(&ErrorCode::TransactionCanceled)
    }

    /// The current item sent with a failed condition, if any.
    pub fn current_item(&self) -> Option<&Item> {
        self.current_item.as_deref()
    }

    /// Reads `Item` and `CancellationReasons` from an error body; a body
    /// without them (or with malformed ones) just adds nothing.
    fn with_details(error: Error, body: &[u8]) -> WriteError {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "PascalCase", default)]
        struct Details {
            item: Option<Item>,
            cancellation_reasons: Vec<CancellationReason>,
        }
        let details = serde_json::from_slice::<Details>(body).unwrap_or_else(|e| {
            log::warn!("ignoring unreadable details of \"{error}\": {e}");
            Details::default()
        });
        WriteError {
            error,
            current_item: details.item.map(Box::new),
            cancellation_reasons: details.cancellation_reasons,
        }
    }
}

impl From<Error> for WriteError {
    fn from(error: Error) -> Self {
        WriteError {
            error,
            current_item: None,
            cancellation_reasons: Vec::new(),
        }
    }
}

impl From<WriteError> for Error {
    fn from(error: WriteError) -> Self {
        error.error
    }
}

/// Declares operations that map one request type to one output type.
macro_rules! operations {
    ($via:ident -> $error:ty { $($(#[$doc:meta])* $method:ident($op:literal, $req:ty) -> $out:ty;)* }) => {$(
        $(#[$doc])*
        pub fn $method(&self, request: &$req) -> Result<$out, $error> {
            self.$via($op, request)
        }
    )*};
}

impl DynamoDbClient {
    /// A client for the DynamoDB endpoint `config` resolves.
    pub fn new(config: &AwsConfig) -> Result<Self> {
        Ok(DynamoDbClient {
            client: JsonClient::new(config, Service::DynamoDb)?,
            retry: config.retry_policy(),
        })
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        self.client.endpoint()
    }

    operations!(call -> Error {
        /// `CreateTable`; `ResourceInUse` if the table exists.
        create_table("CreateTable", CreateTableRequest) -> CreateTableOutput;
        /// `DescribeTable`; `ResourceNotFound` if there is no such table.
        describe_table("DescribeTable", DescribeTableRequest) -> DescribeTableOutput;
        /// `DeleteTable`.
        delete_table("DeleteTable", DeleteTableRequest) -> DeleteTableOutput;
        /// `UpdateTimeToLive`.
        update_time_to_live("UpdateTimeToLive", UpdateTimeToLiveRequest) -> UpdateTimeToLiveOutput;
        /// `DescribeTimeToLive`.
        describe_time_to_live("DescribeTimeToLive", DescribeTimeToLiveRequest) -> DescribeTimeToLiveOutput;
        /// `GetItem`.
        get_item("GetItem", GetItemRequest) -> GetItemOutput;
        /// `Query`: one page; see [`query_all`](Self::query_all).
        query("Query", QueryRequest) -> QueryOutput;
        /// `Scan`: one page; see [`scan_all`](Self::scan_all).
        scan("Scan", ScanRequest) -> ScanOutput;
        /// `BatchWriteItem`: one call of at most 25 writes, which may leave
        /// `UnprocessedItems`; see [`batch_write_all`](Self::batch_write_all).
        batch_write_item("BatchWriteItem", BatchWriteItemRequest) -> BatchWriteItemOutput;
    });

    operations!(write -> WriteError {
        /// `PutItem`.
        put_item("PutItem", PutItemRequest) -> PutItemOutput;
        /// `UpdateItem`.
        update_item("UpdateItem", UpdateItemRequest) -> UpdateItemOutput;
        /// `DeleteItem`.
        delete_item("DeleteItem", DeleteItemRequest) -> DeleteItemOutput;
    });

    /// `TransactWriteItems`. A cancelled transaction fails with code
    /// `TransactionCanceled` and one [`CancellationReason`] per action.
    pub fn transact_write_items(
        &self,
        request: &TransactWriteItemsRequest,
    ) -> Result<TransactWriteItemsOutput, WriteError> {
        if let Some(index) = request.first_with_return_values() {
            return Err(Error::Config(format!(
                "TransactWriteItems: action {index} sets ReturnValues, which a transaction does not allow"
            ))
            .into());
        }
        self.write("TransactWriteItems", request)
    }

    /// Every item `request` matches, following `LastEvaluatedKey` page by
    /// page; stops early once `max_items` items are collected.
    pub fn query_all(&self, request: &QueryRequest, max_items: Option<usize>) -> Result<Vec<Item>> {
        let mut request = request.clone();
        collect_pages("Query", max_items, |start| {
            request.exclusive_start_key = start;
            self.query(&request)
        })
    }

    /// Every item `request` reads, following `LastEvaluatedKey` page by page;
    /// stops early once `max_items` items are collected.
    pub fn scan_all(&self, request: &ScanRequest, max_items: Option<usize>) -> Result<Vec<Item>> {
        let mut request = request.clone();
        collect_pages("Scan", max_items, |start| {
            request.exclusive_start_key = start;
            self.scan(&request)
        })
    }

    /// Writes all of `writes` to `table_name` in `BatchWriteItem` calls of at
    /// most 25, resubmitting `UnprocessedItems` after a capped, jittered
    /// backoff. A batch still unprocessed after the retry policy's attempts
    /// fails with a `ProvisionedThroughputExceeded` [`Error::Service`] (HTTP
    /// 200) naming how many writes were left; writes before it are done.
    pub fn batch_write_all(
        &self,
        table_name: &str,
        writes: impl IntoIterator<Item = WriteRequest>,
    ) -> Result<()> {
        write_in_batches(writes.into_iter().collect(), &self.retry, |batch| {
            let output = self.batch_write_item(&BatchWriteItemRequest::new(table_name, batch))?;
            Ok(output.unprocessed_items.into_values().flatten().collect())
        })
    }

    /// Polls `DescribeTable` until the table is `ACTIVE`, for at most
    /// `timeout`. A table not (yet) visible is waited for as well; at the
    /// deadline the last error, or [`Error::Timeout`], is returned.
    pub fn wait_for_table_active(
        &self,
        table_name: &str,
        timeout: Duration,
    ) -> Result<TableDescription> {
        let deadline = Instant::now() + timeout;
        let request = TableRequest::new(table_name);
        let mut pause = Duration::from_millis(20);
        loop {
            let last = match self.describe_table(&request) {
                Ok(DescribeTableOutput { table: Some(table) })
                    if table.table_status == Some(TableStatus::Active) =>
                {
                    return Ok(table);
                }
                Ok(output) => Error::Timeout(format!(
                    "DynamoDB table {table_name} is still {} after {timeout:?}",
                    output
                        .table
                        .and_then(|table| table.table_status)
                        .map_or("without a status".to_owned(), |s| format!("{s:?}"))
                )),
                Err(error) if error.code() == Some(&ErrorCode::ResourceNotFound) => error,
                Err(error) => return Err(error),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(last);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(MAX_TABLE_POLL);
        }
    }

    /// `UpdateItem`, tried once: for callers with their own retry rules (a
    /// lease write resolves an ambiguous failure by reading what the table
    /// holds, where a blind retry would fail its own condition).
    pub(crate) fn update_item_once(
        &self,
        request: &UpdateItemRequest,
    ) -> Result<UpdateItemOutput, WriteError> {
        self.write_with("UpdateItem", request, &RetryPolicy::no_retries())
    }

    /// `BatchWriteItem`, tried once: for the writer, which backs off a
    /// whole table when DynamoDB pushes back instead of one call.
    pub(crate) fn batch_write_item_once(
        &self,
        request: &BatchWriteItemRequest,
    ) -> Result<BatchWriteItemOutput> {
        self.client
            .call_with("BatchWriteItem", request, &RetryPolicy::no_retries())
    }

    /// The retry policy of this client's calls.
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// A call whose service-specific error details are kept.
    fn write<Req, Resp>(&self, operation: &'static str, request: &Req) -> Result<Resp, WriteError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        self.write_with(operation, request, &self.retry)
    }

    /// [`write`](Self::write) retried as `retry` allows.
    fn write_with<Req, Resp>(
        &self,
        operation: &'static str,
        request: &Req,
        retry: &RetryPolicy,
    ) -> Result<Resp, WriteError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let outcome =
            self.client
                .call_inspecting(operation, request, retry, |result: Result<Resp>, body| {
                    match result {
                        Err(error)
                            if matches!(
                                error.code(),
                                Some(
                                    ErrorCode::ConditionalCheckFailed
                                        | ErrorCode::TransactionCanceled
                                )
                            ) =>
                        {
                            Ok(Err(WriteError::with_details(error, body)))
                        }
                        other => other.map(Ok),
                    }
                });
        outcome.unwrap_or_else(|error| Err(error.into()))
    }

    /// A call with plain errors.
    fn call<Req, Resp>(&self, operation: &'static str, request: &Req) -> Result<Resp>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        self.client.call(operation, request)
    }
}

/// Fetches pages (`fetch` gets the start key) until the last one or until
/// `max_items` items are in hand. A key that does not advance is an error,
/// not an endless loop.
fn collect_pages(
    operation: &'static str,
    max_items: Option<usize>,
    mut fetch: impl FnMut(Option<Item>) -> Result<ItemsPage>,
) -> Result<Vec<Item>> {
    let limit = max_items.unwrap_or(usize::MAX);
    let mut items = Vec::new();
    let mut start: Option<Item> = None;
    while items.len() < limit {
        let page = fetch(start.clone())?;
        items.extend(page.items);
        match page.last_evaluated_key {
            Some(key) if key.is_empty() => break,
            Some(key) if start.as_ref() == Some(&key) => {
                return Err(Error::MalformedResponse {
                    operation,
                    status: 200,
                    detail: "LastEvaluatedKey repeats the ExclusiveStartKey".to_owned(),
                });
            }
            Some(key) => start = Some(key),
            None => break,
        }
    }
    items.truncate(limit);
    Ok(items)
}

/// Sends `writes` in batches of [`MAX_BATCH_WRITE`]; `send` returns the
/// unprocessed writes of a batch, which are resent after a backoff, at most
/// `retry.max_attempts` submissions per batch.
fn write_in_batches(
    writes: Vec<WriteRequest>,
    retry: &RetryPolicy,
    mut send: impl FnMut(Vec<WriteRequest>) -> Result<Vec<WriteRequest>>,
) -> Result<()> {
    let total = writes.len();
    let attempts = retry.max_attempts.max(1);
    let mut pending = VecDeque::from(writes);
    while !pending.is_empty() {
        let mut batch: Vec<WriteRequest> = pending
            .drain(..pending.len().min(MAX_BATCH_WRITE))
            .collect();
        let mut attempt = 1;
        loop {
            batch = send(batch)?;
            if batch.is_empty() {
                break;
            }
            if attempt >= attempts {
                return Err(Error::Service {
                    operation: "BatchWriteItem",
                    code: ErrorCode::ProvisionedThroughputExceeded,
                    status: 200,
                    message: format!(
                        "{} of {total} writes left unprocessed after {attempts} attempts",
                        batch.len() + pending.len()
                    ),
                });
            }
            let sleep = retry.backoff(attempt - 1);
            log::debug!(
                "BatchWriteItem: {} writes unprocessed, resending after {sleep:?}",
                batch.len()
            );
            std::thread::sleep(sleep);
            attempt += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(i: usize) -> Item {
        item([("pk", AttributeValue::n(i))])
    }

    fn quick(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }
    }

    #[test]
    fn public_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<DynamoDbClient>();
        check::<WriteError>();
        check::<AttributeValue>();
        check::<TransactWriteItemsRequest>();
        assert!(std::mem::size_of::<WriteError>() <= 128);
    }

    #[test]
    fn batches_are_chunked_and_unprocessed_writes_resent() {
        let writes: Vec<_> = (0..60).map(|i| WriteRequest::delete(key(i))).collect();
        let mut sizes = Vec::new();
        let mut seen = Vec::new();
        write_in_batches(writes, &quick(5), |batch| {
            sizes.push(batch.len());
            // Leave the last two of every full batch unprocessed once.
            let keep = if batch.len() == MAX_BATCH_WRITE {
                batch.len() - 2
            } else {
                batch.len()
            };
            let mut batch = batch;
            let rest = batch.split_off(keep);
            seen.extend(batch);
            Ok(rest)
        })
        .unwrap();
        assert_eq!(sizes, [25, 2, 25, 2, 10]);
        assert_eq!(seen.len(), 60);
    }

    #[test]
    fn batches_give_up_after_the_attempts_and_say_how_many_are_left() {
        let writes: Vec<_> = (0..30).map(|i| WriteRequest::put(key(i))).collect();
        let mut calls = 0;
        let error = write_in_batches(writes, &quick(3), |batch| {
            calls += 1;
            Ok(batch.into_iter().skip(1).collect())
        })
        .unwrap_err();
        assert_eq!(calls, 3);
        assert!(error.is_throttling(), "{error}");
        assert!(
            error.to_string().contains("27 of 30 writes left"),
            "{error}"
        );
    }

    #[test]
    fn pages_are_followed_and_capped() {
        let pages = |start: Option<Item>| -> Result<ItemsPage> {
            let from = start.and_then(|k| k["pk"].as_u64()).map_or(0, |n| n + 1) as usize;
            let to = (from + 3).min(10);
            Ok(ItemsPage {
                items: (from..to).map(key).collect(),
                last_evaluated_key: (to < 10).then(|| key(to - 1)),
                ..ItemsPage::default()
            })
        };
        assert_eq!(collect_pages("Scan", None, pages).unwrap().len(), 10);
        assert_eq!(
            collect_pages("Scan", Some(4), pages).unwrap(),
            (0..4).map(key).collect::<Vec<_>>()
        );
        let stuck = collect_pages("Scan", None, |_| {
            Ok(ItemsPage {
                last_evaluated_key: Some(key(1)),
                ..ItemsPage::default()
            })
        });
        assert!(matches!(stuck, Err(Error::MalformedResponse { .. })));
    }

    #[test]
    fn requests_serialize_as_dynamodb_json() {
        let put = PutItemRequest::new("t", key(1))
            .condition("attribute_not_exists(#k) OR #c = :c")
            .name("#k", "pk")
            .name("#c", "counter")
            .value(":c", 3)
            .return_old_on_condition_failure();
        assert_eq!(
            serde_json::to_value(&put).unwrap(),
            json!({
                "TableName": "t",
                "Item": {"pk": {"N": "1"}},
                "ConditionExpression": "attribute_not_exists(#k) OR #c = :c",
                "ExpressionAttributeNames": {"#k": "pk", "#c": "counter"},
                "ExpressionAttributeValues": {":c": {"N": "3"}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            })
        );
        let query = QueryRequest::new("t", "pk = :p")
            .value(":p", "a")
            .limit(5)
            .index("i");
        assert_eq!(
            serde_json::to_value(&query).unwrap(),
            json!({
                "TableName": "t",
                "IndexName": "i",
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": {"S": "a"}},
                "Limit": 5,
            })
        );
        let create = CreateTableRequest::new("t", "pk", ScalarAttributeType::S)
            .range_key("sk", ScalarAttributeType::N)
            .provisioned(1, 2);
        assert_eq!(
            serde_json::to_value(&create).unwrap(),
            json!({
                "TableName": "t",
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "N"},
                ],
                "BillingMode": "PROVISIONED",
                "ProvisionedThroughput": {"ReadCapacityUnits": 1, "WriteCapacityUnits": 2},
            })
        );
        let transaction = TransactWriteItemsRequest::default()
            .action(ConditionCheck::new("t", key(1), "attribute_exists(pk)"))
            .action(UpdateItemRequest::new("t", key(2), "SET v = :v").value(":v", true))
            .action(DeleteItemRequest::new("t", key(3)))
            .action(PutItemRequest::new("t", key(4)));
        assert_eq!(
            serde_json::to_value(&transaction).unwrap(),
            json!({"TransactItems": [
                {"ConditionCheck": {"TableName": "t", "Key": {"pk": {"N": "1"}},
                    "ConditionExpression": "attribute_exists(pk)"}},
                {"Update": {"TableName": "t", "Key": {"pk": {"N": "2"}},
                    "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": {"BOOL": true}}}},
                {"Delete": {"TableName": "t", "Key": {"pk": {"N": "3"}}}},
                {"Put": {"TableName": "t", "Item": {"pk": {"N": "4"}}}},
            ]})
        );
    }

    #[test]
    fn responses_are_tolerant() {
        let table: DescribeTableOutput = serde_json::from_value(json!({
            "Table": {"TableName": "t", "TableStatus": "SOMETHING_NEW", "Extra": 1}
        }))
        .unwrap();
        assert_eq!(
            table.table.unwrap().table_status,
            Some(TableStatus::Unknown)
        );
        let page: QueryOutput = serde_json::from_value(json!({"ConsumedCapacity": {}})).unwrap();
        assert!(page.items.is_empty() && page.last_evaluated_key.is_none());
        let batch: BatchWriteItemOutput = serde_json::from_value(json!({
            "UnprocessedItems": {"t": [{"DeleteRequest": {"Key": {"pk": {"S": "a"}}}}]}
        }))
        .unwrap();
        assert_eq!(
            batch.unprocessed_items["t"],
            [WriteRequest::delete(item([("pk", "a".into())]))]
        );
    }

    #[test]
    fn condition_failures_keep_the_item_and_the_reasons() {
        let error = |code: ErrorCode| Error::Service {
            operation: "PutItem",
            code,
            status: 400,
            message: String::new(),
        };
        let failed = WriteError::with_details(
            error(ErrorCode::ConditionalCheckFailed),
            br#"{"__type":"x#ConditionalCheckFailedException","message":"m","Item":{"pk":{"S":"a"}}}"#,
        );
        assert!(failed.is_condition_failed());
        assert_eq!(failed.current_item(), Some(&item([("pk", "a".into())])));
        let canceled = WriteError::with_details(
            error(ErrorCode::TransactionCanceled),
            br#"{"Message":"m","CancellationReasons":[{"Code":"None"},{"Code":"ConditionalCheckFailed","Message":"c"}]}"#,
        );
        assert!(canceled.is_transaction_canceled());
        assert!(canceled.cancellation_reasons[0].is_none());
        assert!(canceled.cancellation_reasons[1].is_condition_failed());
        let garbled =
            WriteError::with_details(error(ErrorCode::ConditionalCheckFailed), b"{\"Item\": 5}");
        assert!(garbled.current_item.is_none() && garbled.cancellation_reasons.is_empty());
    }
}
