//! The DynamoDB writer and its builder for C.

use std::ffi::c_char;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use serde_json::json;

use super::boundary::{
    boundary, boundary_value, consume, deadline_after, into_handle, into_shared_handle, millis,
    owned_string, reclaim, reclaim_shared, text, update_options, with_shared_handle, Failure,
    Handle, HandleState, Out, Outcome,
};
use super::producer::kcheck_record_status;
use super::status::kcheck_status;
use crate::dynamodb::{Item, WriteRequest};
use crate::error::{excerpt, Error};
use crate::writer::{DynamoDbWriter, DynamoDbWriterBuilder, Ticket};

/// Options of a DynamoDB writer being built.
pub struct kcheck_writer_builder {
    /// None only after a panic inside a setter, which also poisons.
    draft: Mutex<Option<DynamoDbWriterBuilder>>,
    /// The default table, whose pace `_set_write_capacity` sets.
    default_table: String,
    state: HandleState,
}

impl Handle for kcheck_writer_builder {
    const NAME: &'static str = "writer builder";
    fn state(&self) -> &HandleState {
        &self.state
    }
}

/// A running DynamoDB writer. Shared by the caller and every call in
/// flight (an `Arc` behind the pointer): freeing it while another thread's
/// call is still running drops only the caller's reference.
pub struct kcheck_writer {
    pub(crate) writer: DynamoDbWriter,
    /// Set when `kcheck_writer_close` starts: a write refused afterwards
    /// reports `KCHECK_STATUS_CLOSED`.
    pub(crate) closed: AtomicBool,
    state: HandleState,
}

impl Handle for kcheck_writer {
    const NAME: &'static str = "writer";
    fn state(&self) -> &HandleState {
        &self.state
    }
}

/// Applies a setter to the builder; `change` also gets the default table.
///
/// # Safety
/// `builder` is NULL or a live builder.
unsafe fn update(
    builder: *const kcheck_writer_builder,
    change: impl FnOnce(DynamoDbWriterBuilder, &str) -> Result<DynamoDbWriterBuilder, Failure>,
) -> kcheck_status {
    let default_table = std::cell::OnceCell::new();
    unsafe {
        update_options(
            builder,
            |builder| {
                let _ = default_table.set(builder.default_table.clone());
                &builder.draft
            },
            |draft| change(draft, default_table.get().map_or("", String::as_str)),
        )
    }
}

/// A table's pace: write units a second, finite and above zero; 0 means
/// unlimited.
fn pace(value: f64, name: &str) -> Result<Option<f64>, Failure> {
    if value == 0.0 {
        Ok(None)
    } else if value.is_finite() && value > 0.0 {
        Ok(Some(value))
    } else {
        Err(Failure::invalid_argument(format!(
            "{name} must be a finite number of write units a second above 0, or 0 for unlimited, got {value}"
        )))
    }
}

/// Starts a writer whose default table is `table_name`, with the defaults:
/// the table unpaced, 4 threads, 25 writes per BatchWriteItem, 10 000
/// writes queued, 50 ms buffer time.
///
/// # Safety
/// `table_name` is NULL or a NUL-terminated string; `out` is NULL or
/// writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_builder_new(
    table_name: *const c_char,
    out: *mut *mut kcheck_writer_builder,
) -> kcheck_status {
    boundary(|| {
        let out = unsafe { Out::new(out, "out") }?;
        let table = unsafe { text(table_name, "table_name") }?;
        if table.is_empty() {
            return Err(Failure::invalid_argument("table_name is empty"));
        }
        out.write(into_handle(kcheck_writer_builder {
            draft: Mutex::new(Some(DynamoDbWriter::builder(table))),
            default_table: table.to_owned(),
            state: HandleState::new(),
        }))
    })
}

/// The default table's pace in write units a second (one unit per started
/// KB of an item); 0 is unlimited [unlimited]. A negative, infinite or NaN
/// value is `KCHECK_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_builder_set_write_capacity(
    builder: *mut kcheck_writer_builder,
    units_per_second: f64,
) -> kcheck_status {
    unsafe {
        update(builder, |b, default_table| {
            Ok(match pace(units_per_second, "write_capacity")? {
                Some(rate) => b.write_capacity(rate),
                None => b.table(default_table, None),
            })
        })
    }
}

/// Another table with its own pace in write units a second; 0 is
/// unlimited. Naming a table again replaces its pace (naming the default
/// table sets its pace). Tables never named can still be written to,
/// unpaced. Build reads every named table's key, failing on a missing one.
///
/// # Safety
/// `builder` is NULL or a live builder; `table_name` is NULL or a
/// NUL-terminated string.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_builder_add_table(
    builder: *mut kcheck_writer_builder,
    table_name: *const c_char,
    write_capacity: f64,
) -> kcheck_status {
    unsafe {
        update(builder, |b, _| {
            let name = text(table_name, "table_name")?;
            if name.is_empty() {
                return Err(Failure::invalid_argument("table_name is empty"));
            }
            let capacity = pace(write_capacity, &format!("write_capacity of table {name}"))?;
            Ok(b.table(name, capacity))
        })
    }
}

/// Worker threads sending batches, 1 to 64 [4]; checked by
/// `kcheck_writer_builder_build`.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_builder_set_threads(
    builder: *mut kcheck_writer_builder,
    threads: u32,
) -> kcheck_status {
    unsafe { update(builder, |b, _| Ok(b.threads(threads as usize))) }
}

/// Writes per BatchWriteItem call, 1 to 25 [25]; checked by
/// `kcheck_writer_builder_build`.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_builder_set_batch_size(
    builder: *mut kcheck_writer_builder,
    size: u32,
) -> kcheck_status {
    unsafe { update(builder, |b, _| Ok(b.batch_size(size as usize))) }
}

/// Writes put but not yet settled before `kcheck_writer_put` waits
/// [10 000]; at least 1, checked by `kcheck_writer_builder_build`.
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_builder_set_max_queue_size(
    builder: *mut kcheck_writer_builder,
    size: usize,
) -> kcheck_status {
    unsafe { update(builder, |b, _| Ok(b.max_queue_size(size))) }
}

/// The longest a write waits for others to fill its batch [50 ms].
///
/// # Safety
/// `builder` is NULL or a live builder.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_builder_set_buffer_time_ms(
    builder: *mut kcheck_writer_builder,
    milliseconds: u64,
) -> kcheck_status {
    unsafe { update(builder, |b, _| Ok(b.buffer_time(millis(milliseconds)))) }
}

/// The DynamoDB endpoint, e.g. a local emulator [resolved as the AWS SDKs
/// do].
///
/// # Safety
/// `builder` is NULL or a live builder; `url` is NULL or a NUL-terminated
/// string.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_builder_set_endpoint_url(
    builder: *mut kcheck_writer_builder,
    url: *const c_char,
) -> kcheck_status {
    unsafe {
        update(builder, |b, _| {
            Ok(b.endpoint_url(text(url, "endpoint_url")?))
        })
    }
}

/// The DynamoDB region [AWS_DEFAULT_REGION, the profile, or us-east-1].
///
/// # Safety
/// `builder` is NULL or a live builder; `region` is NULL or a
/// NUL-terminated string.
///
/// Thread safety: calls on one builder are serialized.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_builder_set_region_name(
    builder: *mut kcheck_writer_builder,
    region: *const c_char,
) -> kcheck_status {
    unsafe {
        update(builder, |b, _| {
            Ok(b.region_name(text(region, "region_name")?))
        })
    }
}

/// Consumes the builder, whether or not it succeeds, and starts the
/// writer: checks the options, reads every named table's key (failing at
/// once on a missing table or missing permissions) and starts the worker
/// threads. Free the writer with `kcheck_writer_free`.
///
/// # Safety
/// `builder` is NULL or a live builder, not used afterwards; `out` is NULL
/// or writable.
///
/// Thread safety: no other call may use the builder at the same time.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_builder_build(
    builder: *mut kcheck_writer_builder,
    out: *mut *mut kcheck_writer,
) -> kcheck_status {
    boundary(|| {
        let builder = unsafe { consume(builder) }?;
        let out = unsafe { Out::new(out, "out") }?;
        let draft = builder.draft.into_inner().expect("checked unpoisoned");
        let writer = draft.build()?;
        out.write(into_shared_handle(kcheck_writer {
            writer,
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
pub unsafe extern "C" fn kcheck_writer_builder_free(builder: *mut kcheck_writer_builder) {
    boundary_value((), || drop(unsafe { reclaim(builder) }))
}

/// The item (or key) of `len` bytes at `json`, in DynamoDB JSON.
///
/// # Safety
/// `json` is NULL or readable for `len` bytes.
pub(crate) unsafe fn item_argument(
    json: *const u8,
    len: usize,
    name: &str,
) -> Result<Item, Failure> {
    let bytes: &[u8] = match (json.is_null(), len) {
        (true, _) => return Err(Failure::invalid_argument(format!("{name} is NULL"))),
        (false, len) => unsafe { std::slice::from_raw_parts(json, len) },
    };
    let text = std::str::from_utf8(bytes).map_err(|_| {
        Failure::new(
            kcheck_status::InvalidUtf8,
            format!("{name} is not valid UTF-8"),
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|error| {
        Failure::invalid_argument(format!(
            "{name} is not valid JSON ({error}): {}",
            excerpt(text)
        ))
    })?;
    if !value.is_object() {
        return Err(Failure::invalid_argument(format!(
            "{name} must be a JSON object of attribute names to DynamoDB values, got {}",
            excerpt(text)
        )));
    }
    serde_json::from_value(value).map_err(|error| {
        Failure::invalid_argument(format!(
            "{name} is not a DynamoDB item ({error}); values are typed, e.g. {{\"pk\":{{\"S\":\"a\"}},\"n\":{{\"N\":\"1\"}}}}: {}",
            excerpt(text)
        ))
    })
}

/// Queues `request` for `table_name` (NULL: the default table) and writes
/// its ticket to `out_ticket`.
///
/// # Safety
/// `writer` is NULL or a live writer; `table_name` is NULL or a
/// NUL-terminated string; `json` is NULL or readable for `len` bytes;
/// `out_ticket` is NULL or writable.
#[allow(clippy::too_many_arguments)]
unsafe fn write(
    writer: *const kcheck_writer,
    table_name: *const c_char,
    json: *const u8,
    len: usize,
    name: &str,
    request: fn(Item) -> WriteRequest,
    timeout_ms: u64,
    out_ticket: *mut u64,
) -> kcheck_status {
    unsafe {
        with_shared_handle(writer, |handle| {
            let out = Out::new(out_ticket, "out_ticket")?;
            let table = if table_name.is_null() {
                handle.writer.default_table()
            } else {
                text(table_name, "table_name")?
            };
            let request = request(item_argument(json, len, name)?);
            let closed =
                || -> Outcome { Err(Failure::new(kcheck_status::Closed, "the writer is closed")) };
            if handle.closed.load(Ordering::Acquire) {
                return closed();
            }
            let written = match deadline_after(timeout_ms) {
                Some(timeout) => handle.writer.write_timeout(table, request, timeout),
                None => handle.writer.write(table, request),
            };
            match written {
                Ok(ticket) => out.write(ticket.get()),
                Err(Error::InvalidArgument(_)) if handle.closed.load(Ordering::Acquire) => closed(),
                Err(error) => Err(error.into()),
            }
        })
    }
}

/// Queues a put of an item given as DynamoDB JSON (`item_json_len` bytes of UTF-8 at
/// `item_json`, e.g. `{"pk":{"S":"a"},"n":{"N":"1"}}`) into `table_name`,
/// or into the default table when `table_name` is NULL, and writes its
/// ticket (increasing from 0 in put order) to `out_ticket`. A table not
/// named in the builder is written unpaced; its key is read on first use.
/// Waits while the queue is full: `KCHECK_STATUS_TIMED_OUT` when it stays
/// full for `timeout_ms` (a timeout too large to represent, such as
/// `UINT64_MAX`, waits without limit). JSON that is not an item, an item
/// without the table's key or of the wrong key type, or over 400 KB is
/// `KCHECK_STATUS_INVALID_ARGUMENT` (the message shows the item); a
/// missing table is `KCHECK_STATUS_SERVICE_ERROR`; after
/// `kcheck_writer_close`, `KCHECK_STATUS_CLOSED`. `out_ticket` is written
/// only on success.
///
/// # Safety
/// `writer` is NULL or a live writer; `table_name` is NULL or a
/// NUL-terminated string; `item_json` is NULL or readable for
/// `item_json_len` bytes; `out_ticket` is NULL or writable.
///
/// Thread safety: any number of threads may write at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_put(
    writer: *const kcheck_writer,
    table_name: *const c_char,
    item_json: *const u8,
    item_json_len: usize,
    timeout_ms: u64,
    out_ticket: *mut u64,
) -> kcheck_status {
    unsafe {
        write(
            writer,
            table_name,
            item_json,
            item_json_len,
            "item_json",
            WriteRequest::put,
            timeout_ms,
            out_ticket,
        )
    }
}

/// Queues a delete of the item whose primary key (only the key
/// attributes) is given as DynamoDB JSON at `key_json`, from `table_name`
/// or the default table when NULL; otherwise as `kcheck_writer_put`. Two
/// writes of one key reach DynamoDB in the order they were queued.
///
/// # Safety
/// `writer` is NULL or a live writer; `table_name` is NULL or a
/// NUL-terminated string; `key_json` is NULL or readable for
/// `key_json_len` bytes; `out_ticket` is NULL or writable.
///
/// Thread safety: any number of threads may write at once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_delete(
    writer: *const kcheck_writer,
    table_name: *const c_char,
    key_json: *const u8,
    key_json_len: usize,
    timeout_ms: u64,
    out_ticket: *mut u64,
) -> kcheck_status {
    unsafe {
        write(
            writer,
            table_name,
            key_json,
            key_json_len,
            "key_json",
            WriteRequest::delete,
            timeout_ms,
            out_ticket,
        )
    }
}

/// Returns once every write queued before the call is settled, or after
/// `timeout_ms` with `KCHECK_STATUS_TIMED_OUT` (the writes stay queued; a
/// timeout too large to represent waits without limit). When writes failed
/// for good since the last flush, returns the status of the first failure
/// (usually `KCHECK_STATUS_SERVICE_ERROR`) with a message naming how many
/// failed, their tickets and the first one's table and item;
/// `kcheck_writer_take_failures_json` has them.
///
/// # Safety
/// `writer` is NULL or a live writer.
///
/// Thread safety: any thread, also while others write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_flush(
    writer: *const kcheck_writer,
    timeout_ms: u64,
) -> kcheck_status {
    unsafe {
        with_shared_handle(writer, |handle| {
            match deadline_after(timeout_ms) {
                Some(timeout) => handle.writer.flush_timeout(timeout)?,
                None => handle.writer.flush()?,
            }
            Ok(kcheck_status::Ok)
        })
    }
}

/// Refuses further writes (they return `KCHECK_STATUS_CLOSED`), waits
/// until every write is settled (call `kcheck_writer_flush` first to bound
/// the wait) and stops the worker threads. Reports failures as
/// `kcheck_writer_flush` does. Idempotent.
///
/// # Safety
/// `writer` is NULL or a live writer.
///
/// Thread safety: any thread. In a process forked from the one that built
/// the writer: `KCHECK_STATUS_FORKED`, and nothing is written.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_close(writer: *const kcheck_writer) -> kcheck_status {
    unsafe {
        with_shared_handle(writer, |handle| {
            handle.closed.store(true, Ordering::Release);
            handle.writer.close()?;
            Ok(kcheck_status::Ok)
        })
    }
}

/// Where the write of `ticket` stands, written to `out_status` as a
/// `kcheck_record_status` (ACCEPTED: written to DynamoDB). A ticket this
/// writer never issued is `KCHECK_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `writer` is NULL or a live writer; `out_status` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_record_status(
    writer: *const kcheck_writer,
    ticket: u64,
    out_status: *mut kcheck_record_status,
) -> kcheck_status {
    unsafe {
        with_shared_handle(writer, |handle| {
            let out = Out::new(out_status, "out_status")?;
            out.write(handle.writer.status(Ticket::from_u64(ticket))?.into())
        })
    }
}

/// The lowest ticket not written yet, written to `out_ticket`: every write
/// before it was applied (the next ticket to be issued when all were). A
/// write that failed for good holds it back for ever, so a host that
/// checkpoints up to it never counts derived writes that failed as done.
///
/// # Safety
/// `writer` is NULL or a live writer; `out_ticket` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_first_unwritten(
    writer: *const kcheck_writer,
    out_ticket: *mut u64,
) -> kcheck_status {
    unsafe {
        with_shared_handle(writer, |handle| {
            let out = Out::new(out_ticket, "out_ticket")?;
            out.write(handle.writer.first_unwritten().get())
        })
    }
}

/// The writer's counters as a JSON object: `table` (the default table),
/// items_put, items_written, items_failed, write_units, throttles,
/// retries, requests, queue_depth, units_per_second, and `tables`: an
/// array with one object per table written to, the default table first
/// (table, write_capacity or null when unlimited, items_written,
/// write_units, throttles, retries, requests, queue_depth,
/// units_per_second). Free it with `kcheck_string_free`.
///
/// # Safety
/// `writer` is NULL or a live writer; `out` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_stats_json(
    writer: *const kcheck_writer,
    out: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(writer, |handle| {
            let out = Out::new(out, "out")?;
            let s = handle.writer.stats();
            let tables: Vec<serde_json::Value> = handle
                .writer
                .table_stats()
                .into_iter()
                .map(|t| {
                    json!({
                        "table": t.table,
                        "write_capacity": t.write_capacity,
                        "items_written": t.items_written,
                        "write_units": t.write_units,
                        "throttles": t.throttles,
                        "retries": t.retries,
                        "requests": t.requests,
                        "queue_depth": t.queue_depth,
                        "units_per_second": t.units_per_second,
                    })
                })
                .collect();
            let json = json!({
                "table": handle.writer.default_table(),
                "items_put": s.items_put,
                "items_written": s.items_written,
                "items_failed": s.items_failed,
                "write_units": s.write_units,
                "throttles": s.throttles,
                "retries": s.retries,
                "requests": s.requests,
                "queue_depth": s.queue_depth,
                "units_per_second": s.units_per_second,
                "tables": tables,
            });
            out.write(owned_string(json.to_string()))
        })
    }
}

/// The writes that failed for good since the last call, in ticket order,
/// as JSON lines (one object per line, each ending in a newline; an empty
/// string when none): `ticket`, `table`, `request` (the write as
/// BatchWriteItem's DynamoDB JSON: `{"PutRequest":{"Item":{...}}}` or
/// `{"DeleteRequest":{"Key":{...}}}`), `status` (the name of the status
/// the error maps to, e.g. "KCHECK_STATUS_SERVICE_ERROR") and `error` (its
/// message). A later flush no longer reports them; their record status
/// stays failed. Free the string with `kcheck_string_free`.
///
/// # Safety
/// `writer` is NULL or a live writer; `out` is NULL or writable.
///
/// Thread safety: any thread; each failure goes to one caller.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_take_failures_json(
    writer: *const kcheck_writer,
    out: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(writer, |handle| {
            let out = Out::new(out, "out")?;
            let mut lines = String::new();
            for failure in handle.writer.take_failures() {
                let status =
                    super::status::kcheck_status_name(kcheck_status::of(&failure.error) as u32);
                let line = json!({
                    "ticket": failure.ticket.get(),
                    "table": failure.table,
                    "request": failure.request,
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

/// Frees the writer without waiting for what is queued: further writes
/// are refused and the worker threads go on writing the queued items in
/// the background while the process runs. Call `kcheck_writer_close`
/// first to wait for them and hear of failures. NULL does nothing. In a
/// process forked from the one that built the writer, does nothing: its
/// threads and connections are the parent's (its memory is not reclaimed
/// in the child).
///
/// # Safety
/// `writer` is NULL or a live writer, not used afterwards.
///
/// Thread safety: calls that other threads started before keep the writer
/// alive until they return; no call may start after free.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_writer_free(writer: *mut kcheck_writer) {
    boundary_value((), || drop(unsafe { reclaim_shared(writer) }))
}
