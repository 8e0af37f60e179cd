//! The producer and its builder for C.

use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use serde_json::json;

use super::boundary::{
    boundary, boundary_value, consume, deadline_after, flag, into_handle, into_shared_handle,
    millis, owned_string, reclaim, reclaim_shared, text, update_options, with_shared_handle,
    Failure, Handle, HandleState, Out,
};
use super::status::kcheck_status;
use crate::error::Error;
use crate::producer::{Producer, ProducerBuilder, RecordStatus, Ticket};

/// Where a put record stands; see `kcheck_producer_record_status`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum kcheck_record_status {
    /// Queued, in flight or waiting to be resubmitted.
    Pending = 0,
    /// Stored by Kinesis.
    Accepted = 1,
    /// Failed for good; `kcheck_producer_take_failures_json` has it.
    Failed = 2,
}

impl From<RecordStatus> for kcheck_record_status {
    fn from(status: RecordStatus) -> Self {
        match status {
            RecordStatus::Pending => kcheck_record_status::Pending,
            RecordStatus::Accepted => kcheck_record_status::Accepted,
            RecordStatus::Failed => kcheck_record_status::Failed,
        }
    }
}

/// Options of a producer being built.
pub struct kcheck_producer_builder {
    /// None only after a panic inside a setter, which also poisons.
    draft: Mutex<Option<ProducerBuilder>>,
    state: HandleState,
}

impl Handle for kcheck_producer_builder {
    const NAME: &'static str = "producer builder";
    fn state(&self) -> &HandleState {
        &self.state
    }
}

/// A running producer. Shared by the caller and every call in flight (an
/// `Arc` behind the pointer): freeing it while another thread's call is
/// still running drops only the caller's reference.
pub struct kcheck_producer {
    pub(crate) producer: Producer,
    /// Set when `kcheck_producer_close` starts: a put refused afterwards
    /// reports `KCHECK_STATUS_CLOSED`.
    closed: AtomicBool,
    state: HandleState,
}

impl Handle for kcheck_producer {
    const NAME: &'static str = "producer";
    fn state(&self) -> &HandleState {
        &self.state
    }
}

/// Applies a setter to the builder.
///
/// # Safety
/// `builder` is NULL or a live builder.
unsafe fn update(
    builder: *const kcheck_producer_builder,
    change: impl FnOnce(ProducerBuilder) -> Result<ProducerBuilder, Failure>,
) -> kcheck_status {
    unsafe { update_options(builder, |builder| &builder.draft, change) }
}

/// A per-shard limit: finite and above zero.
fn positive_rate(value: f64, name: &str) -> Result<f64, Failure> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(Failure::invalid_argument(format!(
            "{name} must be a finite number above 0, got {value}"
        )))
    }
}

/// Starts a producer writing to `stream_name` (a stream name or ARN) with
/// the defaults: 500 ms buffer time, 500 records per PutRecords, 10 000
/// records queued, 1 000 records and 1 MiB per second per shard, no
/// aggregation.
///
/// # Safety
/// `stream_name` is NULL or a NUL-terminated string; `out` is NULL or
/// writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_builder_new(
    stream_name: *const c_char,
    out: *mut *mut kcheck_producer_builder,
) -> kcheck_status {
    boundary(|| {
        let out = unsafe { Out::new(out, "out") }?;
        let stream = unsafe { text(stream_name, "stream_name") }?;
        out.write(into_handle(kcheck_producer_builder {
            draft: Mutex::new(Some(Producer::builder(stream))),
            state: HandleState::new(),
        }))
    })
}

/// The Kinesis endpoint, e.g. a local emulator [resolved as the AWS SDKs do].
///
/// # Safety
/// `builder` is NULL or a live builder; `url` is NULL or a NUL-terminated
/// string.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_builder_set_endpoint_url(
    builder: *mut kcheck_producer_builder,
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
pub unsafe extern "C" fn kcheck_producer_builder_set_region_name(
    builder: *mut kcheck_producer_builder,
    region: *const c_char,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.region_name(text(region, "region_name")?))) }
}

/// The longest a record waits for others to share its request [500 ms].
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_builder_set_buffer_time_ms(
    builder: *mut kcheck_producer_builder,
    milliseconds: u64,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.buffer_time(millis(milliseconds)))) }
}

/// Records per PutRecords request, 1 to 500 [500]; checked by
/// `kcheck_producer_builder_build`.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_builder_set_batch_size(
    builder: *mut kcheck_producer_builder,
    size: u32,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.batch_size(size as usize))) }
}

/// Records put but not yet settled before `kcheck_producer_put` waits
/// [10 000]; at least 1, checked by `kcheck_producer_builder_build`.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_builder_set_max_queue_size(
    builder: *mut kcheck_producer_builder,
    size: usize,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.max_queue_size(size))) }
}

/// Kinesis records per second sent to each shard, above 0 [1 000, the
/// service's limit].
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_builder_set_put_rate_limit_per_shard(
    builder: *mut kcheck_producer_builder,
    records_per_second: f64,
) -> kcheck_status {
    unsafe {
        update(builder, |b| {
            let rate = positive_rate(records_per_second, "put_rate_limit_per_shard")?;
            Ok(b.put_rate_limit_per_shard(rate))
        })
    }
}

/// Bytes (data and partition key) per second sent to each shard, above 0
/// [1 048 576, the service's limit].
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_builder_set_put_bandwidth_limit_per_shard(
    builder: *mut kcheck_producer_builder,
    bytes_per_second: f64,
) -> kcheck_status {
    unsafe {
        update(builder, |b| {
            let rate = positive_rate(bytes_per_second, "put_bandwidth_limit_per_shard")?;
            Ok(b.put_bandwidth_limit_per_shard(rate))
        })
    }
}

/// 1 packs small records bound for one shard into KPL aggregates, which
/// kcheck's consumer and the KCL split again; 0 sends each record alone
/// [0]. Other values are `KCHECK_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_builder_set_aggregate(
    builder: *mut kcheck_producer_builder,
    aggregate: u32,
) -> kcheck_status {
    unsafe { update(builder, |b| Ok(b.aggregate(flag(aggregate, "aggregate")?))) }
}

/// How often the shard map is read again even when nothing suggests a
/// resharding [60 000 ms]; at least 1 (0 is
/// `KCHECK_STATUS_INVALID_ARGUMENT`).
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_builder_set_shard_refresh_interval_ms(
    builder: *mut kcheck_producer_builder,
    milliseconds: u64,
) -> kcheck_status {
    unsafe {
        update(builder, |b| {
            if milliseconds == 0 {
                // The sending thread would read the shard map without pause.
                return Err(Failure::invalid_argument(
                    "shard_refresh_interval must be at least 1 ms, got 0",
                ));
            }
            Ok(b.shard_refresh_interval(millis(milliseconds)))
        })
    }
}

/// Consumes the builder, whether or not it succeeds, and starts the
/// producer: checks the options, reads the stream's shards (failing at
/// once on a missing stream or missing permissions) and starts the sending
/// thread. Free the producer with `kcheck_producer_free`.
///
/// # Safety
/// `builder` is NULL or a live builder, not used afterwards; `out` is NULL
/// or writable.
///
/// Thread safety: no other call may use the builder at the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_builder_build(
    builder: *mut kcheck_producer_builder,
    out: *mut *mut kcheck_producer,
) -> kcheck_status {
    boundary(|| {
        let builder = unsafe { consume(builder) }?;
        let out = unsafe { Out::new(out, "out") }?;
        let draft = builder.draft.into_inner().expect("checked unpoisoned");
        let producer = draft.build()?;
        out.write(into_shared_handle(kcheck_producer {
            producer,
            closed: AtomicBool::new(false),
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
pub unsafe extern "C" fn kcheck_producer_builder_free(builder: *mut kcheck_producer_builder) {
    boundary_value((), || drop(unsafe { reclaim(builder) }))
}

/// Queues a record of `len` bytes at `data` (NULL allowed when `len` is 0)
/// and writes its ticket (increasing from 0 in put order) to `out_ticket`.
/// Routed by `explicit_hash_key` (a decimal 128-bit integer) when it is not
/// NULL, else by the MD5 of `partition_key` (1 to 256 characters). Waits
/// while the buffer is full: `KCHECK_STATUS_TIMED_OUT` when it stays full
/// for `timeout_ms` (a timeout too large to represent, such as
/// `UINT64_MAX`, waits without limit). A bad key or a record over 1 MiB is
/// `KCHECK_STATUS_INVALID_ARGUMENT`; after `kcheck_producer_close`,
/// `KCHECK_STATUS_CLOSED`. `out_ticket` is written only on success.
///
/// # Safety
/// `producer` is NULL or a live producer; `data` is NULL or readable for
/// `len` bytes; `partition_key` and `explicit_hash_key` are NULL or
/// NUL-terminated strings; `out_ticket` is NULL or writable.
///
/// Thread safety: any number of threads may put at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_put(
    producer: *const kcheck_producer,
    data: *const u8,
    len: usize,
    partition_key: *const c_char,
    explicit_hash_key: *const c_char,
    timeout_ms: u64,
    out_ticket: *mut u64,
) -> kcheck_status {
    unsafe {
        with_shared_handle(producer, |handle| {
            let out = Out::new(out_ticket, "out_ticket")?;
            let data: &[u8] = match (data.is_null(), len) {
                (_, 0) => &[],
                (true, _) => return Err(Failure::invalid_argument("data is NULL")),
                (false, len) => std::slice::from_raw_parts(data, len),
            };
            let key = text(partition_key, "partition_key")?;
            let hash_key = if explicit_hash_key.is_null() {
                None
            } else {
                Some(text(explicit_hash_key, "explicit_hash_key")?)
            };
            let put = match deadline_after(timeout_ms) {
                Some(timeout) => handle.producer.put_timeout(data, key, hash_key, timeout),
                None => handle.producer.put(data, key, hash_key),
            };
            match put {
                Ok(ticket) => out.write(ticket.get()),
                Err(Error::InvalidArgument(message)) if handle.closed.load(Ordering::Acquire) => {
                    Err(Failure::new(kcheck_status::Closed, message))
                }
                Err(error) => Err(error.into()),
            }
        })
    }
}

/// Returns once every record put before the call is settled, or after
/// `timeout_ms` with `KCHECK_STATUS_TIMED_OUT` (the records stay queued; a
/// timeout too large to represent waits without limit). When records
/// failed for good since the last flush, returns the status of the first
/// failure (usually `KCHECK_STATUS_SERVICE_ERROR`) with a message naming
/// how many failed and their tickets; `kcheck_producer_take_failures_json`
/// has them.
///
/// # Safety
/// `producer` is NULL or a live producer.
///
/// Thread safety: any thread, also while others put.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_flush(
    producer: *const kcheck_producer,
    timeout_ms: u64,
) -> kcheck_status {
    unsafe {
        with_shared_handle(producer, |handle| {
            match deadline_after(timeout_ms) {
                Some(timeout) => handle.producer.flush_timeout(timeout)?,
                None => handle.producer.flush()?,
            }
            Ok(kcheck_status::Ok)
        })
    }
}

/// Refuses further puts (they return `KCHECK_STATUS_CLOSED`), waits until
/// every record is settled (call `kcheck_producer_flush` first to bound the
/// wait) and stops the sending thread. Reports failures as
/// `kcheck_producer_flush` does. Idempotent.
///
/// # Safety
/// `producer` is NULL or a live producer.
///
/// Thread safety: any thread. In a process forked from the one that built
/// the producer: `KCHECK_STATUS_FORKED`, and nothing is sent.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_close(producer: *const kcheck_producer) -> kcheck_status {
    unsafe {
        with_shared_handle(producer, |handle| {
            handle.closed.store(true, Ordering::Release);
            handle.producer.close()?;
            Ok(kcheck_status::Ok)
        })
    }
}

/// Where the record of `ticket` stands, written to `out_status` as a
/// `kcheck_record_status`. A ticket this producer never issued is
/// `KCHECK_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `producer` is NULL or a live producer; `out_status` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_record_status(
    producer: *const kcheck_producer,
    ticket: u64,
    out_status: *mut kcheck_record_status,
) -> kcheck_status {
    unsafe {
        with_shared_handle(producer, |handle| {
            let out = Out::new(out_status, "out_status")?;
            out.write(handle.producer.status(Ticket::from_u64(ticket))?.into())
        })
    }
}

/// The producer's counters as a JSON object (records_put, records_sent,
/// records_retried, records_failed, records_throttled, bytes_put,
/// bytes_sent, kinesis_records_sent, requests, queue_depth, shards,
/// shard_map_refreshes); free it with `kcheck_string_free`.
///
/// # Safety
/// `producer` is NULL or a live producer; `out` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_stats_json(
    producer: *const kcheck_producer,
    out: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(producer, |handle| {
            let out = Out::new(out, "out")?;
            let s = handle.producer.stats();
            let json = json!({
                "stream": handle.producer.stream().to_string(),
                "records_put": s.records_put,
                "records_sent": s.records_sent,
                "records_retried": s.records_retried,
                "records_failed": s.records_failed,
                "records_throttled": s.records_throttled,
                "bytes_put": s.bytes_put,
                "bytes_sent": s.bytes_sent,
                "kinesis_records_sent": s.kinesis_records_sent,
                "requests": s.requests,
                "queue_depth": s.queue_depth,
                "shards": s.shards,
                "shard_map_refreshes": s.shard_map_refreshes,
            });
            out.write(owned_string(json.to_string()))
        })
    }
}

/// The records that failed for good since the last call, in ticket order,
/// as JSON lines (one object per line, each ending in a newline; an empty
/// string when none): `ticket`, `partition_key`, `explicit_hash_key` (or
/// null), `data` (base64), `status` (the name of the status the error maps
/// to, e.g. "KCHECK_STATUS_SERVICE_ERROR") and `error` (its message). A
/// later flush no longer reports them; their record status stays failed.
/// Free the string with `kcheck_string_free`.
///
/// # Safety
/// `producer` is NULL or a live producer; `out` is NULL or writable.
///
/// Thread safety: any thread; each failure goes to one caller.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_take_failures_json(
    producer: *const kcheck_producer,
    out: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(producer, |handle| {
            let out = Out::new(out, "out")?;
            let mut lines = String::new();
            for failure in handle.producer.take_failures() {
                let status =
                    super::status::kcheck_status_name(kcheck_status::of(&failure.error) as u32);
                let line = json!({
                    "ticket": failure.ticket.get(),
                    "partition_key": failure.partition_key,
                    "explicit_hash_key": failure.explicit_hash_key,
                    "data": base64_simd::STANDARD.encode_to_string(&failure.data),
                    "status": std::ffi::CStr::from_ptr(status).to_string_lossy(),
                    "error": failure.error.to_string(),
                });
                lines.push_str(&line.to_string());
                lines.push('\n');
            }
            out.write(owned_string(lines))
        })
    }
}

/// Frees the producer without waiting for what is queued: further puts are
/// refused and the sending thread goes on sending the queued records in the
/// background while the process runs. Call `kcheck_producer_close` first to
/// wait for them and hear of failures. NULL does nothing. In a process
/// forked from the one that built the producer, does nothing: its thread
/// and connections are the parent's (its memory is not reclaimed in the
/// child).
///
/// # Safety
/// `producer` is NULL or a live producer, not used afterwards.
///
/// Thread safety: calls that other threads started before keep the
/// producer alive until they return; no call may start after free.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_producer_free(producer: *mut kcheck_producer) {
    boundary_value((), || drop(unsafe { reclaim_shared(producer) }))
}
