//! Prometheus text of consumers, producers and writers for C, and the
//! consumer's lease and checkpoint events.

use std::ffi::{c_char, c_void, CString};

use super::boundary::{boundary, shared_handles, Out};
use super::consumer::kcheck_consumer;
use super::producer::kcheck_producer;
use super::status::kcheck_status;
use super::writer::kcheck_writer;
use crate::consumer::{ConsumerEvent, ConsumerEventKind};
use crate::metrics::Exposition;

/// What happened to a shard's lease or checkpoint; the `kind` of a
/// `kcheck_event_callback` call.
#[repr(u32)]
#[derive(Debug, Clone, Copy)]
pub enum kcheck_event_kind {
    /// A free or expired lease was taken (`message`: the expired previous
    /// owner, or empty).
    LeaseGained = 0,
    /// A lease was lost: taken by another consumer or not renewed in time
    /// (`message`: why). Its undelivered records are dropped.
    LeaseLost = 1,
    /// Another consumer handed a lease over to this one.
    LeaseReceived = 2,
    /// This consumer handed a lease over (`message`: the asker's owner id).
    LeaseHandedOver = 3,
    /// A checkpoint write failed (`message`: the error).
    CheckpointFailed = 4,
}

/// Told of one event of one shard: `kind` is a `kcheck_event_kind`; the
/// strings are NUL-terminated UTF-8, valid only during the call.
pub type kcheck_event_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        kind: u32,
        group: *const c_char,
        stream: *const c_char,
        shard_id: *const c_char,
        message: *const c_char,
    ),
>;

#[derive(Clone, Copy)]
struct EventSink {
    callback: unsafe extern "C" fn(
        *mut c_void,
        u32,
        *const c_char,
        *const c_char,
        *const c_char,
        *const c_char,
    ),
    user_data: *mut c_void,
}

// SAFETY: the host promises, when it sets the callback, that it may be
// called from the consumer's event thread with this user data.
unsafe impl Send for EventSink {}
unsafe impl Sync for EventSink {}

impl EventSink {
    fn call(&self, event: &ConsumerEvent) {
        let text = |s: &str| CString::new(s.replace('\0', "")).unwrap_or_default();
        let kind = match event.kind {
            ConsumerEventKind::LeaseGained => kcheck_event_kind::LeaseGained,
            ConsumerEventKind::LeaseLost => kcheck_event_kind::LeaseLost,
            ConsumerEventKind::LeaseReceived => kcheck_event_kind::LeaseReceived,
            ConsumerEventKind::LeaseHandedOver => kcheck_event_kind::LeaseHandedOver,
            ConsumerEventKind::CheckpointFailed => kcheck_event_kind::CheckpointFailed,
        };
        let (group, stream, shard, message) = (
            text(&event.group),
            text(&event.stream),
            text(&event.shard_id),
            text(&event.message),
        );
        // SAFETY: the host supplied a callback valid for these arguments.
        unsafe {
            (self.callback)(
                self.user_data,
                kind as u32,
                group.as_ptr(),
                stream.as_ptr(),
                shard.as_ptr(),
                message.as_ptr(),
            )
        };
    }
}

/// The consumer callback that calls `callback` with `user_data`, if any.
pub(crate) fn event_callback(
    callback: kcheck_event_callback,
    user_data: *mut c_void,
) -> Option<impl Fn(&ConsumerEvent) + Send + Sync + 'static> {
    let sink = EventSink {
        callback: callback?,
        user_data,
    };
    Some(move |event: &ConsumerEvent| sink.call(event))
}

/// The figures of the given consumers, producers and writers as one
/// Prometheus text (exposition format 0.0.4: `# HELP`, `# TYPE`, samples;
/// each metric family once); free it with `kcheck_string_free`. Each array
/// holds `*_count` live handles; an array may be NULL when its count is 0.
/// Names and labels are listed in the README (e.g.
/// `kcheck_shard_millis_behind_latest{group,stream,shard,owner}`).
///
/// # Safety
/// Each array is NULL (with a count of 0) or holds `*_count` pointers,
/// each NULL or a live handle; `out` is NULL or writable.
///
/// Thread safety: any thread, also while others use the handles.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_metrics_render(
    consumers: *const *const kcheck_consumer,
    consumer_count: usize,
    producers: *const *const kcheck_producer,
    producer_count: usize,
    writers: *const *const kcheck_writer,
    writer_count: usize,
    out: *mut *mut c_char,
) -> kcheck_status {
    boundary(|| {
        let out = unsafe { Out::new(out, "out") }?;
        let consumers = unsafe { shared_handles(consumers, consumer_count, "consumers") }?;
        let producers = unsafe { shared_handles(producers, producer_count, "producers") }?;
        let writers = unsafe { shared_handles(writers, writer_count, "writers") }?;
        let mut exposition = Exposition::new();
        for handle in &consumers {
            exposition.add_consumer(&handle.consumer);
        }
        for handle in &producers {
            exposition.add_producer(&handle.producer);
        }
        for handle in &writers {
            exposition.add_writer(&handle.writer);
        }
        out.write(super::boundary::owned_string(exposition.render()))
    })
}
