//! The consumer and its builder for C.

use std::ffi::{c_char, CString};
use std::time::{Duration, UNIX_EPOCH};

use parking_lot::Mutex;

use super::boundary::{
    boundary, boundary_value, choice, consume, into_handle, into_shared_handle, live, millis,
    owned_string, reclaim, reclaim_shared, text, update_options, with_shared_handle, Failure,
    Handle, HandleState, Out, Outcome,
};
use super::checkpointer::kcheck_checkpointer;
use super::record::{kcheck_batch, kcheck_record};
use super::status::kcheck_status;
use crate::consumer::{Consumer, ConsumerBuilder, InitialPosition, Record};

/// Where shards without a checkpoint start; see
/// `kcheck_consumer_builder_set_initial_position`.
#[repr(u32)]
#[derive(Debug, Clone, Copy)]
pub enum kcheck_initial_position {
    /// The oldest retained record (the default).
    TrimHorizon = 0,
    /// Only records written after the consumer starts.
    Latest = 1,
    /// Records that arrived at or after a given time.
    AtTimestamp = 2,
}

/// Options of a consumer being built.
pub struct kcheck_consumer_builder {
    /// None only after a panic inside a setter, which also poisons.
    draft: Mutex<Option<ConsumerBuilder>>,
    state: HandleState,
}

impl Handle for kcheck_consumer_builder {
    const NAME: &'static str = "consumer builder";
    fn state(&self) -> &HandleState {
        &self.state
    }
}

/// A running consumer. Shared by the caller and every call in flight (an
/// `Arc` behind the pointer): freeing it while another thread's call is
/// still running, such as `kcheck_consumer_close`, drops only the
/// caller's reference.
pub struct kcheck_consumer {
    pub(crate) consumer: Consumer,
    owner_id: CString,
    state: HandleState,
}

impl Handle for kcheck_consumer {
    const NAME: &'static str = "consumer";
    fn state(&self) -> &HandleState {
        &self.state
    }
}

/// Applies a setter to the builder.
///
/// # Safety
/// `builder` is NULL or a live builder.
unsafe fn update(
    builder: *const kcheck_consumer_builder,
    change: impl FnOnce(ConsumerBuilder) -> Result<ConsumerBuilder, Failure>,
) -> kcheck_status {
    unsafe { update_options(builder, |builder| &builder.draft, change) }
}

/// Starts a consumer of `stream_name` (a stream name or ARN) with the
/// defaults: an in-process checkpointer, TRIM_HORIZON, 10 000 records per
/// GetRecords and in the queue, every shard, no idle timeout.
///
/// # Safety
/// `stream_name` is NULL or a NUL-terminated string; `out` is NULL or
/// writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_new(
    stream_name: *const c_char,
    out: *mut *mut kcheck_consumer_builder,
) -> kcheck_status {
    boundary(|| {
        let out = unsafe { Out::new(out, "out") }?;
        let stream = unsafe { text(stream_name, "stream_name") }?;
        out.write(into_handle(kcheck_consumer_builder {
            draft: Mutex::new(Some(Consumer::builder(stream))),
            state: HandleState::new(),
        }))
    })
}

/// The lease and checkpoint store. The consumer keeps its own reference:
/// the caller still frees `checkpointer`. Give the same checkpointer to
/// several consumers to share its leases (a memory checkpointer in one
/// process, or a DynamoDB one). A checkpointer inherited across fork is
/// refused with `KCHECK_STATUS_FORKED`: its connections are the parent's.
///
/// # Safety
/// `builder` is NULL or a live builder; `checkpointer` is NULL or live.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_checkpointer(
    builder: *mut kcheck_consumer_builder,
    checkpointer: *const kcheck_checkpointer,
) -> kcheck_status {
    unsafe {
        update(builder, |b| {
            let checkpointer = live(checkpointer)?;
            Ok(b.shared_checkpointer(checkpointer.inner.clone()))
        })
    }
}

/// Where shards without a checkpoint start: a `kcheck_initial_position`
/// value; `timestamp_ms` (milliseconds since the Unix epoch) is read only
/// for `KCHECK_INITIAL_POSITION_AT_TIMESTAMP` [TRIM_HORIZON].
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_initial_position(
    builder: *mut kcheck_consumer_builder,
    position: u32,
    timestamp_ms: i64,
) -> kcheck_status {
    unsafe {
        update(builder, |b| {
            let position = match choice(position, "position", 3)? {
                0 => InitialPosition::TrimHorizon,
                1 => InitialPosition::Latest,
                _ => {
                    let millis = u64::try_from(timestamp_ms).map_err(|_| {
                        Failure::invalid_argument(format!(
                            "timestamp_ms must not be negative, got {timestamp_ms}"
                        ))
                    })?;
                    InitialPosition::AtTimestamp(UNIX_EPOCH + Duration::from_millis(millis))
                }
            };
            Ok(b.initial_position(position))
        })
    }
}

/// Records per GetRecords call, 1 to 10 000 [10 000].
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_record_limit(
    builder: *mut kcheck_consumer_builder,
    limit: u32,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.record_limit(limit))) }
}

/// Records buffered between the fetch threads and the caller; a full queue
/// pauses fetching [10 000].
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_max_queue_size(
    builder: *mut kcheck_consumer_builder,
    size: usize,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.max_queue_size(size))) }
}

/// The most shards this consumer holds at once [all].
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_max_shard_consumers(
    builder: *mut kcheck_consumer_builder,
    max: usize,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.max_shard_consumers(max))) }
}

/// After this long without a record, `kcheck_consumer_next` returns
/// `KCHECK_STATUS_IDLE_TIMEOUT` [never].
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_idle_timeout_ms(
    builder: *mut kcheck_consumer_builder,
    milliseconds: u64,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.idle_timeout(millis(milliseconds)))) }
}

/// Automatic checkpoints are written at most this often per shard
/// [5 000 ms]; always at close, shard end and hand-over.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_checkpoint_interval_ms(
    builder: *mut kcheck_consumer_builder,
    milliseconds: u64,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.checkpoint_interval(millis(milliseconds)))) }
}

/// How often shards and leases are discovered and balanced [5 000 ms].
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_discovery_interval_ms(
    builder: *mut kcheck_consumer_builder,
    milliseconds: u64,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.discovery_interval(millis(milliseconds)))) }
}

/// The pause between GetRecords calls of a shard with no new records
/// [1 000 ms].
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_idle_poll_interval_ms(
    builder: *mut kcheck_consumer_builder,
    milliseconds: u64,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.idle_poll_interval(millis(milliseconds)))) }
}

/// Lets a shard that stays caught up be polled less often: each empty poll
/// doubles its pause, from the idle poll interval up to `milliseconds`,
/// and a poll that finds records goes back to the idle poll interval
/// [off]. New records on a quiet shard are seen up to that much later;
/// `build` refuses a value below the idle poll interval.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_idle_poll_max_interval_ms(
    builder: *mut kcheck_consumer_builder,
    milliseconds: u64,
) -> kcheck_status {
    unsafe {
        update(builder, |b| {
            Ok(b.idle_poll_max_interval(millis(milliseconds)))
        })
    }
}

/// Calls `callback` with `user_data` the moment a lease of this consumer
/// is gained, lost, received or handed over, or a checkpoint write fails
/// (see `kcheck_event_kind`); NULL sets none [none]. It runs on the
/// consumer's own event thread, one event at a time, in order: a slow
/// callback delays later events, never lease renewals. No call starts
/// after `kcheck_consumer_close` (or `_free`) returns. It must not close
/// or free the consumer.
///
/// # Safety
/// `builder` is NULL or a live builder; `callback`, when not NULL, must be
/// safe to call with `user_data` from another thread until the consumer
/// is closed.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_event_callback(
    builder: *mut kcheck_consumer_builder,
    callback: super::metrics::kcheck_event_callback,
    user_data: *mut std::ffi::c_void,
) -> kcheck_status {
    unsafe {
        update(builder, |b| {
            Ok(match super::metrics::event_callback(callback, user_data) {
                Some(callback) => b.on_event(callback),
                None => b.without_events(),
            })
        })
    }
}

/// The Kinesis endpoint, e.g. a local emulator [resolved as the AWS SDKs do].
///
/// # Safety
/// `builder` is NULL or a live builder; `url` is NULL or a NUL-terminated
/// string.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_endpoint_url(
    builder: *mut kcheck_consumer_builder,
    url: *const c_char,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.endpoint_url(text(url, "endpoint_url")?))) }
}

/// The Kinesis region [AWS_DEFAULT_REGION, the profile, or us-east-1].
///
/// # Safety
/// `builder` is NULL or a live builder; `region` is NULL or a
/// NUL-terminated string.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_set_region_name(
    builder: *mut kcheck_consumer_builder,
    region: *const c_char,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.region_name(text(region, "region_name")?))) }
}

/// Consumes the builder, whether or not it succeeds, and starts the
/// consumer: checks the options, prepares the checkpointer (creating its
/// table if configured), checks the stream, and starts the threads. Free
/// the consumer with `kcheck_consumer_free`.
///
/// # Safety
/// `builder` is NULL or a live builder, not used afterwards; `out` is NULL
/// or writable.
///
/// Thread safety: no other call may use the builder at the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_build(
    builder: *mut kcheck_consumer_builder,
    out: *mut *mut kcheck_consumer,
) -> kcheck_status {
    boundary(|| {
        let builder = unsafe { consume(builder) }?;
        let out = unsafe { Out::new(out, "out") }?;
        let draft = builder.draft.into_inner().expect("checked unpoisoned");
        let consumer = draft.build()?;
        let owner_id = CString::new(consumer.owner_id()).unwrap_or_default();
        out.write(into_shared_handle(kcheck_consumer {
            consumer,
            owner_id,
            state: HandleState::new(),
        }))
    })
}

/// Frees a builder that was not built. NULL does nothing.
///
/// # Safety
/// `builder` is NULL or a live builder, not used afterwards.
///
/// Thread safety: no other call may use the builder at the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_builder_free(builder: *mut kcheck_consumer_builder) {
    boundary_value((), || drop(unsafe { reclaim(builder) }))
}

/// How a wait without records ends: closed, idle, or just timed out.
fn no_record(consumer: &Consumer) -> Outcome {
    Ok(if consumer.is_closed() {
        kcheck_status::Closed
    } else if consumer.is_idle() {
        kcheck_status::IdleTimeout
    } else {
        kcheck_status::TimedOut
    })
}

/// Takes up to `max_records` records, waiting at most `timeout_ms` for the
/// first (and no longer than the idle timeout). The shared body of
/// `kcheck_consumer_next` and `kcheck_consumer_next_batch`.
fn take(consumer: &Consumer, max_records: usize, timeout_ms: u64) -> Result<Vec<Record>, Failure> {
    if consumer.is_closed() {
        return Ok(Vec::new());
    }
    let timeout = consumer
        .idle_remaining()
        .map_or(millis(timeout_ms), |idle| idle.min(millis(timeout_ms)));
    Ok(consumer.next_batch(max_records, timeout)?)
}

/// The next record, waiting at most `timeout_ms`. Returns
/// `KCHECK_STATUS_OK` with a record to free with `kcheck_record_free`, or
/// without touching `out`: `KCHECK_STATUS_TIMED_OUT` (try again),
/// `KCHECK_STATUS_CLOSED` (the consumer was closed),
/// `KCHECK_STATUS_IDLE_TIMEOUT` (idle_timeout passed), or an error that
/// stops consumption (e.g. access denied, a deleted stream). In automatic
/// mode, each call acknowledges the records returned before it.
///
/// # Safety
/// `consumer` is NULL or a live consumer; `out` is NULL or writable.
///
/// Thread safety: one thread may wait here while others call checkpoint,
/// stats or close; `kcheck_consumer_close` from another thread wakes it
/// with `KCHECK_STATUS_CLOSED`. Concurrent next calls take turns, and each
/// record goes to one of them. `KCHECK_STATUS_CLOSED` comes as soon as
/// closing starts, possibly before `kcheck_consumer_close` has returned in
/// the other thread; freeing the consumer then is safe (the close in
/// flight keeps it alive until it returns).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_next(
    consumer: *const kcheck_consumer,
    timeout_ms: u64,
    out: *mut *mut kcheck_record,
) -> kcheck_status {
    unsafe {
        with_shared_handle(consumer, |handle| {
            let out = Out::new(out, "out")?;
            match take(&handle.consumer, 1, timeout_ms)?.pop() {
                Some(record) => out.write(into_handle(kcheck_record { record })),
                None => no_record(&handle.consumer),
            }
        })
    }
}

/// Up to `max_records` records in one batch (free it with
/// `kcheck_batch_free`): waits at most `timeout_ms` for the first, then
/// takes what is already buffered. Statuses as for `kcheck_consumer_next`;
/// an OK batch holds at least one record. In automatic mode, each call
/// acknowledges every record returned before it.
///
/// # Safety
/// `consumer` is NULL or a live consumer; `out` is NULL or writable.
///
/// Thread safety: as `kcheck_consumer_next`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_next_batch(
    consumer: *const kcheck_consumer,
    max_records: usize,
    timeout_ms: u64,
    out: *mut *mut kcheck_batch,
) -> kcheck_status {
    unsafe {
        with_shared_handle(consumer, |handle| {
            let out = Out::new(out, "out")?;
            if max_records == 0 {
                return Err(Failure::invalid_argument("max_records must be at least 1"));
            }
            let records = take(&handle.consumer, max_records, timeout_ms)?;
            if records.is_empty() {
                return no_record(&handle.consumer);
            }
            out.write(into_handle(kcheck_batch::new(records)))
        })
    }
}

/// Checkpoints, for every shard, the last record returned: asserts that
/// everything returned so far is processed. A shard whose lease was lost
/// gives `KCHECK_STATUS_LEASE_LOST` after the others are written.
///
/// # Safety
/// `consumer` is NULL or a live consumer.
///
/// Thread safety: any thread, also while another waits in next.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_checkpoint(
    consumer: *const kcheck_consumer,
) -> kcheck_status {
    unsafe {
        with_shared_handle(consumer, |handle| {
            handle.consumer.checkpoint()?;
            Ok(kcheck_status::Ok)
        })
    }
}

/// Checkpoints up to and including `record`, which this consumer returned
/// (alone or in a batch; a record of another consumer is
/// `KCHECK_STATUS_INVALID_ARGUMENT`). `KCHECK_STATUS_LEASE_LOST` when its
/// shard's lease was lost since.
///
/// # Safety
/// `consumer` is NULL or a live consumer; `record` is NULL or a live record.
///
/// Thread safety: any thread, also while another waits in next.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_checkpoint_record(
    consumer: *const kcheck_consumer,
    record: *const kcheck_record,
) -> kcheck_status {
    unsafe {
        with_shared_handle(consumer, |handle| {
            let record = record
                .as_ref()
                .ok_or_else(|| Failure::invalid_argument("record is NULL"))?;
            handle.consumer.checkpoint_record(&record.record)?;
            Ok(kcheck_status::Ok)
        })
    }
}

/// The consumer's figures as a JSON object (owner, stream, per-shard
/// positions, lag and counters, lease and checkpoint counters); free it with
/// `kcheck_string_free`.
///
/// # Safety
/// `consumer` is NULL or a live consumer; `out` is NULL or writable.
///
/// Thread safety: any thread, also while another waits in next.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_stats_json(
    consumer: *const kcheck_consumer,
    out: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(consumer, |handle| {
            let out = Out::new(out, "out")?;
            let json = serde_json::to_string(&handle.consumer.stats())
                .map_err(|e| Failure::new(kcheck_status::InternalError, e.to_string()))?;
            out.write(owned_string(json))
        })
    }
}

/// This consumer's owner id in the lease table, valid until
/// `kcheck_consumer_free`; NULL when `consumer` is NULL.
///
/// # Safety
/// `consumer` is NULL or a live consumer.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_owner_id(
    consumer: *const kcheck_consumer,
) -> *const c_char {
    boundary_value(std::ptr::null(), || {
        unsafe { consumer.as_ref() }.map_or(std::ptr::null(), |c| c.owner_id.as_ptr())
    })
}

/// Stops fetching, writes the final checkpoints (automatic mode), releases
/// the leases so other consumers take them at once, and joins the threads.
/// Idempotent: a second close returns OK.
///
/// # Safety
/// `consumer` is NULL or a live consumer.
///
/// Thread safety: any thread; wakes a thread waiting in next, which returns
/// `KCHECK_STATUS_CLOSED` and may free the consumer while this close still
/// runs. In a process forked from the one that built the consumer:
/// `KCHECK_STATUS_FORKED`, and nothing is written.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_close(consumer: *const kcheck_consumer) -> kcheck_status {
    unsafe {
        with_shared_handle(consumer, |handle| {
            handle.consumer.close()?;
            Ok(kcheck_status::Ok)
        })
    }
}

/// Closes the consumer (see `kcheck_consumer_close`) and frees it. NULL does
/// nothing. In a process forked from the one that built the consumer, does
/// nothing: the copy's threads, connections and leases are the parent's,
/// so it is left as it is (its memory is not reclaimed in the child).
///
/// # Safety
/// `consumer` is NULL or a live consumer, not used afterwards.
///
/// Thread safety: calls that other threads started before keep the
/// consumer alive until they return (a close in flight finishes, a wait in
/// next returns `KCHECK_STATUS_CLOSED`); no call may start after free.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_consumer_free(consumer: *mut kcheck_consumer) {
    boundary_value((), || {
        if let Some(callers_reference) = unsafe { reclaim_shared(consumer) } {
            // Closed here, not by whichever call drops the last reference:
            // a thread waiting in next wakes up now.
            let _ = callers_reference.consumer.close();
        }
    })
}
