"""The DynamoDB writer: items put from any number of threads are written in
``BatchWriteItem`` calls, paced to each table's write capacity."""

from __future__ import annotations

import atexit
import base64
import ctypes
import json
import math
import os
import threading
import time
import weakref
from decimal import Decimal
from typing import Any, Callable, Dict, List, Mapping, Optional

from . import _logging, _native
from .checkpointers import Seconds, check_int, seconds_to_ms
from .errors import (
    STATUS_CLOSED,
    ForkError,
    InvalidArgumentError,
    InvalidConfigError,
    InvalidUtf8Error,
    KcheckError,
    KcheckTimeoutError,
    WriterClosedError,
)
from .producer import WAIT_SLICE_MS

__all__ = ["DynamoDBWriter", "serialize_item", "deserialize_item"]

_lib = _native.lib
_byref = ctypes.byref
_SIZE_MAX = 2 ** (8 * ctypes.sizeof(ctypes.c_size_t)) - 1
_MAX_THREADS = 64
_MAX_BATCH = 25
_RECORD_STATUS = {
    _native.RECORD_STATUS_PENDING: "PENDING",
    _native.RECORD_STATUS_ACCEPTED: "ACCEPTED",
    _native.RECORD_STATUS_FAILED: "FAILED",
}

# DynamoDB's numbers: up to 38 significant digits, magnitudes from 1E-130
# to below 1E+126 (boto3's DYNAMODB_CONTEXT).
_MAX_DIGITS = 38
_MAX_EXPONENT = 125
_MIN_EXPONENT = -130


# --------------------------------------------------------------------------- conversion


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _number(value: Any, path: str) -> str:
    """The DynamoDB decimal string of an int, float or Decimal."""
    if isinstance(value, int):
        number = Decimal(int(value))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgumentError(f"attribute {path}: {value!r} is not a number DynamoDB can store")
        number = Decimal(repr(value))  # the shortest decimal that reads back as this float
    else:
        if not value.is_finite():
            raise InvalidArgumentError(f"attribute {path}: Decimal {value} is not a number DynamoDB can store")
        number = value
    if number:
        # Not normalize(): it rounds to the context's 28 digits.
        digits = len("".join(map(str, number.as_tuple().digits)).strip("0"))
        if digits > _MAX_DIGITS:
            raise InvalidArgumentError(
                f"attribute {path}: {_native.quote(value)} has {digits} significant digits; DynamoDB keeps at most {_MAX_DIGITS}"
            )
        if not _MIN_EXPONENT <= number.adjusted() <= _MAX_EXPONENT:
            raise InvalidArgumentError(
                f"attribute {path}: {_native.quote(value)} is outside DynamoDB's range of numbers (1E-130 to 9.99E+125)"
            )
    return str(number)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


_BYTES = (bytes, bytearray, memoryview)


def _b64(value: Any) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


def _value(value: Any, path: str) -> Dict[str, Any]:
    """``value`` as DynamoDB JSON, as boto3's TypeSerializer makes it."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):  # before int: bool is an int
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if _is_number(value):
        return {"N": _number(value, path)}
    if isinstance(value, _BYTES):
        return {"B": _b64(value)}
    if isinstance(value, Mapping):
        return {"M": _map(value, path)}
    if isinstance(value, (list, tuple)):
        return {"L": [_value(member, f"{path}[{i}]") for i, member in enumerate(value)]}
    if isinstance(value, (set, frozenset)):
        return _set(value, path)
    raise TypeError(
        f"attribute {path}: a {type(value).__name__} cannot be written to DynamoDB "
        "(use str, int, float, Decimal, bool, bytes, None, list, tuple, dict, or a set of str, numbers or bytes)"
    )


def _set(value: Any, path: str) -> Dict[str, Any]:
    if not value:
        raise InvalidArgumentError(f"attribute {path}: DynamoDB cannot store an empty set")
    members = list(value)
    if all(isinstance(m, str) for m in members):
        return {"SS": sorted(members)}
    if all(_is_number(m) for m in members):
        return {"NS": [_number(m, path) for m in members]}
    if all(isinstance(m, _BYTES) for m in members):
        return {"BS": [_b64(m) for m in members]}
    kinds = ", ".join(sorted({type(m).__name__ for m in members}))
    raise TypeError(
        f"attribute {path}: a set must hold only str, only numbers or only bytes, this one holds {kinds}"
    )


def _map(value: Mapping[Any, Any], path: str) -> Dict[str, Any]:
    typed: Dict[str, Any] = {}
    for name, member in value.items():
        if not isinstance(name, str):
            where = f"attribute {path}" if path else "the item"
            raise TypeError(f"{where}: attribute names must be str, got {type(name).__name__} {_native.quote(name)}")
        typed[name] = _value(member, _child(path, name))
    return typed


def serialize_item(item: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
    """A plain dict as a DynamoDB item (``{"pk": {"S": "a"}}``), converted
    as boto3's ``TypeSerializer`` does, except that finite floats become
    numbers too. Raises TypeError or :class:`~kcheck.InvalidArgumentError`
    (a ValueError) naming the attribute's path."""
    if not isinstance(item, Mapping):
        raise TypeError(f"an item must be a dict of attribute names to values, got {type(item).__name__}")
    return _map(item, "")


def _plain(typed: Mapping[str, Any]) -> Any:
    if len(typed) != 1:
        raise ValueError(f"not a DynamoDB value: {_native.quote(typed)}")
    ((tag, value),) = typed.items()
    if tag == "S":
        return value
    if tag == "N":
        return _read_number(value)
    if tag == "B":
        return base64.b64decode(value)
    if tag == "BOOL":
        return bool(value)
    if tag == "NULL":
        return None
    if tag == "M":
        return {name: _plain(member) for name, member in value.items()}
    if tag == "L":
        return [_plain(member) for member in value]
    if tag == "SS":
        return set(value)
    if tag == "NS":
        return {_read_number(member) for member in value}
    if tag == "BS":
        return {base64.b64decode(member) for member in value}
    raise ValueError(f"unknown DynamoDB type {tag!r}")


def _read_number(text: str) -> Any:
    number = Decimal(text)
    return int(number) if number == number.to_integral_value() else number


def deserialize_item(item: Mapping[str, Any]) -> Dict[str, Any]:
    """A DynamoDB item back as a plain dict, as boto3's ``TypeDeserializer``
    reads it, except that integral numbers become int (others Decimal)
    and binary values bytes."""
    return {name: _plain(value) for name, value in item.items()}


def _encode(item: Any, what: str) -> bytes:
    """``item`` as the DynamoDB JSON the library takes."""
    typed = serialize_item(item)
    try:
        return json.dumps(typed, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates
        raise InvalidUtf8Error(f"the {what} holds a string that is not valid UTF-8: {error}") from None


# --------------------------------------------------------------------------- handle


class _Handle:
    """Owns one ``kcheck_writer *``; ``ptr`` is None once freed."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: Optional[int]) -> None:
        self.ptr: Optional[int] = ptr


_open_writers: "weakref.WeakSet[DynamoDBWriter]" = weakref.WeakSet()
_exit_state = {"exiting": False}


def _free_handle(handle: _Handle, state: Dict[str, bool] = _exit_state, free: Any = _lib.kcheck_writer_free) -> None:
    """Finalizer of a DynamoDBWriter: frees its native writer (which does not
    wait; writes still queued are written by its threads in the background).
    Not at interpreter exit, where a thread may still be inside the library."""
    ptr, handle.ptr = handle.ptr, None
    if ptr and not state["exiting"]:
        free(ptr)


def _close_all_at_exit() -> None:
    """Closes (and so flushes) every open writer before the interpreter finalizes."""
    _exit_state["exiting"] = True
    for writer in list(_open_writers):
        try:
            writer.close()
        except Exception:
            pass


def _disown_inherited_writers() -> None:
    """In a forked child the parent's writers are not this process's."""
    _open_writers.clear()


getattr(threading, "_register_atexit", atexit.register)(_close_all_at_exit)
os.register_at_fork(after_in_child=_disown_inherited_writers)


def _capacity(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of write units a second, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidConfigError(f"{name} must be a finite number of write units a second above 0, got {value!r}")
    return float(value)


class DynamoDBWriter:
    """Writes items to DynamoDB tables from any number of threads, batched
    (``BatchWriteItem``) and paced to each table's write capacity::

        with DynamoDBWriter("orders", write_capacity=100) as writer:
            writer.put({"pk": "order-1", "total": Decimal("9.99"), "tags": {"new"}})
            writer.delete({"pk": "order-0"})
            writer.put({"pk": "a", "sk": 1}, table="audit")

    Items are plain dicts converted as boto3's resource layer does: str,
    int/Decimal/float (finite), bool, bytes, None, list/tuple, dict, and
    non-empty sets of only str, only numbers or only bytes.

    Args:
        table_name: the default table of :meth:`put` and :meth:`delete`.
        write_capacity: the default table's pace in write units a second
            (one unit per started KB of an item) [unlimited].
        tables: other tables, name to pace (None: unlimited). Tables never
            named can still be written to, unpaced.
        threads: worker threads sending batches, 1 to 64 [4].
        batch_size: writes per BatchWriteItem call, 1 to 25 [25].
        max_queue_size: writes put but not yet settled before :meth:`put`
            waits [10 000].
        buffer_time: the longest, in seconds, a write waits for others to
            fill its batch [0.05].
        endpoint_url: a custom DynamoDB endpoint (e.g. a local emulator).
        region_name: the region [AWS_DEFAULT_REGION, the profile, or us-east-1].

    Building reads every named table's key, so a missing table raises
    :class:`~kcheck.ServiceError` at once. Throttled and unprocessed writes
    are sent again until written: when a table pushes back, :meth:`put`
    waits instead of dropping anything. Two writes of one key reach
    DynamoDB in the order they were put. :meth:`flush` waits until every
    write put before it is settled and raises if any failed for good
    (:meth:`take_failures` has them); :meth:`close` (and leaving a ``with``
    block) flushes and stops. No wait inside the library lasts longer than
    0.25 s, so Ctrl-C interrupts a blocked put or flush promptly.

    A writer belongs to the process that created it: in a forked child
    using it raises :class:`~kcheck.ForkError`.
    """

    def __init__(
        self,
        table_name: str,
        *,
        write_capacity: Optional[float] = None,
        tables: Optional[Mapping[str, Optional[float]]] = None,
        threads: int = 4,
        batch_size: int = 25,
        max_queue_size: int = 10000,
        buffer_time: Seconds = 0.05,
        endpoint_url: Optional[str] = None,
        region_name: Optional[str] = None,
    ) -> None:
        self._pid = os.getpid()
        self._handle = _Handle(0)
        self._closed = True
        _logging.refresh_log_level()
        if tables is not None and not isinstance(tables, Mapping):
            raise TypeError(f"tables must be a dict of table names to write capacities, got {type(tables).__name__}")
        self.table_name = table_name
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self._lock = threading.RLock()

        builder = ctypes.c_void_p()
        _lib.kcheck_writer_builder_new(_native.encode(table_name, "table_name"), _byref(builder))
        try:
            b = builder.value
            if write_capacity is not None:
                _lib.kcheck_writer_builder_set_write_capacity(b, _capacity(write_capacity, "write_capacity"))
            for name, capacity in (tables or {}).items():
                pace = 0.0 if capacity is None else _capacity(capacity, f"the write capacity of table {name!r}")
                _lib.kcheck_writer_builder_add_table(b, _native.encode(name, "table name"), pace)
            _lib.kcheck_writer_builder_set_threads(b, check_int(threads, "threads", 1, _MAX_THREADS))
            _lib.kcheck_writer_builder_set_batch_size(b, check_int(batch_size, "batch_size", 1, _MAX_BATCH))
            _lib.kcheck_writer_builder_set_max_queue_size(
                b, check_int(max_queue_size, "max_queue_size", 1, _SIZE_MAX)
            )
            _lib.kcheck_writer_builder_set_buffer_time_ms(b, seconds_to_ms(buffer_time, "buffer_time"))
            if endpoint_url is not None:
                _lib.kcheck_writer_builder_set_endpoint_url(b, _native.encode(endpoint_url, "endpoint_url"))
            if region_name is not None:
                _lib.kcheck_writer_builder_set_region_name(b, _native.encode(region_name, "region_name"))
        except BaseException:
            _lib.kcheck_writer_builder_free(builder)
            raise
        out = ctypes.c_void_p()
        # Consumes the builder; reads the tables' keys.
        _lib.kcheck_writer_builder_build(builder, _byref(out))
        self._handle = handle = _Handle(out.value)
        finalizer = weakref.finalize(self, _free_handle, handle)
        finalizer.atexit = False
        self._closed = False
        _open_writers.add(self)

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _usable(self) -> int:
        """The native pointer, unless this is a forked copy or closed."""
        if self._pid != os.getpid():
            raise ForkError(f"this writer was created in process {self._pid}; create a new writer after fork")
        if self._closed or not self._handle.ptr:
            raise WriterClosedError(f"writer of {self.table_name!r} is closed")
        return self._handle.ptr

    # ------------------------------------------------------------------ writing

    def _write(self, call: Callable[..., Any], table: Optional[str], data: bytes, timeout: Optional[Seconds]) -> int:
        table_arg = None if table is None else _native.encode(table, "table")
        deadline = None if timeout is None else time.monotonic() + seconds_to_ms(timeout, "timeout") / 1000
        ticket = ctypes.c_uint64()
        while True:
            writer = self._usable()
            slice_ms = WAIT_SLICE_MS
            if deadline is not None:
                slice_ms = max(0, min(slice_ms, int((deadline - time.monotonic()) * 1000)))
            try:
                call(writer, table_arg, data, len(data), slice_ms, _byref(ticket))
                return ticket.value
            except KcheckTimeoutError:
                # The queue is full; Python runs signal handlers here.
                if deadline is not None and time.monotonic() >= deadline:
                    raise
            except KcheckError as error:
                if error.status == STATUS_CLOSED:
                    raise WriterClosedError(str(error)) from None
                raise

    def put(self, item: Mapping[str, Any], table: Optional[str] = None, timeout: Optional[Seconds] = None) -> int:
        """Queues a put of ``item`` (a dict) into ``table`` [the default
        table] and returns its ticket, a number increasing from 0 in put
        order. Waits while the queue is full, at most ``timeout`` seconds
        when given.

        Raises:
            TypeError, InvalidArgumentError: a value DynamoDB cannot store
                (naming the attribute), an item without the table's key or
                over 400 KB (showing the item).
            ServiceError: ``table`` does not exist.
            KcheckTimeoutError: the queue stayed full for ``timeout``.
            WriterClosedError: the writer is closed.
        """
        return self._write(_lib.kcheck_writer_put, table, _encode(item, "item"), timeout)

    def delete(self, key: Mapping[str, Any], table: Optional[str] = None, timeout: Optional[Seconds] = None) -> int:
        """Queues a delete of the item with ``key`` (a dict of only the key
        attributes) from ``table`` [the default table]; otherwise as :meth:`put`."""
        return self._write(_lib.kcheck_writer_delete, table, _encode(key, "key"), timeout)

    def _flush_slices(self, writer: int, timeout: Optional[Seconds]) -> None:
        deadline = None if timeout is None else time.monotonic() + seconds_to_ms(timeout, "timeout") / 1000
        while True:
            slice_ms = WAIT_SLICE_MS
            if deadline is not None:
                slice_ms = max(0, min(slice_ms, int((deadline - time.monotonic()) * 1000)))
            try:
                _lib.kcheck_writer_flush(writer, slice_ms)
                return
            except KcheckTimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def flush(self, timeout: Optional[Seconds] = None) -> None:
        """Waits until every write put before the call is settled.

        Raises:
            ServiceError (or the status of the first failure): writes
                failed for good since the last flush; the message names
                their tickets and the first one's table and item, and
                :meth:`take_failures` has them.
            KcheckTimeoutError: ``timeout`` seconds passed first (the
                writes stay queued).
        """
        self._flush_slices(self._usable(), timeout)

    def close(self) -> None:
        """Flushes (raising as :meth:`flush` does, after closing) and stops
        the writer; further writes raise :class:`~kcheck.WriterClosedError`.
        Idempotent. In a forked child, only drops this copy."""
        if self._pid != os.getpid():
            self._closed = True
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            writer = self._handle.ptr
            failure: Optional[KcheckError] = None
            try:
                self._flush_slices(writer, None)
            except KcheckError as error:
                failure = error
            except BaseException:
                # Interrupted: the library's threads go on writing in the
                # background; the native writer is freed without waiting.
                _open_writers.discard(self)
                raise
            try:
                _lib.kcheck_writer_close(writer)
            finally:
                _open_writers.discard(self)
            if failure is not None:
                raise failure

    # ------------------------------------------------------------------ monitoring

    def status(self, ticket: int) -> str:
        """Where the write of ``ticket`` stands: ``"PENDING"``, ``"ACCEPTED"``
        (written) or ``"FAILED"``."""
        out = ctypes.c_uint32()
        _lib.kcheck_writer_record_status(self._usable(), check_int(ticket, "ticket", 0, 2**64 - 1), _byref(out))
        return _RECORD_STATUS.get(out.value, "UNKNOWN")

    def first_unwritten(self) -> int:
        """The lowest ticket not written yet: every write before it was
        applied. A write that failed for good holds it back for ever."""
        out = ctypes.c_uint64()
        _lib.kcheck_writer_first_unwritten(self._usable(), _byref(out))
        return out.value

    def take_failures(self) -> List[Dict[str, Any]]:
        """The writes that failed for good since the last call, in ticket
        order: dicts of ``ticket``, ``table``, ``operation`` (``"put"`` or
        ``"delete"``), ``item`` (the item put, or the key deleted, as a
        plain dict), ``status`` and ``error``."""
        out = ctypes.c_void_p()
        _lib.kcheck_writer_take_failures_json(self._usable(), _byref(out))
        failures = []
        for line in _native.take_string(out.value).splitlines():
            raw: Dict[str, Any] = json.loads(line)
            request = raw.pop("request")
            if "PutRequest" in request:
                operation, item = "put", request["PutRequest"]["Item"]
            else:
                operation, item = "delete", request["DeleteRequest"]["Key"]
            failures.append(
                {
                    "ticket": raw["ticket"],
                    "table": raw["table"],
                    "operation": operation,
                    "item": deserialize_item(item),
                    "status": raw["status"],
                    "error": raw["error"],
                }
            )
        return failures

    def _stats(self) -> Dict[str, Any]:
        out = ctypes.c_void_p()
        _lib.kcheck_writer_stats_json(self._usable(), _byref(out))
        result: Dict[str, Any] = json.loads(_native.take_string(out.value))
        return result

    def stats(self) -> Dict[str, Any]:
        """The writer's counters over all tables (``kcheck_writer_stats_json``
        without ``tables``): items put, written and failed, write units,
        throttles, retries, requests, queue depth, units per second."""
        stats = self._stats()
        stats.pop("tables", None)
        return stats

    def table_stats(self) -> List[Dict[str, Any]]:
        """The counters of each table written to, the default table first:
        ``table``, ``write_capacity`` (None: unlimited), items written,
        write units, throttles, retries, requests, queue depth, units per
        second."""
        tables: List[Dict[str, Any]] = self._stats()["tables"]
        return tables

    # ------------------------------------------------------------------ context

    def __enter__(self) -> "DynamoDBWriter":
        self._usable()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<kcheck.DynamoDBWriter table={self.table_name!r} {state}>"
