//! Every DynamoDB operation against the dynoxide emulator. Each test uses its
//! own table, so they run in parallel.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use kcheck::dynamodb::{
    item, AttributeValue, ConditionCheck, CreateTableRequest, DeleteItemRequest, DynamoDbClient,
    GetItemRequest, Item, PutItemRequest, QueryRequest, ReturnValues, ScalarAttributeType,
    ScanRequest, TableRequest, TableStatus, TimeToLiveStatus, TransactWriteItemsRequest,
    UpdateItemRequest, UpdateTimeToLiveRequest, WriteError, WriteRequest,
};
use kcheck::{Error, ErrorCode};

const WAIT: Duration = Duration::from_secs(10);

fn client() -> DynamoDbClient {
    DynamoDbClient::new(&support::dynamodb_config()).unwrap()
}

fn key(pk: &str) -> Item {
    item([("pk", AttributeValue::s(pk))])
}

fn sorted_key(pk: &str, sk: usize) -> Item {
    item([("pk", AttributeValue::s(pk)), ("sk", AttributeValue::n(sk))])
}

fn get(client: &DynamoDbClient, table: &str, key: Item) -> Option<Item> {
    client
        .get_item(&GetItemRequest::new(table, key).consistent_read(true))
        .unwrap()
        .item
}

fn assert_service_error(error: &Error, operation: &str, code: ErrorCode) {
    match error {
        Error::Service {
            operation: op,
            code: c,
            status,
            ..
        } => {
            assert_eq!((*op, c), (operation, &code), "{error}");
            assert_eq!(*status, 400, "{error}");
        }
        other => panic!("expected {code} from {operation}, got {other:?}"),
    }
}

#[test]
fn create_describe_and_delete_a_table() {
    let client = client();
    let name = support::unique_name("tbl");
    let created = client
        .create_table(
            &CreateTableRequest::new(&name, "pk", ScalarAttributeType::S)
                .range_key("sk", ScalarAttributeType::N)
                .provisioned(5, 7),
        )
        .unwrap()
        .table_description
        .unwrap();
    assert_eq!(created.table_name.as_deref(), Some(name.as_str()));

    let active = client.wait_for_table_active(&name, WAIT).unwrap();
    assert_eq!(active.table_status, Some(TableStatus::Active));
    let table = client
        .describe_table(&TableRequest::new(&name))
        .unwrap()
        .table
        .unwrap();
    assert_eq!(table.table_name.as_deref(), Some(name.as_str()));
    assert_eq!(table.table_status, Some(TableStatus::Active));
    assert!(table.table_arn.unwrap().ends_with(&format!("table/{name}")));
    let keys: Vec<_> = table
        .key_schema
        .iter()
        .map(|k| k.attribute_name.as_str())
        .collect();
    assert_eq!(keys, ["pk", "sk"]);
    assert_eq!(table.item_count, Some(0));

    // A second CreateTable of the same name is refused.
    let duplicate = client
        .create_table(&CreateTableRequest::new(
            &name,
            "pk",
            ScalarAttributeType::S,
        ))
        .unwrap_err();
    assert_service_error(&duplicate, "CreateTable", ErrorCode::ResourceInUse);

    client.delete_table(&TableRequest::new(&name)).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        match client.describe_table(&TableRequest::new(&name)) {
            Err(error) => {
                assert_service_error(&error, "DescribeTable", ErrorCode::ResourceNotFound);
                break;
            }
            Ok(_) => assert!(Instant::now() < deadline, "table never went away"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_missing_table_is_resource_not_found_naming_the_operation() {
    let client = client();
    let missing = support::unique_name("missing");

    let error = client
        .describe_table(&TableRequest::new(&missing))
        .unwrap_err();
    assert_service_error(&error, "DescribeTable", ErrorCode::ResourceNotFound);
    let error = client
        .get_item(&GetItemRequest::new(&missing, key("a")))
        .unwrap_err();
    assert_service_error(&error, "GetItem", ErrorCode::ResourceNotFound);
    let error = client
        .query(&QueryRequest::new(&missing, "pk = :p").value(":p", "a"))
        .unwrap_err();
    assert_service_error(&error, "Query", ErrorCode::ResourceNotFound);
    let error = client
        .put_item(&PutItemRequest::new(&missing, key("a")))
        .unwrap_err();
    assert!(!error.is_condition_failed() && error.current_item().is_none());
    assert_service_error(&error.error, "PutItem", ErrorCode::ResourceNotFound);
    assert!(
        error
            .to_string()
            .starts_with("PutItem: ResourceNotFoundException"),
        "{error}"
    );

    // Waiting for a table that never appears is bounded.
    let started = Instant::now();
    let error = client
        .wait_for_table_active(&missing, Duration::from_millis(300))
        .unwrap_err();
    assert_service_error(&error, "DescribeTable", ErrorCode::ResourceNotFound);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn time_to_live_is_updated_and_described() {
    let client = client();
    let table = support::create_table(&client, false);
    let before = client
        .describe_time_to_live(&TableRequest::new(&table))
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(before.time_to_live_status, Some(TimeToLiveStatus::Disabled));

    let updated = client
        .update_time_to_live(&UpdateTimeToLiveRequest::new(&table, "expiresAt", true))
        .unwrap()
        .time_to_live_specification
        .unwrap();
    assert!(updated.enabled);
    assert_eq!(updated.attribute_name, "expiresAt");

    let after = client
        .describe_time_to_live(&TableRequest::new(&table))
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert!(
        matches!(
            after.time_to_live_status,
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ),
        "{after:?}"
    );
    assert_eq!(after.attribute_name.as_deref(), Some("expiresAt"));
}

#[test]
fn put_get_and_update_items() {
    let client = client();
    let table = support::create_table(&client, false);
    let stored = item([
        ("pk", AttributeValue::s("lease-1")),
        ("counter", AttributeValue::n(7)),
        ("owner", AttributeValue::s("worker-a")),
        ("blob", AttributeValue::b(vec![0u8, 1, 254, 255])),
        ("done", AttributeValue::from(false)),
        ("nothing", AttributeValue::null()),
        ("parents", AttributeValue::ss(["shard-0"])),
        ("numbers", AttributeValue::ns([3])),
        ("blobs", AttributeValue::Bs(vec![b"x".to_vec()])),
        (
            "doc",
            AttributeValue::m(item([(
                "list",
                AttributeValue::l([AttributeValue::n(1), AttributeValue::s("two")]),
            )])),
        ),
    ]);
    let put = client
        .put_item(&PutItemRequest::new(&table, stored.clone()))
        .unwrap();
    assert_eq!(put.attributes, None);
    assert_eq!(get(&client, &table, key("lease-1")), Some(stored.clone()));
    assert_eq!(get(&client, &table, key("absent")), None);

    // A projection with a name placeholder.
    let projected = client
        .get_item(
            &GetItemRequest::new(&table, key("lease-1"))
                .projection("#o, #b")
                .name("#o", "owner")
                .name("#b", "blob"),
        )
        .unwrap()
        .item
        .unwrap();
    assert_eq!(projected.len(), 2);
    assert_eq!(projected["owner"].as_s(), Some("worker-a"));
    assert_eq!(projected["blob"].as_b(), Some(&[0u8, 1, 254, 255][..]));

    // ADD and SET, returning the whole new item.
    let new = client
        .update_item(
            &UpdateItemRequest::new(&table, key("lease-1"), "ADD #c :one SET #o = :o")
                .name("#c", "counter")
                .name("#o", "owner")
                .value(":one", 1)
                .value(":o", "worker-b")
                .return_values(ReturnValues::AllNew),
        )
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(new["counter"].as_i64(), Some(8));
    assert_eq!(new["owner"].as_s(), Some("worker-b"));
    assert_eq!(new["blob"], stored["blob"]);

    // The old values of just the updated attributes.
    let old = client
        .update_item(
            &UpdateItemRequest::new(&table, key("lease-1"), "ADD #c :one")
                .name("#c", "counter")
                .value(":one", 1)
                .return_values(ReturnValues::UpdatedOld),
        )
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(old, item([("counter", AttributeValue::n(8))]));

    // Replacing a whole item returns the old one with ALL_OLD.
    let replaced = client
        .put_item(&PutItemRequest::new(&table, key("lease-1")).return_values(ReturnValues::AllOld))
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(replaced["counter"].as_u64(), Some(9));
    assert_eq!(get(&client, &table, key("lease-1")), Some(key("lease-1")));
}

#[test]
fn failed_conditions_return_the_current_item() {
    let client = client();
    let table = support::create_table(&client, false);
    let lease = item([
        ("pk", AttributeValue::s("lease")),
        ("counter", AttributeValue::n(1)),
        ("owner", AttributeValue::s("a")),
    ]);
    // attribute_not_exists lets the first put through and stops the second.
    let create = PutItemRequest::new(&table, lease.clone())
        .condition("attribute_not_exists(pk)")
        .return_old_on_condition_failure();
    client.put_item(&create).unwrap();
    let error = client.put_item(&create).unwrap_err();
    assert!(error.is_condition_failed());
    assert_service_error(&error.error, "PutItem", ErrorCode::ConditionalCheckFailed);
    assert_eq!(error.current_item(), Some(&lease));

    // A conditional update on a stale counter fails and shows the lease.
    let take = |expected: u64| {
        UpdateItemRequest::new(&table, key("lease"), "SET #o = :me ADD #c :one")
            .condition("#c = :expected")
            .name("#o", "owner")
            .name("#c", "counter")
            .value(":me", "b")
            .value(":one", 1)
            .value(":expected", expected)
    };
    let error: WriteError = client
        .update_item(&take(5).return_old_on_condition_failure())
        .unwrap_err();
    assert_service_error(
        &error.error,
        "UpdateItem",
        ErrorCode::ConditionalCheckFailed,
    );
    assert_eq!(error.current_item(), Some(&lease));
    // Without ALL_OLD the item is not sent.
    let error = client.update_item(&take(5)).unwrap_err();
    assert!(error.is_condition_failed());
    assert_eq!(error.current_item(), None);
    // With the right counter it goes through.
    client.update_item(&take(1)).unwrap();
    let now = get(&client, &table, key("lease")).unwrap();
    assert_eq!(
        (now["owner"].as_s(), now["counter"].as_u64()),
        (Some("b"), Some(2))
    );

    // Errors convert into kcheck's error for `?`.
    let plain: Error = client.put_item(&create).unwrap_err().into();
    assert_eq!(plain.code(), Some(&ErrorCode::ConditionalCheckFailed));
}

#[test]
fn deletes_honour_their_condition() {
    let client = client();
    let table = support::create_table(&client, false);
    let lease = item([
        ("pk", AttributeValue::s("x")),
        ("owner", AttributeValue::s("a")),
    ]);
    client
        .put_item(&PutItemRequest::new(&table, lease.clone()))
        .unwrap();

    let delete_if_owner = |owner: &str| {
        DeleteItemRequest::new(&table, key("x"))
            .condition("#o = :o")
            .name("#o", "owner")
            .value(":o", owner)
            .return_old_on_condition_failure()
            .return_values(ReturnValues::AllOld)
    };
    let error = client.delete_item(&delete_if_owner("b")).unwrap_err();
    assert_service_error(
        &error.error,
        "DeleteItem",
        ErrorCode::ConditionalCheckFailed,
    );
    assert_eq!(error.current_item(), Some(&lease));
    assert_eq!(get(&client, &table, key("x")), Some(lease.clone()));

    let deleted = client.delete_item(&delete_if_owner("a")).unwrap();
    assert_eq!(deleted.attributes, Some(lease));
    assert_eq!(get(&client, &table, key("x")), None);
    // Deleting what is not there is fine without a condition…
    client
        .delete_item(&DeleteItemRequest::new(&table, key("x")))
        .unwrap();
    // …and a failed condition on a missing item has no item to show.
    let error = client.delete_item(&delete_if_owner("a")).unwrap_err();
    assert!(error.is_condition_failed());
    assert_eq!(error.current_item(), None);
}

/// Puts `count` items into partition `pk` with sort keys 0..count.
fn fill_partition(client: &DynamoDbClient, table: &str, pk: &str, count: usize) {
    let writes = (0..count).map(|sk| {
        let mut item = sorted_key(pk, sk);
        item.insert("even".into(), (sk % 2 == 0).into());
        WriteRequest::put(item)
    });
    client.batch_write_all(table, writes).unwrap();
}

fn sort_keys(items: &[Item]) -> Vec<u64> {
    items.iter().map(|i| i["sk"].as_u64().unwrap()).collect()
}

#[test]
fn queries_page_through_a_partition() {
    let client = client();
    let table = support::create_table(&client, true);
    fill_partition(&client, &table, "p", 57);
    fill_partition(&client, &table, "q", 10);
    let request = QueryRequest::new(&table, "#k = :p")
        .name("#k", "pk")
        .value(":p", "p")
        .limit(7)
        .consistent_read(true);

    // Page by page by hand: every item exactly once, in sort-key order.
    let mut pages = 0;
    let mut seen = Vec::new();
    let mut start = None;
    loop {
        let page = client.query(&request.clone().start_key(start)).unwrap();
        assert!(page.items.len() <= 7);
        assert_eq!(page.count as usize, page.items.len());
        pages += 1;
        seen.extend(page.items);
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
        assert!(pages < 100, "pagination does not end");
    }
    assert!(pages >= 9, "{pages} pages");
    assert_eq!(sort_keys(&seen), (0..57).collect::<Vec<_>>());

    // The same with query_all, with and without a cap.
    let all = client.query_all(&request, None).unwrap();
    assert_eq!(sort_keys(&all), (0..57).collect::<Vec<_>>());
    assert!(all.iter().all(|i| i["pk"].as_s() == Some("p")));
    let first = client.query_all(&request, Some(10)).unwrap();
    assert_eq!(sort_keys(&first), (0..10).collect::<Vec<_>>());

    // Descending, with a sort-key range and a filter.
    let filtered = client
        .query_all(
            &QueryRequest::new(&table, "pk = :p AND sk BETWEEN :lo AND :hi")
                .value(":p", "p")
                .value(":lo", 10)
                .value(":hi", 20)
                .filter("even = :t")
                .value(":t", true)
                .scan_forward(false)
                .limit(3),
            None,
        )
        .unwrap();
    assert_eq!(sort_keys(&filtered), [20, 18, 16, 14, 12, 10]);
}

#[test]
fn scans_page_through_a_table() {
    let client = client();
    let table = support::create_table(&client, true);
    fill_partition(&client, &table, "a", 23);
    fill_partition(&client, &table, "b", 31);

    let request = ScanRequest::new(&table).limit(5).consistent_read(true);
    let mut pages = 0;
    let mut start = None;
    let mut seen = HashSet::new();
    loop {
        let page = client.scan(&request.clone().start_key(start)).unwrap();
        pages += 1;
        for item in page.items {
            let id = (
                item["pk"].as_s().unwrap().to_owned(),
                item["sk"].as_u64().unwrap(),
            );
            assert!(seen.insert(id.clone()), "{id:?} seen twice");
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
        assert!(pages < 100, "pagination does not end");
    }
    assert_eq!(seen.len(), 54);
    assert!(pages >= 11, "{pages} pages");

    let all = client.scan_all(&request, None).unwrap();
    let unique: HashSet<_> = all
        .iter()
        .map(|i| {
            (
                i["pk"].as_s().unwrap().to_owned(),
                i["sk"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!((all.len(), unique), (54, seen));
    assert_eq!(client.scan_all(&request, Some(12)).unwrap().len(), 12);
    let odd = client
        .scan_all(
            &ScanRequest::new(&table)
                .filter("even = :f")
                .value(":f", false),
            None,
        )
        .unwrap();
    assert_eq!(odd.len(), 11 + 15);
}

#[test]
fn batch_writes_chunk_puts_and_deletes() {
    let client = client();
    let table = support::create_table(&client, false);
    let name = |i: usize| format!("item-{i:03}");
    client
        .batch_write_all(
            &table,
            (0..60).map(|i| {
                WriteRequest::put(item([("pk", AttributeValue::s(name(i))), ("v", i.into())]))
            }),
        )
        .unwrap();
    assert_eq!(
        client
            .scan_all(&ScanRequest::new(&table), None)
            .unwrap()
            .len(),
        60
    );

    // Delete 0..40 and add 60..70 in one call of several chunks.
    let writes = (0..40)
        .map(|i| WriteRequest::delete(key(&name(i))))
        .chain((60..70).map(|i| WriteRequest::put(key(&name(i)))));
    client.batch_write_all(&table, writes).unwrap();
    let left: BTreeSet<String> = client
        .scan_all(&ScanRequest::new(&table), None)
        .unwrap()
        .iter()
        .map(|i| i["pk"].as_s().unwrap().to_owned())
        .collect();
    assert_eq!(left, (40..70).map(name).collect());
    assert_eq!(
        get(&client, &table, key(&name(41))).unwrap()["v"].as_u64(),
        Some(41)
    );

    // Nothing to write is no call at all; a single call reports what it left.
    client.batch_write_all(&table, Vec::new()).unwrap();
    let output = client
        .batch_write_item(&kcheck::dynamodb::BatchWriteItemRequest::new(
            &table,
            vec![WriteRequest::delete(key(&name(40)))],
        ))
        .unwrap();
    assert!(output.unprocessed_items.values().all(Vec::is_empty));
}

#[test]
fn transactions_commit_or_report_why_not() {
    let client = client();
    let table = support::create_table(&client, false);
    let lease = item([
        ("pk", AttributeValue::s("lease")),
        ("owner", AttributeValue::s("a")),
    ]);
    client
        .put_item(&PutItemRequest::new(&table, lease.clone()))
        .unwrap();
    client
        .put_item(&PutItemRequest::new(&table, key("old")))
        .unwrap();

    let transaction = |owner: &str| {
        TransactWriteItemsRequest::default()
            .action(
                ConditionCheck::new(&table, key("lease"), "#o = :o")
                    .name("#o", "owner")
                    .value(":o", owner)
                    .return_old_on_condition_failure(),
            )
            .action(PutItemRequest::new(&table, key("checkpoint")))
            .action(UpdateItemRequest::new(&table, key("counter"), "ADD n :one").value(":one", 1))
            .action(DeleteItemRequest::new(&table, key("old")))
    };

    // The condition fails: nothing is written and the reasons say why.
    let error = client.transact_write_items(&transaction("b")).unwrap_err();
    assert!(error.is_transaction_canceled(), "{error}");
    assert_service_error(
        &error.error,
        "TransactWriteItems",
        ErrorCode::TransactionCanceled,
    );
    let reasons = &error.cancellation_reasons;
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].is_condition_failed(), "{reasons:?}");
    assert_eq!(reasons[0].item.as_ref(), Some(&lease));
    assert!(reasons[1..].iter().all(|r| r.is_none()), "{reasons:?}");
    assert_eq!(get(&client, &table, key("checkpoint")), None);
    assert_eq!(get(&client, &table, key("counter")), None);
    assert!(get(&client, &table, key("old")).is_some());

    // The condition holds: everything is written.
    client.transact_write_items(&transaction("a")).unwrap();
    assert_eq!(
        get(&client, &table, key("checkpoint")),
        Some(key("checkpoint"))
    );
    assert_eq!(
        get(&client, &table, key("counter")).unwrap()["n"].as_u64(),
        Some(1)
    );
    assert_eq!(get(&client, &table, key("old")), None);

    // ReturnValues has no place in a transaction: refused before sending.
    let error = client
        .transact_write_items(&TransactWriteItemsRequest::new([PutItemRequest::new(
            &table,
            key("y"),
        )
        .return_values(ReturnValues::AllOld)
        .into()]))
        .unwrap_err();
    assert!(matches!(error.error, Error::Config(_)), "{error}");
}

#[test]
fn clients_are_shared_across_threads() {
    fn send_sync<T: Send + Sync + Clone + std::fmt::Debug>(_: &T) {}
    let client = client();
    send_sync(&client);
    assert!(client.endpoint().starts_with("http://127.0.0.1:"));
    let table = support::create_table(&client, false);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let (client, table) = (client.clone(), &table);
            scope.spawn(move || {
                for _ in 0..10 {
                    client
                        .update_item(
                            &UpdateItemRequest::new(table, key("shared"), "ADD n :one")
                                .value(":one", 1),
                        )
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(
        get(&client, &table, key("shared")).unwrap()["n"].as_u64(),
        Some(40)
    );
}
