//! Requests and responses of the DynamoDB operations kcheck uses, in
//! DynamoDB's JSON shape. Requests have builder-style setters; responses are
//! tolerant: missing fields take their defaults and unknown ones are ignored.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::attribute::{AttributeValue, Item};

// ---------------------------------------------------------------------------
// Shared parts
// ---------------------------------------------------------------------------

/// The placeholders of a request's expressions: `ExpressionAttributeNames`
/// (`#name` → attribute) and `ExpressionAttributeValues` (`:value` → value).
/// Empty maps are not sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Expressions {
    /// `#placeholder` → attribute name.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub expression_attribute_names: HashMap<String, String>,
    /// `:placeholder` → value.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub expression_attribute_values: Item,
}

/// What a write returns about the item (`ReturnValues`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReturnValues {
    /// Nothing.
    None,
    /// The whole item as it was before the write.
    AllOld,
    /// The updated attributes as they were before.
    UpdatedOld,
    /// The whole item as it is after the write.
    AllNew,
    /// The updated attributes as they are after.
    UpdatedNew,
}

/// What a failed condition returns (`ReturnValuesOnConditionCheckFailure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReturnValuesOnConditionCheckFailure {
    /// Nothing.
    None,
    /// The item as it is now, in the error (see
    /// [`WriteError::current_item`](super::WriteError::current_item)).
    AllOld,
}

/// Adds the shared setters to request types, so each is written once.
macro_rules! setters {
    (expressions: $($t:ty),*) => {$(
        impl $t {
            /// Adds an expression attribute name, e.g. `("#o", "owner")`.
            pub fn name(mut self, placeholder: impl Into<String>, attribute: impl Into<String>) -> Self {
                self.expressions
                    .expression_attribute_names
                    .insert(placeholder.into(), attribute.into());
                self
            }

            /// Adds an expression attribute value, e.g. `(":c", 3.into())`.
            pub fn value(mut self, placeholder: impl Into<String>, value: impl Into<AttributeValue>) -> Self {
                self.expressions
                    .expression_attribute_values
                    .insert(placeholder.into(), value.into());
                self
            }
        }
    )*};
    (condition: $($t:ty),*) => {$(
        impl $t {
            /// Sets the `ConditionExpression` the write depends on.
            pub fn condition(mut self, expression: impl Into<String>) -> Self {
                self.condition_expression = Some(expression.into());
                self
            }

            /// Asks for the current item in the error when the condition
            /// fails (`ReturnValuesOnConditionCheckFailure=ALL_OLD`).
            pub fn return_old_on_condition_failure(mut self) -> Self {
                self.return_values_on_condition_check_failure =
                    Some(ReturnValuesOnConditionCheckFailure::AllOld);
                self
            }
        }
    )*};
    (return_values: $($t:ty),*) => {$(
        impl $t {
            /// Sets what the write returns in `Attributes`.
            pub fn return_values(mut self, return_values: ReturnValues) -> Self {
                self.return_values = Some(return_values);
                self
            }
        }
    )*};
    (read: $($t:ty),*) => {$(
        impl $t {
            /// Reads strongly consistently.
            pub fn consistent_read(mut self, consistent: bool) -> Self {
                self.consistent_read = Some(consistent);
                self
            }

            /// Returns only these attributes (`ProjectionExpression`).
            pub fn projection(mut self, expression: impl Into<String>) -> Self {
                self.projection_expression = Some(expression.into());
                self
            }
        }
    )*};
    (page: $($t:ty),*) => {$(
        impl $t {
            /// Reads a secondary index instead of the table.
            pub fn index(mut self, index_name: impl Into<String>) -> Self {
                self.index_name = Some(index_name.into());
                self
            }

            /// Drops items that do not match (`FilterExpression`); applied
            /// after `Limit`.
            pub fn filter(mut self, expression: impl Into<String>) -> Self {
                self.filter_expression = Some(expression.into());
                self
            }

            /// Evaluates at most this many items per page (`Limit`).
            pub fn limit(mut self, limit: u32) -> Self {
                self.limit = Some(limit);
                self
            }

            /// Continues after this key (a previous page's `LastEvaluatedKey`).
            pub fn start_key(mut self, key: Option<Item>) -> Self {
                self.exclusive_start_key = key;
                self
            }
        }
    )*};
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

/// The type of a key attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScalarAttributeType {
    /// String.
    S,
    /// Number.
    N,
    /// Binary.
    B,
}

/// The role of a key attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum KeyType {
    /// Partition key.
    Hash,
    /// Sort key.
    Range,
}

/// One element of a table's key schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeySchemaElement {
    /// The key attribute.
    pub attribute_name: String,
    /// Partition or sort key.
    pub key_type: KeyType,
}

/// The type of one key attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDefinition {
    /// The attribute.
    pub attribute_name: String,
    /// Its type.
    pub attribute_type: ScalarAttributeType,
}

/// How a table is billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BillingMode {
    /// On demand (the default of [`CreateTableRequest::new`]).
    PayPerRequest,
    /// Provisioned capacity; needs `ProvisionedThroughput`.
    Provisioned,
}

/// Provisioned read and write capacity units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProvisionedThroughput {
    /// Read capacity units.
    pub read_capacity_units: u64,
    /// Write capacity units.
    pub write_capacity_units: u64,
}

/// `CreateTable`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateTableRequest {
    /// The table.
    pub table_name: String,
    /// Partition key, then the optional sort key.
    pub key_schema: Vec<KeySchemaElement>,
    /// Types of the key attributes.
    pub attribute_definitions: Vec<AttributeDefinition>,
    /// On demand or provisioned.
    pub billing_mode: BillingMode,
    /// Capacity when provisioned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioned_throughput: Option<ProvisionedThroughput>,
}

impl CreateTableRequest {
    /// An on-demand table with partition key `hash_key` of type `key_type`.
    pub fn new(
        table_name: impl Into<String>,
        hash_key: impl Into<String>,
        key_type: ScalarAttributeType,
    ) -> Self {
        CreateTableRequest {
            table_name: table_name.into(),
            key_schema: Vec::new(),
            attribute_definitions: Vec::new(),
            billing_mode: BillingMode::PayPerRequest,
            provisioned_throughput: None,
        }
        .key(hash_key, key_type, KeyType::Hash)
    }

    /// Adds the sort key.
    pub fn range_key(self, name: impl Into<String>, key_type: ScalarAttributeType) -> Self {
        self.key(name, key_type, KeyType::Range)
    }

    /// Provisioned billing with this capacity.
    pub fn provisioned(mut self, read_capacity_units: u64, write_capacity_units: u64) -> Self {
        self.billing_mode = BillingMode::Provisioned;
        self.provisioned_throughput = Some(ProvisionedThroughput {
            read_capacity_units,
            write_capacity_units,
        });
        self
    }

    fn key(
        mut self,
        name: impl Into<String>,
        attribute_type: ScalarAttributeType,
        key_type: KeyType,
    ) -> Self {
        let attribute_name = name.into();
        self.key_schema.push(KeySchemaElement {
            attribute_name: attribute_name.clone(),
            key_type,
        });
        self.attribute_definitions.push(AttributeDefinition {
            attribute_name,
            attribute_type,
        });
        self
    }
}

/// Names one table: `DescribeTable`, `DeleteTable`, `DescribeTimeToLive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableRequest {
    /// The table.
    pub table_name: String,
}

impl TableRequest {
    /// A request about `table_name`.
    pub fn new(table_name: impl Into<String>) -> Self {
        TableRequest {
            table_name: table_name.into(),
        }
    }
}

/// `DescribeTable`.
pub type DescribeTableRequest = TableRequest;
/// `DeleteTable`.
pub type DeleteTableRequest = TableRequest;
/// `DescribeTimeToLive`.
pub type DescribeTimeToLiveRequest = TableRequest;

/// The lifecycle state of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TableStatus {
    /// Being created.
    Creating,
    /// Being updated.
    Updating,
    /// Being deleted.
    Deleting,
    /// Ready for use.
    Active,
    /// Its KMS key is not accessible.
    InaccessibleEncryptionCredentials,
    /// Being archived.
    Archiving,
    /// Archived.
    Archived,
    /// A status this version of kcheck does not know.
    #[serde(other)]
    Unknown,
}

/// The billing mode a table reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BillingModeSummary {
    /// On demand or provisioned.
    pub billing_mode: Option<BillingMode>,
}

/// What DynamoDB reports about a table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TableDescription {
    /// The table.
    pub table_name: Option<String>,
    /// Its ARN.
    pub table_arn: Option<String>,
    /// Its unique id.
    pub table_id: Option<String>,
    /// Lifecycle state.
    pub table_status: Option<TableStatus>,
    /// Key attributes.
    pub key_schema: Vec<KeySchemaElement>,
    /// Types of the key attributes.
    pub attribute_definitions: Vec<AttributeDefinition>,
    /// Approximate item count (updated about every six hours).
    pub item_count: Option<u64>,
    /// Approximate size in bytes.
    pub table_size_bytes: Option<u64>,
    /// Creation time, seconds since the epoch.
    pub creation_date_time: Option<f64>,
    /// Billing mode, when DynamoDB reports one.
    pub billing_mode_summary: Option<BillingModeSummary>,
}

/// `CreateTable`'s and `DeleteTable`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TableDescriptionOutput {
    /// The table as it is now.
    pub table_description: Option<TableDescription>,
}

/// `CreateTable`'s answer.
pub type CreateTableOutput = TableDescriptionOutput;
/// `DeleteTable`'s answer.
pub type DeleteTableOutput = TableDescriptionOutput;

/// `DescribeTable`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeTableOutput {
    /// The table.
    pub table: Option<TableDescription>,
}

// ---------------------------------------------------------------------------
// Time to live
// ---------------------------------------------------------------------------

/// Turns expiry on or off for one attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimeToLiveSpecification {
    /// On or off.
    pub enabled: bool,
    /// The attribute holding the expiry time (seconds since the epoch).
    pub attribute_name: String,
}

/// `UpdateTimeToLive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateTimeToLiveRequest {
    /// The table.
    pub table_name: String,
    /// The new setting.
    pub time_to_live_specification: TimeToLiveSpecification,
}

impl UpdateTimeToLiveRequest {
    /// Enables (or, with `enabled` false, disables) expiry on `attribute`.
    pub fn new(table_name: impl Into<String>, attribute: impl Into<String>, enabled: bool) -> Self {
        UpdateTimeToLiveRequest {
            table_name: table_name.into(),
            time_to_live_specification: TimeToLiveSpecification {
                enabled,
                attribute_name: attribute.into(),
            },
        }
    }
}

/// `UpdateTimeToLive`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateTimeToLiveOutput {
    /// The setting as applied.
    pub time_to_live_specification: Option<TimeToLiveSpecification>,
}

/// The expiry state of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TimeToLiveStatus {
    /// Being turned on.
    Enabling,
    /// Being turned off.
    Disabling,
    /// On.
    Enabled,
    /// Off.
    Disabled,
    /// A status this version of kcheck does not know.
    #[serde(other)]
    Unknown,
}

/// What DynamoDB reports about a table's expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TimeToLiveDescription {
    /// The state.
    pub time_to_live_status: Option<TimeToLiveStatus>,
    /// The expiry attribute, when one is set.
    pub attribute_name: Option<String>,
}

/// `DescribeTimeToLive`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DescribeTimeToLiveOutput {
    /// The expiry state.
    pub time_to_live_description: Option<TimeToLiveDescription>,
}

// ---------------------------------------------------------------------------
// Single items
// ---------------------------------------------------------------------------

/// `GetItem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetItemRequest {
    /// The table.
    pub table_name: String,
    /// The item's full primary key.
    pub key: Item,
    /// Strongly consistent read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent_read: Option<bool>,
    /// Attributes to return.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection_expression: Option<String>,
    /// Placeholders (names only are meaningful here).
    #[serde(flatten)]
    pub expressions: Expressions,
}

impl GetItemRequest {
    /// Reads the item with `key`.
    pub fn new(table_name: impl Into<String>, key: Item) -> Self {
        GetItemRequest {
            table_name: table_name.into(),
            key,
            consistent_read: None,
            projection_expression: None,
            expressions: Expressions::default(),
        }
    }
}

/// `GetItem`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GetItemOutput {
    /// The item, absent when there is none.
    pub item: Option<Item>,
}

/// `PutItem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutItemRequest {
    /// The table.
    pub table_name: String,
    /// The whole item, key included.
    pub item: Item,
    /// The write happens only if this holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition_expression: Option<String>,
    /// Placeholders of the condition.
    #[serde(flatten)]
    pub expressions: Expressions,
    /// `NONE` or `ALL_OLD`. Not allowed inside a transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_values: Option<ReturnValues>,
    /// Whether a failed condition returns the current item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_values_on_condition_check_failure: Option<ReturnValuesOnConditionCheckFailure>,
}

impl PutItemRequest {
    /// Writes `item`, replacing any item with the same key.
    pub fn new(table_name: impl Into<String>, item: Item) -> Self {
        PutItemRequest {
            table_name: table_name.into(),
            item,
            condition_expression: None,
            expressions: Expressions::default(),
            return_values: None,
            return_values_on_condition_check_failure: None,
        }
    }
}

/// `UpdateItem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateItemRequest {
    /// The table.
    pub table_name: String,
    /// The item's full primary key.
    pub key: Item,
    /// `SET …`, `REMOVE …`, `ADD …`, `DELETE …`.
    pub update_expression: String,
    /// The update happens only if this holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition_expression: Option<String>,
    /// Placeholders of both expressions.
    #[serde(flatten)]
    pub expressions: Expressions,
    /// What `Attributes` holds. Not allowed inside a transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_values: Option<ReturnValues>,
    /// Whether a failed condition returns the current item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_values_on_condition_check_failure: Option<ReturnValuesOnConditionCheckFailure>,
}

impl UpdateItemRequest {
    /// Applies `update_expression` to the item with `key` (creating it if
    /// absent, unless a condition says otherwise).
    pub fn new(
        table_name: impl Into<String>,
        key: Item,
        update_expression: impl Into<String>,
    ) -> Self {
        UpdateItemRequest {
            table_name: table_name.into(),
            key,
            update_expression: update_expression.into(),
            condition_expression: None,
            expressions: Expressions::default(),
            return_values: None,
            return_values_on_condition_check_failure: None,
        }
    }
}

/// `DeleteItem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteItemRequest {
    /// The table.
    pub table_name: String,
    /// The item's full primary key.
    pub key: Item,
    /// The delete happens only if this holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition_expression: Option<String>,
    /// Placeholders of the condition.
    #[serde(flatten)]
    pub expressions: Expressions,
    /// `NONE` or `ALL_OLD`. Not allowed inside a transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_values: Option<ReturnValues>,
    /// Whether a failed condition returns the current item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_values_on_condition_check_failure: Option<ReturnValuesOnConditionCheckFailure>,
}

impl DeleteItemRequest {
    /// Deletes the item with `key` (no error when there is none).
    pub fn new(table_name: impl Into<String>, key: Item) -> Self {
        DeleteItemRequest {
            table_name: table_name.into(),
            key,
            condition_expression: None,
            expressions: Expressions::default(),
            return_values: None,
            return_values_on_condition_check_failure: None,
        }
    }
}

/// The answer of `PutItem`, `UpdateItem` and `DeleteItem`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WriteItemOutput {
    /// What `ReturnValues` asked for; absent for `NONE`.
    pub attributes: Option<Item>,
}

/// `PutItem`'s answer.
pub type PutItemOutput = WriteItemOutput;
/// `UpdateItem`'s answer.
pub type UpdateItemOutput = WriteItemOutput;
/// `DeleteItem`'s answer.
pub type DeleteItemOutput = WriteItemOutput;

// ---------------------------------------------------------------------------
// Query and Scan
// ---------------------------------------------------------------------------

/// `Query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct QueryRequest {
    /// The table.
    pub table_name: String,
    /// A secondary index to read instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_name: Option<String>,
    /// Selects the partition (and optionally a sort-key range).
    pub key_condition_expression: String,
    /// Drops non-matching items after reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_expression: Option<String>,
    /// Attributes to return.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection_expression: Option<String>,
    /// Placeholders of all expressions.
    #[serde(flatten)]
    pub expressions: Expressions,
    /// Strongly consistent read (tables and local indexes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent_read: Option<bool>,
    /// Items evaluated per page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Where the page starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclusive_start_key: Option<Item>,
    /// `false` reads the sort key descending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_index_forward: Option<bool>,
}

impl QueryRequest {
    /// Reads the items matching `key_condition` (placeholders added with
    /// [`name`](Self::name) and [`value`](Self::value)).
    pub fn new(table_name: impl Into<String>, key_condition: impl Into<String>) -> Self {
        QueryRequest {
            table_name: table_name.into(),
            index_name: None,
            key_condition_expression: key_condition.into(),
            filter_expression: None,
            projection_expression: None,
            expressions: Expressions::default(),
            consistent_read: None,
            limit: None,
            exclusive_start_key: None,
            scan_index_forward: None,
        }
    }

    /// Reads the sort key descending when `forward` is false.
    pub fn scan_forward(mut self, forward: bool) -> Self {
        self.scan_index_forward = Some(forward);
        self
    }
}

/// `Scan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScanRequest {
    /// The table.
    pub table_name: String,
    /// A secondary index to read instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_name: Option<String>,
    /// Drops non-matching items after reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter_expression: Option<String>,
    /// Attributes to return.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection_expression: Option<String>,
    /// Placeholders of all expressions.
    #[serde(flatten)]
    pub expressions: Expressions,
    /// Strongly consistent read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent_read: Option<bool>,
    /// Items evaluated per page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Where the page starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclusive_start_key: Option<Item>,
    /// This worker's segment of a parallel scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<u32>,
    /// The number of segments of a parallel scan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_segments: Option<u32>,
}

impl ScanRequest {
    /// Reads every item of the table.
    pub fn new(table_name: impl Into<String>) -> Self {
        ScanRequest {
            table_name: table_name.into(),
            index_name: None,
            filter_expression: None,
            projection_expression: None,
            expressions: Expressions::default(),
            consistent_read: None,
            limit: None,
            exclusive_start_key: None,
            segment: None,
            total_segments: None,
        }
    }

    /// Reads only segment `segment` of `total_segments` (parallel scan).
    pub fn segment(mut self, segment: u32, total_segments: u32) -> Self {
        self.segment = Some(segment);
        self.total_segments = Some(total_segments);
        self
    }
}

/// One page of `Query` or `Scan`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ItemsPage {
    /// The items of this page.
    pub items: Vec<Item>,
    /// Items returned (after the filter).
    pub count: u64,
    /// Items evaluated (before the filter).
    pub scanned_count: u64,
    /// Where the next page starts; absent on the last page.
    pub last_evaluated_key: Option<Item>,
}

/// `Query`'s answer.
pub type QueryOutput = ItemsPage;
/// `Scan`'s answer.
pub type ScanOutput = ItemsPage;

// ---------------------------------------------------------------------------
// Batches and transactions
// ---------------------------------------------------------------------------

/// One write of a `BatchWriteItem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteRequest {
    /// Puts the item.
    #[serde(rename = "PutRequest")]
    Put {
        /// The whole item.
        #[serde(rename = "Item")]
        item: Item,
    },
    /// Deletes the item with this key.
    #[serde(rename = "DeleteRequest")]
    Delete {
        /// The full primary key.
        #[serde(rename = "Key")]
        key: Item,
    },
}

impl WriteRequest {
    /// Puts `item`.
    pub fn put(item: Item) -> Self {
        WriteRequest::Put { item }
    }

    /// Deletes the item with `key`.
    pub fn delete(key: Item) -> Self {
        WriteRequest::Delete { key }
    }
}

/// `BatchWriteItem`: up to 25 writes, table name → writes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchWriteItemRequest {
    /// Table name → its writes.
    pub request_items: HashMap<String, Vec<WriteRequest>>,
    /// `TOTAL` asks for the write units each table consumed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_consumed_capacity: Option<String>,
}

impl BatchWriteItemRequest {
    /// A batch of `writes` to one table.
    pub fn new(table_name: impl Into<String>, writes: Vec<WriteRequest>) -> Self {
        BatchWriteItemRequest {
            request_items: HashMap::from([(table_name.into(), writes)]),
            return_consumed_capacity: None,
        }
    }

    /// Asks for the capacity consumed, per table.
    pub fn consumed_capacity(mut self) -> Self {
        self.return_consumed_capacity = Some("TOTAL".to_owned());
        self
    }
}

/// Capacity one table consumed, when asked for.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConsumedCapacity {
    /// The table.
    pub table_name: Option<String>,
    /// Capacity units consumed.
    pub capacity_units: Option<f64>,
}

/// `BatchWriteItem`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BatchWriteItemOutput {
    /// Writes DynamoDB did not get to; send them again.
    pub unprocessed_items: HashMap<String, Vec<WriteRequest>>,
    /// Per table, when `ReturnConsumedCapacity` asked for it.
    pub consumed_capacity: Vec<ConsumedCapacity>,
}

/// A `ConditionCheck` of a transaction: the transaction fails unless the
/// condition holds for the item with `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConditionCheck {
    /// The table.
    pub table_name: String,
    /// The item's full primary key.
    pub key: Item,
    /// What must hold.
    pub condition_expression: String,
    /// Placeholders of the condition.
    #[serde(flatten)]
    pub expressions: Expressions,
    /// Whether the cancellation reason carries the current item.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_values_on_condition_check_failure: Option<ReturnValuesOnConditionCheckFailure>,
}

impl ConditionCheck {
    /// Requires `condition` to hold for the item with `key`.
    pub fn new(table_name: impl Into<String>, key: Item, condition: impl Into<String>) -> Self {
        ConditionCheck {
            table_name: table_name.into(),
            key,
            condition_expression: condition.into(),
            expressions: Expressions::default(),
            return_values_on_condition_check_failure: None,
        }
    }

    /// Asks for the current item in the cancellation reason when the
    /// condition fails.
    pub fn return_old_on_condition_failure(mut self) -> Self {
        self.return_values_on_condition_check_failure =
            Some(ReturnValuesOnConditionCheckFailure::AllOld);
        self
    }
}

/// One action of a `TransactWriteItems`. The single-item requests are reused;
/// their `return_values` must stay unset (DynamoDB has no such field here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum TransactWriteItem {
    /// A put.
    Put(PutItemRequest),
    /// An update.
    Update(UpdateItemRequest),
    /// A delete.
    Delete(DeleteItemRequest),
    /// A condition on an item that is not written.
    ConditionCheck(ConditionCheck),
}

impl TransactWriteItem {
    /// The table this action touches.
    pub fn table_name(&self) -> &str {
        match self {
            TransactWriteItem::Put(r) => &r.table_name,
            TransactWriteItem::Update(r) => &r.table_name,
            TransactWriteItem::Delete(r) => &r.table_name,
            TransactWriteItem::ConditionCheck(r) => &r.table_name,
        }
    }

    fn return_values(&self) -> Option<ReturnValues> {
        match self {
            TransactWriteItem::Put(r) => r.return_values,
            TransactWriteItem::Update(r) => r.return_values,
            TransactWriteItem::Delete(r) => r.return_values,
            TransactWriteItem::ConditionCheck(_) => None,
        }
    }
}

impl From<PutItemRequest> for TransactWriteItem {
    fn from(request: PutItemRequest) -> Self {
        TransactWriteItem::Put(request)
    }
}

impl From<UpdateItemRequest> for TransactWriteItem {
    fn from(request: UpdateItemRequest) -> Self {
        TransactWriteItem::Update(request)
    }
}

impl From<DeleteItemRequest> for TransactWriteItem {
    fn from(request: DeleteItemRequest) -> Self {
        TransactWriteItem::Delete(request)
    }
}

impl From<ConditionCheck> for TransactWriteItem {
    fn from(request: ConditionCheck) -> Self {
        TransactWriteItem::ConditionCheck(request)
    }
}

/// `TransactWriteItems`: up to 100 actions that succeed or fail together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TransactWriteItemsRequest {
    /// The actions, in order (cancellation reasons follow this order).
    pub transact_items: Vec<TransactWriteItem>,
    /// Makes retries idempotent for ten minutes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_token: Option<String>,
}

impl TransactWriteItemsRequest {
    /// A transaction of `actions`.
    pub fn new(actions: impl IntoIterator<Item = TransactWriteItem>) -> Self {
        TransactWriteItemsRequest {
            transact_items: actions.into_iter().collect(),
            client_request_token: None,
        }
    }

    /// Adds an action.
    pub fn action(mut self, action: impl Into<TransactWriteItem>) -> Self {
        self.transact_items.push(action.into());
        self
    }

    /// Sets the idempotency token.
    pub fn client_request_token(mut self, token: impl Into<String>) -> Self {
        self.client_request_token = Some(token.into());
        self
    }

    /// The index of the first action that sets `return_values`, which a
    /// transaction does not allow.
    pub(crate) fn first_with_return_values(&self) -> Option<usize> {
        self.transact_items
            .iter()
            .position(|action| action.return_values().is_some())
    }
}

/// `TransactWriteItems`' answer (consumed capacity is not kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TransactWriteItemsOutput {}

/// Why one action of a cancelled transaction failed, in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CancellationReason {
    /// `None` for actions that were fine, else e.g. `ConditionalCheckFailed`,
    /// `TransactionConflict`, `ThrottlingError`, `ValidationError`.
    pub code: Option<String>,
    /// DynamoDB's explanation.
    pub message: Option<String>,
    /// The current item, for a failed condition with `ALL_OLD`.
    pub item: Option<Item>,
}

impl CancellationReason {
    /// Whether this action's condition failed.
    pub fn is_condition_failed(&self) -> bool {
        self.code.as_deref() == Some("ConditionalCheckFailed")
    }

    /// Whether this action did not cause the cancellation (code `None`).
    pub fn is_none(&self) -> bool {
        matches!(self.code.as_deref(), None | Some("None"))
    }
}

setters!(expressions: GetItemRequest, PutItemRequest, UpdateItemRequest, DeleteItemRequest,
    QueryRequest, ScanRequest, ConditionCheck);
setters!(condition: PutItemRequest, UpdateItemRequest, DeleteItemRequest);
setters!(return_values: PutItemRequest, UpdateItemRequest, DeleteItemRequest);
setters!(read: GetItemRequest, QueryRequest, ScanRequest);
setters!(page: QueryRequest, ScanRequest);
