//! The consumer → writer pipeline for C: the host's transform turns each
//! record into writes, and positions are checkpointed only once the writes
//! derived up to them are written.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void};
use std::ptr;
use std::sync::atomic::Ordering;

use super::boundary::{boundary, millis, text, with_two_shared_handles, Failure, Outcome};
use super::consumer::kcheck_consumer;
use super::record::kcheck_record_fields;
use super::status::{kcheck_status, status_name};
use super::writer::{item_argument, kcheck_writer};
use crate::dynamodb::Item;
use crate::error::Error;
use crate::pipeline::{Pipeline, Write};

/// Where the transform puts the writes of one record. Valid only during
/// the transform call it was passed to, and only on that thread: outside
/// it, `kcheck_pipeline_emit_put` and `kcheck_pipeline_emit_delete` refuse
/// it with `KCHECK_STATUS_INVALID_ARGUMENT` (they compare it with the
/// emitter of the call running on the calling thread, never reading a
/// stale one).
pub struct kcheck_pipeline_emitter {
    writes: RefCell<Vec<Write>>,
}

thread_local! {
    /// The emitter of the transform call running on this thread; NULL
    /// outside one.
    static EMITTING: Cell<*const kcheck_pipeline_emitter> = const { Cell::new(ptr::null()) };
}

/// Restores the thread's previous emitter (NULL, or an outer pipeline's
/// when a transform runs a pipeline itself) once a transform call ends.
struct Emitting(*const kcheck_pipeline_emitter);

impl Drop for Emitting {
    fn drop(&mut self) {
        let _ = EMITTING.try_with(|current| current.set(self.0));
    }
}

/// Turns one record into writes: called once per record, in order, on the
/// thread that called `kcheck_pipeline_run`. `record`'s fields are
/// borrowed for the call only. The callback calls
/// `kcheck_pipeline_emit_put` and `kcheck_pipeline_emit_delete` with
/// `emitter` zero or more times, then returns `KCHECK_STATUS_OK` (a
/// `kcheck_status`, returned as `uint32_t` so that any value is defined);
/// any other value stops the pipeline (see `kcheck_pipeline_run`) and the
/// writes it emitted for this record are dropped. `emitter` is usable only
/// until the callback returns.
pub type kcheck_pipeline_transform = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        record: *const kcheck_record_fields,
        emitter: *mut kcheck_pipeline_emitter,
    ) -> u32,
>;

/// Asked on the thread that called `kcheck_pipeline_run` before each batch
/// of up to 500 records (so within 200 ms while no record comes): false
/// stops the pipeline, which then writes its final checkpoints.
pub type kcheck_pipeline_keep_going = Option<unsafe extern "C" fn(user_data: *mut c_void) -> bool>;

/// Counters of a pipeline run. This struct is frozen: new counters come
/// with new functions.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct kcheck_pipeline_stats {
    /// Records transformed.
    pub records: u64,
    /// Writes queued to the writer.
    pub writes: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Records read but not checkpointed when the run ended.
    pub records_pending: u64,
}

/// Runs `body` with the emitter of the transform call running on this
/// thread, refusing any other pointer.
fn with_emitter(
    emitter: *const kcheck_pipeline_emitter,
    body: impl FnOnce(&kcheck_pipeline_emitter) -> Outcome,
) -> kcheck_status {
    boundary(|| {
        if emitter.is_null() {
            return Err(Failure::invalid_argument("emitter is NULL"));
        }
        let current = EMITTING.try_with(Cell::get).unwrap_or(ptr::null());
        if current != emitter {
            return Err(Failure::invalid_argument(
                "this emitter is usable only during the transform call it was passed to, on its thread",
            ));
        }
        // SAFETY: the emitter of the transform running on this thread: it
        // lives on `kcheck_pipeline_run`'s stack until the call returns.
        body(unsafe { &*emitter })
    })
}

/// Adds a write for `table_name` (NULL: the writer's default table) of the
/// item or key at `json`.
///
/// # Safety
/// `table_name` is NULL or a NUL-terminated string; `json` is NULL or
/// readable for `len` bytes.
unsafe fn emit(
    emitter: *mut kcheck_pipeline_emitter,
    table_name: *const c_char,
    json: *const u8,
    len: usize,
    name: &str,
    write: fn(Item) -> Write,
) -> kcheck_status {
    with_emitter(emitter, |emitter| {
        let table = if table_name.is_null() {
            None
        } else {
            Some(unsafe { text(table_name, "table_name") }?)
        };
        let mut write = write(unsafe { item_argument(json, len, name) }?);
        if let Some(table) = table {
            write = write.to(table);
        }
        emitter.writes.borrow_mut().push(write);
        Ok(kcheck_status::Ok)
    })
}

/// From inside a transform: puts the item given as DynamoDB JSON
/// (`item_json_len` bytes of UTF-8 at `item_json`, as for
/// `kcheck_writer_put`) into `table_name`, or into the writer's default
/// table when `table_name` is NULL. The write is queued once the transform
/// returns `KCHECK_STATUS_OK`. JSON that is not an item is
/// `KCHECK_STATUS_INVALID_ARGUMENT` (`KCHECK_STATUS_INVALID_UTF8` for bad
/// UTF-8) and adds nothing: the transform decides whether to go on. An
/// item the table refuses (no key, over 400 KB) fails
/// `kcheck_pipeline_run` when it is queued. `emitter` other than the one
/// of the running transform call is `KCHECK_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
/// `table_name` is NULL or a NUL-terminated string; `item_json` is NULL or
/// readable for `item_json_len` bytes. `emitter` may be any pointer.
///
/// Thread safety: only on the thread running the transform, during its call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_pipeline_emit_put(
    emitter: *mut kcheck_pipeline_emitter,
    table_name: *const c_char,
    item_json: *const u8,
    item_json_len: usize,
) -> kcheck_status {
    unsafe {
        emit(
            emitter,
            table_name,
            item_json,
            item_json_len,
            "item_json",
            Write::put,
        )
    }
}

/// From inside a transform: deletes the item whose primary key (only the
/// key attributes) is given as DynamoDB JSON at `key_json`, from
/// `table_name` or the default table when NULL; otherwise as
/// `kcheck_pipeline_emit_put`.
///
/// # Safety
/// `table_name` is NULL or a NUL-terminated string; `key_json` is NULL or
/// readable for `key_json_len` bytes. `emitter` may be any pointer.
///
/// Thread safety: only on the thread running the transform, during its call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_pipeline_emit_delete(
    emitter: *mut kcheck_pipeline_emitter,
    table_name: *const c_char,
    key_json: *const u8,
    key_json_len: usize,
) -> kcheck_status {
    unsafe {
        emit(
            emitter,
            table_name,
            key_json,
            key_json_len,
            "key_json",
            Write::delete,
        )
    }
}

/// Reads records from `consumer`, turns each into writes with `transform`
/// and queues them to `writer`, checkpointing each shard's position only
/// once every write derived from the records up to it is written (every
/// `checkpoint_interval_ms`; 0: every 1 000 ms). A crash in between makes
/// the shard's next owner read those records again and rewrite their
/// items: nothing is lost, puts are idempotent. Blocks until `keep_going`
/// returns false (NULL: until `kcheck_consumer_close` from another
/// thread), then waits for the writes and checkpoints them, and returns
/// `KCHECK_STATUS_OK`, writing the run's counters to `out_stats` unless it
/// is NULL. (`kcheck_consumer_close` releases the leases at once, so the
/// records read since the last checkpoint are read again by the next
/// owner; stop with `keep_going` for a final checkpoint.)
///
/// The consumer must checkpoint on request only (its checkpointer built
/// with `kcheck_checkpointer_builder_set_auto_checkpoint(b, 0)`); one that
/// checkpoints automatically is `KCHECK_STATUS_INVALID_CONFIG`. A closed
/// writer is `KCHECK_STATUS_CLOSED`.
///
/// A transform returning anything but `KCHECK_STATUS_OK` stops the run at
/// once with `KCHECK_STATUS_CALLBACK_FAILED` (the message names the
/// returned status and the record): neither that record nor any after it
/// is checkpointed, its writes are dropped, and the writes of earlier
/// records already queued are still written by the writer (those records
/// since the last checkpoint are read again by the shard's next owner).
/// Other failures of the consumer, a write (e.g. an item without the
/// table's key: `KCHECK_STATUS_INVALID_ARGUMENT`; a write failing for
/// good: its status) or a checkpoint stop the run with their status
/// likewise. A lost lease is not a failure: the shard's next owner
/// rewrites what was not checkpointed.
///
/// After a failure, close the consumer rather than run again with it: it
/// handed the failed run records that were never transformed (the rest of
/// the batch), which a new run would skip and could checkpoint past. Once
/// closed, the shards' next owner reads them again from the last
/// checkpoint.
///
/// # Safety
/// `consumer` and `writer` are NULL or live; `transform` and `keep_going`,
/// when not NULL, are safe to call with `user_data` on the calling thread;
/// `out_stats` is NULL or writable.
///
/// Thread safety: the callbacks run on the calling thread, never after
/// this call returns. Other threads may write through the writer and
/// close the consumer (which ends the run), but must not take records from
/// the consumer meanwhile: they would bypass the transform, and the
/// pipeline would checkpoint past them.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_pipeline_run(
    consumer: *const kcheck_consumer,
    writer: *const kcheck_writer,
    transform: kcheck_pipeline_transform,
    keep_going: kcheck_pipeline_keep_going,
    user_data: *mut c_void,
    checkpoint_interval_ms: u64,
    out_stats: *mut kcheck_pipeline_stats,
) -> kcheck_status {
    unsafe {
        with_two_shared_handles(consumer, writer, |consumer, writer| {
            let transform =
                transform.ok_or_else(|| Failure::invalid_argument("transform is NULL"))?;
            let closed = || Failure::new(kcheck_status::Closed, "the writer is closed");
            if writer.closed.load(Ordering::Acquire) {
                return Err(closed());
            }
            let mut pipeline = Pipeline::new(&consumer.consumer, &writer.writer)?;
            if checkpoint_interval_ms > 0 {
                pipeline = pipeline.checkpoint_interval(millis(checkpoint_interval_ms));
            }
            // Why the transform stopped the run, when it did.
            let mut stopped_by_transform: Option<Failure> = None;
            let outcome = pipeline.run(
                |record| {
                    let fields = kcheck_record_fields::of(record);
                    let emitter = kcheck_pipeline_emitter {
                        writes: RefCell::new(Vec::new()),
                    };
                    let status = {
                        let _restore = Emitting(EMITTING.replace(&emitter));
                        // SAFETY: the host promised `transform` is safe to
                        // call with `user_data`; `fields` and `emitter` live
                        // through the call.
                        transform(user_data, &fields, ptr::from_ref(&emitter).cast_mut())
                    };
                    if status == kcheck_status::Ok as u32 {
                        return Ok(emitter.writes.into_inner());
                    }
                    let name = status_name(status).to_string_lossy();
                    let failure = Failure::new(
                        kcheck_status::CallbackFailed,
                        format!(
                            "the transform returned {name} ({status}) for record {} of shard {}; the pipeline stopped without checkpointing it",
                            record.sequence_number, record.shard_id
                        ),
                    );
                    stopped_by_transform = Some(failure);
                    // Replaced by `stopped_by_transform` once run returns.
                    Err(Error::InvalidArgument("the transform failed".into()))
                },
                || keep_going.is_none_or(|keep_going| keep_going(user_data)),
            );
            match outcome {
                Ok(()) => {}
                Err(_) if stopped_by_transform.is_some() => {
                    return Err(stopped_by_transform.take().expect("checked"))
                }
                Err(Error::InvalidArgument(_)) if writer.closed.load(Ordering::Acquire) => {
                    return Err(closed())
                }
                Err(error) => return Err(error.into()),
            }
            if !out_stats.is_null() {
                let stats = pipeline.stats();
                out_stats.write(kcheck_pipeline_stats {
                    records: stats.records,
                    writes: stats.writes,
                    checkpoints: stats.checkpoints,
                    records_pending: stats.records_pending,
                });
            }
            Ok(kcheck_status::Ok)
        })
    }
}
