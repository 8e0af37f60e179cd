"""The synchronous Kinesis producer."""

from __future__ import annotations

import atexit
import base64
import ctypes
import json
import math
import os
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Dict, List, Optional, Union

from . import _logging, _native
from .checkpointers import Seconds, check_int, seconds_to_ms
from .errors import (
    STATUS_CLOSED,
    ForkError,
    InvalidConfigError,
    KcheckError,
    KcheckTimeoutError,
    ProducerClosedError,
)

__all__ = ["Producer", "WAIT_SLICE_MS"]

#: The longest single wait inside the library, so Ctrl-C (which Python can
#: only act on between calls) is honoured within about this long.
WAIT_SLICE_MS = 250

_lib = _native.lib
_byref = ctypes.byref
_SIZE_MAX = 2 ** (8 * ctypes.sizeof(ctypes.c_size_t)) - 1
_RECORD_STATUS = {
    _native.RECORD_STATUS_PENDING: "PENDING",
    _native.RECORD_STATUS_ACCEPTED: "ACCEPTED",
    _native.RECORD_STATUS_FAILED: "FAILED",
}

Processor = Union[None, str, Callable[[Any], Union[bytes, str]]]


class _Handle:
    """Owns one ``kcheck_producer *``; ``ptr`` is None once freed."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: Optional[int]) -> None:
        self.ptr: Optional[int] = ptr


_open_producers: "weakref.WeakSet[Producer]" = weakref.WeakSet()
_exit_state = {"exiting": False}


def _free_handle(
    handle: _Handle, state: Dict[str, bool] = _exit_state, free: Any = _lib.kcheck_producer_free
) -> None:
    """Finalizer of a Producer: frees its native producer (which does not
    wait; records still queued are sent by its thread in the background).
    Not at interpreter exit, where a thread may still be inside the library."""
    ptr, handle.ptr = handle.ptr, None
    if ptr and not state["exiting"]:
        free(ptr)


def _close_all_at_exit() -> None:
    """Closes (and so flushes) every open producer before the interpreter finalizes."""
    _exit_state["exiting"] = True
    for producer in list(_open_producers):
        try:
            producer.close()
        except Exception:
            pass


def _disown_inherited_producers() -> None:
    """In a forked child the parent's producers are not this process's."""
    _open_producers.clear()


getattr(threading, "_register_atexit", atexit.register)(_close_all_at_exit)
os.register_at_fork(after_in_child=_disown_inherited_producers)


def _bytes_or_str(item: Any) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, str):
        return item.encode("utf-8")
    raise TypeError(
        f"without a processor, items must be bytes or str, got {type(item).__name__} "
        '(use processor="json" or a callable)'
    )


def _json(item: Any) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode("utf-8")


def _serializer(processor: Processor) -> Callable[[Any], bytes]:
    if processor is None:
        return _bytes_or_str
    if processor == "json":
        return _json
    if callable(processor):

        def serialize(item: Any) -> bytes:
            return _bytes_or_str(processor(item))

        return serialize
    raise InvalidConfigError(f'processor must be None, "json" or a callable, got {_native.quote(processor)}')


def _rate(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidConfigError(f"{name} must be a finite number above 0, got {value!r}")
    return float(value)


class Producer:
    """Writes records to a Kinesis stream, batched and paced per shard.

    The synchronous counterpart of async-kinesis's ``Producer``::

        with Producer("my-stream") as producer:
            producer.put({"id": 1}, partition_key="user-1")  # with processor="json"
            producer.put(b"raw bytes")

    Args:
        stream_name: the stream's name or ARN.
        endpoint_url: a custom Kinesis endpoint (e.g. a local emulator).
        region_name: the region [AWS_DEFAULT_REGION, the profile, or us-east-1].
        buffer_time: the longest, in seconds, a record waits for others to
            share its request [0.5].
        batch_size: records per PutRecords request, 1 to 500 [500].
        max_queue_size: records put but not yet settled before :meth:`put`
            waits [10 000].
        put_rate_limit_per_shard: Kinesis records per second per shard [1 000].
        put_bandwidth_limit_per_shard: bytes per second per shard [1 MiB].
        aggregate: pack small records into KPL aggregates, which kcheck's
            consumer and the KCL split again [False].
        shard_refresh_interval: how often, in seconds, the shard map is read
            again even when nothing suggests a resharding; at least 0.001
            [60].
        processor: how items become bytes: ``None`` passes bytes through
            and encodes str as UTF-8; ``"json"`` writes each item as JSON; a
            callable returns the bytes (or str) of an item.

    Records of one partition key arrive in the order they were put.
    Delivery is at least once. :meth:`flush` waits until every record put
    before it is stored and raises if any failed for good
    (:meth:`take_failures` has them); :meth:`close` (and leaving a ``with``
    block) flushes and stops. No wait inside the library lasts longer than
    0.25 s, so Ctrl-C interrupts a blocked put or flush promptly.

    A producer belongs to the process that created it: in a forked child
    using it raises :class:`~kcheck.ForkError` (``close()`` just drops the
    copy). Create a new producer in the child.
    """

    def __init__(
        self,
        stream_name: str,
        *,
        endpoint_url: Optional[str] = None,
        region_name: Optional[str] = None,
        buffer_time: Seconds = 0.5,
        batch_size: int = 500,
        max_queue_size: int = 10000,
        put_rate_limit_per_shard: float = 1000,
        put_bandwidth_limit_per_shard: float = 1024 * 1024,
        aggregate: bool = False,
        processor: Processor = None,
        shard_refresh_interval: Seconds = 60,
    ) -> None:
        self._pid = os.getpid()
        self._handle = _Handle(0)
        self._closed = True
        _logging.refresh_log_level()
        self._serialize = _serializer(processor)
        if not isinstance(aggregate, bool):
            raise TypeError(f"aggregate must be True or False, got {_native.quote(aggregate)}")
        self.stream_name = stream_name
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.processor = processor
        self._lock = threading.RLock()

        builder = ctypes.c_void_p()
        _lib.kcheck_producer_builder_new(_native.encode(stream_name, "stream_name"), _byref(builder))
        try:
            b = builder.value
            _lib.kcheck_producer_builder_set_buffer_time_ms(b, seconds_to_ms(buffer_time, "buffer_time"))
            _lib.kcheck_producer_builder_set_batch_size(b, check_int(batch_size, "batch_size", 1, 500))
            _lib.kcheck_producer_builder_set_max_queue_size(
                b, check_int(max_queue_size, "max_queue_size", 1, _SIZE_MAX)
            )
            _lib.kcheck_producer_builder_set_put_rate_limit_per_shard(
                b, _rate(put_rate_limit_per_shard, "put_rate_limit_per_shard")
            )
            _lib.kcheck_producer_builder_set_put_bandwidth_limit_per_shard(
                b, _rate(put_bandwidth_limit_per_shard, "put_bandwidth_limit_per_shard")
            )
            _lib.kcheck_producer_builder_set_aggregate(b, 1 if aggregate else 0)
            refresh_ms = seconds_to_ms(shard_refresh_interval, "shard_refresh_interval")
            if refresh_ms < 1:
                raise InvalidConfigError(
                    f"shard_refresh_interval must be at least 0.001 seconds, got {shard_refresh_interval!r}"
                )
            _lib.kcheck_producer_builder_set_shard_refresh_interval_ms(b, refresh_ms)
            if endpoint_url is not None:
                _lib.kcheck_producer_builder_set_endpoint_url(b, _native.encode(endpoint_url, "endpoint_url"))
            if region_name is not None:
                _lib.kcheck_producer_builder_set_region_name(b, _native.encode(region_name, "region_name"))
        except BaseException:
            _lib.kcheck_producer_builder_free(builder)
            raise
        out = ctypes.c_void_p()
        # Consumes the builder; reads the stream's shards.
        _lib.kcheck_producer_builder_build(builder, _byref(out))
        self._handle = handle = _Handle(out.value)
        finalizer = weakref.finalize(self, _free_handle, handle)
        finalizer.atexit = False
        self._closed = False
        _open_producers.add(self)

    # ------------------------------------------------------------------ state

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _fork_error(self) -> ForkError:
        return ForkError(f"this producer was created in process {self._pid}; create a new producer after fork")

    def _usable(self) -> int:
        """The native pointer, unless this is a forked copy or closed."""
        if self._pid != os.getpid():
            raise self._fork_error()
        if self._closed or not self._handle.ptr:
            raise ProducerClosedError(f"producer of {self.stream_name!r} is closed")
        return self._handle.ptr

    # ------------------------------------------------------------------ writing

    def put(self, item: Any, partition_key: Optional[str] = None, explicit_hash_key: Optional[str] = None) -> int:
        """Queues ``item`` (serialised by the processor) and returns its
        ticket, a number increasing from 0 in put order. Waits while the
        buffer is full.

        Args:
            partition_key: 1 to 256 characters [a random UUID, as
                async-kinesis does].
            explicit_hash_key: a decimal 128-bit integer that routes the
                record instead of the partition key's hash.

        Raises:
            InvalidArgumentError: a bad partition or hash key, or a record
                over 1 MiB.
            ProducerClosedError: the producer is closed.
        """
        data = self._serialize(item)
        if partition_key is None:
            partition_key = str(uuid.uuid4())
        key = _native.encode(partition_key, "partition_key")
        hash_key = None if explicit_hash_key is None else _native.encode(explicit_hash_key, "explicit_hash_key")
        ticket = ctypes.c_uint64()
        put = _lib.kcheck_producer_put
        while True:
            producer = self._usable()
            try:
                put(producer, data, len(data), key, hash_key, WAIT_SLICE_MS, _byref(ticket))
                return ticket.value
            except KcheckTimeoutError:
                continue  # the buffer is full; Python runs signal handlers here
            except KcheckError as error:
                if error.status == STATUS_CLOSED:
                    raise ProducerClosedError(str(error)) from None
                raise

    def _flush_slices(self, producer: int, timeout: Optional[Seconds]) -> None:
        deadline = None if timeout is None else time.monotonic() + seconds_to_ms(timeout, "timeout") / 1000
        while True:
            slice_ms = WAIT_SLICE_MS
            if deadline is not None:
                slice_ms = max(0, min(slice_ms, int((deadline - time.monotonic()) * 1000)))
            try:
                _lib.kcheck_producer_flush(producer, slice_ms)
                return
            except KcheckTimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def flush(self, timeout: Optional[Seconds] = None) -> None:
        """Waits until every record put before the call is stored.

        Raises:
            ServiceError (or the status of the first failure): records
                failed for good since the last flush; the message names
                their tickets and :meth:`take_failures` has them.
            KcheckTimeoutError: ``timeout`` seconds passed first (the
                records stay queued).
        """
        self._flush_slices(self._usable(), timeout)

    def close(self) -> None:
        """Flushes (raising as :meth:`flush` does, after closing) and stops
        the producer; further puts raise :class:`~kcheck.ProducerClosedError`.
        Idempotent. In a forked child, only drops this copy."""
        if self._pid != os.getpid():
            self._closed = True
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            producer = self._handle.ptr
            failure: Optional[KcheckError] = None
            try:
                self._flush_slices(producer, None)
            except KcheckError as error:
                failure = error
            except BaseException:
                # Interrupted: the library's thread goes on sending in the
                # background; the native producer is freed without waiting.
                _open_producers.discard(self)
                raise
            try:
                _lib.kcheck_producer_close(producer)
            finally:
                _open_producers.discard(self)
            if failure is not None:
                raise failure

    # ------------------------------------------------------------------ monitoring

    def record_status(self, ticket: int) -> str:
        """Where the record of ``ticket`` stands: ``"PENDING"``, ``"ACCEPTED"`` or ``"FAILED"``."""
        out = ctypes.c_uint32()
        _lib.kcheck_producer_record_status(self._usable(), check_int(ticket, "ticket", 0, 2**64 - 1), _byref(out))
        return _RECORD_STATUS.get(out.value, "UNKNOWN")

    def take_failures(self) -> List[Dict[str, Any]]:
        """The records that failed for good since the last call, in ticket
        order: dicts of ``ticket``, ``partition_key``, ``explicit_hash_key``,
        ``data`` (bytes), ``status`` and ``error``."""
        out = ctypes.c_void_p()
        _lib.kcheck_producer_take_failures_json(self._usable(), _byref(out))
        failures = []
        for line in _native.take_string(out.value).splitlines():
            failure: Dict[str, Any] = json.loads(line)
            failure["data"] = base64.b64decode(failure["data"])
            failures.append(failure)
        return failures

    def stats(self) -> Dict[str, Any]:
        """The producer's counters (``kcheck_producer_stats_json``): records
        put, sent, retried, failed and throttled, bytes, requests, queue
        depth, shards."""
        out = ctypes.c_void_p()
        _lib.kcheck_producer_stats_json(self._usable(), _byref(out))
        result: Dict[str, Any] = json.loads(_native.take_string(out.value))
        return result

    # ------------------------------------------------------------------ context

    def __enter__(self) -> "Producer":
        self._usable()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<kcheck.Producer stream={self.stream_name!r} {state}>"
