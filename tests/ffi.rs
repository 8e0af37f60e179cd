//! The C ABI called directly from Rust: argument checks, out-params left
//! untouched on error, `_free(NULL)`, double close, per-thread last errors,
//! and a consumer driven end to end through the extern functions against
//! the emulators; the producer and the DynamoDB writer likewise.

#[path = "support/fault_proxy.rs"]
mod fault_proxy;
mod support;

use std::collections::HashSet;
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kcheck::ffi::*;
use support::*;

const SENTINEL: usize = 0xdead;

fn sentinel<T>() -> *mut T {
    SENTINEL as *mut T
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(kcheck_last_error_message()) }
        .to_str()
        .unwrap()
        .to_owned()
}

fn last_error_code() -> String {
    unsafe { CStr::from_ptr(kcheck_last_error_code()) }
        .to_str()
        .unwrap()
        .to_owned()
}

fn c(text: &str) -> CString {
    CString::new(text).unwrap()
}

/// The FFI reads credentials from the environment, like a C host would.
/// Set once, before any consumer thread runs.
fn with_test_credentials() {
    static SET: OnceLock<()> = OnceLock::new();
    SET.get_or_init(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDTEST");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test-secret");
        std::env::set_var("AWS_DEFAULT_REGION", "us-east-1");
        emulators();
    });
}

fn builder_for(stream: &str) -> *mut kcheck_consumer_builder {
    let mut builder = ptr::null_mut();
    let name = c(stream);
    assert_eq!(
        unsafe { kcheck_consumer_builder_new(name.as_ptr(), &mut builder) },
        kcheck_status::Ok
    );
    builder
}

#[test]
fn null_arguments_are_refused_and_out_params_stay_untouched() {
    let mut builder: *mut kcheck_consumer_builder = sentinel();
    let status = unsafe { kcheck_consumer_builder_new(ptr::null(), &mut builder) };
    assert_eq!(status, kcheck_status::InvalidArgument);
    assert_eq!(builder as usize, SENTINEL);
    assert_eq!(last_error(), "stream_name is NULL");

    let status = unsafe { kcheck_consumer_builder_new(c"s".as_ptr(), ptr::null_mut()) };
    assert_eq!(status, kcheck_status::InvalidArgument);
    assert_eq!(last_error(), "out is NULL");

    let mut consumer: *mut kcheck_consumer = sentinel();
    let status = unsafe { kcheck_consumer_builder_build(ptr::null_mut(), &mut consumer) };
    assert_eq!(status, kcheck_status::InvalidArgument);
    assert_eq!(consumer as usize, SENTINEL);

    let mut record: *mut kcheck_record = sentinel();
    let mut batch: *mut kcheck_batch = sentinel();
    let mut json: *mut c_char = sentinel();
    unsafe {
        assert_eq!(
            kcheck_consumer_next(ptr::null(), 0, &mut record),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_consumer_next_batch(ptr::null(), 10, 0, &mut batch),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_consumer_stats_json(ptr::null(), &mut json),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_consumer_checkpoint(ptr::null()),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_consumer_checkpoint_record(ptr::null(), ptr::null()),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_consumer_close(ptr::null()),
            kcheck_status::InvalidArgument
        );
        assert!(kcheck_consumer_owner_id(ptr::null()).is_null());
        let mut fields = std::mem::MaybeUninit::<kcheck_record_fields>::uninit();
        assert_eq!(
            kcheck_record_get_fields(ptr::null(), fields.as_mut_ptr()),
            kcheck_status::InvalidArgument
        );
        assert_eq!(kcheck_batch_len(ptr::null()), 0);
        assert!(kcheck_batch_get(ptr::null(), 0).is_null());
        let mut array: *const kcheck_record_fields = sentinel();
        let mut len = SENTINEL;
        assert_eq!(
            kcheck_batch_get_fields(ptr::null(), &mut array, &mut len),
            kcheck_status::InvalidArgument
        );
        assert_eq!((array as usize, len), (SENTINEL, SENTINEL));
        assert_eq!(
            kcheck_consumer_builder_set_endpoint_url(ptr::null_mut(), c"x".as_ptr()),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "consumer builder is NULL");
    }
    assert_eq!(record as usize, SENTINEL);
    assert_eq!(batch as usize, SENTINEL);
    assert_eq!(json as usize, SENTINEL);
}

#[test]
fn free_of_null_does_nothing() {
    unsafe {
        kcheck_consumer_builder_free(ptr::null_mut());
        kcheck_consumer_free(ptr::null_mut());
        kcheck_checkpointer_builder_free(ptr::null_mut());
        kcheck_checkpointer_free(ptr::null_mut());
        kcheck_record_free(ptr::null_mut());
        kcheck_batch_free(ptr::null_mut());
        kcheck_string_free(ptr::null_mut());
    }
}

#[test]
fn bad_utf8_and_bad_values_have_their_own_statuses() {
    let invalid = [0x66u8, 0xff, 0xfe, 0];
    let mut builder: *mut kcheck_consumer_builder = sentinel();
    let status = unsafe { kcheck_consumer_builder_new(invalid.as_ptr().cast(), &mut builder) };
    assert_eq!(status, kcheck_status::InvalidUtf8);
    assert_eq!(builder as usize, SENTINEL);
    assert_eq!(last_error(), "stream_name is not valid UTF-8");

    let builder = builder_for("stream");
    unsafe {
        assert_eq!(
            kcheck_consumer_builder_set_region_name(builder, invalid.as_ptr().cast()),
            kcheck_status::InvalidUtf8
        );
        assert_eq!(
            kcheck_consumer_builder_set_initial_position(builder, 3, 0),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "position must be 0 to 2, got 3");
        assert_eq!(
            kcheck_consumer_builder_set_initial_position(builder, 2, -5),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_consumer_builder_set_initial_position(
                builder,
                kcheck_initial_position::Latest as u32,
                0
            ),
            kcheck_status::Ok
        );
        kcheck_consumer_builder_free(builder);
    }

    let mut checkpointer = ptr::null_mut();
    unsafe {
        assert_eq!(
            kcheck_checkpointer_builder_new_memory(&mut checkpointer),
            kcheck_status::Ok
        );
        assert_eq!(
            kcheck_checkpointer_builder_set_auto_checkpoint(checkpointer, 2),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "auto_checkpoint must be 0 or 1, got 2");
        assert_eq!(
            kcheck_checkpointer_builder_set_table_name(checkpointer, c"t".as_ptr()),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            last_error(),
            "table_name applies only to a DynamoDB checkpointer"
        );
        assert_eq!(
            kcheck_set_log_callback(None, ptr::null_mut(), 9),
            kcheck_status::InvalidArgument
        );
        kcheck_checkpointer_builder_free(checkpointer);
    }
}

#[test]
fn build_consumes_the_builder_and_names_the_bad_option() {
    let builder = builder_for("stream");
    let mut consumer: *mut kcheck_consumer = sentinel();
    unsafe {
        kcheck_consumer_builder_set_record_limit(builder, 0);
        let status = kcheck_consumer_builder_build(builder, &mut consumer);
        assert_eq!(status, kcheck_status::InvalidConfig);
    }
    assert_eq!(consumer as usize, SENTINEL);
    assert!(last_error().contains("record_limit"), "{}", last_error());

    // Lease timing is checked when the checkpointer is built.
    let mut draft = ptr::null_mut();
    let mut checkpointer: *mut kcheck_checkpointer = sentinel();
    unsafe {
        kcheck_checkpointer_builder_new_dynamodb(c"app".as_ptr(), &mut draft);
        kcheck_checkpointer_builder_set_session_timeout_ms(draft, 1000);
        kcheck_checkpointer_builder_set_heartbeat_frequency_ms(draft, 2000);
        let status = kcheck_checkpointer_builder_build(draft, &mut checkpointer);
        assert_eq!(status, kcheck_status::InvalidConfig);
    }
    assert_eq!(checkpointer as usize, SENTINEL);
    assert!(
        last_error().contains("heartbeat_frequency"),
        "{}",
        last_error()
    );
}

#[test]
fn status_names_cover_unknown_numbers_and_errors_stay_on_their_thread() {
    let name = |status: u32| unsafe { CStr::from_ptr(kcheck_status_name(status)) };
    assert_eq!(name(7).to_str().unwrap(), "KCHECK_STATUS_LEASE_LOST");
    assert_eq!(name(9999).to_str().unwrap(), "KCHECK_STATUS_UNKNOWN");

    unsafe { kcheck_consumer_builder_new(ptr::null(), ptr::null_mut()) };
    let here = last_error();
    let there = std::thread::spawn(|| {
        let before = last_error();
        unsafe { kcheck_consumer_close(ptr::null()) };
        (before, last_error())
    })
    .join()
    .unwrap();
    assert_eq!(there, (String::new(), "consumer is NULL".to_owned()));
    assert_eq!(last_error(), here);
}

#[test]
fn a_missing_stream_fails_the_build_with_the_service_status() {
    with_test_credentials();
    let builder = builder_for(&unique_name("missing"));
    let url = c(&emulators().kinesis_url());
    let mut consumer: *mut kcheck_consumer = sentinel();
    unsafe {
        kcheck_consumer_builder_set_endpoint_url(builder, url.as_ptr());
        let status = kcheck_consumer_builder_build(builder, &mut consumer);
        assert_eq!(status, kcheck_status::ServiceError, "{}", last_error());
    }
    assert_eq!(consumer as usize, SENTINEL);
    assert!(
        last_error().contains("ResourceNotFound"),
        "{}",
        last_error()
    );
    assert_eq!(last_error_code(), "ResourceNotFoundException");
    // A failure that is not an AWS answer has no code.
    unsafe {
        let status = kcheck_consumer_builder_set_endpoint_url(ptr::null_mut(), url.as_ptr());
        assert_eq!(status, kcheck_status::InvalidArgument);
    }
    assert_eq!(last_error_code(), "", "after {}", last_error());
}

/// A consumer of `stream` on the emulators, built through the C ABI.
fn ffi_consumer(
    stream: &str,
    checkpointer: *const kcheck_checkpointer,
    idle_timeout_ms: Option<u64>,
) -> *mut kcheck_consumer {
    with_test_credentials();
    let builder = builder_for(stream);
    let url = c(&emulators().kinesis_url());
    let mut consumer = ptr::null_mut();
    unsafe {
        assert_eq!(
            kcheck_consumer_builder_set_endpoint_url(builder, url.as_ptr()),
            kcheck_status::Ok
        );
        kcheck_consumer_builder_set_discovery_interval_ms(builder, 300);
        kcheck_consumer_builder_set_idle_poll_interval_ms(builder, 100);
        if let Some(idle) = idle_timeout_ms {
            kcheck_consumer_builder_set_idle_timeout_ms(builder, idle);
        }
        if !checkpointer.is_null() {
            assert_eq!(
                kcheck_consumer_builder_set_checkpointer(builder, checkpointer),
                kcheck_status::Ok
            );
        }
        let status = kcheck_consumer_builder_build(builder, &mut consumer);
        assert_eq!(status, kcheck_status::Ok, "{}", last_error());
    }
    consumer
}

fn dynamodb_checkpointer_for(group: &str, table: &str, auto: bool) -> *mut kcheck_checkpointer {
    let url = c(&emulators().dynamodb_url());
    let (group, table) = (c(group), c(table));
    let mut draft = ptr::null_mut();
    let mut checkpointer = ptr::null_mut();
    unsafe {
        assert_eq!(
            kcheck_checkpointer_builder_new_dynamodb(group.as_ptr(), &mut draft),
            kcheck_status::Ok
        );
        kcheck_checkpointer_builder_set_endpoint_url(draft, url.as_ptr());
        kcheck_checkpointer_builder_set_region_name(draft, c"us-east-1".as_ptr());
        kcheck_checkpointer_builder_set_table_name(draft, table.as_ptr());
        kcheck_checkpointer_builder_set_session_timeout_ms(draft, 3000);
        kcheck_checkpointer_builder_set_heartbeat_frequency_ms(draft, 500);
        kcheck_checkpointer_builder_set_auto_checkpoint(draft, u32::from(auto));
        kcheck_checkpointer_builder_set_ttl_hours(draft, 1);
        kcheck_checkpointer_builder_set_create_table(draft, 1);
        let status = kcheck_checkpointer_builder_build(draft, &mut checkpointer);
        assert_eq!(status, kcheck_status::Ok, "{}", last_error());
    }
    checkpointer
}

fn text_of(pointer: *const c_char, len: usize) -> String {
    let bytes = unsafe { std::slice::from_raw_parts(pointer.cast::<u8>(), len) };
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn payload_of(fields: &kcheck_record_fields) -> String {
    text_of(fields.data.cast(), fields.data_len)
}

/// Reads batches until `count` records or `limit` passes; keeps each batch.
fn read_batches(
    consumer: *const kcheck_consumer,
    count: usize,
    limit: Duration,
) -> Vec<*mut kcheck_batch> {
    let started = Instant::now();
    let mut batches = Vec::new();
    let mut seen = 0;
    while seen < count && started.elapsed() < limit {
        let mut batch = ptr::null_mut();
        match unsafe { kcheck_consumer_next_batch(consumer, 100, 200, &mut batch) } {
            kcheck_status::Ok => {
                seen += unsafe { kcheck_batch_len(batch) };
                batches.push(batch);
            }
            kcheck_status::TimedOut => assert!(batch.is_null()),
            other => panic!("next_batch: {other:?}: {}", last_error()),
        }
    }
    batches
}

fn batch_fields<'a>(batch: *const kcheck_batch) -> &'a [kcheck_record_fields] {
    let mut array = ptr::null();
    let mut len = 0;
    assert_eq!(
        unsafe { kcheck_batch_get_fields(batch, &mut array, &mut len) },
        kcheck_status::Ok
    );
    unsafe { std::slice::from_raw_parts(array, len) }
}

#[test]
fn a_consumer_runs_end_to_end_through_the_c_abi() {
    let (kinesis, stream) = create_stream(2);
    let expected = put_payloads(&kinesis, &stream, 0..300);
    let consumer = ffi_consumer(stream.name(), ptr::null(), None);

    let owner = unsafe { CStr::from_ptr(kcheck_consumer_owner_id(consumer)) };
    assert!(!owner.to_str().unwrap().is_empty());

    // One record alone, the rest in batches.
    let mut record = ptr::null_mut();
    let started = Instant::now();
    while unsafe { kcheck_consumer_next(consumer, 200, &mut record) } == kcheck_status::TimedOut {
        assert!(started.elapsed() < Duration::from_secs(20), "no record");
    }
    let mut fields = std::mem::MaybeUninit::<kcheck_record_fields>::uninit();
    let single = unsafe {
        assert_eq!(
            kcheck_record_get_fields(record, fields.as_mut_ptr()),
            kcheck_status::Ok
        );
        fields.assume_init()
    };
    let mut got = vec![payload_of(&single)];
    assert!(text_of(single.partition_key, single.partition_key_len).starts_with("key-"));
    assert!(text_of(single.shard_id, single.shard_id_len).starts_with("shardId-"));
    assert!(text_of(single.sequence_number, single.sequence_number_len)
        .bytes()
        .all(|b| b.is_ascii_digit()));
    assert_eq!(single.sub_sequence_number, 0);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((now_ms - single.approximate_arrival_timestamp_ms).abs() < 120_000);
    assert!(single.explicit_hash_key.is_null());

    let batches = read_batches(consumer, 299, Duration::from_secs(20));
    for &batch in &batches {
        let fields = batch_fields(batch);
        assert_eq!(fields.len(), unsafe { kcheck_batch_len(batch) });
        got.extend(fields.iter().map(payload_of));
        // The borrowed record handles match the fields array.
        let last = unsafe { kcheck_batch_get(batch, fields.len() - 1) };
        let mut last_fields = std::mem::MaybeUninit::uninit();
        unsafe { kcheck_record_get_fields(last, last_fields.as_mut_ptr()) };
        assert_eq!(
            payload_of(unsafe { &last_fields.assume_init() }),
            payload_of(&fields[fields.len() - 1])
        );
        assert!(unsafe { kcheck_batch_get(batch, fields.len()) }.is_null());
        // Every field lies in the batch's one buffer.
        let (mut data, mut len) = (ptr::null(), 0);
        assert_eq!(
            unsafe { kcheck_batch_get_bytes(batch, &mut data, &mut len) },
            kcheck_status::Ok
        );
        let range = data as usize..=data as usize + len;
        for f in fields {
            for (start, length) in [
                (f.data as usize, f.data_len),
                (f.partition_key as usize, f.partition_key_len),
                (f.sequence_number as usize, f.sequence_number_len),
                (f.shard_id as usize, f.shard_id_len),
            ] {
                assert!(range.contains(&start) && range.contains(&(start + length)));
            }
        }
    }
    assert_eq!(got.len(), 300);
    assert_eq!(
        got.iter().collect::<HashSet<_>>(),
        expected.iter().collect::<HashSet<_>>()
    );

    unsafe {
        // A record from a batch checkpoints like a single one.
        let last_batch = *batches.last().unwrap();
        let from_batch = kcheck_batch_get(last_batch, 0);
        assert_eq!(
            kcheck_consumer_checkpoint_record(consumer, from_batch),
            kcheck_status::Ok,
            "{}",
            last_error()
        );
        assert_eq!(kcheck_consumer_checkpoint(consumer), kcheck_status::Ok);

        let mut json = ptr::null_mut();
        assert_eq!(
            kcheck_consumer_stats_json(consumer, &mut json),
            kcheck_status::Ok
        );
        let stats: serde_json::Value =
            serde_json::from_str(CStr::from_ptr(json).to_str().unwrap()).unwrap();
        kcheck_string_free(json);
        assert_eq!(stats["shards"].as_array().unwrap().len(), 2);
        assert_eq!(stats["owner"], owner.to_str().unwrap());

        // Nothing more: a timeout, and the out-param stays untouched.
        let mut none: *mut kcheck_record = sentinel();
        assert_eq!(
            kcheck_consumer_next(consumer, 50, &mut none),
            kcheck_status::TimedOut
        );
        assert_eq!(none as usize, SENTINEL);

        assert_eq!(kcheck_consumer_close(consumer), kcheck_status::Ok);
        assert_eq!(kcheck_consumer_close(consumer), kcheck_status::Ok);
        assert_eq!(
            kcheck_consumer_next(consumer, 1000, &mut none),
            kcheck_status::Closed
        );
        let mut batch: *mut kcheck_batch = sentinel();
        assert_eq!(
            kcheck_consumer_next_batch(consumer, 0, 0, &mut batch),
            kcheck_status::InvalidArgument
        );
        assert_eq!(batch as usize, SENTINEL);

        kcheck_record_free(record);
        for batch in batches {
            kcheck_batch_free(batch);
        }
        kcheck_consumer_free(consumer);
    }
}

#[test]
fn close_from_another_thread_wakes_a_blocked_next() {
    let (_kinesis, stream) = create_stream(1);
    let consumer = ffi_consumer(stream.name(), ptr::null(), None) as usize;
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let mut record: *mut kcheck_record = sentinel();
        let status = unsafe { kcheck_consumer_next(consumer as *const _, 60_000, &mut record) };
        (status, started.elapsed(), record as usize)
    });
    std::thread::sleep(Duration::from_millis(300));
    let closing = Instant::now();
    assert_eq!(
        unsafe { kcheck_consumer_close(consumer as *const _) },
        kcheck_status::Ok
    );
    let (status, waited, record) = waiter.join().unwrap();
    assert_eq!(status, kcheck_status::Closed);
    assert_eq!(record, SENTINEL);
    assert!(
        waited < Duration::from_secs(10) && closing.elapsed() < Duration::from_secs(5),
        "next returned after {waited:?}"
    );
    unsafe { kcheck_consumer_free(consumer as *mut _) };
}

/// `_free` while another thread waits in next: the free closes (waking the
/// waiter with CLOSED) and the waiting call keeps the consumer alive.
#[test]
fn free_while_another_thread_waits_in_next_wakes_it() {
    let (_kinesis, stream) = create_stream(1);
    let consumer = ffi_consumer(stream.name(), ptr::null(), None) as usize;
    let waiter = std::thread::spawn(move || {
        let mut batch: *mut kcheck_batch = sentinel();
        let status =
            unsafe { kcheck_consumer_next_batch(consumer as *const _, 10, 60_000, &mut batch) };
        (status, batch as usize)
    });
    std::thread::sleep(Duration::from_millis(300));
    let freeing = Instant::now();
    unsafe { kcheck_consumer_free(consumer as *mut _) };
    let (status, batch) = waiter.join().unwrap();
    assert_eq!(status, kcheck_status::Closed);
    assert_eq!(batch, SENTINEL);
    assert!(freeing.elapsed() < Duration::from_secs(10));
}

/// A record of another consumer (the same shard id, another tenure) is not
/// this consumer's to checkpoint: INVALID_ARGUMENT, not LEASE_LOST.
#[test]
fn checkpointing_another_consumers_record_is_an_invalid_argument() {
    let (kinesis, stream) = create_stream(1);
    put_payloads(&kinesis, &stream, 0..3);
    let first = ffi_consumer(stream.name(), ptr::null(), None);
    let second = ffi_consumer(stream.name(), ptr::null(), None);
    let theirs = read_batches(first, 1, Duration::from_secs(20));
    let ours = read_batches(second, 1, Duration::from_secs(20));
    assert!(!theirs.is_empty() && !ours.is_empty());
    let record = unsafe { kcheck_batch_get(theirs[0], 0) };
    let status = unsafe { kcheck_consumer_checkpoint_record(second, record) };
    assert_eq!(status, kcheck_status::InvalidArgument);
    assert!(
        last_error().contains("was not returned by this consumer"),
        "{}",
        last_error()
    );
    assert_eq!(
        unsafe { kcheck_consumer_checkpoint_record(first, record) },
        kcheck_status::Ok,
        "{}",
        last_error()
    );
    for batch in theirs.into_iter().chain(ours) {
        unsafe { kcheck_batch_free(batch) };
    }
    unsafe {
        kcheck_consumer_free(first);
        kcheck_consumer_free(second);
    }
}

#[test]
fn idle_timeout_ends_iteration_with_its_own_status() {
    let (_kinesis, stream) = create_stream(1);
    let consumer = ffi_consumer(stream.name(), ptr::null(), Some(300));
    let started = Instant::now();
    let mut record: *mut kcheck_record = sentinel();
    // A long wait is cut short by the idle deadline.
    let status = unsafe { kcheck_consumer_next(consumer, 30_000, &mut record) };
    assert_eq!(status, kcheck_status::IdleTimeout);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(record as usize, SENTINEL);
    unsafe { kcheck_consumer_free(consumer) };
}

#[test]
fn dynamodb_checkpoints_written_through_the_c_abi_resume_a_restart() {
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("ffi-table");
    let group = unique_name("ffi-group");
    put_payloads(&kinesis, &stream, 0..50);

    // Manual mode: checkpoint record 20 (index 19), then close.
    let checkpointer = dynamodb_checkpointer_for(&group, &table, false);
    let consumer = ffi_consumer(stream.name(), checkpointer, None);
    unsafe { kcheck_checkpointer_free(checkpointer) }; // the consumer keeps its own
    let batches = read_batches(consumer, 50, Duration::from_secs(20));
    let all: Vec<(*const kcheck_batch, usize)> = batches
        .iter()
        .flat_map(|&b| (0..unsafe { kcheck_batch_len(b) }).map(move |i| (b.cast_const(), i)))
        .collect();
    assert_eq!(all.len(), 50);
    let (batch, index) = all[19];
    let twentieth = payload_of(&batch_fields(batch)[index]);
    unsafe {
        let status = kcheck_consumer_checkpoint_record(consumer, kcheck_batch_get(batch, index));
        assert_eq!(status, kcheck_status::Ok, "{}", last_error());
        kcheck_consumer_close(consumer);
        for batch in batches {
            kcheck_batch_free(batch);
        }
        kcheck_consumer_free(consumer);
    }

    let checkpointer = dynamodb_checkpointer_for(&group, &table, false);
    let consumer = ffi_consumer(stream.name(), checkpointer, None);
    let batches = read_batches(consumer, 30, Duration::from_secs(20));
    let again: Vec<String> = batches
        .iter()
        .flat_map(|&b| batch_fields(b).iter().map(payload_of).collect::<Vec<_>>())
        .collect();
    assert_eq!(again.len(), 30, "resumes after the checkpointed record");
    assert!(!again.contains(&twentieth));
    unsafe {
        for batch in batches {
            kcheck_batch_free(batch);
        }
        kcheck_consumer_free(consumer);
        kcheck_checkpointer_free(checkpointer);
    }
}

static LOGGED: Mutex<Vec<(u32, String, String)>> = Mutex::new(Vec::new());

unsafe extern "C" fn remember_log(
    user_data: *mut c_void,
    level: u32,
    target: *const c_char,
    message: *const c_char,
) {
    assert_eq!(user_data as usize, 42);
    let text = |p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
    LOGGED
        .lock()
        .unwrap()
        .push((level, text(target), text(message)));
}

#[test]
fn log_records_reach_the_host_callback() {
    let status = unsafe {
        kcheck_set_log_callback(
            Some(remember_log),
            42 as *mut c_void,
            kcheck_log_level::Info as u32,
        )
    };
    assert_eq!(status, kcheck_status::Ok, "{}", last_error());
    let (_kinesis, stream) = create_stream(1);
    let consumer = ffi_consumer(stream.name(), ptr::null(), None);
    let owner = unsafe { CStr::from_ptr(kcheck_consumer_owner_id(consumer)) }
        .to_str()
        .unwrap()
        .to_owned();
    unsafe { kcheck_consumer_free(consumer) };
    unsafe { kcheck_set_log_callback(None, ptr::null_mut(), 0) };
    let logged = LOGGED.lock().unwrap();
    let about_this_consumer: Vec<_> = logged
        .iter()
        .filter(|(_, _, m)| m.contains(&owner))
        .collect();
    assert!(
        about_this_consumer
            .iter()
            .any(|(level, target, _)| *level == kcheck_log_level::Info as u32
                && target.starts_with("kcheck::consumer")),
        "{logged:?}"
    );
    assert!(logged
        .iter()
        .all(|(level, _, _)| *level <= kcheck_log_level::Info as u32));
}

// ---- the producer ----

fn producer_builder_for(stream: &str) -> *mut kcheck_producer_builder {
    let mut builder = ptr::null_mut();
    let name = c(stream);
    assert_eq!(
        unsafe { kcheck_producer_builder_new(name.as_ptr(), &mut builder) },
        kcheck_status::Ok
    );
    builder
}

/// A producer of `stream` behind `endpoint`, built through the C ABI.
fn ffi_producer(stream: &str, endpoint: &str, max_queue_size: usize) -> *mut kcheck_producer {
    with_test_credentials();
    let builder = producer_builder_for(stream);
    let url = c(endpoint);
    let mut producer = ptr::null_mut();
    unsafe {
        assert_eq!(
            kcheck_producer_builder_set_endpoint_url(builder, url.as_ptr()),
            kcheck_status::Ok
        );
        assert_eq!(
            kcheck_producer_builder_set_buffer_time_ms(builder, 50),
            kcheck_status::Ok
        );
        assert_eq!(
            kcheck_producer_builder_set_max_queue_size(builder, max_queue_size),
            kcheck_status::Ok
        );
        let status = kcheck_producer_builder_build(builder, &mut producer);
        assert_eq!(status, kcheck_status::Ok, "{}", last_error());
    }
    producer
}

fn put(producer: *const kcheck_producer, data: &str, key: &str) -> Result<u64, kcheck_status> {
    let key = c(key);
    let mut ticket = SENTINEL as u64;
    let status = unsafe {
        kcheck_producer_put(
            producer,
            data.as_ptr(),
            data.len(),
            key.as_ptr(),
            ptr::null(),
            10_000,
            &mut ticket,
        )
    };
    match status {
        kcheck_status::Ok => Ok(ticket),
        other => {
            assert_eq!(ticket, SENTINEL as u64, "out_ticket written on failure");
            Err(other)
        }
    }
}

fn take_string(json: *mut c_char) -> String {
    let text = unsafe { CStr::from_ptr(json) }.to_str().unwrap().to_owned();
    unsafe { kcheck_string_free(json) };
    text
}

fn producer_json(
    producer: *const kcheck_producer,
    call: unsafe extern "C" fn(*const kcheck_producer, *mut *mut c_char) -> kcheck_status,
) -> String {
    let mut json = ptr::null_mut();
    assert_eq!(unsafe { call(producer, &mut json) }, kcheck_status::Ok);
    take_string(json)
}

fn record_status(producer: *const kcheck_producer, ticket: u64) -> kcheck_record_status {
    let mut status = kcheck_record_status::Pending;
    assert_eq!(
        unsafe { kcheck_producer_record_status(producer, ticket, &mut status) },
        kcheck_status::Ok,
        "{}",
        last_error()
    );
    status
}

#[test]
fn producer_calls_refuse_null_and_bad_arguments_and_leave_out_params_untouched() {
    let invalid = [0x66u8, 0xff, 0xfe, 0];
    let mut builder: *mut kcheck_producer_builder = sentinel();
    unsafe {
        assert_eq!(
            kcheck_producer_builder_new(ptr::null(), &mut builder),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "stream_name is NULL");
        assert_eq!(
            kcheck_producer_builder_new(invalid.as_ptr().cast(), &mut builder),
            kcheck_status::InvalidUtf8
        );
        assert_eq!(builder as usize, SENTINEL);
        assert_eq!(
            kcheck_producer_builder_new(c"s".as_ptr(), ptr::null_mut()),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "out is NULL");
        assert_eq!(
            kcheck_producer_builder_set_buffer_time_ms(ptr::null_mut(), 1),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "producer builder is NULL");

        let builder = producer_builder_for("stream");
        assert_eq!(
            kcheck_producer_builder_set_aggregate(builder, 2),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "aggregate must be 0 or 1, got 2");
        assert_eq!(
            kcheck_producer_builder_set_aggregate(builder, 1),
            kcheck_status::Ok
        );
        assert_eq!(
            kcheck_producer_builder_set_put_rate_limit_per_shard(builder, f64::NAN),
            kcheck_status::InvalidArgument
        );
        assert!(last_error().contains("put_rate_limit_per_shard"));
        assert_eq!(
            kcheck_producer_builder_set_put_bandwidth_limit_per_shard(builder, 0.0),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_producer_builder_set_region_name(builder, invalid.as_ptr().cast()),
            kcheck_status::InvalidUtf8
        );
        assert_eq!(
            kcheck_producer_builder_set_endpoint_url(builder, ptr::null()),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "endpoint_url is NULL");
        // Build consumes the builder even when an option is bad.
        assert_eq!(
            kcheck_producer_builder_set_batch_size(builder, 501),
            kcheck_status::Ok
        );
        let mut producer: *mut kcheck_producer = sentinel();
        assert_eq!(
            kcheck_producer_builder_build(builder, &mut producer),
            kcheck_status::InvalidConfig
        );
        assert!(last_error().contains("batch_size"), "{}", last_error());
        assert_eq!(producer as usize, SENTINEL);
        assert_eq!(
            kcheck_producer_builder_build(ptr::null_mut(), &mut producer),
            kcheck_status::InvalidArgument
        );
        assert_eq!(producer as usize, SENTINEL);

        let mut ticket = SENTINEL as u64;
        assert_eq!(
            kcheck_producer_put(
                ptr::null(),
                c"x".as_ptr().cast(),
                1,
                c"k".as_ptr(),
                ptr::null(),
                0,
                &mut ticket
            ),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "producer is NULL");
        assert_eq!(ticket, SENTINEL as u64);
        assert_eq!(
            kcheck_producer_flush(ptr::null(), 0),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_producer_close(ptr::null()),
            kcheck_status::InvalidArgument
        );
        let mut json: *mut c_char = sentinel();
        assert_eq!(
            kcheck_producer_stats_json(ptr::null(), &mut json),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_producer_take_failures_json(ptr::null(), &mut json),
            kcheck_status::InvalidArgument
        );
        assert_eq!(json as usize, SENTINEL);
        let mut status = kcheck_record_status::Accepted;
        assert_eq!(
            kcheck_producer_record_status(ptr::null(), 0, &mut status),
            kcheck_status::InvalidArgument
        );
        assert_eq!(status, kcheck_record_status::Accepted);

        kcheck_producer_builder_free(ptr::null_mut());
        kcheck_producer_free(ptr::null_mut());
    }
}

#[test]
fn a_missing_stream_fails_the_producer_build_with_the_service_status() {
    with_test_credentials();
    let builder = producer_builder_for("no-such-stream-for-the-producer");
    let url = c(&emulators().kinesis_url());
    let mut producer: *mut kcheck_producer = sentinel();
    unsafe {
        kcheck_producer_builder_set_endpoint_url(builder, url.as_ptr());
        assert_eq!(
            kcheck_producer_builder_build(builder, &mut producer),
            kcheck_status::ServiceError
        );
    }
    assert_eq!(producer as usize, SENTINEL);
    assert!(
        last_error().contains("ResourceNotFound"),
        "{}",
        last_error()
    );
}

#[test]
fn a_producer_runs_end_to_end_through_the_c_abi() {
    let (_kinesis, stream) = create_stream(2);
    let producer = ffi_producer(stream.as_str(), &emulators().kinesis_url(), 10_000);
    let mut tickets = Vec::new();
    for n in 0..20 {
        tickets.push(
            put(
                producer,
                &format!("produced-{n}"),
                &format!("key-{}", n % 3),
            )
            .unwrap(),
        );
    }
    assert_eq!(tickets, (0..20).collect::<Vec<u64>>());
    // An explicit hash key routes the record; a bad one is refused.
    let mut ticket = SENTINEL as u64;
    unsafe {
        assert_eq!(
            kcheck_producer_put(
                producer,
                c"routed".as_ptr().cast(),
                6,
                c"key-x".as_ptr(),
                c"0".as_ptr(),
                10_000,
                &mut ticket
            ),
            kcheck_status::Ok
        );
        assert_eq!(ticket, 20);
        let mut untouched = SENTINEL as u64;
        assert_eq!(
            kcheck_producer_put(
                producer,
                c"x".as_ptr().cast(),
                1,
                c"k".as_ptr(),
                c"not-a-number".as_ptr(),
                10_000,
                &mut untouched
            ),
            kcheck_status::InvalidArgument
        );
        assert!(
            last_error().contains("explicit hash key"),
            "{}",
            last_error()
        );
        assert_eq!(
            kcheck_producer_put(
                producer,
                ptr::null(),
                3,
                c"k".as_ptr(),
                ptr::null(),
                0,
                &mut untouched
            ),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "data is NULL");
        assert_eq!(untouched, SENTINEL as u64);
    }
    assert_eq!(put(producer, "x", ""), Err(kcheck_status::InvalidArgument));
    assert!(last_error().contains("partition key"), "{}", last_error());
    assert_eq!(
        put(producer, "x", &"k".repeat(257)),
        Err(kcheck_status::InvalidArgument)
    );
    // Empty data with a NULL pointer is a record.
    let mut empty = SENTINEL as u64;
    let status = unsafe {
        kcheck_producer_put(
            producer,
            ptr::null(),
            0,
            c"key-empty".as_ptr(),
            ptr::null(),
            0,
            &mut empty,
        )
    };
    assert_eq!(status, kcheck_status::Ok, "{}", last_error());
    assert_eq!(empty, 21);

    assert_eq!(
        unsafe { kcheck_producer_flush(producer, 30_000) },
        kcheck_status::Ok,
        "{}",
        last_error()
    );
    for ticket in 0..=21 {
        assert_eq!(
            record_status(producer, ticket),
            kcheck_record_status::Accepted
        );
    }
    let mut status = kcheck_record_status::Failed;
    assert_eq!(
        unsafe { kcheck_producer_record_status(producer, 22, &mut status) },
        kcheck_status::InvalidArgument
    );
    assert_eq!(status, kcheck_record_status::Failed);
    assert!(last_error().contains("never issued"), "{}", last_error());

    let stats: serde_json::Value =
        serde_json::from_str(&producer_json(producer, kcheck_producer_stats_json)).unwrap();
    assert_eq!(stats["records_put"], 22);
    assert_eq!(stats["records_sent"], 22);
    assert_eq!(stats["records_failed"], 0);
    assert_eq!(stats["queue_depth"], 0);
    assert_eq!(stats["shards"], 2);
    assert_eq!(
        producer_json(producer, kcheck_producer_take_failures_json),
        ""
    );

    // kcheck's consumer reads back every record, in order per key.
    let consumer = ffi_consumer(stream.as_str(), ptr::null(), None);
    let batches = read_batches(consumer, 22, Duration::from_secs(30));
    let mut by_key: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for &batch in &batches {
        for fields in batch_fields(batch) {
            let key = text_of(fields.partition_key, fields.partition_key_len);
            by_key.entry(key).or_default().push(payload_of(fields));
        }
        unsafe { kcheck_batch_free(batch) };
    }
    let expected_key_0: Vec<String> = (0..20)
        .filter(|n| n % 3 == 0)
        .map(|n| format!("produced-{n}"))
        .collect();
    assert_eq!(by_key["key-0"], expected_key_0);
    assert_eq!(by_key["key-x"], vec!["routed".to_owned()]);
    assert_eq!(by_key["key-empty"], vec![String::new()]);
    assert_eq!(by_key.values().map(Vec::len).sum::<usize>(), 22);
    unsafe { kcheck_consumer_free(consumer) };

    assert_eq!(
        unsafe { kcheck_producer_close(producer) },
        kcheck_status::Ok
    );
    assert_eq!(put(producer, "late", "k"), Err(kcheck_status::Closed));
    assert!(last_error().contains("closed"), "{}", last_error());
    assert_eq!(
        unsafe { kcheck_producer_close(producer) },
        kcheck_status::Ok
    );
    unsafe { kcheck_producer_free(producer) };
}

#[test]
fn records_failing_for_good_are_named_by_flush_and_taken_as_json_lines() {
    let (kinesis, stream) = create_stream(1);
    let producer = ffi_producer(stream.as_str(), &emulators().kinesis_url(), 10_000);
    put(producer, "before", "k").unwrap();
    assert_eq!(
        unsafe { kcheck_producer_flush(producer, 30_000) },
        kcheck_status::Ok
    );
    kinesis.delete_stream(&stream).unwrap();
    for n in 0..3 {
        assert_eq!(put(producer, &format!("after-{n}"), "k"), Ok(1 + n));
    }
    let status = unsafe { kcheck_producer_flush(producer, 30_000) };
    assert_eq!(status, kcheck_status::ServiceError, "{}", last_error());
    let message = last_error();
    assert!(message.contains("3 records failed"), "{message}");
    assert!(message.contains("tickets 1, 2, 3"), "{message}");
    assert_eq!(record_status(producer, 0), kcheck_record_status::Accepted);
    assert_eq!(record_status(producer, 2), kcheck_record_status::Failed);

    let lines = producer_json(producer, kcheck_producer_take_failures_json);
    let failures: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(failures.len(), 3, "{lines}");
    assert_eq!(failures[0]["ticket"], 1);
    assert_eq!(failures[0]["partition_key"], "k");
    assert_eq!(failures[0]["explicit_hash_key"], serde_json::Value::Null);
    assert_eq!(failures[0]["data"], "YWZ0ZXItMA=="); // "after-0"
    assert_eq!(failures[0]["status"], "KCHECK_STATUS_SERVICE_ERROR");
    assert!(failures[2]["error"]
        .as_str()
        .unwrap()
        .contains("ResourceNotFound"));
    assert_eq!(
        producer_json(producer, kcheck_producer_take_failures_json),
        ""
    );
    // Reported once: close has nothing left to report.
    assert_eq!(
        unsafe { kcheck_producer_close(producer) },
        kcheck_status::Ok
    );
    unsafe { kcheck_producer_free(producer) };
}

#[test]
fn put_and_flush_time_out_while_the_buffer_cannot_drain() {
    use fault_proxy::{Fault, FaultProxy, Rule};
    let (_kinesis, stream) = create_stream(1);
    let proxy = FaultProxy::start(&emulators().kinesis_url());
    let producer = ffi_producer(stream.as_str(), proxy.url(), 1);
    let hang = proxy.add(Rule::on("PutRecords", Fault::Hang(Duration::from_secs(2))));
    assert_eq!(put(producer, "first", "k"), Ok(0));
    let key = c("k");
    let mut ticket = SENTINEL as u64;
    let started = Instant::now();
    let status = unsafe {
        kcheck_producer_put(
            producer,
            c"second".as_ptr().cast(),
            6,
            key.as_ptr(),
            ptr::null(),
            200,
            &mut ticket,
        )
    };
    assert_eq!(status, kcheck_status::TimedOut, "{}", last_error());
    assert_eq!(ticket, SENTINEL as u64);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        unsafe { kcheck_producer_flush(producer, 100) },
        kcheck_status::TimedOut
    );
    assert!(last_error().contains("not settled"), "{}", last_error());
    assert_eq!(record_status(producer, 0), kcheck_record_status::Pending);
    hang.set_active(false);
    assert_eq!(
        unsafe { kcheck_producer_flush(producer, 30_000) },
        kcheck_status::Ok,
        "{}",
        last_error()
    );
    assert_eq!(record_status(producer, 0), kcheck_record_status::Accepted);
    assert_eq!(put(producer, "third", "k"), Ok(1));
    assert_eq!(
        unsafe { kcheck_producer_close(producer) },
        kcheck_status::Ok
    );
    unsafe { kcheck_producer_free(producer) };
}

// ---- the DynamoDB writer ----

fn writer_builder_for(table: &str) -> *mut kcheck_writer_builder {
    let mut builder = ptr::null_mut();
    let name = c(table);
    assert_eq!(
        unsafe { kcheck_writer_builder_new(name.as_ptr(), &mut builder) },
        kcheck_status::Ok
    );
    builder
}

/// A writer whose default table is `table`, plus `others` with their
/// paces (0: unlimited), built through the C ABI against the emulator.
fn ffi_writer(table: &str, others: &[(&str, f64)]) -> *mut kcheck_writer {
    with_test_credentials();
    let builder = writer_builder_for(table);
    let url = c(&emulators().dynamodb_url());
    let mut writer = ptr::null_mut();
    unsafe {
        assert_eq!(
            kcheck_writer_builder_set_endpoint_url(builder, url.as_ptr()),
            kcheck_status::Ok
        );
        assert_eq!(
            kcheck_writer_builder_set_buffer_time_ms(builder, 20),
            kcheck_status::Ok
        );
        assert_eq!(
            kcheck_writer_builder_set_threads(builder, 2),
            kcheck_status::Ok
        );
        for (name, capacity) in others {
            let name = c(name);
            assert_eq!(
                kcheck_writer_builder_add_table(builder, name.as_ptr(), *capacity),
                kcheck_status::Ok,
                "{}",
                last_error()
            );
        }
        let status = kcheck_writer_builder_build(builder, &mut writer);
        assert_eq!(status, kcheck_status::Ok, "{}", last_error());
    }
    writer
}

/// Calls `kcheck_writer_put` (or `_delete`) with `json`; the ticket, or
/// the status (checking that the ticket was left alone).
fn write_json(
    writer: *const kcheck_writer,
    table: Option<&str>,
    json: &str,
    delete: bool,
) -> Result<u64, kcheck_status> {
    let table = table.map(c);
    let table_ptr = table.as_ref().map_or(ptr::null(), |t| t.as_ptr());
    let call = if delete {
        kcheck_writer_delete
    } else {
        kcheck_writer_put
    };
    let mut ticket = SENTINEL as u64;
    let status = unsafe {
        call(
            writer,
            table_ptr,
            json.as_ptr(),
            json.len(),
            10_000,
            &mut ticket,
        )
    };
    match status {
        kcheck_status::Ok => Ok(ticket),
        other => {
            assert_eq!(ticket, SENTINEL as u64, "out_ticket written on failure");
            Err(other)
        }
    }
}

fn writer_json(
    writer: *const kcheck_writer,
    call: unsafe extern "C" fn(*const kcheck_writer, *mut *mut c_char) -> kcheck_status,
) -> String {
    let mut json = ptr::null_mut();
    assert_eq!(unsafe { call(writer, &mut json) }, kcheck_status::Ok);
    take_string(json)
}

fn write_status(writer: *const kcheck_writer, ticket: u64) -> kcheck_record_status {
    let mut status = kcheck_record_status::Pending;
    assert_eq!(
        unsafe { kcheck_writer_record_status(writer, ticket, &mut status) },
        kcheck_status::Ok,
        "{}",
        last_error()
    );
    status
}

/// Every item of `table`, as DynamoDB JSON values sorted by their text.
fn scan_table(table: &str) -> Vec<serde_json::Value> {
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    let items = client
        .scan_all(&kcheck::dynamodb::ScanRequest::new(table), None)
        .unwrap();
    let mut values: Vec<serde_json::Value> = items
        .iter()
        .map(|item| serde_json::to_value(item).unwrap())
        .collect();
    values.sort_by_key(|v| v.to_string());
    values
}

#[test]
fn writer_calls_refuse_null_and_bad_arguments_and_leave_out_params_untouched() {
    let invalid = [0x66u8, 0xff, 0xfe, 0];
    let mut builder: *mut kcheck_writer_builder = sentinel();
    unsafe {
        assert_eq!(
            kcheck_writer_builder_new(ptr::null(), &mut builder),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "table_name is NULL");
        assert_eq!(
            kcheck_writer_builder_new(invalid.as_ptr().cast(), &mut builder),
            kcheck_status::InvalidUtf8
        );
        assert_eq!(
            kcheck_writer_builder_new(c"".as_ptr(), &mut builder),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "table_name is empty");
        assert_eq!(builder as usize, SENTINEL);
        assert_eq!(
            kcheck_writer_builder_new(c"t".as_ptr(), ptr::null_mut()),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "out is NULL");
        assert_eq!(
            kcheck_writer_builder_set_threads(ptr::null_mut(), 1),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "writer builder is NULL");

        let builder = writer_builder_for("t");
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            assert_eq!(
                kcheck_writer_builder_set_write_capacity(builder, bad),
                kcheck_status::InvalidArgument
            );
            assert!(last_error().contains("write_capacity"), "{}", last_error());
            assert_eq!(
                kcheck_writer_builder_add_table(builder, c"u".as_ptr(), bad),
                kcheck_status::InvalidArgument
            );
            assert!(
                last_error().contains("write_capacity of table u"),
                "{}",
                last_error()
            );
        }
        assert_eq!(
            kcheck_writer_builder_add_table(builder, ptr::null(), 1.0),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "table_name is NULL");
        assert_eq!(
            kcheck_writer_builder_add_table(builder, c"".as_ptr(), 1.0),
            kcheck_status::InvalidArgument
        );
        // 0 is unlimited, for the default table too.
        assert_eq!(
            kcheck_writer_builder_set_write_capacity(builder, 0.0),
            kcheck_status::Ok
        );
        assert_eq!(
            kcheck_writer_builder_add_table(builder, c"u".as_ptr(), 0.0),
            kcheck_status::Ok
        );
        assert_eq!(
            kcheck_writer_builder_set_region_name(builder, invalid.as_ptr().cast()),
            kcheck_status::InvalidUtf8
        );
        assert_eq!(
            kcheck_writer_builder_set_endpoint_url(builder, ptr::null()),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "endpoint_url is NULL");
        // Build consumes the builder even when an option is bad.
        assert_eq!(
            kcheck_writer_builder_set_batch_size(builder, 26),
            kcheck_status::Ok
        );
        let mut writer: *mut kcheck_writer = sentinel();
        assert_eq!(
            kcheck_writer_builder_build(builder, &mut writer),
            kcheck_status::InvalidConfig
        );
        assert!(last_error().contains("batch_size"), "{}", last_error());
        assert_eq!(writer as usize, SENTINEL);
        assert_eq!(
            kcheck_writer_builder_build(ptr::null_mut(), &mut writer),
            kcheck_status::InvalidArgument
        );
        assert_eq!(writer as usize, SENTINEL);
        for (option, set) in [
            (
                "threads",
                kcheck_writer_builder_set_threads
                    as unsafe extern "C" fn(*mut kcheck_writer_builder, u32) -> kcheck_status,
            ),
            ("batch_size", kcheck_writer_builder_set_batch_size),
        ] {
            let builder = writer_builder_for("t");
            assert_eq!(set(builder, 0), kcheck_status::Ok);
            assert_eq!(
                kcheck_writer_builder_build(builder, &mut writer),
                kcheck_status::InvalidConfig
            );
            assert!(last_error().contains(option), "{}", last_error());
        }
        let builder = writer_builder_for("t");
        assert_eq!(
            kcheck_writer_builder_set_max_queue_size(builder, 0),
            kcheck_status::Ok
        );
        assert_eq!(
            kcheck_writer_builder_build(builder, &mut writer),
            kcheck_status::InvalidConfig
        );
        assert!(last_error().contains("max_queue_size"), "{}", last_error());
        assert_eq!(writer as usize, SENTINEL);

        let mut ticket = SENTINEL as u64;
        assert_eq!(
            kcheck_writer_put(
                ptr::null(),
                ptr::null(),
                c"{}".as_ptr().cast(),
                2,
                0,
                &mut ticket
            ),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "writer is NULL");
        assert_eq!(
            kcheck_writer_delete(
                ptr::null(),
                ptr::null(),
                c"{}".as_ptr().cast(),
                2,
                0,
                &mut ticket
            ),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_writer_first_unwritten(ptr::null(), &mut ticket),
            kcheck_status::InvalidArgument
        );
        assert_eq!(ticket, SENTINEL as u64);
        assert_eq!(
            kcheck_writer_flush(ptr::null(), 0),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_writer_close(ptr::null()),
            kcheck_status::InvalidArgument
        );
        let mut json: *mut c_char = sentinel();
        assert_eq!(
            kcheck_writer_stats_json(ptr::null(), &mut json),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_writer_take_failures_json(ptr::null(), &mut json),
            kcheck_status::InvalidArgument
        );
        assert_eq!(json as usize, SENTINEL);
        let mut status = kcheck_record_status::Accepted;
        assert_eq!(
            kcheck_writer_record_status(ptr::null(), 0, &mut status),
            kcheck_status::InvalidArgument
        );
        assert_eq!(status, kcheck_record_status::Accepted);

        kcheck_writer_builder_free(ptr::null_mut());
        kcheck_writer_free(ptr::null_mut());
    }
}

#[test]
fn the_producer_shard_refresh_interval_is_set_and_checked() {
    let builder = producer_builder_for("stream");
    unsafe {
        assert_eq!(
            kcheck_producer_builder_set_shard_refresh_interval_ms(builder, 0),
            kcheck_status::InvalidArgument
        );
        assert!(
            last_error().contains("shard_refresh_interval"),
            "{}",
            last_error()
        );
        assert_eq!(
            kcheck_producer_builder_set_shard_refresh_interval_ms(builder, 5_000),
            kcheck_status::Ok
        );
        assert_eq!(
            kcheck_producer_builder_set_shard_refresh_interval_ms(ptr::null_mut(), 5_000),
            kcheck_status::InvalidArgument
        );
        kcheck_producer_builder_free(builder);
    }
    // A producer built with it runs.
    let (_kinesis, stream) = create_stream(1);
    with_test_credentials();
    let builder = producer_builder_for(stream.as_str());
    let url = c(&emulators().kinesis_url());
    let mut producer = ptr::null_mut();
    unsafe {
        kcheck_producer_builder_set_endpoint_url(builder, url.as_ptr());
        kcheck_producer_builder_set_buffer_time_ms(builder, 20);
        kcheck_producer_builder_set_shard_refresh_interval_ms(builder, 100);
        assert_eq!(
            kcheck_producer_builder_build(builder, &mut producer),
            kcheck_status::Ok,
            "{}",
            last_error()
        );
    }
    assert_eq!(put(producer, "x", "k"), Ok(0));
    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(
        unsafe { kcheck_producer_flush(producer, 30_000) },
        kcheck_status::Ok
    );
    let stats: serde_json::Value =
        serde_json::from_str(&producer_json(producer, kcheck_producer_stats_json)).unwrap();
    assert!(
        stats["shard_map_refreshes"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    unsafe {
        assert_eq!(kcheck_producer_close(producer), kcheck_status::Ok);
        kcheck_producer_free(producer);
    }
}

#[test]
fn a_missing_table_fails_the_writer_build_with_the_service_status() {
    with_test_credentials();
    let builder = writer_builder_for("no-such-table-for-the-writer");
    let url = c(&emulators().dynamodb_url());
    let mut writer: *mut kcheck_writer = sentinel();
    unsafe {
        kcheck_writer_builder_set_endpoint_url(builder, url.as_ptr());
        assert_eq!(
            kcheck_writer_builder_build(builder, &mut writer),
            kcheck_status::ServiceError
        );
    }
    assert_eq!(writer as usize, SENTINEL);
    assert!(
        last_error().contains("ResourceNotFound"),
        "{}",
        last_error()
    );
}

#[test]
fn writer_items_are_checked_and_refusals_name_what_was_wrong() {
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    let table = create_table(&client, true);
    let writer = ffi_writer(&table, &[]);
    let invalid = [b'"', 0xff, b'"'];
    let mut ticket = SENTINEL as u64;
    unsafe {
        assert_eq!(
            kcheck_writer_put(writer, ptr::null(), ptr::null(), 0, 0, &mut ticket),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "item_json is NULL");
        assert_eq!(
            kcheck_writer_delete(writer, ptr::null(), ptr::null(), 0, 0, &mut ticket),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "key_json is NULL");
        assert_eq!(
            kcheck_writer_put(writer, ptr::null(), invalid.as_ptr(), 3, 0, &mut ticket),
            kcheck_status::InvalidUtf8
        );
        assert_eq!(last_error(), "item_json is not valid UTF-8");
        let json = r#"{"pk":{"S":"a"},"sk":{"N":"1"}}"#;
        assert_eq!(
            kcheck_writer_put(
                writer,
                invalid.as_ptr().cast(),
                json.as_ptr(),
                json.len(),
                0,
                &mut ticket
            ),
            kcheck_status::InvalidUtf8
        );
        assert_eq!(last_error(), "table_name is not valid UTF-8");
        assert_eq!(
            kcheck_writer_put(
                writer,
                ptr::null(),
                json.as_ptr(),
                json.len(),
                0,
                ptr::null_mut()
            ),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "out_ticket is NULL");
    }
    assert_eq!(ticket, SENTINEL as u64);

    let refused = |json: &str, delete: bool| {
        assert_eq!(
            write_json(writer, None, json, delete),
            Err(kcheck_status::InvalidArgument),
            "{json}"
        );
        last_error()
    };
    let message = refused(r#"{"pk":{"S":"a"},"#, false);
    assert!(
        message.starts_with("item_json is not valid JSON"),
        "{message}"
    );
    let message = refused(r#"[{"pk":{"S":"a"}}]"#, false);
    assert!(message.contains("must be a JSON object"), "{message}");
    let message = refused(r#"{"pk":"a","sk":{"N":"1"}}"#, false);
    assert!(message.contains("not a DynamoDB item"), "{message}");
    let message = refused(r#"{"pk":{"X":"a"},"sk":{"N":"1"}}"#, false);
    assert!(message.contains("not a DynamoDB item"), "{message}");
    assert!(message.contains("unknown variant `X`"), "{message}");
    let message = refused(r#"{"pk":{"S":"a"}}"#, true);
    assert!(
        message.contains("the key attribute sk is missing"),
        "{message}"
    );
    // The table refuses an item without its key; the message shows the item.
    let message = refused(r#"{"pk":{"S":"a"},"colour":{"S":"teal"}}"#, false);
    assert!(
        message.contains("the key attribute sk is missing"),
        "{message}"
    );
    assert!(message.contains(&table), "{message}");
    assert!(message.contains("teal"), "{message}");
    let message = refused(r#"{"pk":{"N":"1"},"sk":{"N":"1"}}"#, false);
    assert!(message.contains("pk must be of type S"), "{message}");
    let message = refused(r#"{"pk":{"S":"a"},"sk":{"N":"1"},"v":{"S":"x"}}"#, true);
    assert!(message.contains("names only the key"), "{message}");
    // A table never named: its key is read on first use; a missing one fails.
    assert_eq!(
        write_json(writer, Some("no-such-table"), r#"{"pk":{"S":"a"}}"#, false),
        Err(kcheck_status::ServiceError)
    );
    assert!(
        last_error().contains("ResourceNotFound"),
        "{}",
        last_error()
    );
    // Nothing was queued by the refusals.
    assert_eq!(
        write_json(writer, None, r#"{"pk":{"S":"a"},"sk":{"N":"1"}}"#, false),
        Ok(0)
    );
    unsafe {
        assert_eq!(kcheck_writer_close(writer), kcheck_status::Ok);
        kcheck_writer_free(writer);
    }
}

#[test]
fn a_writer_runs_end_to_end_through_the_c_abi() {
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    let main = create_table(&client, false);
    let sorted = create_table(&client, true);
    let writer = ffi_writer(&main, &[(&sorted, 200.0)]);
    let mut tickets = Vec::new();
    for n in 0..30 {
        let item = format!(r#"{{"pk":{{"S":"item-{n}"}},"n":{{"N":"{n}"}}}}"#);
        tickets.push(write_json(writer, None, &item, false).unwrap());
        let item = format!(r#"{{"pk":{{"S":"p"}},"sk":{{"N":"{n}"}},"b":{{"B":"AAE="}}}}"#);
        tickets.push(write_json(writer, Some(&sorted), &item, false).unwrap());
    }
    assert_eq!(tickets, (0..60).collect::<Vec<u64>>());
    // A delete of a key put before it lands after the put.
    assert_eq!(
        write_json(writer, Some(&main), r#"{"pk":{"S":"item-0"}}"#, true),
        Ok(60)
    );
    assert_eq!(
        unsafe { kcheck_writer_flush(writer, 30_000) },
        kcheck_status::Ok,
        "{}",
        last_error()
    );
    for ticket in 0..=60 {
        assert_eq!(write_status(writer, ticket), kcheck_record_status::Accepted);
    }
    let mut status = kcheck_record_status::Failed;
    assert_eq!(
        unsafe { kcheck_writer_record_status(writer, 61, &mut status) },
        kcheck_status::InvalidArgument
    );
    assert_eq!(status, kcheck_record_status::Failed);
    let mut first = SENTINEL as u64;
    assert_eq!(
        unsafe { kcheck_writer_first_unwritten(writer, &mut first) },
        kcheck_status::Ok
    );
    assert_eq!(first, 61);

    let stats: serde_json::Value =
        serde_json::from_str(&writer_json(writer, kcheck_writer_stats_json)).unwrap();
    assert_eq!(stats["table"], main.as_str(), "{stats}");
    assert_eq!(stats["items_put"], 61, "{stats}");
    assert_eq!(stats["items_written"], 61, "{stats}");
    assert_eq!(stats["items_failed"], 0, "{stats}");
    assert_eq!(stats["queue_depth"], 0, "{stats}");
    assert!(stats["write_units"].as_f64().unwrap() >= 61.0, "{stats}");
    let tables = stats["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2, "{stats}");
    assert_eq!(tables[0]["table"], main.as_str());
    assert_eq!(tables[0]["write_capacity"], serde_json::Value::Null);
    assert_eq!(tables[0]["items_written"], 31);
    assert_eq!(tables[1]["table"], sorted.as_str());
    assert_eq!(tables[1]["write_capacity"], 200.0);
    assert_eq!(tables[1]["items_written"], 30);
    assert_eq!(writer_json(writer, kcheck_writer_take_failures_json), "");

    // Each item landed exactly once, as written.
    let items = scan_table(&main);
    assert_eq!(items.len(), 29);
    assert!(!items.iter().any(|i| i["pk"]["S"] == "item-0"));
    assert!(items.contains(&serde_json::json!({"pk": {"S": "item-7"}, "n": {"N": "7"}})));
    let items = scan_table(&sorted);
    assert_eq!(items.len(), 30);
    assert!(items
        .contains(&serde_json::json!({"pk": {"S": "p"}, "sk": {"N": "29"}, "b": {"B": "AAE="}})));

    // Close writes what is queued, then refuses writes.
    assert_eq!(
        write_json(writer, None, r#"{"pk":{"S":"at-close"}}"#, false),
        Ok(61)
    );
    assert_eq!(unsafe { kcheck_writer_close(writer) }, kcheck_status::Ok);
    assert_eq!(write_status(writer, 61), kcheck_record_status::Accepted);
    assert_eq!(scan_table(&main).len(), 30);
    assert_eq!(
        write_json(writer, None, r#"{"pk":{"S":"late"}}"#, false),
        Err(kcheck_status::Closed)
    );
    assert!(last_error().contains("closed"), "{}", last_error());
    assert_eq!(
        write_json(
            writer,
            Some(&sorted),
            r#"{"pk":{"S":"p"},"sk":{"N":"1"}}"#,
            true
        ),
        Err(kcheck_status::Closed)
    );
    assert_eq!(unsafe { kcheck_writer_close(writer) }, kcheck_status::Ok);
    assert_eq!(
        unsafe { kcheck_writer_flush(writer, 1_000) },
        kcheck_status::Ok
    );
    unsafe { kcheck_writer_free(writer) };
}

#[test]
fn writes_failing_for_good_are_named_by_flush_and_taken_as_json_lines() {
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    let table = create_table(&client, false);
    let writer = ffi_writer(&table, &[]);
    assert_eq!(
        write_json(writer, None, r#"{"pk":{"S":"before"}}"#, false),
        Ok(0)
    );
    assert_eq!(
        unsafe { kcheck_writer_flush(writer, 30_000) },
        kcheck_status::Ok
    );
    client
        .delete_table(&kcheck::dynamodb::TableRequest::new(&table))
        .unwrap();
    assert_eq!(
        write_json(
            writer,
            None,
            r#"{"pk":{"S":"after-0"},"n":{"N":"1"}}"#,
            false
        ),
        Ok(1)
    );
    assert_eq!(
        write_json(writer, None, r#"{"pk":{"S":"after-1"}}"#, true),
        Ok(2)
    );
    let status = unsafe { kcheck_writer_flush(writer, 30_000) };
    assert_eq!(status, kcheck_status::ServiceError, "{}", last_error());
    let message = last_error();
    assert!(message.contains("2 writes failed"), "{message}");
    assert!(message.contains("after-0"), "{message}");
    assert_eq!(write_status(writer, 0), kcheck_record_status::Accepted);
    assert_eq!(write_status(writer, 1), kcheck_record_status::Failed);

    let lines = writer_json(writer, kcheck_writer_take_failures_json);
    let failures: Vec<serde_json::Value> = lines
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(failures.len(), 2, "{lines}");
    assert_eq!(failures[0]["ticket"], 1);
    assert_eq!(failures[0]["table"], table.as_str());
    assert_eq!(
        failures[0]["request"],
        serde_json::json!({"PutRequest": {"Item": {"pk": {"S": "after-0"}, "n": {"N": "1"}}}})
    );
    assert_eq!(
        failures[1]["request"],
        serde_json::json!({"DeleteRequest": {"Key": {"pk": {"S": "after-1"}}}})
    );
    assert_eq!(failures[0]["status"], "KCHECK_STATUS_SERVICE_ERROR");
    assert!(failures[1]["error"]
        .as_str()
        .unwrap()
        .contains("ResourceNotFound"));
    assert_eq!(writer_json(writer, kcheck_writer_take_failures_json), "");
    let stats: serde_json::Value =
        serde_json::from_str(&writer_json(writer, kcheck_writer_stats_json)).unwrap();
    assert_eq!(stats["items_failed"], 2, "{stats}");
    // Reported once: close has nothing left to report.
    assert_eq!(unsafe { kcheck_writer_close(writer) }, kcheck_status::Ok);
    unsafe { kcheck_writer_free(writer) };
}

// ---- the consumer → writer pipeline ----

/// What the test transforms share with the test through `user_data`.
#[derive(Default)]
struct PipelineHost {
    /// Payloads transformed, in order.
    seen: Vec<String>,
    /// `keep_going` says no once this many records were transformed.
    stop_after: usize,
    /// The transform fails (returning this status) on this payload, after
    /// emitting its put.
    fail_on: Option<(String, u32)>,
    /// A second table that also gets a copy of each item.
    copies: Option<CString>,
    /// Statuses of emits the transform made on purpose, in order.
    emit_statuses: Vec<kcheck_status>,
    /// An emitter kept past its call.
    kept_emitter: usize,
    /// Checks of misuse, made once, from the first call.
    check_misuse: bool,
}

fn host<'a>(user_data: *mut c_void) -> &'a mut PipelineHost {
    unsafe { &mut *user_data.cast::<PipelineHost>() }
}

fn emit_json(
    emitter: *mut kcheck_pipeline_emitter,
    table: Option<&CStr>,
    json: &str,
    delete: bool,
) -> kcheck_status {
    let table = table.map_or(ptr::null(), CStr::as_ptr);
    let call = if delete {
        kcheck_pipeline_emit_delete
    } else {
        kcheck_pipeline_emit_put
    };
    unsafe { call(emitter, table, json.as_ptr(), json.len()) }
}

/// Puts `{"pk": payload, "shard": .., "sequence": ..}` into the default
/// table (and a copy into `copies`), plus a put and a delete of a
/// temporary item that must not remain.
unsafe extern "C" fn item_per_record(
    user_data: *mut c_void,
    record: *const kcheck_record_fields,
    emitter: *mut kcheck_pipeline_emitter,
) -> u32 {
    let host = host(user_data);
    let record = unsafe { &*record };
    let payload = payload_of(record);
    let shard = text_of(record.shard_id, record.shard_id_len);
    let sequence = text_of(record.sequence_number, record.sequence_number_len);
    host.seen.push(payload.clone());
    if host.check_misuse {
        host.check_misuse = false;
        let statuses = &mut host.emit_statuses;
        statuses.push(emit_json(emitter, None, "not json", false));
        statuses.push(emit_json(emitter, None, r#"{"pk":"untyped"}"#, false));
        statuses.push(emit_json(emitter, None, "[1]", true));
        let invalid = [b'{', 0xff, b'}'];
        statuses.push(unsafe {
            kcheck_pipeline_emit_put(emitter, ptr::null(), invalid.as_ptr(), invalid.len())
        });
        statuses.push(unsafe { kcheck_pipeline_emit_put(emitter, ptr::null(), ptr::null(), 0) });
        statuses.push(unsafe {
            kcheck_pipeline_emit_put(ptr::null_mut(), ptr::null(), b"{}".as_ptr(), 2)
        });
        // Another thread cannot use the emitter of this call.
        let address = emitter as usize;
        statuses.push(
            std::thread::spawn(move || {
                emit_json(address as *mut _, None, r#"{"pk":{"S":"x"}}"#, false)
            })
            .join()
            .unwrap(),
        );
        host.kept_emitter = emitter as usize;
    }
    let item = format!(
        r#"{{"pk":{{"S":"{payload}"}},"shard":{{"S":"{shard}"}},"sequence":{{"S":"{sequence}"}}}}"#
    );
    let status = emit_json(emitter, None, &item, false);
    if status != kcheck_status::Ok {
        return status as u32;
    }
    if let Some(copies) = &host.copies {
        let copy = format!(r#"{{"pk":{{"S":"copy-{payload}"}}}}"#);
        assert_eq!(
            emit_json(emitter, Some(copies), &copy, false),
            kcheck_status::Ok
        );
        let temporary = format!(r#"{{"pk":{{"S":"temporary-{payload}"}}}}"#);
        assert_eq!(
            emit_json(emitter, Some(copies), &temporary, false),
            kcheck_status::Ok
        );
        assert_eq!(
            emit_json(emitter, Some(copies), &temporary, true),
            kcheck_status::Ok
        );
    }
    match &host.fail_on {
        Some((on, status)) if *on == payload => *status,
        _ => kcheck_status::Ok as u32,
    }
}

unsafe extern "C" fn until_enough(user_data: *mut c_void) -> bool {
    let host = host(user_data);
    host.seen.len() < host.stop_after
}

fn memory_checkpointer(auto: bool) -> *mut kcheck_checkpointer {
    let mut draft = ptr::null_mut();
    let mut checkpointer = ptr::null_mut();
    unsafe {
        assert_eq!(
            kcheck_checkpointer_builder_new_memory(&mut draft),
            kcheck_status::Ok
        );
        kcheck_checkpointer_builder_set_auto_checkpoint(draft, u32::from(auto));
        assert_eq!(
            kcheck_checkpointer_builder_build(draft, &mut checkpointer),
            kcheck_status::Ok
        );
    }
    checkpointer
}

/// Runs a pipeline with `host`; the status and the stats (checking that
/// they were left alone on failure).
fn run_pipeline(
    consumer: *const kcheck_consumer,
    writer: *const kcheck_writer,
    host: &mut PipelineHost,
    keep_going: kcheck_pipeline_keep_going,
) -> Result<kcheck_pipeline_stats, kcheck_status> {
    let untouched = kcheck_pipeline_stats {
        records: SENTINEL as u64,
        ..Default::default()
    };
    let mut stats = untouched;
    let status = unsafe {
        kcheck_pipeline_run(
            consumer,
            writer,
            Some(item_per_record),
            keep_going,
            ptr::from_mut(host).cast(),
            20,
            &mut stats,
        )
    };
    match status {
        kcheck_status::Ok => Ok(stats),
        other => {
            assert_eq!(
                stats.records, SENTINEL as u64,
                "out_stats written on failure"
            );
            Err(other)
        }
    }
}

/// The payloads of every record a fresh consumer of the lease table reads
/// within `wait`: what was not checkpointed.
fn unchecked_payloads(stream: &str, group: &str, leases: &str, wait: Duration) -> Vec<String> {
    let checkpointer = dynamodb_checkpointer_for(group, leases, false);
    let consumer = ffi_consumer(stream, checkpointer, None);
    let batches = read_batches(consumer, usize::MAX, wait);
    let payloads = batches
        .iter()
        .flat_map(|&b| batch_fields(b).iter().map(payload_of).collect::<Vec<_>>())
        .collect();
    unsafe {
        for batch in batches {
            kcheck_batch_free(batch);
        }
        kcheck_consumer_free(consumer);
        kcheck_checkpointer_free(checkpointer);
    }
    payloads
}

fn pk_of(item: &serde_json::Value) -> String {
    item["pk"]["S"].as_str().unwrap().to_owned()
}

#[test]
fn a_pipeline_writes_every_records_items_and_checkpoints_them() {
    let (kinesis, stream) = create_stream(2);
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    let (main, copies) = (create_table(&client, false), create_table(&client, false));
    let (group, leases) = (unique_name("ffi-pipeline"), unique_name("ffi-leases"));
    let payloads = put_payloads(&kinesis, &stream, 0..60);
    let writer = ffi_writer(&main, &[]);
    let checkpointer = dynamodb_checkpointer_for(&group, &leases, false);
    let consumer = ffi_consumer(stream.name(), checkpointer, None);

    let mut host = PipelineHost {
        stop_after: 60,
        copies: Some(c(&copies)),
        check_misuse: true,
        ..Default::default()
    };
    let stats = run_pipeline(consumer, writer, &mut host, Some(until_enough))
        .unwrap_or_else(|status| panic!("{status:?}: {}", last_error()));
    let mut seen = host.seen.clone();
    seen.sort();
    let mut expected = payloads.clone();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(stats.records, 60);
    assert_eq!(stats.writes, 60 * 4);
    assert!(stats.checkpoints >= 2, "{stats:?}");
    assert_eq!(stats.records_pending, 0, "{stats:?}");
    // Refused emits reached the transform, which went on.
    assert_eq!(
        host.emit_statuses,
        [
            kcheck_status::InvalidArgument,
            kcheck_status::InvalidArgument,
            kcheck_status::InvalidArgument,
            kcheck_status::InvalidUtf8,
            kcheck_status::InvalidArgument,
            kcheck_status::InvalidArgument,
            kcheck_status::InvalidArgument,
        ]
    );
    // The emitter is refused after its call, without being read.
    assert_eq!(
        emit_json(
            host.kept_emitter as *mut _,
            None,
            r#"{"pk":{"S":"late"}}"#,
            false
        ),
        kcheck_status::InvalidArgument
    );
    assert!(
        last_error().contains("only during the transform"),
        "{}",
        last_error()
    );
    assert_eq!(
        emit_json(sentinel(), None, r#"{"pk":{"S":"late"}}"#, true),
        kcheck_status::InvalidArgument
    );

    // Every item landed: the record's own, with its shard and sequence.
    let items = scan_table(&main);
    assert_eq!(items.len(), 60);
    let mut stored: Vec<String> = items.iter().map(pk_of).collect();
    stored.sort();
    assert_eq!(stored, expected);
    assert!(items
        .iter()
        .all(|item| item["shard"]["S"].as_str().unwrap().starts_with("shardId-")));
    let mut copied: Vec<String> = scan_table(&copies).iter().map(pk_of).collect();
    copied.sort();
    let mut expected_copies: Vec<String> = expected.iter().map(|p| format!("copy-{p}")).collect();
    expected_copies.sort();
    assert_eq!(
        copied, expected_copies,
        "temporary items were deleted after their put"
    );

    // Run again, without stats, until the consumer is closed from another
    // thread.
    put_payloads(&kinesis, &stream, 60..70);
    let closer = {
        let consumer = consumer as usize;
        let main = main.clone();
        std::thread::spawn(move || {
            assert!(wait_until(Duration::from_secs(30), || scan_table(&main)
                .len()
                == 70));
            unsafe { kcheck_consumer_close(consumer as *const kcheck_consumer) }
        })
    };
    let mut host = PipelineHost::default();
    let status = unsafe {
        kcheck_pipeline_run(
            consumer,
            writer,
            Some(item_per_record),
            None,
            ptr::from_mut(&mut host).cast(),
            0,
            ptr::null_mut(),
        )
    };
    assert_eq!(status, kcheck_status::Ok, "{}", last_error());
    assert_eq!(closer.join().unwrap(), kcheck_status::Ok);
    assert_eq!(host.seen.len(), 10);
    unsafe {
        kcheck_consumer_free(consumer);
        kcheck_checkpointer_free(checkpointer);
    }

    // The first run checkpointed everything it read.
    let again = unchecked_payloads(stream.name(), &group, &leases, Duration::from_secs(3));
    assert!(
        again.iter().all(|p| host.seen.contains(p)),
        "records of the first run read again: {again:?}"
    );
    unsafe { kcheck_writer_free(writer) };
}

#[test]
fn a_failing_transform_stops_the_pipeline_and_nothing_from_its_record_on_is_checkpointed() {
    let (kinesis, stream) = create_stream(1);
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    let table = create_table(&client, false);
    let (group, leases) = (unique_name("ffi-pipeline"), unique_name("ffi-leases"));
    let payloads = put_payloads(&kinesis, &stream, 0..10);
    let writer = ffi_writer(&table, &[]);
    let checkpointer = dynamodb_checkpointer_for(&group, &leases, false);
    let consumer = ffi_consumer(stream.name(), checkpointer, None);

    let mut host = PipelineHost {
        stop_after: 10,
        ..Default::default()
    };
    let stats = run_pipeline(consumer, writer, &mut host, Some(until_enough))
        .unwrap_or_else(|status| panic!("{status:?}: {}", last_error()));
    assert_eq!(host.seen, payloads);
    assert_eq!(stats.records_pending, 0);

    put_payloads(&kinesis, &stream, 10..20);
    let mut host = PipelineHost {
        stop_after: usize::MAX,
        fail_on: Some(("payload-15".into(), kcheck_status::ServiceError as u32)),
        ..Default::default()
    };
    assert_eq!(
        run_pipeline(consumer, writer, &mut host, Some(until_enough)),
        Err(kcheck_status::CallbackFailed)
    );
    let message = last_error();
    assert!(
        message.contains("KCHECK_STATUS_SERVICE_ERROR") && message.contains("shardId-"),
        "{message}"
    );
    assert_eq!(host.seen.last().map(String::as_str), Some("payload-15"));
    assert_eq!(
        unsafe { kcheck_writer_flush(writer, 30_000) },
        kcheck_status::Ok
    );
    // The failing record's writes were dropped.
    let stored: Vec<String> = scan_table(&table).iter().map(pk_of).collect();
    assert!(!stored.contains(&"payload-15".to_owned()), "{stored:?}");
    assert!(stored.contains(&"payload-14".to_owned()), "{stored:?}");
    unsafe {
        kcheck_consumer_close(consumer);
        kcheck_consumer_free(consumer);
        kcheck_checkpointer_free(checkpointer);
    }

    // Read again from at most the failing record on, never before payload-10.
    let again = unchecked_payloads(stream.name(), &group, &leases, Duration::from_secs(3));
    assert!(again.contains(&"payload-15".to_owned()), "{again:?}");
    assert!(
        again
            .iter()
            .all(|p| p.trim_start_matches("payload-").parse::<usize>().unwrap() >= 10),
        "{again:?}"
    );
    unsafe { kcheck_writer_free(writer) };
}

#[test]
fn pipeline_run_refuses_null_arguments_automatic_checkpoints_and_a_closed_writer() {
    let (kinesis, stream) = create_stream(1);
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    let table = create_table(&client, false);
    let writer = ffi_writer(&table, &[]);
    let manual = memory_checkpointer(false);
    let consumer = ffi_consumer(stream.name(), manual, None);
    let mut state = PipelineHost::default();
    let user_data: *mut c_void = ptr::from_mut(&mut state).cast();
    let mut stats = kcheck_pipeline_stats {
        records: SENTINEL as u64,
        ..Default::default()
    };
    let run = |consumer: *const kcheck_consumer,
               writer: *const kcheck_writer,
               transform: kcheck_pipeline_transform,
               stats: &mut kcheck_pipeline_stats| unsafe {
        kcheck_pipeline_run(
            consumer,
            writer,
            transform,
            Some(until_enough),
            user_data,
            0,
            stats,
        )
    };
    let cases: [(
        *const kcheck_consumer,
        *const kcheck_writer,
        kcheck_pipeline_transform,
        &str,
    ); 3] = [
        (
            ptr::null(),
            writer,
            Some(item_per_record),
            "consumer is NULL",
        ),
        (
            consumer,
            ptr::null(),
            Some(item_per_record),
            "writer is NULL",
        ),
        (consumer, writer, None, "transform is NULL"),
    ];
    for (consumer, writer, transform, message) in cases {
        assert_eq!(
            run(consumer, writer, transform, &mut stats),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), message);
        assert_eq!(stats.records, SENTINEL as u64);
    }

    // A consumer that checkpoints automatically is refused.
    let automatic = memory_checkpointer(true);
    let auto_consumer = ffi_consumer(stream.name(), automatic, None);
    assert_eq!(
        run(auto_consumer, writer, Some(item_per_record), &mut stats),
        kcheck_status::InvalidConfig
    );
    assert!(last_error().contains("auto_checkpoint"), "{}", last_error());
    assert_eq!(stats.records, SENTINEL as u64);

    // Stopping at once writes the (empty) stats.
    assert_eq!(
        run(consumer, writer, Some(item_per_record), &mut stats),
        kcheck_status::Ok,
        "{}",
        last_error()
    );
    assert_eq!(stats.records, 0);
    assert!(host(user_data).seen.is_empty());

    // A transform may return a status this library does not know.
    put_payloads(&kinesis, &stream, 0..1);
    host(user_data).stop_after = usize::MAX;
    host(user_data).fail_on = Some(("payload-0".into(), 4242));
    assert_eq!(
        run(consumer, writer, Some(item_per_record), &mut stats),
        kcheck_status::CallbackFailed
    );
    assert!(last_error().contains("(4242)"), "{}", last_error());
    assert_eq!(host(user_data).seen, ["payload-0"]);

    // A closed writer.
    assert_eq!(unsafe { kcheck_writer_close(writer) }, kcheck_status::Ok);
    assert_eq!(
        run(consumer, writer, Some(item_per_record), &mut stats),
        kcheck_status::Closed
    );
    unsafe {
        kcheck_consumer_free(auto_consumer);
        kcheck_consumer_free(consumer);
        kcheck_checkpointer_free(automatic);
        kcheck_checkpointer_free(manual);
        kcheck_writer_free(writer);
    }
}

// ---- the group tools: leases, export/import, reset, snapshots ----

/// The group of `checkpointer`, made through the C ABI, checking
/// positions against the Kinesis emulator.
fn ffi_group(checkpointer: *const kcheck_checkpointer) -> *mut kcheck_group {
    let mut group = ptr::null_mut();
    let kinesis = CString::new(emulators().kinesis_url()).unwrap();
    let region = CString::new("us-east-1").unwrap();
    let status =
        unsafe { kcheck_group_new(checkpointer, kinesis.as_ptr(), region.as_ptr(), &mut group) };
    assert_eq!(status, kcheck_status::Ok, "{}", last_error());
    group
}

/// The JSON lines a call wrote, parsed.
fn json_lines_of(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Calls a group function that writes a string, then parses its lines.
fn group_lines(
    call: impl FnOnce(*mut *mut c_char) -> kcheck_status,
) -> Result<Vec<serde_json::Value>, kcheck_status> {
    let mut out = ptr::null_mut();
    match call(&mut out) {
        kcheck_status::Ok => Ok(json_lines_of(&take_string(out))),
        other => {
            assert!(out.is_null(), "out-param written on failure");
            Err(other)
        }
    }
}

fn import(
    group: *const kcheck_group,
    lines: &str,
    force: u32,
) -> Result<Vec<serde_json::Value>, kcheck_status> {
    group_lines(|out| unsafe {
        kcheck_group_import_json(group, lines.as_ptr(), lines.len(), force, out)
    })
}

fn export(group: *const kcheck_group) -> String {
    let mut out = ptr::null_mut();
    let status = unsafe { kcheck_group_export_json(group, &mut out) };
    assert_eq!(status, kcheck_status::Ok, "{}", last_error());
    take_string(out)
}

/// A Rust consumer of `group` on `stream` that checkpoints only when told.
fn manual_rust_consumer(
    stream: &kcheck::kinesis::StreamRef,
    group: &str,
    table: &str,
) -> kcheck::Consumer {
    consumer_for(stream)
        .checkpointer(
            dynamodb_checkpointer(group, table)
                .auto_checkpoint(false)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// Reads `count` records and checkpoints the last; returns their payloads
/// and the last sequence number.
fn process_records(consumer: &kcheck::Consumer, count: usize) -> (Vec<String>, String) {
    let records = take(consumer, count, Duration::from_secs(30));
    assert_eq!(records.len(), count);
    consumer.checkpoint_record(records.last().unwrap()).unwrap();
    let last = records.last().unwrap().sequence_number.clone();
    (payloads(&records), last)
}

#[test]
fn group_calls_refuse_null_and_bad_arguments_and_leave_out_params_untouched() {
    with_test_credentials();
    let mut group: *mut kcheck_group = sentinel();
    unsafe {
        // Only a DynamoDB checkpointer has a group to look at.
        let mut draft = ptr::null_mut();
        let mut memory = ptr::null_mut();
        kcheck_checkpointer_builder_new_memory(&mut draft);
        assert_eq!(
            kcheck_checkpointer_builder_build(draft, &mut memory),
            kcheck_status::Ok
        );
        assert_eq!(
            kcheck_group_new(memory, ptr::null(), ptr::null(), &mut group),
            kcheck_status::InvalidArgument
        );
        assert!(last_error().contains("DynamoDB"), "{}", last_error());
        assert_eq!(group, sentinel());
        kcheck_checkpointer_free(memory);
        assert_eq!(
            kcheck_group_new(ptr::null(), ptr::null(), ptr::null(), &mut group),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "checkpointer is NULL");
        assert_eq!(group, sentinel());
    }
    let checkpointer = dynamodb_checkpointer_for("ffi-bad-group", "ffi-bad-table", false);
    unsafe {
        assert_eq!(
            kcheck_group_new(checkpointer, ptr::null(), ptr::null(), ptr::null_mut()),
            kcheck_status::InvalidArgument
        );
    }
    let group = ffi_group(checkpointer);
    unsafe { kcheck_checkpointer_free(checkpointer) }; // the group keeps what it needs

    let mut out: *mut c_char = sentinel();
    unsafe {
        assert_eq!(
            kcheck_group_leases_json(ptr::null(), &mut out),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "group is NULL");
        assert_eq!(
            kcheck_group_export_json(group, ptr::null_mut()),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_group_import_json(group, ptr::null(), 0, 0, &mut out),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "lines is NULL");
        let bad_utf8 = b"\xff\n";
        assert_eq!(
            kcheck_group_import_json(group, bad_utf8.as_ptr(), bad_utf8.len(), 0, &mut out),
            kcheck_status::InvalidUtf8
        );
        let good = r#"{"group":"g","stream":"s","shard":"shardId-000000000000","sequence":"49"}"#;
        let lines = format!("{good}\n\nnot json\n");
        assert_eq!(
            kcheck_group_import_json(group, lines.as_ptr(), lines.len(), 0, &mut out),
            kcheck_status::InvalidArgument
        );
        assert!(
            last_error().starts_with("lines line 3:"),
            "{}",
            last_error()
        );
        let line = format!("{good}\n");
        assert_eq!(
            kcheck_group_import_json(group, line.as_ptr(), line.len(), 2, &mut out),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "force must be 0 or 1, got 2");
        assert_eq!(
            kcheck_group_reset(
                group,
                c"s".as_ptr(),
                ptr::null(),
                c"yesterday".as_ptr(),
                0,
                &mut out
            ),
            kcheck_status::InvalidArgument
        );
        assert!(last_error().contains("trim-horizon"), "{}", last_error());
        assert_eq!(
            kcheck_group_reset(
                group,
                ptr::null(),
                ptr::null(),
                c"latest".as_ptr(),
                0,
                &mut out
            ),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "stream is NULL");
        assert_eq!(
            kcheck_group_snapshot(group, c"a#b".as_ptr(), ptr::null(), 0, &mut out),
            kcheck_status::InvalidArgument
        );
        assert!(last_error().contains("'#'"), "{}", last_error());
        assert_eq!(
            kcheck_group_snapshot(group, ptr::null(), ptr::null(), 0, &mut out),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_group_snapshots_json(group, c"".as_ptr(), &mut out),
            kcheck_status::InvalidArgument
        );
        assert_eq!(last_error(), "history_table is empty");
        assert_eq!(
            kcheck_group_restore(group, ptr::null(), ptr::null(), 0, &mut out),
            kcheck_status::InvalidArgument
        );
        assert_eq!(out, sentinel());
        // A missing lease table is a service error naming it.
        assert_eq!(
            kcheck_group_leases_json(group, &mut out),
            kcheck_status::ServiceError
        );
        assert!(last_error().contains("ffi-bad-table"), "{}", last_error());
        assert_eq!(out, sentinel());
        kcheck_group_free(group);
        kcheck_group_free(ptr::null_mut());
    }
}

#[test]
fn exported_checkpoints_seed_another_group_and_a_live_group_is_fenced_only_by_force() {
    with_test_credentials();
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("ffi-group-table");
    let (first, second) = (unique_name("ffi-first"), unique_name("ffi-second"));
    put_payloads(&kinesis, &stream, 0..30);
    let running = manual_rust_consumer(&stream, &first, &table);
    let (_, tenth) = process_records(&running, 10);

    let checkpointer = dynamodb_checkpointer_for(&first, &table, false);
    let group = ffi_group(checkpointer);
    unsafe { kcheck_checkpointer_free(checkpointer) };
    let leases = group_lines(|out| unsafe { kcheck_group_leases_json(group, out) }).unwrap();
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0]["stream"], stream.name());
    assert_eq!(leases[0]["state"], "alive");
    assert_eq!(leases[0]["owner"], running.owner_id());
    assert_eq!(leases[0]["checkpoint"], format!("{tenth}/0"));
    assert!(leases[0]["renewed_at_ms"].as_u64().unwrap() > 0);

    // Exported, then imported into another group: that group resumes there.
    let exported = export(group);
    let saved = json_lines_of(&exported);
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0]["group"], first.as_str());
    assert_eq!(saved[0]["sequence"], tenth.as_str());
    let other_checkpointer = dynamodb_checkpointer_for(&second, &table, false);
    let other = ffi_group(other_checkpointer);
    let changes = import(other, &exported, 0).unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["before"], serde_json::Value::Null);
    assert_eq!(changes[0]["after"], format!("{tenth}/0"));
    assert_eq!(changes[0]["fenced"], serde_json::Value::Null);
    let resumed = ffi_consumer(stream.name(), other_checkpointer, None);
    let batches = read_batches(resumed, 20, Duration::from_secs(20));
    let again: Vec<String> = batches
        .iter()
        .flat_map(|&b| batch_fields(b).iter().map(payload_of).collect::<Vec<_>>())
        .collect();
    assert_eq!(again.first().map(String::as_str), Some("payload-10"));
    assert_eq!(again.len(), 20);
    unsafe {
        for batch in batches {
            kcheck_batch_free(batch);
        }
        kcheck_consumer_free(resumed);
        kcheck_checkpointer_free(other_checkpointer);
        kcheck_group_free(other);
    }

    // Moving the running group's checkpoint is refused without force...
    let mut to_start = saved[0].clone();
    let entry = to_start.as_object_mut().unwrap();
    entry.remove("sequence");
    entry.remove("sub_sequence");
    entry.insert("start".into(), "timestamp:0".into());
    let trim = format!("{to_start}\n");
    assert_eq!(import(group, &trim, 0), Err(kcheck_status::InvalidArgument));
    assert!(last_error().contains("running"), "{}", last_error());
    assert!(
        last_error().contains(running.owner_id()),
        "{}",
        last_error()
    );
    // ... and fences its owner with force.
    let changes = import(group, &trim, 1).unwrap();
    assert_eq!(changes[0]["before"], format!("{tenth}/0"));
    assert_eq!(changes[0]["after"], serde_json::Value::Null);
    assert_eq!(changes[0]["fenced"], running.owner_id());
    // The fenced owner can no longer checkpoint what it still hands out.
    let records = take(&running, 20, Duration::from_secs(5));
    if let Some(last) = records.last() {
        assert!(running.checkpoint_record(last).is_err());
    }
    drop(running);
    unsafe { kcheck_group_free(group) };
}

#[test]
fn snapshots_restore_and_reset_move_a_group_through_the_c_abi() {
    with_test_credentials();
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("ffi-snap-table");
    let name = unique_name("ffi-snap");
    put_payloads(&kinesis, &stream, 0..30);
    let checkpointer = dynamodb_checkpointer_for(&name, &table, false);
    let group = ffi_group(checkpointer);
    unsafe { kcheck_checkpointer_free(checkpointer) };
    let snapshots =
        || group_lines(|out| unsafe { kcheck_group_snapshots_json(group, ptr::null(), out) });
    assert_eq!(
        snapshots().unwrap(),
        Vec::<serde_json::Value>::new(),
        "no history table yet"
    );

    let consumer = manual_rust_consumer(&stream, &name, &table);
    let (_, tenth) = process_records(&consumer, 10);
    consumer.close().unwrap();
    let mut info = ptr::null_mut();
    let status =
        unsafe { kcheck_group_snapshot(group, c"before".as_ptr(), ptr::null(), 3600, &mut info) };
    assert_eq!(status, kcheck_status::Ok, "{}", last_error());
    let info: serde_json::Value = serde_json::from_str(&take_string(info)).unwrap();
    assert_eq!(info["label"], "before");
    assert_eq!(info["checkpoints"], 1);
    assert!(info["created_at"].as_u64().unwrap() > 0);
    let mut out: *mut c_char = sentinel();
    assert_eq!(
        unsafe { kcheck_group_snapshot(group, c"before".as_ptr(), ptr::null(), 0, &mut out) },
        kcheck_status::InvalidArgument,
        "a label is taken once"
    );
    assert_eq!(out, sentinel());
    assert_eq!(snapshots().unwrap()[0]["label"], "before");

    let consumer = manual_rust_consumer(&stream, &name, &table);
    let (more, twentieth) = process_records(&consumer, 10);
    assert_eq!(more[0], "payload-10");
    consumer.close().unwrap();

    let restore = |label: &std::ffi::CStr| {
        group_lines(|out| unsafe {
            kcheck_group_restore(group, label.as_ptr(), ptr::null(), 0, out)
        })
    };
    assert_eq!(restore(c"never"), Err(kcheck_status::InvalidArgument));
    let changes = restore(c"before").unwrap();
    assert_eq!(changes[0]["before"], format!("{twentieth}/0"));
    assert_eq!(changes[0]["after"], format!("{tenth}/0"));
    let consumer = manual_rust_consumer(&stream, &name, &table);
    let records = take(&consumer, 20, Duration::from_secs(20));
    assert_eq!(
        payloads(&records)[..10],
        more[..],
        "the unsnapshotted batch again"
    );
    consumer.close().unwrap();

    // Back to the start of the stream, for every shard with a lease.
    let stream_name = c(stream.name());
    let changes = group_lines(|out| unsafe {
        kcheck_group_reset(
            group,
            stream_name.as_ptr(),
            ptr::null(),
            c"trim-horizon".as_ptr(),
            0,
            out,
        )
    })
    .unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["after"], serde_json::Value::Null);
    let consumer = manual_rust_consumer(&stream, &name, &table);
    assert_eq!(
        payloads(&take(&consumer, 1, Duration::from_secs(20))),
        ["payload-0"]
    );
    consumer.close().unwrap();

    // To one shard's sequence number: resumes after it.
    let shard = c(changes[0]["shard"].as_str().unwrap());
    let to = c(&format!("sequence:{twentieth}"));
    let changes = group_lines(|out| unsafe {
        kcheck_group_reset(
            group,
            stream_name.as_ptr(),
            shard.as_ptr(),
            to.as_ptr(),
            0,
            out,
        )
    })
    .unwrap();
    assert_eq!(changes[0]["after"], format!("{twentieth}/0"));
    let consumer = manual_rust_consumer(&stream, &name, &table);
    assert_eq!(
        payloads(&take(&consumer, 1, Duration::from_secs(20))),
        ["payload-20"]
    );
    consumer.close().unwrap();
    unsafe { kcheck_group_free(group) };
}

/// Calls a copy function; the changes and the notes it wrote, parsed.
fn group_copy(
    call: unsafe extern "C" fn(
        *const kcheck_group,
        u32,
        *const c_char,
        *const c_char,
        u64,
        u32,
        *mut *mut c_char,
        *mut *mut c_char,
    ) -> kcheck_status,
    group: *const kcheck_group,
    format: kcheck_table_format,
    table: &str,
    stream: Option<&str>,
) -> Result<(Vec<serde_json::Value>, Vec<serde_json::Value>), kcheck_status> {
    let (table, stream) = (c(table), stream.map(c));
    let (mut changes, mut notes): (*mut c_char, *mut c_char) = (sentinel(), sentinel());
    let status = unsafe {
        call(
            group,
            format as u32,
            table.as_ptr(),
            stream.as_ref().map_or(ptr::null(), |s| s.as_ptr()),
            0,
            0,
            &mut changes,
            &mut notes,
        )
    };
    if status != kcheck_status::Ok {
        assert_eq!((changes, notes), (sentinel(), sentinel()));
        return Err(status);
    }
    Ok((
        json_lines_of(&take_string(changes)),
        json_lines_of(&take_string(notes)),
    ))
}

#[test]
fn checkpoints_copy_through_the_kcl_and_async_kinesis_layouts_and_back() {
    with_test_credentials();
    let (kinesis, stream) = create_stream(1);
    let table = unique_name("ffi-copy-table");
    let (name, moved) = (unique_name("ffi-mover"), unique_name("ffi-moved"));
    put_payloads(&kinesis, &stream, 0..10);
    let consumer = manual_rust_consumer(&stream, &name, &table);
    let (_, fourth) = process_records(&consumer, 4);
    consumer.close().unwrap();
    let client = kcheck::dynamodb::DynamoDbClient::new(&dynamodb_config()).unwrap();
    let new_table = |key: &str| {
        let name = unique_name("ffi-other");
        client
            .create_table(&kcheck::dynamodb::CreateTableRequest::new(
                &name,
                key,
                kcheck::dynamodb::ScalarAttributeType::S,
            ))
            .unwrap();
        client
            .wait_for_table_active(&name, Duration::from_secs(10))
            .unwrap();
        name
    };
    let (kcl, async_kinesis) = (new_table("leaseKey"), new_table("shard_id"));

    let checkpointer = dynamodb_checkpointer_for(&name, &table, false);
    let group = ffi_group(checkpointer);
    unsafe { kcheck_checkpointer_free(checkpointer) };
    let to = kcheck_group_copy_to;
    let (changes, notes) = group_copy(
        to,
        group,
        kcheck_table_format::Kcl,
        &kcl,
        Some(stream.name()),
    )
    .unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["after"], format!("{fourth}/0"));
    assert!(notes.is_empty(), "{notes:?}");
    let (changes, _) = group_copy(
        to,
        group,
        kcheck_table_format::AsyncKinesis,
        &async_kinesis,
        Some(stream.name()),
    )
    .unwrap();
    assert_eq!(changes.len(), 1);
    // An async-kinesis table holds one stream: it must be named.
    assert_eq!(
        group_copy(
            to,
            group,
            kcheck_table_format::AsyncKinesis,
            &async_kinesis,
            None
        ),
        Err(kcheck_status::InvalidArgument)
    );
    assert!(last_error().contains("one stream"), "{}", last_error());
    let mut out = sentinel();
    let status = unsafe {
        kcheck_group_copy_to(
            group,
            2,
            c"t".as_ptr(),
            ptr::null(),
            0,
            0,
            &mut out,
            &mut out,
        )
    };
    assert_eq!(status, kcheck_status::InvalidArgument);
    assert_eq!(last_error(), "format must be 0 to 1, got 2");

    // From the async-kinesis table into a new group, which resumes there.
    let checkpointer = dynamodb_checkpointer_for(&moved, &table, false);
    let other = ffi_group(checkpointer);
    let (changes, _) = group_copy(
        kcheck_group_copy_from,
        other,
        kcheck_table_format::AsyncKinesis,
        &async_kinesis,
        Some(stream.name()),
    )
    .unwrap();
    assert_eq!(changes[0]["after"], format!("{fourth}/0"));
    let resumed = manual_rust_consumer(&stream, &moved, &table);
    assert_eq!(
        payloads(&take(&resumed, 1, Duration::from_secs(20))),
        ["payload-4"]
    );
    resumed.close().unwrap();
    // And from the KCL table, over what it holds now: nothing moves.
    let (changes, _) = group_copy(
        kcheck_group_copy_from,
        other,
        kcheck_table_format::Kcl,
        &kcl,
        Some(stream.name()),
    )
    .unwrap();
    assert_eq!(changes[0]["before"], changes[0]["after"]);
    unsafe {
        kcheck_checkpointer_free(checkpointer);
        kcheck_group_free(other);
        kcheck_group_free(group);
    }
}

type SeenEvents = Mutex<Vec<(u32, String, String, String, String)>>;

unsafe extern "C" fn record_event(
    user_data: *mut c_void,
    kind: u32,
    group: *const c_char,
    stream: *const c_char,
    shard_id: *const c_char,
    message: *const c_char,
) {
    let text = |p: *const c_char| unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_owned();
    let seen = unsafe { &*(user_data as *const SeenEvents) };
    seen.lock().unwrap().push((
        kind,
        text(group),
        text(stream),
        text(shard_id),
        text(message),
    ));
}

fn render(
    consumers: &[*const kcheck_consumer],
    producers: &[*const kcheck_producer],
) -> Result<String, kcheck_status> {
    let mut out: *mut c_char = sentinel();
    let status = unsafe {
        kcheck_metrics_render(
            consumers.as_ptr(),
            consumers.len(),
            producers.as_ptr(),
            producers.len(),
            ptr::null(),
            0,
            &mut out,
        )
    };
    if status != kcheck_status::Ok {
        assert_eq!(out as usize, SENTINEL);
        return Err(status);
    }
    let text = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_owned();
    unsafe { kcheck_string_free(out) };
    Ok(text)
}

#[test]
fn metrics_render_checks_its_arguments() {
    assert_eq!(render(&[], &[]), Ok(String::new()));
    assert_eq!(
        render(&[ptr::null()], &[]),
        Err(kcheck_status::InvalidArgument)
    );
    assert!(
        last_error().contains("consumer is NULL"),
        "{}",
        last_error()
    );
    unsafe {
        assert_eq!(
            kcheck_metrics_render(ptr::null(), 1, ptr::null(), 0, ptr::null(), 0, sentinel()),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_metrics_render(
                ptr::null(),
                0,
                ptr::null(),
                0,
                ptr::null(),
                0,
                ptr::null_mut()
            ),
            kcheck_status::InvalidArgument
        );
        assert_eq!(
            kcheck_consumer_builder_set_event_callback(
                ptr::null_mut(),
                Some(record_event),
                ptr::null_mut()
            ),
            kcheck_status::InvalidArgument
        );
    }
}

#[test]
fn metrics_and_events_of_a_consumer_and_a_producer() {
    let (kinesis, stream) = create_stream(1);
    put_payloads(&kinesis, &stream, 0..10);
    with_test_credentials();
    let seen: Box<SeenEvents> = Box::default();
    let builder = builder_for(stream.as_str());
    let url = c(&emulators().kinesis_url());
    let mut consumer = ptr::null_mut();
    unsafe {
        kcheck_consumer_builder_set_endpoint_url(builder, url.as_ptr());
        kcheck_consumer_builder_set_discovery_interval_ms(builder, 300);
        kcheck_consumer_builder_set_idle_poll_interval_ms(builder, 100);
        assert_eq!(
            kcheck_consumer_builder_set_event_callback(
                builder,
                Some(record_event),
                &*seen as *const SeenEvents as *mut c_void
            ),
            kcheck_status::Ok
        );
        let status = kcheck_consumer_builder_build(builder, &mut consumer);
        assert_eq!(status, kcheck_status::Ok, "{}", last_error());
    }
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while read < 10 && Instant::now() < deadline {
        let mut record = ptr::null_mut();
        if unsafe { kcheck_consumer_next(consumer, 200, &mut record) } == kcheck_status::Ok {
            read += 1;
            unsafe { kcheck_record_free(record) };
        }
    }
    assert_eq!(read, 10);
    // Another stream: the consumer must not see this record.
    let (_, produced) = create_stream(1);
    let producer = ffi_producer(produced.as_str(), &emulators().kinesis_url(), 100);
    put(producer, "extra", "k").unwrap();
    assert_eq!(
        unsafe { kcheck_producer_flush(producer, 10_000) },
        kcheck_status::Ok
    );

    let text = render(&[consumer], &[producer]).unwrap();
    let owner = unsafe { CStr::from_ptr(kcheck_consumer_owner_id(consumer)) }
        .to_str()
        .unwrap()
        .to_owned();
    let labels = format!(
        r#"group="memory",stream="{}",owner="{owner}""#,
        stream.as_str()
    );
    assert!(
        text.contains(&format!("kcheck_consumer_records_total{{{labels}}} 10\n")),
        "{text}"
    );
    assert!(text.contains(&format!("kcheck_lease_gains_total{{{labels}}} 1\n")));
    assert!(text.contains(&format!(
        "kcheck_producer_records_sent_total{{stream=\"{}\"}} 1\n",
        produced.as_str()
    )));
    assert_eq!(text.matches("# HELP kcheck_lease_gains_total ").count(), 1);

    // Told on the consumer's event thread, maybe a moment after the records.
    assert!(wait_until(Duration::from_secs(10), || !seen
        .lock()
        .unwrap()
        .is_empty()));
    let events = seen.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let (kind, group, event_stream, shard, _) = &events[0];
    assert_eq!(*kind, kcheck_event_kind::LeaseGained as u32);
    assert_eq!(group, "memory");
    assert_eq!(event_stream, stream.as_str());
    assert!(shard.starts_with("shardId-"));
    unsafe {
        kcheck_producer_free(producer);
        kcheck_consumer_free(consumer);
    }
    // No call after free: the user data may go now.
    drop(seen);
}
