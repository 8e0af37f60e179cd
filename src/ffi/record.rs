//! Records and batches of records handed to C.

use std::ffi::c_char;
use std::time::UNIX_EPOCH;

use super::boundary::{boundary, boundary_value, take_handle, Failure, Out};
use crate::consumer::Record;

/// One record returned by `kcheck_consumer_next`, or borrowed from a batch.
pub struct kcheck_record {
    pub(crate) record: Record,
}

/// Records returned together by `kcheck_consumer_next_batch`.
pub struct kcheck_batch {
    records: Vec<kcheck_record>,
    /// Every field's bytes, one after the other: bindings with a costly
    /// call boundary copy a whole batch at once.
    bytes: Vec<u8>,
    /// Points into `bytes`, which never changes after creation.
    fields: Vec<kcheck_record_fields>,
}

/// A record's fields, borrowed from the record: valid until the record (or
/// its batch) is freed. Strings are UTF-8 and NOT NUL-terminated: use the
/// lengths. This struct is frozen: new fields come with new functions.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct kcheck_record_fields {
    /// The payload.
    pub data: *const u8,
    pub data_len: usize,
    pub partition_key: *const c_char,
    pub partition_key_len: usize,
    /// The Kinesis sequence number (of the aggregate, for KPL user records),
    /// in decimal digits.
    pub sequence_number: *const c_char,
    pub sequence_number_len: usize,
    /// Index inside a KPL aggregate; 0 for plain records.
    pub sub_sequence_number: u64,
    pub shard_id: *const c_char,
    pub shard_id_len: usize,
    /// When Kinesis accepted the record, in milliseconds since the Unix
    /// epoch; -1 when unknown.
    pub approximate_arrival_timestamp_ms: i64,
    /// The explicit hash key; NULL (and length 0) when the producer set none.
    pub explicit_hash_key: *const c_char,
    pub explicit_hash_key_len: usize,
}

impl kcheck_record_fields {
    pub(crate) fn of(record: &Record) -> kcheck_record_fields {
        let (explicit_hash_key, explicit_hash_key_len) = match &record.explicit_hash_key {
            Some(key) => (key.as_ptr().cast(), key.len()),
            None => (std::ptr::null(), 0),
        };
        kcheck_record_fields {
            data: record.data.as_ptr(),
            data_len: record.data.len(),
            partition_key: record.partition_key.as_ptr().cast(),
            partition_key_len: record.partition_key.len(),
            sequence_number: record.sequence_number.as_ptr().cast(),
            sequence_number_len: record.sequence_number.len(),
            sub_sequence_number: record.sub_sequence_number,
            shard_id: record.shard_id.as_ptr().cast(),
            shard_id_len: record.shard_id.len(),
            approximate_arrival_timestamp_ms: record
                .approximate_arrival_timestamp
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_millis()).ok())
                .unwrap_or(-1),
            explicit_hash_key,
            explicit_hash_key_len,
        }
    }
}

impl kcheck_batch {
    pub(crate) fn new(records: Vec<Record>) -> kcheck_batch {
        let size: usize = records
            .iter()
            .map(|r| {
                r.data.len()
                    + r.partition_key.len()
                    + r.sequence_number.len()
                    + r.shard_id.len()
                    + r.explicit_hash_key.as_ref().map_or(0, String::len)
            })
            .sum();
        let mut bytes = Vec::with_capacity(size);
        let mut append = |field: &[u8]| {
            bytes.extend_from_slice(field);
            bytes.len() - field.len()
        };
        // Offsets first: pointers are taken once `bytes` is complete.
        let mut offsets = Vec::with_capacity(records.len());
        let mut previous_shard: Option<(&str, usize)> = None;
        for record in &records {
            let shard = match previous_shard {
                // Records come in runs of one shard: its id is stored once per run.
                Some((id, offset)) if id == &*record.shard_id => offset,
                _ => append(record.shard_id.as_bytes()),
            };
            previous_shard = Some((&record.shard_id, shard));
            offsets.push([
                append(&record.data),
                append(record.partition_key.as_bytes()),
                append(record.sequence_number.as_bytes()),
                shard,
                record
                    .explicit_hash_key
                    .as_ref()
                    .map_or(usize::MAX, |key| append(key.as_bytes())),
            ]);
        }
        let base = bytes.as_ptr();
        let at = |offset: usize| base.wrapping_add(offset).cast::<c_char>();
        let fields = records
            .iter()
            .zip(&offsets)
            .map(|(record, &[data, key, sequence, shard, hash_key])| {
                let mut fields = kcheck_record_fields::of(record);
                fields.data = at(data).cast();
                fields.partition_key = at(key);
                fields.sequence_number = at(sequence);
                fields.shard_id = at(shard);
                if hash_key != usize::MAX {
                    fields.explicit_hash_key = at(hash_key);
                }
                fields
            })
            .collect();
        let records = records
            .into_iter()
            .map(|record| kcheck_record { record })
            .collect();
        kcheck_batch {
            records,
            bytes,
            fields,
        }
    }
}

/// Writes the record's fields to `out`.
///
/// # Safety
/// `record` is NULL or a live record; `out` is NULL or writable.
///
/// Thread safety: any thread; records are immutable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_record_get_fields(
    record: *const kcheck_record,
    out: *mut kcheck_record_fields,
) -> super::kcheck_status {
    boundary(|| {
        let out = unsafe { Out::new(out, "out") }?;
        let record = unsafe { record.as_ref() }
            .ok_or_else(|| Failure::invalid_argument("record is NULL"))?;
        out.write(kcheck_record_fields::of(&record.record))
    })
}

/// Frees a record returned by `kcheck_consumer_next`. Never free a record
/// borrowed from a batch. NULL does nothing.
///
/// # Safety
/// `record` is NULL or a record from `kcheck_consumer_next`, not used
/// afterwards.
///
/// Thread safety: once no other thread uses the record.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_record_free(record: *mut kcheck_record) {
    boundary_value((), || drop(unsafe { take_handle(record) }))
}

/// The number of records in the batch; 0 for NULL.
///
/// # Safety
/// `batch` is NULL or a live batch.
///
/// Thread safety: any thread; batches are immutable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_batch_len(batch: *const kcheck_batch) -> usize {
    boundary_value(0, || {
        unsafe { batch.as_ref() }.map_or(0, |b| b.records.len())
    })
}

/// The record at `index`, borrowed from the batch (valid until
/// `kcheck_batch_free`); NULL when `batch` is NULL or `index` is out of range.
///
/// # Safety
/// `batch` is NULL or a live batch.
///
/// Thread safety: any thread; batches are immutable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_batch_get(
    batch: *const kcheck_batch,
    index: usize,
) -> *const kcheck_record {
    boundary_value(std::ptr::null(), || {
        unsafe { batch.as_ref() }
            .and_then(|b| b.records.get(index))
            .map_or(std::ptr::null(), |r| r as *const kcheck_record)
    })
}

/// The fields of every record of the batch at once, as an array of
/// `*out_len` entries in batch order, valid until `kcheck_batch_free`. Lets
/// bindings with a costly call boundary read a whole batch in one call; the
/// field pointers point into `kcheck_batch_get_bytes`.
///
/// # Safety
/// `batch` is NULL or a live batch; `out_fields` and `out_len` are NULL or
/// writable.
///
/// Thread safety: any thread; batches are immutable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_batch_get_fields(
    batch: *const kcheck_batch,
    out_fields: *mut *const kcheck_record_fields,
    out_len: *mut usize,
) -> super::kcheck_status {
    boundary(|| {
        let out_fields = unsafe { Out::new(out_fields, "out_fields") }?;
        let out_len = unsafe { Out::new(out_len, "out_len") }?;
        let batch =
            unsafe { batch.as_ref() }.ok_or_else(|| Failure::invalid_argument("batch is NULL"))?;
        out_len.write(batch.fields.len())?;
        out_fields.write(batch.fields.as_ptr())
    })
}

/// One buffer holding the bytes of every field of the batch: every pointer
/// of `kcheck_batch_get_fields` points into it, so a binding can copy the
/// buffer once and slice the fields out of its copy by offset (pointer minus
/// `*out_data`). Valid until `kcheck_batch_free`.
///
/// # Safety
/// `batch` is NULL or a live batch; `out_data` and `out_len` are NULL or
/// writable.
///
/// Thread safety: any thread; batches are immutable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_batch_get_bytes(
    batch: *const kcheck_batch,
    out_data: *mut *const u8,
    out_len: *mut usize,
) -> super::kcheck_status {
    boundary(|| {
        let out_data = unsafe { Out::new(out_data, "out_data") }?;
        let out_len = unsafe { Out::new(out_len, "out_len") }?;
        let batch =
            unsafe { batch.as_ref() }.ok_or_else(|| Failure::invalid_argument("batch is NULL"))?;
        out_len.write(batch.bytes.len())?;
        out_data.write(batch.bytes.as_ptr())
    })
}

/// Frees a batch and every record borrowed from it. NULL does nothing.
///
/// # Safety
/// `batch` is NULL or a batch from `kcheck_consumer_next_batch`, not used
/// afterwards.
///
/// Thread safety: once no other thread uses the batch or its records.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kcheck_batch_free(batch: *mut kcheck_batch) {
    boundary_value((), || drop(unsafe { take_handle(batch) }))
}
