//! Hostile input, as property tests (proptest on stable Rust): GetRecords
//! and DynamoDB responses, lease items, KPL aggregates, sequence numbers and
//! the C ABI's string arguments. Whatever arrives gives a value or an error
//! with a message: never a panic, never an allocation sized by a length the
//! input only claims. The parsers' own properties live beside them
//! (`kinesis::page`, `kinesis::aggregation`).
//!
//! Each property runs 256 cases, the slow ones (HTTP, the C ABI) fewer;
//! `PROPTEST_CASES=N` runs N of each.

#[path = "support/stub_server.rs"]
mod stub_server;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::cmp::Ordering;
use std::ffi::{c_char, CStr};
use std::ops::ControlFlow;
use std::ptr;
use std::sync::{Arc, Mutex, OnceLock};

use kcheck::checkpoint::{
    compare_sequence_numbers, is_sequence_number, Checkpoint, LeaseScope, Position,
};
use kcheck::dynamodb::{
    AttributeValue, BatchWriteItemOutput, CancellationReason, DescribeTableOutput,
    DescribeTimeToLiveOutput, GetItemOutput, Item, ItemsPage, TableDescriptionOutput,
    UpdateTimeToLiveOutput, WriteItemOutput,
};
use kcheck::ffi::*;
use kcheck::kinesis::aggregation::{aggregate, deaggregate, KPL_MAGIC};
use kcheck::kinesis::{KinesisClient, PutRecordsOutput, Record, Shard, StreamSummary};
use kcheck::transport::{AwsConfig, Credentials, Environment};
use kcheck::{Checkpointer, DynamoDbCheckpointer, Error};
use md5::{Digest, Md5};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use stub_server::{StubResponse, StubServer};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// Remembers the largest single allocation of each thread, so a property
/// can tell an allocation sized by the input from one sized by a claim.
struct LargestAllocation;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(size)));
}

// SAFETY: every call goes straight to the system allocator.
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        unsafe { System.realloc(block, layout, new_size) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        unsafe { System.dealloc(block, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// `run`'s result and the largest allocation it made on this thread.
fn largest_allocation<T>(run: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|largest| largest.set(0));
    let result = run();
    (result, LARGEST.with(Cell::get))
}

/// What decoding `input_len` bytes may allocate at once: the decoded values
/// themselves (tens of bytes per input byte, doubled by growth), never more.
fn allocation_allowance(input_len: usize) -> usize {
    128 * input_len + 64 * 1024
}

/// `default` cases, or `PROPTEST_CASES` when set.
fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default);
    ProptestConfig::with_cases(cases)
}

/// Type tags of DynamoDB values.
const TYPE_TAGS: &[&str] = &["S", "N", "B", "L", "M", "NULL", "BOOL", "SS", "NS", "BS"];

/// Field names the responses have, so random documents sometimes match.
const FIELD_NAMES: &[&str] = &[
    "Items",
    "Item",
    "Records",
    "Shards",
    "ShardId",
    "Data",
    "SequenceNumber",
];

/// Any JSON value, nested a little.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,16}".prop_map(Value::from),
        prop::sample::select(TYPE_TAGS).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        let name = prop_oneof![
            "[A-Za-z]{1,8}",
            prop::sample::select(TYPE_TAGS).prop_map(str::to_owned),
            prop::sample::select(FIELD_NAMES).prop_map(str::to_owned),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::hash_map(name, inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Flips, inserts and cuts bytes of `body`.
fn mutated(mut body: Vec<u8>, edits: &[(Index, u8, u8)]) -> Vec<u8> {
    for (at, kind, byte) in edits {
        if body.is_empty() {
            break;
        }
        let at = at.index(body.len());
        match kind % 3 {
            0 => body[at] = *byte,
            1 => body.insert(at, *byte),
            _ => body.truncate(at),
        }
    }
    body
}

fn edits() -> impl Strategy<Value = Vec<(Index, u8, u8)>> {
    prop::collection::vec(any::<(Index, u8, u8)>(), 1..6)
}

/// A config for a stub on loopback: fixed credentials, nothing from the
/// machine's environment.
fn stub_config(url: &str) -> AwsConfig {
    AwsConfig::builder()
        .region("us-east-1")
        .endpoint_url(url)
        .credentials(Credentials::new("AKIDTEST", "test-secret", None, None))
        .environment(Environment::from_vars(Vec::<(String, String)>::new()))
        .build()
        .expect("stub config")
}

/// A stub that answers every request with the body last put in the slot.
fn stub_answering() -> (StubServer, Arc<Mutex<Vec<u8>>>) {
    let body = Arc::new(Mutex::new(Vec::new()));
    let answer = body.clone();
    let stub = StubServer::start(move |_| StubResponse::Full {
        status: 200,
        content_type: "application/x-amz-json-1.1",
        body: answer.lock().unwrap().clone(),
    });
    (stub, body)
}

// ---------------------------------------------------------------------------
// GetRecords through the client
// ---------------------------------------------------------------------------

fn get_records_body() -> impl Strategy<Value = Vec<u8>> {
    let record = (
        "[1-9][0-9]{0,56}",
        prop::collection::vec(any::<u8>(), 0..32),
        ".{1,8}",
    )
        .prop_map(|(sequence, data, key)| {
            json!({
                "SequenceNumber": sequence,
                "Data": base64_simd::STANDARD.encode_to_string(data),
                "PartitionKey": key,
                "ApproximateArrivalTimestamp": 1.7e9,
            })
        });
    let page = (prop::collection::vec(record, 0..5), any::<u64>()).prop_map(|(records, lag)| {
        serde_json::to_vec(&json!({
            "Records": records,
            "NextShardIterator": "next",
            "MillisBehindLatest": lag,
        }))
        .unwrap()
    });
    prop_oneof![
        (page, edits()).prop_map(|(body, edits)| mutated(body, &edits)),
        any_json().prop_map(|value| serde_json::to_vec(&value).unwrap()),
        prop::collection::vec(any::<u8>(), 0..256),
    ]
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn get_records_answers_are_records_or_a_malformed_response_error(body in get_records_body()) {
        static STUB: OnceLock<(StubServer, Arc<Mutex<Vec<u8>>>)> = OnceLock::new();
        let (stub, slot) = STUB.get_or_init(stub_answering);
        *slot.lock().unwrap() = body.clone();
        let client = KinesisClient::new(&stub_config(stub.url())).unwrap();
        match client.get_records_each("iterator", 100, |_| ControlFlow::Continue(())) {
            Ok(_) => {}
            Err(error @ Error::MalformedResponse { .. }) => {
                let message = error.to_string();
                prop_assert!(message.starts_with("GetRecords: malformed response"), "{message}");
            }
            Err(other) => prop_assert!(false, "{other:?} for {}", String::from_utf8_lossy(&body)),
        }
    }
}

// ---------------------------------------------------------------------------
// DynamoDB values, the other responses, lease items
// ---------------------------------------------------------------------------

/// Number text as DynamoDB sends it, and some it never would.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "-?[0-9]{1,40}(\\.[0-9]{1,6})?([eE][+-]?[0-9]{1,3})?",
        " ?[0-9]{1,25} ?",
        ".{0,10}",
    ]
}

fn attribute_value() -> impl Strategy<Value = AttributeValue> {
    let leaf = prop_oneof![
        ".{0,16}".prop_map(AttributeValue::S),
        number_text().prop_map(AttributeValue::N),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(AttributeValue::B),
        any::<bool>().prop_map(AttributeValue::Bool),
        Just(AttributeValue::null()),
        prop::collection::vec(".{0,8}", 0..4).prop_map(AttributeValue::Ss),
        prop::collection::vec(number_text(), 0..4).prop_map(AttributeValue::Ns),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..4)
            .prop_map(AttributeValue::Bs),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(AttributeValue::L),
            prop::collection::hash_map(".{0,8}", inner, 0..4).prop_map(AttributeValue::M),
        ]
    })
}

/// Parses `body` as `T`: a value or an error that says something, and no
/// allocation beyond what the body's size warrants.
fn parse_bounded<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let (parsed, largest) = largest_allocation(|| serde_json::from_slice::<T>(body));
    assert!(
        largest <= allocation_allowance(body.len()),
        "{largest} bytes allocated at once for a {}-byte body",
        body.len()
    );
    parsed.map_err(|error| {
        let message = error.to_string();
        assert!(!message.is_empty());
        message
    })
}

fn check_every_response_type(body: &[u8]) {
    let _ = parse_bounded::<AttributeValue>(body);
    let _ = parse_bounded::<Item>(body);
    let _ = parse_bounded::<ItemsPage>(body);
    let _ = parse_bounded::<GetItemOutput>(body);
    let _ = parse_bounded::<WriteItemOutput>(body);
    let _ = parse_bounded::<DescribeTableOutput>(body);
    let _ = parse_bounded::<TableDescriptionOutput>(body);
    let _ = parse_bounded::<DescribeTimeToLiveOutput>(body);
    let _ = parse_bounded::<UpdateTimeToLiveOutput>(body);
    let _ = parse_bounded::<BatchWriteItemOutput>(body);
    let _ = parse_bounded::<Vec<CancellationReason>>(body);
    let _ = parse_bounded::<PutRecordsOutput>(body);
    let _ = parse_bounded::<Vec<Shard>>(body);
    let _ = parse_bounded::<StreamSummary>(body);
    let _ = parse_bounded::<Record>(body);
}

proptest! {
    #[test]
    fn attribute_values_round_trip_as_dynamodb_json(value in attribute_value()) {
        let text = serde_json::to_vec(&value).unwrap();
        prop_assert_eq!(parse_bounded::<AttributeValue>(&text).unwrap(), value);
    }

    #[test]
    fn any_json_is_a_value_or_an_error(value in any_json()) {
        check_every_response_type(&serde_json::to_vec(&value).unwrap());
        let page = json!({"Items": [value.clone()], "Count": 1, "LastEvaluatedKey": value});
        check_every_response_type(&serde_json::to_vec(&page).unwrap());
    }

    #[test]
    fn damaged_responses_are_a_value_or_an_error(
        items in prop::collection::vec(
            prop::collection::hash_map("[a-z_]{1,8}", attribute_value(), 0..4),
            0..4,
        ),
        edits in edits(),
    ) {
        let page = json!({"Items": items, "Count": items.len(), "ScannedCount": items.len()});
        check_every_response_type(&mutated(serde_json::to_vec(&page).unwrap(), &edits));
    }

    #[test]
    fn random_bytes_are_a_value_or_an_error(body in prop::collection::vec(any::<u8>(), 0..256)) {
        check_every_response_type(&body);
    }

    #[test]
    fn deeply_nested_documents_are_refused_without_overflowing_the_stack(
        depth in 0usize..20_000,
        kind in prop::sample::select(&["L", "M"][..]),
    ) {
        let (open, close) = if kind == "L" { (r#"{"L":["#, "]}") } else { (r#"{"M":{"k":"#, "}}") };
        let body = format!(r#"{}{{"S":"x"}}{}"#, open.repeat(depth), close.repeat(depth));
        let parsed = parse_bounded::<AttributeValue>(body.as_bytes());
        if depth > 200 {
            prop_assert!(parsed.is_err(), "depth {depth} accepted");
        }
    }

    #[test]
    // At least 2e19: over u64::MAX (1.8e19), the widest count type.
    fn huge_numbers_in_counts_are_errors(digits in "[2-9][0-9]{19,400}") {
        let body = format!(r#"{{"Items":[],"Count":{digits},"ScannedCount":{digits}}}"#);
        prop_assert!(parse_bounded::<ItemsPage>(body.as_bytes()).is_err());
    }
}

/// A lease item as it might come back from a damaged or hostile table.
fn lease_item() -> impl Strategy<Value = Value> {
    let text = || prop_oneof![".{0,12}".prop_map(AttributeValue::S), attribute_value()];
    let counter = prop_oneof![
        any::<u64>().prop_map(AttributeValue::n),
        number_text().prop_map(AttributeValue::N),
        attribute_value(),
    ];
    let sequence = prop_oneof![
        "[0-9]{1,129}".prop_map(AttributeValue::S),
        "[0-9]{120,140}".prop_map(AttributeValue::S),
        Just(AttributeValue::s("SHARD_END")),
        attribute_value(),
    ];
    (
        prop::option::of(text()),
        prop::option::of(counter),
        prop::option::of(sequence),
        prop::option::of(prop_oneof![
            any::<u64>().prop_map(AttributeValue::n),
            attribute_value()
        ]),
        prop::option::of(attribute_value()),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(
            |(shard, counter, sequence, sub_sequence, parents, owner, handoff)| {
                let mut item = Item::new();
                for (name, value) in [
                    ("shard", shard),
                    ("lease_counter", counter),
                    ("sequence", sequence),
                    ("sub_sequence", sub_sequence),
                    ("parents", parents),
                    ("ref", owner),
                    ("handoff_to", handoff),
                ] {
                    if let Some(value) = value {
                        item.insert(name.to_owned(), value);
                    }
                }
                item.insert("shard_id".into(), AttributeValue::s("g:s:shard"));
                serde_json::to_value(item).unwrap()
            },
        )
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn lease_items_are_leases_or_a_malformed_response_error(item in lease_item()) {
        static STUB: OnceLock<(StubServer, Arc<Mutex<Vec<u8>>>)> = OnceLock::new();
        let (stub, slot) = STUB.get_or_init(stub_answering);
        *slot.lock().unwrap() =
            serde_json::to_vec(&json!({"Items": [item], "Count": 1, "ScannedCount": 1})).unwrap();
        let checkpointer = DynamoDbCheckpointer::builder("g")
            .aws_config(stub_config(stub.url()))
            .build()
            .unwrap();
        let scope = LeaseScope { group: "g".into(), stream: "s".into() };
        match checkpointer.leases(&scope) {
            Ok(leases) => {
                prop_assert_eq!(leases.len(), 1);
                if let Some(Checkpoint::At(position)) = &leases[0].checkpoint {
                    prop_assert!(is_sequence_number(&position.sequence_number));
                }
            }
            Err(error @ Error::MalformedResponse { .. }) => {
                prop_assert!(error.to_string().contains("lease item"), "{error}");
            }
            Err(other) => prop_assert!(false, "{other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// KPL aggregates
// ---------------------------------------------------------------------------

/// `message` framed as an aggregate with a correct digest: an MD5 is no
/// protection, anyone can compute it.
fn framed(message: &[u8]) -> Vec<u8> {
    let mut blob = KPL_MAGIC.to_vec();
    blob.extend_from_slice(message);
    blob.extend_from_slice(&Md5::digest(message));
    blob
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A length-delimited protobuf field: its tag, `declared` as its length,
/// then `body` (which may be shorter than declared).
fn length_field(field: u64, declared: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(field << 3 | 2, &mut out);
    varint(declared, &mut out);
    out.extend_from_slice(body);
    out
}

proptest! {
    #[test]
    fn random_protobuf_after_the_magic_is_user_records_or_plain(
        message in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let blob = framed(&message);
        let (_, largest) = largest_allocation(|| deaggregate(&blob));
        prop_assert!(largest <= allocation_allowance(blob.len()), "{largest} bytes at once");
    }

    #[test]
    fn a_length_claiming_gigabytes_is_not_allocated(
        declared in (1u64 << 20)..(1u64 << 62),
        field in prop::sample::select(&[1u64, 2, 3][..]),
        nested in any::<bool>(),
        body in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        // Either a table string or an entry claims `declared` bytes, or an
        // entry's data does inside an entry of honest length.
        let message = if nested {
            let entry = length_field(3, declared, &body);
            length_field(3, entry.len() as u64, &entry)
        } else {
            length_field(field, declared, &body)
        };
        let blob = framed(&message);
        let (users, largest) = largest_allocation(|| deaggregate(&blob));
        prop_assert!(users.is_none());
        prop_assert!(largest <= allocation_allowance(blob.len()), "{largest} bytes at once");
    }

    #[test]
    fn aggregates_round_trip(
        records in prop::collection::vec(
            (".{1,20}", prop::collection::vec(any::<u8>(), 0..64)),
            0..20,
        ),
    ) {
        let blob = aggregate(records.iter().map(|(key, data)| (key.as_str(), data.as_slice())));
        let users = deaggregate(&blob).unwrap();
        prop_assert_eq!(users.len(), records.len());
        for (index, (user, (key, data))) in users.iter().zip(&records).enumerate() {
            prop_assert_eq!(user.sub_sequence_number, index as u64);
            prop_assert_eq!(&user.partition_key, key);
            prop_assert_eq!(&user.data, data);
            prop_assert_eq!(user.explicit_hash_key.as_ref(), None);
        }
    }
}

// ---------------------------------------------------------------------------
// Sequence numbers and positions
// ---------------------------------------------------------------------------

/// Sequence numbers, with stray leading zeros and some that are not numbers.
fn any_sequence() -> impl Strategy<Value = String> {
    prop_oneof!["0{0,2}[0-9]{1,129}", "[1-9][0-9]{0,38}", ".{0,12}",]
}

/// `digits` as a 130-digit string, so text order is numeric order.
fn padded(digits: &str) -> String {
    format!("{digits:0>130}")
}

proptest! {
    #[test]
    fn short_sequence_numbers_compare_as_integers(a in "[0-9]{1,38}", b in "[0-9]{1,38}") {
        let expected = a.parse::<u128>().unwrap().cmp(&b.parse::<u128>().unwrap());
        prop_assert_eq!(compare_sequence_numbers(&a, &b), expected);
    }

    #[test]
    fn long_sequence_numbers_compare_as_numbers(
        a in "0{0,2}[0-9]{1,129}",
        b in "0{0,2}[0-9]{1,129}",
    ) {
        prop_assert_eq!(compare_sequence_numbers(&a, &b), padded(&a).cmp(&padded(&b)));
    }

    #[test]
    fn sequence_number_comparison_is_a_total_order(
        a in any_sequence(),
        b in any_sequence(),
        c in any_sequence(),
    ) {
        prop_assert_eq!(compare_sequence_numbers(&a, &a), Ordering::Equal);
        prop_assert_eq!(
            compare_sequence_numbers(&a, &b),
            compare_sequence_numbers(&b, &a).reverse()
        );
        let mut sorted = [&a, &b, &c];
        sorted.sort_by(|x, y| compare_sequence_numbers(x, y));
        prop_assert_ne!(compare_sequence_numbers(sorted[0], sorted[1]), Ordering::Greater);
        prop_assert_ne!(compare_sequence_numbers(sorted[1], sorted[2]), Ordering::Greater);
        prop_assert_ne!(compare_sequence_numbers(sorted[0], sorted[2]), Ordering::Greater);
    }

    #[test]
    fn well_formed_sequence_numbers_are_1_to_129_digits(text in "[0-9a ]{0,3}[0-9]{0,140}") {
        // Kinesis writes no leading zero: "010" would compare equal to "10".
        let expected = (1..=129).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        prop_assert_eq!(is_sequence_number(&text), expected);
    }

    #[test]
    fn positions_order_by_sequence_then_sub_sequence(
        a in "[0-9]{1,38}", x in any::<u64>(),
        b in "[0-9]{1,38}", y in any::<u64>(),
    ) {
        let (p, q) = (Position::new(&a, x), Position::new(&b, y));
        let expected = (a.parse::<u128>().unwrap(), x).cmp(&(b.parse::<u128>().unwrap(), y));
        prop_assert_eq!(p.cmp(&q), expected);
        prop_assert_eq!(p.partial_cmp(&q), Some(expected));
        prop_assert_eq!(Checkpoint::At(p.clone()).allows(&Checkpoint::At(q.clone())), q >= p);
        prop_assert_eq!(Checkpoint::At(p.clone()).covers(&q), p >= q);
        prop_assert!(Checkpoint::At(p.clone()).allows(&Checkpoint::ShardEnd));
        prop_assert!(!Checkpoint::ShardEnd.allows(&Checkpoint::At(q.clone())));
        prop_assert!(Checkpoint::ShardEnd.covers(&q));
    }

    /// Kinesis never writes leading zeros; with them, "010" and "10" are
    /// equal in order but not as text.
    #[test]
    fn positions_equal_in_order_are_equal(
        a in "0|[1-9][0-9]{0,129}", x in 0u64..3,
        b in "0|[1-9][0-9]{0,129}", y in 0u64..3,
    ) {
        let (p, q) = (Position::new(a, x), Position::new(b, y));
        prop_assert_eq!(p.cmp(&q) == Ordering::Equal, p == q);
    }
}

// ---------------------------------------------------------------------------
// The C ABI's string arguments
// ---------------------------------------------------------------------------

/// Longer than this, a message echoes its input instead of explaining.
const MAX_MESSAGE_BYTES: usize = 4096;

/// Bytes as C would pass them: NUL-terminated; C sees them up to the first
/// NUL, so interior NULs cut the string short.
struct CBytes(Vec<u8>);

/// A failing case names its strings by length and start, not 1 MiB of bytes.
impl std::fmt::Debug for CBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bytes = &self.0[..self.0.len() - 1];
        let start = String::from_utf8_lossy(&bytes[..bytes.len().min(32)]);
        write!(f, "{} bytes {start:?}", bytes.len())
    }
}

impl CBytes {
    fn new(bytes: &[u8]) -> CBytes {
        let mut terminated = bytes.to_vec();
        terminated.push(0);
        CBytes(terminated)
    }

    fn as_ptr(&self) -> *const c_char {
        self.0.as_ptr().cast()
    }

    /// The status a string argument gets: UTF-8 up to the first NUL or not.
    fn status(&self) -> kcheck_status {
        let seen = CStr::from_bytes_until_nul(&self.0).unwrap().to_bytes();
        match std::str::from_utf8(seen) {
            Ok(_) => kcheck_status::Ok,
            Err(_) => kcheck_status::InvalidUtf8,
        }
    }
}

/// Short strings with NULs and invalid UTF-8, and repeated ones up to 1 MiB.
fn c_string() -> impl Strategy<Value = CBytes> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..64),
        3 => ".{0,64}".prop_map(String::into_bytes),
        1 => (prop::collection::vec(any::<u8>(), 1..8), 0usize..=1 << 20)
            .prop_map(|(unit, len)| unit.iter().copied().cycle().take(len).collect()),
        1 => ("[a-z:]{1,4}", 0usize..=1 << 20)
            .prop_map(|(unit, len)| unit.bytes().cycle().take(len).collect()),
    ]
    .prop_map(|bytes: Vec<u8>| CBytes::new(&bytes))
}

/// The message of the failure that gave `status`, checked for length.
fn checked_message(status: kcheck_status) -> Result<(), TestCaseError> {
    prop_assert!(
        !matches!(status, kcheck_status::Panic | kcheck_status::Poisoned),
        "{status:?}"
    );
    if status != kcheck_status::Ok {
        let message = unsafe { CStr::from_ptr(kcheck_last_error_message()) }.to_bytes();
        prop_assert!(!message.is_empty(), "{status:?} without a message");
        prop_assert!(
            message.len() <= MAX_MESSAGE_BYTES,
            "{status:?}: a {}-byte message starting {:?}",
            message.len(),
            String::from_utf8_lossy(&message[..message.len().min(120)])
        );
    }
    Ok(())
}

/// A stub Kinesis where no stream exists, so a consumer that gets as far as
/// the network fails at once, and credentials the FFI reads from the
/// environment as a C host's would be.
fn kinesis_without_streams() -> &'static StubServer {
    static STUB: OnceLock<StubServer> = OnceLock::new();
    STUB.get_or_init(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDTEST");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test-secret");
        StubServer::start(|_| {
            StubResponse::json(
                400,
                r#"{"__type":"ResourceNotFoundException","message":"Stream not found"}"#,
            )
        })
    })
}

proptest! {
    #![proptest_config(cases(64))]

    #[test]
    fn consumer_builder_strings_get_a_status_and_a_short_message(
        stream in c_string(),
        endpoint in c_string(),
        region in c_string(),
    ) {
        let stub = CBytes::new(kinesis_without_streams().url().as_bytes());
        let mut builder = ptr::null_mut();
        let status = unsafe { kcheck_consumer_builder_new(stream.as_ptr(), &mut builder) };
        prop_assert_eq!(status, stream.status());
        checked_message(status)?;
        if status != kcheck_status::Ok {
            return Ok(());
        }
        unsafe {
            let status = kcheck_consumer_builder_set_endpoint_url(builder, endpoint.as_ptr());
            prop_assert_eq!(status, endpoint.status());
            checked_message(status)?;
            let status = kcheck_consumer_builder_set_region_name(builder, region.as_ptr());
            prop_assert_eq!(status, region.status());
            checked_message(status)?;
            // The stub, not the hostile endpoint, gets any request.
            prop_assert_eq!(
                kcheck_consumer_builder_set_endpoint_url(builder, stub.as_ptr()),
                kcheck_status::Ok
            );
            let mut consumer = ptr::null_mut();
            let status = kcheck_consumer_builder_build(builder, &mut consumer);
            prop_assert_ne!(status, kcheck_status::Ok);
            prop_assert!(consumer.is_null());
            checked_message(status)?;
        }
    }

    #[test]
    fn checkpointer_builder_strings_get_a_status_and_a_short_message(
        name in c_string(),
        table in c_string(),
        endpoint in c_string(),
        region in c_string(),
    ) {
        let mut builder = ptr::null_mut();
        let status =
            unsafe { kcheck_checkpointer_builder_new_dynamodb(name.as_ptr(), &mut builder) };
        prop_assert_eq!(status, name.status());
        checked_message(status)?;
        if status != kcheck_status::Ok {
            return Ok(());
        }
        unsafe {
            let status = kcheck_checkpointer_builder_set_table_name(builder, table.as_ptr());
            prop_assert_eq!(status, table.status());
            checked_message(status)?;
            let status = kcheck_checkpointer_builder_set_endpoint_url(builder, endpoint.as_ptr());
            prop_assert_eq!(status, endpoint.status());
            checked_message(status)?;
            let status = kcheck_checkpointer_builder_set_region_name(builder, region.as_ptr());
            prop_assert_eq!(status, region.status());
            checked_message(status)?;
            // Building only checks the options; the table is reached later.
            let mut checkpointer = ptr::null_mut();
            let status = kcheck_checkpointer_builder_build(builder, &mut checkpointer);
            checked_message(status)?;
            kcheck_checkpointer_free(checkpointer);
        }
    }

    #[test]
    fn memory_checkpointers_refuse_dynamodb_strings_with_a_short_message(text in c_string()) {
        let mut builder = ptr::null_mut();
        unsafe {
            let status = kcheck_checkpointer_builder_new_memory(&mut builder);
            prop_assert_eq!(status, kcheck_status::Ok);
            for status in [
                kcheck_checkpointer_builder_set_table_name(builder, text.as_ptr()),
                kcheck_checkpointer_builder_set_endpoint_url(builder, text.as_ptr()),
                kcheck_checkpointer_builder_set_region_name(builder, text.as_ptr()),
            ] {
                prop_assert_eq!(status, kcheck_status::InvalidArgument);
                checked_message(status)?;
            }
            kcheck_checkpointer_builder_free(builder);
        }
    }
}

proptest! {
    #[test]
    fn numeric_arguments_get_a_status_and_a_short_message(
        flag in prop_oneof![0u32..3, any::<u32>()],
        position in prop_oneof![0u32..4, any::<u32>()],
        timestamp_ms in any::<i64>(),
        session_ms in prop_oneof![0u64..100_000, any::<u64>()],
        heartbeat_ms in prop_oneof![0u64..100_000, any::<u64>()],
        status_number in any::<u32>(),
    ) {
        let name = unsafe { CStr::from_ptr(kcheck_status_name(status_number)) };
        prop_assert!(name.to_bytes().starts_with(b"KCHECK_STATUS_"));

        let flag_status = match flag {
            0 | 1 => kcheck_status::Ok,
            _ => kcheck_status::InvalidArgument,
        };
        let mut builder = ptr::null_mut();
        unsafe {
            let status = kcheck_checkpointer_builder_new_memory(&mut builder);
            prop_assert_eq!(status, kcheck_status::Ok);
            let status = kcheck_checkpointer_builder_set_auto_checkpoint(builder, flag);
            prop_assert_eq!(status, flag_status);
            checked_message(status)?;
            for status in [
                kcheck_checkpointer_builder_set_session_timeout_ms(builder, session_ms),
                kcheck_checkpointer_builder_set_heartbeat_frequency_ms(builder, heartbeat_ms),
            ] {
                prop_assert_eq!(status, kcheck_status::Ok);
            }
            let mut checkpointer = ptr::null_mut();
            let status = kcheck_checkpointer_builder_build(builder, &mut checkpointer);
            let valid = 0 < heartbeat_ms && heartbeat_ms < session_ms;
            prop_assert_eq!(status == kcheck_status::Ok, valid, "{:?}", status);
            checked_message(status)?;
            kcheck_checkpointer_free(checkpointer);
        }

        let position_status = match position {
            0 | 1 => kcheck_status::Ok,
            2 if timestamp_ms >= 0 => kcheck_status::Ok,
            _ => kcheck_status::InvalidArgument,
        };
        let mut builder = ptr::null_mut();
        unsafe {
            let status = kcheck_consumer_builder_new(c"s".as_ptr(), &mut builder);
            prop_assert_eq!(status, kcheck_status::Ok);
            let status =
                kcheck_consumer_builder_set_initial_position(builder, position, timestamp_ms);
            prop_assert_eq!(status, position_status);
            checked_message(status)?;
            kcheck_consumer_builder_free(builder);
        }
    }
}
