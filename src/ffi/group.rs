//! A consumer group's leases, checkpoints and snapshots for C: the tools of
//! `kcheck leases` and `kcheck checkpoints` as calls, with the same JSON.

use std::ffi::c_char;
use std::time::Duration;

use serde::Serialize;

use super::boundary::{
    boundary, boundary_value, choice, flag, into_shared_handle, live, owned_string, reclaim_shared,
    text, with_shared_handle, Failure, Handle, HandleState, Out, Outcome,
};
use super::checkpointer::kcheck_checkpointer;
use super::status::kcheck_status;
use crate::checkpoint::{
    copy, AsyncKinesisTable, CheckpointTable, ConsumerGroup, KclTable, ResetTo, SavedCheckpoint,
    Snapshots,
};
use crate::error::{excerpt, Error, ErrorCode};
use crate::kinesis::KinesisClient;
use crate::transport::AwsConfig;

/// The leases and checkpoints of a DynamoDB checkpointer's consumer group,
/// seen from outside its consumers. Shared by the caller and every call in
/// flight (an `Arc` behind the pointer).
///
/// Moving checkpoints of a running group races its consumers: calls that
/// write refuse a live lease with `KCHECK_STATUS_INVALID_ARGUMENT` (before
/// writing anything) unless `force` is 1; a forced write fences the owner,
/// which lets the shard go, and the next owner starts from the position
/// written.
pub struct kcheck_group {
    group: ConsumerGroup,
    state: HandleState,
}

impl Handle for kcheck_group {
    const NAME: &'static str = "group";
    fn state(&self) -> &HandleState {
        &self.state
    }
}

impl kcheck_group {
    /// A failure of the library, naming the lease table when it is missing.
    fn explain(&self, error: Error) -> Failure {
        if error.code() == Some(&ErrorCode::ResourceNotFound) {
            return Failure::new(
                kcheck_status::of(&error),
                format!("table {} not found ({error})", self.group.table_name()),
            );
        }
        error.into()
    }
}

/// Values as JSON lines, each ending in a newline; empty when none.
fn json_lines<T: Serialize>(values: &[T]) -> Result<String, Failure> {
    let mut lines = String::new();
    for value in values {
        lines.push_str(&json(value)?);
        lines.push('\n');
    }
    Ok(lines)
}

fn json<T: Serialize>(value: &T) -> Result<String, Failure> {
    serde_json::to_string(value)
        .map_err(|e| Failure::new(kcheck_status::InternalError, e.to_string()))
}

/// Exported checkpoints, one JSON object a line; blank lines are skipped
/// and a bad line is named by its number.
fn parse_lines(text: &str, name: &str) -> Result<Vec<SavedCheckpoint>, Failure> {
    let mut saved = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        saved.push(serde_json::from_str(line).map_err(|e| {
            Failure::invalid_argument(format!(
                "{name} line {}: not an exported checkpoint ({e}): {}",
                index + 1,
                excerpt(line)
            ))
        })?);
    }
    Ok(saved)
}

/// The group's snapshots in `history_table` (NULL: `{lease table}-history`).
///
/// # Safety
/// `history_table` is NULL or a NUL-terminated string.
unsafe fn snapshots(
    group: &kcheck_group,
    history_table: *const c_char,
) -> Result<Snapshots, Failure> {
    let snapshots = Snapshots::new(group.group.clone());
    if history_table.is_null() {
        return Ok(snapshots);
    }
    let table = unsafe { text(history_table, "history_table") }?;
    if table.is_empty() {
        return Err(Failure::invalid_argument("history_table is empty"));
    }
    Ok(snapshots.table_name(table))
}

/// Writes `values` as JSON lines to a string out-param.
fn write_lines<T: Serialize>(out: Out<*mut c_char>, values: &[T]) -> Outcome {
    out.write(owned_string(json_lines(values)?))
}

/// The consumer group of `checkpointer` (a DynamoDB checkpointer: its group
/// name, table, endpoint, region and session timeout, which judges whether
/// a lease is alive). The checkpointer may be freed afterwards. Free the
/// group with `kcheck_group_free`. A memory checkpointer is
/// `KCHECK_STATUS_INVALID_ARGUMENT`.
///
/// Positions an import, reset or restore writes are checked against the
/// stream through Kinesis at `kinesis_endpoint_url` in `region` (each NULL:
/// resolved as the AWS SDKs do): a shard gone from the stream, or a
/// position older than its oldest record, is said in the change's `note`,
/// and so is a stream that could not be read.
///
/// # Safety
/// `checkpointer` is NULL or a live checkpointer; `kinesis_endpoint_url`
/// and `region` are NULL or NUL-terminated strings; `out` is NULL or
/// writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_group_new(
    checkpointer: *const kcheck_checkpointer,
    kinesis_endpoint_url: *const c_char,
    region: *const c_char,
    out: *mut *mut kcheck_group,
) -> kcheck_status {
    boundary(|| {
        let out = unsafe { Out::new(out, "out") }?;
        let checkpointer = unsafe { live(checkpointer) }?;
        let dynamodb = checkpointer.dynamodb().ok_or_else(|| {
            Failure::invalid_argument(
                "a group's leases and checkpoints live in DynamoDB: give a DynamoDB checkpointer, not a memory one",
            )
        })?;
        let optional = |value: *const c_char, name: &str| -> Result<Option<&str>, Failure> {
            if value.is_null() {
                Ok(None)
            } else {
                unsafe { text(value, name) }.map(Some)
            }
        };
        let config = AwsConfig::for_client(
            None,
            optional(region, "region")?,
            optional(kinesis_endpoint_url, "kinesis_endpoint_url")?,
        )?;
        out.write(into_shared_handle(kcheck_group {
            group: ConsumerGroup::new(dynamodb).with_kinesis(KinesisClient::new(&config)?),
            state: HandleState::new(),
        }))
    })
}

/// Every lease of the group, on every stream, ordered by stream and shard,
/// as JSON lines (one object a line, each ending in a newline; empty when
/// none): `stream`, `shard`, `owner`, `state` ("alive", "expired", "free"
/// or "finished"), `checkpoint` (`SEQUENCE/SUB` or `SHARD_END`), `counter`,
/// `renewed_at_ms` (the owner's last write, to the second, in milliseconds
/// since the epoch), `handoff_to` and `ttl` (epoch seconds); absent values
/// are null. A missing table is `KCHECK_STATUS_SERVICE_ERROR` naming it.
/// Free the string with `kcheck_string_free`.
///
/// # Safety
/// `group` is NULL or a live group; `out` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_group_leases_json(
    group: *const kcheck_group,
    out: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(group, |handle| {
            let out = Out::new(out, "out")?;
            write_lines(out, &handle.group.leases().map_err(|e| handle.explain(e))?)
        })
    }
}

/// Every checkpoint of the group, ordered by stream and shard, as JSON
/// lines to save and give to `kcheck_group_import_json` (this group's or
/// another's), the format of `kcheck checkpoints export`: `group`, `stream`,
/// `shard`, and when set `sequence` (a sequence number or "SHARD_END"),
/// `sub_sequence`, `parents` and `start` (`sequence:N` or
/// `timestamp:MILLIS`). Free the string with `kcheck_string_free`.
///
/// # Safety
/// `group` is NULL or a live group; `out` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_group_export_json(
    group: *const kcheck_group,
    out: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(group, |handle| {
            let out = Out::new(out, "out")?;
            write_lines(out, &handle.group.export().map_err(|e| handle.explain(e))?)
        })
    }
}

/// Writes the exported checkpoints in the `len` bytes at `lines` (JSON
/// lines from `kcheck_group_export_json`; blank lines are skipped) into
/// this group, whatever group they name. A bad line, or a shard named
/// twice, is `KCHECK_STATUS_INVALID_ARGUMENT` naming it, and nothing is
/// written. A live lease it would move is refused (also
/// `KCHECK_STATUS_INVALID_ARGUMENT`, naming the leases and owners) unless
/// `force` is 1. Writes what changed to `out_changes` as JSON lines:
/// `stream`, `shard`, `before`, `after` (`SEQUENCE/SUB`, `SHARD_END` or
/// null), `fenced` (the owner a forced write fenced, or null) and `note`.
/// Free it with `kcheck_string_free`.
///
/// # Safety
/// `group` is NULL or a live group; `lines` is NULL or readable for `len`
/// bytes; `out_changes` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_group_import_json(
    group: *const kcheck_group,
    lines: *const u8,
    len: usize,
    force: u32,
    out_changes: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(group, |handle| {
            let out = Out::new(out_changes, "out_changes")?;
            if lines.is_null() {
                return Err(Failure::invalid_argument("lines is NULL"));
            }
            let bytes = std::slice::from_raw_parts(lines, len);
            let text = std::str::from_utf8(bytes).map_err(|_| {
                Failure::new(kcheck_status::InvalidUtf8, "lines is not valid UTF-8")
            })?;
            let saved = parse_lines(text, "lines")?;
            let force = flag(force, "force")?;
            write_lines(
                out,
                &handle
                    .group
                    .import(&saved, force)
                    .map_err(|e| handle.explain(e))?,
            )
        })
    }
}

/// Moves the checkpoints of `stream`: of one `shard`, or of every shard of
/// the stream with a lease when `shard` is NULL (none is
/// `KCHECK_STATUS_INVALID_ARGUMENT`). `to` is "trim-horizon", "latest",
/// "timestamp:MILLIS" or "sequence:N[/SUB]" (resume after that record).
/// Live leases are refused unless `force` is 1 (see `kcheck_group`). Writes
/// what changed to `out_changes` as JSON lines (see
/// `kcheck_group_import_json`); free it with `kcheck_string_free`.
///
/// # Safety
/// `group` is NULL or a live group; `stream`, `shard` and `to` are NULL or
/// NUL-terminated strings; `out_changes` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_group_reset(
    group: *const kcheck_group,
    stream: *const c_char,
    shard: *const c_char,
    to: *const c_char,
    force: u32,
    out_changes: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(group, |handle| {
            let out = Out::new(out_changes, "out_changes")?;
            let stream = text(stream, "stream")?;
            if stream.is_empty() {
                return Err(Failure::invalid_argument("stream is empty"));
            }
            let shard = if shard.is_null() {
                None
            } else {
                Some(text(shard, "shard")?)
            };
            if shard == Some("") {
                return Err(Failure::invalid_argument(
                    "shard is empty (NULL moves every shard)",
                ));
            }
            let to: ResetTo = text(to, "to")?.parse()?;
            let force = flag(force, "force")?;
            write_lines(
                out,
                &handle
                    .group
                    .reset(stream, shard, &to, force)
                    .map_err(|e| handle.explain(e))?,
            )
        })
    }
}

/// Stores every checkpoint of the group under `label` (not empty, no '#')
/// in `history_table` (NULL: the lease table's name + "-history"; created
/// when missing), in one transaction. `retention_seconds` above 0 lets the
/// snapshot expire after that long; 0 keeps it. A label already taken is
/// `KCHECK_STATUS_INVALID_ARGUMENT`. Writes the snapshot as a JSON object
/// to `out_info`: `label`, `created_at` (milliseconds since the epoch) and
/// `checkpoints` (how many it holds). Free it with `kcheck_string_free`.
///
/// # Safety
/// `group` is NULL or a live group; `label` and `history_table` are NULL or
/// NUL-terminated strings; `out_info` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_group_snapshot(
    group: *const kcheck_group,
    label: *const c_char,
    history_table: *const c_char,
    retention_seconds: u64,
    out_info: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(group, |handle| {
            let out = Out::new(out_info, "out_info")?;
            let label = text(label, "label")?;
            let mut snapshots = snapshots(handle, history_table)?;
            if retention_seconds > 0 {
                snapshots = snapshots.retention(Duration::from_secs(retention_seconds));
            }
            out.write(owned_string(json(
                &snapshots.snapshot(label).map_err(|e| handle.explain(e))?,
            )?))
        })
    }
}

/// The group's snapshots in `history_table` (NULL: the default, see
/// `kcheck_group_snapshot`), oldest first, as JSON lines of the objects
/// `kcheck_group_snapshot` returns; empty when none (also when the history
/// table does not exist yet). Free it with `kcheck_string_free`.
///
/// # Safety
/// `group` is NULL or a live group; `history_table` is NULL or a
/// NUL-terminated string; `out` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_group_snapshots_json(
    group: *const kcheck_group,
    history_table: *const c_char,
    out: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(group, |handle| {
            let out = Out::new(out, "out")?;
            write_lines(out, &snapshots(handle, history_table)?.snapshots()?)
        })
    }
}

/// Writes the checkpoints of snapshot `label` in `history_table` (NULL: the
/// default) back into the group, as `kcheck_group_import_json` does: live
/// leases are refused unless `force` is 1. An unknown label is
/// `KCHECK_STATUS_INVALID_ARGUMENT`. Writes what changed to `out_changes`
/// as JSON lines (see `kcheck_group_import_json`); free it with
/// `kcheck_string_free`.
///
/// # Safety
/// `group` is NULL or a live group; `label` and `history_table` are NULL or
/// NUL-terminated strings; `out_changes` is NULL or writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_group_restore(
    group: *const kcheck_group,
    label: *const c_char,
    history_table: *const c_char,
    force: u32,
    out_changes: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(group, |handle| {
            let out = Out::new(out_changes, "out_changes")?;
            let label = text(label, "label")?;
            let snapshots = snapshots(handle, history_table)?;
            let force = flag(force, "force")?;
            write_lines(
                out,
                &snapshots
                    .restore(label, force)
                    .map_err(|e| handle.explain(e))?,
            )
        })
    }
}

/// The layout of another consumer's checkpoint table, for
/// `kcheck_group_copy_from` and `kcheck_group_copy_to`.
#[repr(u32)]
#[derive(Debug, Clone, Copy)]
pub enum kcheck_table_format {
    /// A Java KCL lease table (`leaseKey`, `leaseOwner`, `leaseCounter`,
    /// `checkpoint`, ...).
    Kcl = 0,
    /// An async-kinesis checkpoint table of one stream (`shard_id`, `ref`,
    /// `ts`, `sequence`).
    AsyncKinesis = 1,
}

/// The foreign table a copy reads or writes, named by its arguments.
///
/// # Safety
/// `table` and `stream` are NULL or NUL-terminated strings.
unsafe fn foreign_table(
    group: &kcheck_group,
    format: u32,
    table: *const c_char,
    stream: *const c_char,
    session_timeout_ms: u64,
) -> Result<Box<dyn CheckpointTable>, Failure> {
    let format = choice(format, "format", 2)?;
    let table = unsafe { text(table, "table") }?;
    if table.is_empty() {
        return Err(Failure::invalid_argument("table is empty"));
    }
    let stream = if stream.is_null() {
        None
    } else {
        Some(unsafe { text(stream, "stream") }?).filter(|s| !s.is_empty())
    };
    let client = group.group.client().clone();
    let name = group.group.name();
    Ok(if format == kcheck_table_format::Kcl as u32 {
        let kcl = KclTable::new(client, table, name);
        Box::new(match stream {
            Some(stream) => kcl.stream(stream),
            None => kcl,
        })
    } else {
        let stream = stream.ok_or_else(|| {
            Failure::invalid_argument("an async-kinesis table holds one stream: name it")
        })?;
        let session_timeout = match session_timeout_ms {
            0 => group.group.session_timeout(),
            ms => Duration::from_millis(ms),
        };
        Box::new(AsyncKinesisTable::new(
            client,
            table,
            name,
            stream,
            session_timeout,
        ))
    })
}

/// Copies between the group and a foreign table, in either direction.
///
/// # Safety
/// As `kcheck_group_copy_from`.
#[allow(clippy::too_many_arguments)]
unsafe fn copy_between(
    group: *const kcheck_group,
    into_group: bool,
    format: u32,
    table: *const c_char,
    stream: *const c_char,
    session_timeout_ms: u64,
    force: u32,
    out_changes: *mut *mut c_char,
    out_notes: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        with_shared_handle(group, |handle| {
            let out_changes = Out::new(out_changes, "out_changes")?;
            let out_notes = Out::new(out_notes, "out_notes")?;
            let foreign = foreign_table(handle, format, table, stream, session_timeout_ms)?;
            let force = flag(force, "force")?;
            let (changes, notes) = if into_group {
                copy(foreign.as_ref(), &handle.group, force)
            } else {
                copy(&handle.group, foreign.as_ref(), force)
            }
            .map_err(|e| handle.explain(e))?;
            let (changes, notes) = (json_lines(&changes)?, json_lines(&notes)?);
            out_notes.write(owned_string(notes))?;
            out_changes.write(owned_string(changes))
        })
    }
}

/// Copies every checkpoint of another consumer's table into this group:
/// `format` is a `kcheck_table_format`; `table` its DynamoDB table (reached
/// with the group's client); `stream` the stream of a single-stream KCL
/// table (or the `account:stream:creationEpoch` of multi-stream keys; NULL
/// when its keys carry it) or of an async-kinesis table (required);
/// `session_timeout_ms` how recent an async-kinesis owner's write must be
/// for it to count as alive (0: the group's session timeout). Live leases
/// of the group are refused unless `force` is 1 (see `kcheck_group`).
/// Writes the changes to `out_changes` as JSON lines (see
/// `kcheck_group_import_json`) and what the source's layout could not say
/// (e.g. a KCL checkpoint of `LATEST`, left as it was) to `out_notes` as
/// JSON lines of strings; free both with `kcheck_string_free`.
///
/// # Safety
/// `group` is NULL or a live group; `table` and `stream` are NULL or
/// NUL-terminated strings; `out_changes` and `out_notes` are NULL or
/// writable.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn kcheck_group_copy_from(
    group: *const kcheck_group,
    format: u32,
    table: *const c_char,
    stream: *const c_char,
    session_timeout_ms: u64,
    force: u32,
    out_changes: *mut *mut c_char,
    out_notes: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        copy_between(
            group,
            true,
            format,
            table,
            stream,
            session_timeout_ms,
            force,
            out_changes,
            out_notes,
        )
    }
}

/// Copies every checkpoint of this group into another consumer's table,
/// the reverse of `kcheck_group_copy_from` (same arguments). What the
/// target's layout cannot hold is left as it was, with a `note` on its
/// change; live owners in the target are refused unless `force` is 1.
/// `out_notes` gets JSON lines of strings (none from this group's side).
///
/// # Safety
/// As `kcheck_group_copy_from`.
///
/// Thread safety: any thread.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn kcheck_group_copy_to(
    group: *const kcheck_group,
    format: u32,
    table: *const c_char,
    stream: *const c_char,
    session_timeout_ms: u64,
    force: u32,
    out_changes: *mut *mut c_char,
    out_notes: *mut *mut c_char,
) -> kcheck_status {
    unsafe {
        copy_between(
            group,
            false,
            format,
            table,
            stream,
            session_timeout_ms,
            force,
            out_changes,
            out_notes,
        )
    }
}

/// Frees a group. NULL does nothing; in a process forked from the one that
/// made it, the copy is left alone.
///
/// # Safety
/// `group` is NULL or a live group, not used afterwards.
///
/// Thread safety: calls that other threads started before keep the group
/// alive until they return; no call may start after free.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_group_free(group: *mut kcheck_group) {
    boundary_value((), || drop(unsafe { reclaim_shared(group) }))
}
