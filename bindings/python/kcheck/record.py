"""Records handed out by a :class:`kcheck.Consumer`."""

from __future__ import annotations

import ctypes
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple

from . import _native

__all__ = ["Record", "record_from_fields"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_lib = _native.lib
_batch_free = _lib.kcheck_batch_free


class _Batch:
    """Owns one ``kcheck_batch``; the records read from it keep it alive.

    A record stays checkpointable (``Consumer.checkpoint(record)``) only
    while its native record exists, so every :class:`Record` holds a
    reference to the batch it came from.
    """

    __slots__ = ("ptr",)

    def __init__(self, ptr: int) -> None:
        self.ptr: int = ptr

    def __reduce__(self) -> Any:
        raise TypeError("a kcheck batch cannot be pickled or copied")

    def __del__(self) -> None:
        try:
            ptr, self.ptr = self.ptr, 0
            if ptr:
                _batch_free(ptr)
        except KeyboardInterrupt:
            _native.redeliver_interrupt()
        except Exception:  # interpreter shutdown: the library may be gone
            pass


class Record:
    """One Kinesis user record.

    Attributes:
        data: the payload (``bytes``).
        partition_key: the partition key.
        sequence_number: the Kinesis sequence number (of the aggregate, for
            KPL user records), in decimal digits.
        sub_sequence_number: index inside a KPL aggregate; 0 for plain records.
        shard_id: the shard it came from.
        approximate_arrival_timestamp: when Kinesis accepted it, as a
            timezone-aware UTC ``datetime`` (``None`` when unknown).
        explicit_hash_key: the producer's explicit hash key, or ``None``.
    """

    __slots__ = (
        "data",
        "partition_key",
        "sequence_number",
        "sub_sequence_number",
        "shard_id",
        "approximate_arrival_timestamp_ms",
        "explicit_hash_key",
        "_batch",
        "_index",
    )

    data: bytes
    partition_key: str
    sequence_number: str
    sub_sequence_number: int
    shard_id: str
    #: Milliseconds since the Unix epoch; -1 when unknown.
    approximate_arrival_timestamp_ms: int
    explicit_hash_key: Optional[str]

    def __init__(
        self,
        data: bytes,
        partition_key: str,
        sequence_number: str,
        sub_sequence_number: int,
        shard_id: str,
        approximate_arrival_timestamp_ms: int,
        explicit_hash_key: Optional[str],
        _batch: Optional[_Batch] = None,
        _index: int = -1,
    ) -> None:
        self.data = data
        self.partition_key = partition_key
        self.sequence_number = sequence_number
        self.sub_sequence_number = sub_sequence_number
        self.shard_id = shard_id
        self.approximate_arrival_timestamp_ms = approximate_arrival_timestamp_ms
        self.explicit_hash_key = explicit_hash_key
        self._batch = _batch
        self._index = _index

    @property
    def approximate_arrival_timestamp(self) -> Optional[datetime]:
        """When Kinesis accepted the record (UTC), or ``None`` when unknown."""
        ms = self.approximate_arrival_timestamp_ms
        if ms < 0:
            return None
        return _EPOCH + timedelta(milliseconds=ms)

    def _native_record(self) -> int:
        """The borrowed ``kcheck_record *`` (valid while this record lives)."""
        batch = self._batch
        pointer: Optional[int] = _lib.kcheck_batch_get(batch.ptr, self._index) if batch is not None and batch.ptr else None
        if not pointer:
            from .errors import InvalidArgumentError

            raise InvalidArgumentError("this record was not returned by a kcheck consumer")
        return pointer

    def __reduce__(self) -> Any:
        # A copy (pickle, copy.copy) is detached from its batch: same fields,
        # but not checkpointable.
        return (
            Record,
            (
                self.data,
                self.partition_key,
                self.sequence_number,
                self.sub_sequence_number,
                self.shard_id,
                self.approximate_arrival_timestamp_ms,
                self.explicit_hash_key,
            ),
        )

    def __repr__(self) -> str:
        data = self.data
        shown = repr(data[:48]) + ("..." if len(data) > 48 else "")
        extra = f", explicit_hash_key={self.explicit_hash_key!r}" if self.explicit_hash_key is not None else ""
        sub = f", sub_sequence_number={self.sub_sequence_number}" if self.sub_sequence_number else ""
        return (
            f"Record(shard_id={self.shard_id!r}, sequence_number={self.sequence_number!r}{sub}, "
            f"partition_key={self.partition_key!r}, data={shown} ({len(data)} bytes), "
            f"approximate_arrival_timestamp={self.approximate_arrival_timestamp!r}{extra})"
        )

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (
            self.shard_id == other.shard_id
            and self.sequence_number == other.sequence_number
            and self.sub_sequence_number == other.sub_sequence_number
            and self.data == other.data
            and self.partition_key == other.partition_key
        )

    def __hash__(self) -> int:
        return hash((self.shard_id, self.sequence_number, self.sub_sequence_number))


def decode_batch(batch: _Batch) -> Tuple[List[Record], int]:
    """Reads every record of ``batch`` in two calls: ``kcheck_batch_get_fields``
    and ``kcheck_batch_get_bytes``, whose one buffer holds every field, so the
    fields are sliced out of a single copy instead of one foreign call each.

    Returns the records and the number of distinct shards among them.
    """
    fields = ctypes.c_void_p()
    count = ctypes.c_size_t()
    _lib.kcheck_batch_get_fields(batch.ptr, ctypes.byref(fields), ctypes.byref(count))
    n = count.value
    if not n:
        return [], 0
    raw = ctypes.string_at(fields.value or 0, n * _native.RECORD_FIELDS_SIZE)
    start = ctypes.c_void_p()
    size = ctypes.c_size_t()
    _lib.kcheck_batch_get_bytes(batch.ptr, ctypes.byref(start), ctypes.byref(size))
    base = start.value or 0
    buffer = ctypes.string_at(base, size.value)
    records: List[Record] = []
    append = records.append
    shards: Dict[int, str] = {}
    last_shard = None
    shard_id = ""
    # object.__new__ plus slot stores: cheaper than calling Record.__init__.
    new = object.__new__
    cls = Record
    index = 0
    for data, dl, pk, pkl, seq, seql, sub, shard, shardl, ts, ehk, ehkl in _native.RECORD_FIELDS.iter_unpack(raw):
        if shard != last_shard:
            # Records of one shard share one shard id string (and come in runs).
            cached = shards.get(shard)
            if cached is None:
                offset = shard - base
                cached = shards[shard] = buffer[offset : offset + shardl].decode()
            shard_id = cached
            last_shard = shard
        record = new(cls)
        data -= base
        pk -= base
        seq -= base
        record.data = buffer[data : data + dl]
        record.partition_key = buffer[pk : pk + pkl].decode()
        record.sequence_number = buffer[seq : seq + seql].decode()
        record.sub_sequence_number = sub
        record.shard_id = shard_id
        record.approximate_arrival_timestamp_ms = ts
        if ehk:
            ehk -= base
            record.explicit_hash_key = buffer[ehk : ehk + ehkl].decode()
        else:
            record.explicit_hash_key = None
        record._batch = batch
        record._index = index
        append(record)
        index += 1
    return records, len(set(shards.values()))


def record_from_fields(address: int) -> Record:
    """A :class:`Record` copied from the ``kcheck_record_fields`` at
    ``address``, which a callback borrows for its call only (a pipeline's
    transform). Detached: it has no native record to checkpoint."""
    data, dl, pk, pkl, seq, seql, sub, shard, shardl, ts, ehk, ehkl = _native.RECORD_FIELDS.unpack(
        ctypes.string_at(address, _native.RECORD_FIELDS_SIZE)
    )
    string_at = ctypes.string_at
    return Record(
        string_at(data, dl),
        string_at(pk, pkl).decode(),
        string_at(seq, seql).decode(),
        sub,
        string_at(shard, shardl).decode(),
        ts,
        string_at(ehk, ehkl).decode() if ehk else None,
    )
