"""The synchronous Kinesis consumer."""

from __future__ import annotations

import atexit
import ctypes
import json
import logging
import os
import threading
import weakref
from operator import length_hint
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

from . import _logging, _native
from .checkpointers import CheckPointer, MemoryCheckPointer, Seconds, check_int, seconds_to_ms
from .errors import (
    STATUS_CLOSED,
    STATUS_IDLE_TIMEOUT,
    STATUS_TIMED_OUT,
    ConsumerClosedError,
    ForkError,
    InvalidConfigError,
    KcheckError,
)
from .record import Record, _Batch, decode_batch

__all__ = ["Consumer", "ConsumerEvent", "BATCH_SIZE", "WAIT_SLICE_MS"]

#: Records taken from the library per ``kcheck_consumer_next_batch`` call.
BATCH_SIZE = 1000
#: The longest single wait inside the library, so Ctrl-C (which Python can
#: only act on between calls) is honoured within about this long.
WAIT_SLICE_MS = 250

_lib = _native.lib
_next_batch = _lib.kcheck_consumer_next_batch
_byref = ctypes.byref
_new_batch = object.__new__
_log = logging.getLogger("kcheck.python")


class _Handle:
    """Owns one ``kcheck_consumer *``; ``ptr`` is None once freed. ``keep``
    holds the event trampoline as long as the native consumer may call it."""

    __slots__ = ("ptr", "keep")

    def __init__(self, ptr: Optional[int]) -> None:
        self.ptr: Optional[int] = ptr
        self.keep: Any = None


class ConsumerEvent(NamedTuple):
    """A lease or checkpoint event of one shard, given to ``on_event``.

    ``kind`` is one of ``lease_gained``, ``lease_lost``, ``lease_received``,
    ``lease_handed_over``, ``checkpoint_failed``; ``message`` the error or
    reason (``checkpoint_failed``, ``lease_lost``), the asker
    (``lease_handed_over``), or the expired previous owner (``lease_gained``).
    """

    kind: str
    group: str
    stream: str
    shard_id: str
    message: str


def _event_trampoline(on_event: Callable[[ConsumerEvent], Any]) -> Any:
    """A C callback that hands each event to ``on_event``; its exceptions are logged."""

    def call(_user_data: Any, kind: int, group: bytes, stream: bytes, shard_id: bytes, message: bytes) -> None:
        try:
            name = _native.EVENT_KINDS[kind] if kind < len(_native.EVENT_KINDS) else str(kind)
            text = [(b or b"").decode("utf-8", "replace") for b in (group, stream, shard_id, message)]
            on_event(ConsumerEvent(name, *text))
        except BaseException:  # never unwind into the library's thread
            _log.exception("kcheck: on_event callback failed")

    return _native.EVENT_CALLBACK(call)


# Open consumers, and whether the interpreter is exiting (a dict so that
# _free_handle keeps it even while module globals are torn down).
_open_consumers: "weakref.WeakSet[Consumer]" = weakref.WeakSet()
_exit_state = {"exiting": False}


def _free_handle(
    handle: _Handle, state: Dict[str, bool] = _exit_state, free: Any = _lib.kcheck_consumer_free
) -> None:
    """Finalizer of a Consumer: closes and frees its native consumer.

    Not at interpreter exit: by then every consumer was closed by
    `_close_all_at_exit`, and a daemon thread may still be inside the
    library with the pointer, so it is left to the operating system.
    """
    ptr, handle.ptr = handle.ptr, None
    if ptr and not state["exiting"]:
        free(ptr)


def _close_all_at_exit() -> None:
    """Closes every open consumer before the interpreter finalizes, as
    ``close()`` does: final checkpoints written, leases released, the
    library's threads joined."""
    _exit_state["exiting"] = True
    for consumer in list(_open_consumers):
        try:
            consumer.close()
        except Exception:
            pass


def _disown_inherited_consumers() -> None:
    """In a forked child: the parent's consumers, their leases and the
    records they buffered are not this process's. Nothing closes them at
    exit, and their copies hand out nothing (using one raises ForkError)."""
    for consumer in list(_open_consumers):
        consumer._drop_buffered()
    _open_consumers.clear()


# Before Python joins non-daemon threads at exit, so that a thread still
# iterating sees its consumer close and ends (and before logging stops);
# plain atexit where that hook does not exist.
getattr(threading, "_register_atexit", atexit.register)(_close_all_at_exit)
os.register_at_fork(after_in_child=_disown_inherited_consumers)

_ITERATOR_TYPES = {
    "TRIM_HORIZON": _native.INITIAL_POSITION_TRIM_HORIZON,
    "LATEST": _native.INITIAL_POSITION_LATEST,
    "AT_TIMESTAMP": _native.INITIAL_POSITION_AT_TIMESTAMP,
}

_SIZE_MAX = 2 ** (8 * ctypes.sizeof(ctypes.c_size_t)) - 1
_U32_MAX = 2**32 - 1


def _timestamp_ms(timestamp: Union[datetime, int, float]) -> int:
    """Milliseconds since the epoch of a datetime (naive means UTC) or epoch seconds."""
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            timestamp = timestamp.replace(tzinfo=timezone.utc)
        seconds = timestamp.timestamp()
    elif isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
        seconds = float(timestamp)
    else:
        raise TypeError(f"timestamp must be a datetime or epoch seconds, got {type(timestamp).__name__}")
    if not seconds >= 0:
        raise InvalidConfigError(f"timestamp must not be before 1970, got {timestamp!r}")
    return int(round(seconds * 1000))


def _last_per_shard(records: List[Record], end: int, into: Dict[str, Record], shard_count: int) -> None:
    """Stores into ``into``, per shard, the last of ``records[:end]``."""
    found = set()
    # A copy: close() may empty the list meanwhile (from a signal handler).
    for record in reversed(records[:end]):
        shard_id = record.shard_id
        if shard_id not in found:
            found.add(shard_id)
            into[shard_id] = record
            if len(found) == shard_count:
                return


class Consumer:
    """Reads a Kinesis stream, with leases and checkpoints kept by a checkpointer.

    The synchronous counterpart of async-kinesis's ``Consumer``::

        with Consumer("my-stream", checkpointer=DynamoDBCheckPointer(name="my-app")) as consumer:
            for record in consumer:
                process(record.data)

    Args:
        stream_name: the stream's name or ARN.
        checkpointer: a :class:`~kcheck.DynamoDBCheckPointer` or
            :class:`~kcheck.MemoryCheckPointer` [a new MemoryCheckPointer].
            Consumers given the same checkpointer share its leases.
        iterator_type: where shards without a checkpoint start:
            ``"TRIM_HORIZON"`` (the oldest record), ``"LATEST"`` (records
            written after the start) or ``"AT_TIMESTAMP"`` (with ``timestamp``).
        timestamp: for AT_TIMESTAMP: a ``datetime`` (naive means UTC) or
            seconds since the epoch.
        endpoint_url: a custom Kinesis endpoint (e.g. a local emulator).
        region_name: the region [AWS_DEFAULT_REGION, the profile, or us-east-1].
        max_queue_size: records buffered ahead of the caller [10 000].
        max_shard_consumers: the most shards held at once [all].
        record_limit: records per GetRecords call, 1 to 10 000 [10 000].
        idle_timeout: seconds without a new record after which iteration
            ends (the consumer stays open) [never].
        checkpoint_interval: seconds between automatic checkpoints of a
            shard [5]; they are also written at close and hand-over.
        discovery_interval: seconds between shard and lease discovery [5].
        idle_poll_interval: seconds between GetRecords calls of a shard that
            had no new records [1].
        idle_poll_max_interval: lets a shard that stays caught up be polled
            less often: each empty poll doubles its pause, from
            ``idle_poll_interval`` up to this many seconds, and a poll that
            finds records goes back to ``idle_poll_interval`` [off]. For
            streams with many idle shards.
        on_event: called with a :class:`ConsumerEvent` the moment a lease is
            gained, lost, received or handed over, or a checkpoint write
            fails [none]. It runs on the consumer's own event thread, one
            event at a time; never after :meth:`close` returns. It must not
            close the consumer; its exceptions are logged and dropped.

    Records are processed in order per shard. In automatic mode (the
    checkpointer's ``auto_checkpoint=True``) a record counts as processed
    once the next one is asked for; the last record handed out before
    :meth:`close` is not counted. :meth:`checkpoint` asserts that every
    record handed out so far is processed.

    Iteration (``for record in consumer``) ends when ``idle_timeout`` passes
    without a record or when the consumer is closed meanwhile (e.g. from
    another thread). Iterating a consumer that is already closed raises
    :class:`~kcheck.ConsumerClosedError`, as do :meth:`checkpoint`,
    :meth:`stats` and ``next()``. Several threads may iterate one consumer:
    each record goes to one of them; :meth:`checkpoint`, :meth:`stats` and
    :meth:`close` may be called from any thread (and close from a signal
    handler). No wait inside the library lasts longer than 0.25 s, so
    Ctrl-C interrupts iteration promptly.

    A consumer belongs to the process that created it: in a forked child
    its copy hands out nothing, writes nothing and releases nothing, and
    using it raises :class:`~kcheck.ForkError` (``close()`` just drops the
    copy). Create a new consumer in the child.
    """

    def __init__(
        self,
        stream_name: str,
        *,
        checkpointer: Optional[CheckPointer] = None,
        iterator_type: str = "TRIM_HORIZON",
        timestamp: Optional[Union[datetime, int, float]] = None,
        endpoint_url: Optional[str] = None,
        region_name: Optional[str] = None,
        max_queue_size: int = 10000,
        max_shard_consumers: Optional[int] = None,
        record_limit: int = 10000,
        idle_timeout: Optional[Seconds] = None,
        checkpoint_interval: Optional[Seconds] = None,
        discovery_interval: Optional[Seconds] = None,
        idle_poll_interval: Optional[Seconds] = None,
        idle_poll_max_interval: Optional[Seconds] = None,
        on_event: Optional[Callable[[ConsumerEvent], Any]] = None,
    ) -> None:
        self._pid = os.getpid()
        self._handle = _Handle(0)
        self._closed = True
        _logging.refresh_log_level()
        if checkpointer is None:
            checkpointer = MemoryCheckPointer()
        elif not isinstance(checkpointer, CheckPointer):
            raise TypeError(
                f"checkpointer must be a DynamoDBCheckPointer or MemoryCheckPointer, got {type(checkpointer).__name__}"
            )
        if on_event is not None and not callable(on_event):
            raise TypeError(f"on_event must be callable, got {type(on_event).__name__}")
        if iterator_type not in _ITERATOR_TYPES:
            raise InvalidConfigError(
                f"iterator_type must be one of {', '.join(_ITERATOR_TYPES)}, got {_native.quote(iterator_type)}"
            )
        position = _ITERATOR_TYPES[iterator_type]
        if position == _native.INITIAL_POSITION_AT_TIMESTAMP:
            if timestamp is None:
                raise InvalidConfigError("iterator_type AT_TIMESTAMP needs a timestamp")
            timestamp_ms = _timestamp_ms(timestamp)
        elif timestamp is not None:
            raise InvalidConfigError(f"timestamp applies only to iterator_type AT_TIMESTAMP, not {iterator_type}")
        else:
            timestamp_ms = 0

        self.stream_name = stream_name
        self.checkpointer: CheckPointer = checkpointer
        self.iterator_type = iterator_type
        self.timestamp = timestamp
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.idle_timeout = idle_timeout
        self._auto_checkpoint = checkpointer.auto_checkpoint

        # Hand-out state. `_current` is the decoded batch being handed out
        # and `_current_it` the one iterator over it that every hand-out
        # path shares, so the number handed out is always
        # len(_current) - length_hint(_current_it).
        self._current: Optional[List[Record]] = None
        self._current_it: Optional[Iterator[Record]] = None
        self._current_shards = 0
        # Per shard, the last record handed out from earlier batches (a
        # reference keeps its batch, so it stays checkpointable), and the
        # position this consumer last checkpointed.
        self._last_by_shard: Dict[str, Record] = {}
        self._checkpointed: Dict[str, Tuple[str, int]] = {}
        # Guards _last_by_shard against checkpoint() from another thread
        # (reentrant: close() may run in a signal handler on this thread).
        self._hand_lock = threading.RLock()
        # One thread at a time fetches the next batch.
        self._fetch_lock = threading.Lock()
        # Where next_batch writes: kept across calls so a batch obtained
        # just before a KeyboardInterrupt is never lost (see _fetch).
        self._out = ctypes.c_void_p()
        self._undecoded: Optional[_Batch] = None
        self._lock = threading.RLock()

        builder = ctypes.c_void_p()
        _lib.kcheck_consumer_builder_new(_native.encode(stream_name, "stream_name"), _byref(builder))
        try:
            b = builder.value
            _lib.kcheck_consumer_builder_set_checkpointer(b, checkpointer._native_handle())
            _lib.kcheck_consumer_builder_set_initial_position(b, position, timestamp_ms)
            _lib.kcheck_consumer_builder_set_record_limit(b, check_int(record_limit, "record_limit", 0, _U32_MAX))
            _lib.kcheck_consumer_builder_set_max_queue_size(
                b, check_int(max_queue_size, "max_queue_size", 0, _SIZE_MAX)
            )
            if max_shard_consumers is not None:
                _lib.kcheck_consumer_builder_set_max_shard_consumers(
                    b, check_int(max_shard_consumers, "max_shard_consumers", 0, _SIZE_MAX)
                )
            if idle_timeout is not None:
                _lib.kcheck_consumer_builder_set_idle_timeout_ms(b, seconds_to_ms(idle_timeout, "idle_timeout"))
            if checkpoint_interval is not None:
                _lib.kcheck_consumer_builder_set_checkpoint_interval_ms(
                    b, seconds_to_ms(checkpoint_interval, "checkpoint_interval")
                )
            if discovery_interval is not None:
                _lib.kcheck_consumer_builder_set_discovery_interval_ms(
                    b, seconds_to_ms(discovery_interval, "discovery_interval")
                )
            if idle_poll_interval is not None:
                _lib.kcheck_consumer_builder_set_idle_poll_interval_ms(
                    b, seconds_to_ms(idle_poll_interval, "idle_poll_interval")
                )
            if idle_poll_max_interval is not None:
                _lib.kcheck_consumer_builder_set_idle_poll_max_interval_ms(
                    b, seconds_to_ms(idle_poll_max_interval, "idle_poll_max_interval")
                )
            if endpoint_url is not None:
                _lib.kcheck_consumer_builder_set_endpoint_url(b, _native.encode(endpoint_url, "endpoint_url"))
            if region_name is not None:
                _lib.kcheck_consumer_builder_set_region_name(b, _native.encode(region_name, "region_name"))
            trampoline = None
            if on_event is not None:
                trampoline = _event_trampoline(on_event)
                _lib.kcheck_consumer_builder_set_event_callback(b, trampoline, None)
        except BaseException:
            _lib.kcheck_consumer_builder_free(builder)
            raise
        out = ctypes.c_void_p()
        # Consumes the builder; checks the stream and prepares the table.
        _lib.kcheck_consumer_builder_build(builder, _byref(out))
        self._handle = handle = _Handle(out.value)
        # Called until the native consumer is closed (at the latest when freed).
        handle.keep = trampoline
        # Frees the native consumer (closing it first) once this object is
        # gone; at interpreter exit _close_all_at_exit closes it instead.
        finalizer = weakref.finalize(self, _free_handle, handle)
        finalizer.atexit = False
        self._closed = False
        owner = _lib.kcheck_consumer_owner_id(out.value)
        self._owner_id = owner.decode() if owner else ""
        checkpointer._register(self)
        _open_consumers.add(self)

    # ------------------------------------------------------------------ properties

    @property
    def owner_id(self) -> str:
        """This consumer's owner id in the lease table."""
        return self._owner_id

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _closed_error(self) -> KcheckError:
        if self._pid != os.getpid():
            return self._fork_error()
        return ConsumerClosedError(f"consumer of {self.stream_name!r} is closed")

    def _fork_error(self) -> ForkError:
        return ForkError(f"this consumer was created in process {self._pid}; create a new consumer after fork")

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            raise self._fork_error()

    def _drop_buffered(self) -> None:
        """Ends hand-out of the current batch (in a forked child, without locks)."""
        records = self._current
        if records:
            records.clear()

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[Record]:
        self._check_process()
        if self._closed:
            raise self._closed_error()
        return self._records()

    def _records(self) -> Iterator[Record]:
        # Every iterator shares the consumer's state (_current_it), so
        # records are handed out once, in order, whichever iterator (or
        # thread: a list iterator hands out each item once) asks.
        fetch = self._fetch
        while True:
            it = self._current_it
            if it is not None:
                yield from it
            if not fetch(it):
                return

    def __next__(self) -> Record:
        if self._closed:
            raise self._closed_error()
        while True:
            it = self._current_it
            if it is not None:
                for record in it:
                    return record
            if not self._fetch(it):
                raise StopIteration

    def _fetch(self, exhausted: Optional[Iterator[Record]]) -> bool:
        """Makes the next batch current once ``exhausted`` (the caller's
        view of the current batch) is handed out; False when iteration is
        over. When another thread made a new batch current meanwhile, it
        returns True at once.

        Called only once the current batch is handed out entirely and the
        caller asks for more: only then may the library acknowledge it
        (automatic mode acknowledges every record returned before a call).
        """
        self._check_process()
        with self._fetch_lock:
            if self._current_it is not exhausted:
                return not self._closed
            return self._fetch_next_batch()

    def _fetch_next_batch(self) -> bool:
        if self._current is not None:
            self._retire_current()
        batch = self._undecoded
        if batch is None:
            out = self._out
            if not out.value:
                consumer = self._handle.ptr
                while True:
                    if self._closed:
                        return False
                    status = _next_batch(consumer, BATCH_SIZE, WAIT_SLICE_MS, _byref(out))
                    if not status:
                        break
                    if status == STATUS_TIMED_OUT:
                        continue  # Python runs signal handlers here (Ctrl-C)
                    if status == STATUS_CLOSED or status == STATUS_IDLE_TIMEOUT:
                        return False
                    raise _native.last_error(status)
            # No Python-level call from here on until the batch is owned:
            # a KeyboardInterrupt can only be raised where Python code runs.
            batch = _new_batch(_Batch)
            batch.ptr = out.value or 0
            self._undecoded = batch
            out.value = None
        records, shard_count = decode_batch(batch)
        self._undecoded = None
        if self._closed:
            return False
        self._current_shards = shard_count
        self._current = records
        self._current_it = iter(records)
        return True

    def _retire_current(self) -> None:
        """The current batch was handed out entirely: remember each shard's last record."""
        with self._hand_lock:
            records = self._current
            if records:
                _last_per_shard(records, len(records), self._last_by_shard, self._current_shards)
            self._current = None
            self._current_it = None

    def _handed_in_current(self) -> int:
        records, it = self._current, self._current_it
        if records is None or it is None:
            return 0
        return len(records) - length_hint(it)

    def _last_handed(self, exclude_last: bool = False) -> Dict[str, Record]:
        """Per shard, the last record handed out (optionally not counting the very last)."""
        with self._hand_lock:
            lasts = dict(self._last_by_shard)
            self._last_handed_in_current(lasts, exclude_last)
        return lasts

    def _last_handed_in_current(self, into: Dict[str, Record], exclude_last: bool) -> None:
        """Stores into ``into``, per shard, the last record handed out of the current batch."""
        records = self._current
        if records is not None:
            end = self._handed_in_current()
            if exclude_last and end > 0:
                end -= 1
            _last_per_shard(records, end, into, self._current_shards)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, record: Optional[Record] = None) -> None:
        """Checkpoints up to ``record``, or every record handed out so far.

        Without ``record``: for every shard, the last record handed out to
        the caller is checkpointed -- never a record that is still waiting
        in this consumer's read-ahead. With ``record`` (one this consumer
        handed out): its shard is checkpointed up to and including it.

        Raises:
            LeaseLostError: a shard's lease was lost since (the other shards
                are still written).
            ConsumerClosedError: the consumer is closed.
        """
        self._check_process()
        with self._lock:
            if self._closed:
                raise self._closed_error()
            try:
                if record is not None:
                    if not isinstance(record, Record):
                        raise TypeError(f"record must be a kcheck.Record, got {type(record).__name__}")
                    _lib.kcheck_consumer_checkpoint_record(self._handle.ptr, record._native_record())
                    return
                # Never kcheck_consumer_checkpoint: it writes what the library
                # returned, which includes the read-ahead (and, while another
                # thread waits in next_batch, records being returned right now).
                self._checkpoint_records(self._last_handed(), raise_errors=True)
            except KcheckError:
                if self._closed:
                    # close() ran meanwhile (a signal handler on this thread):
                    # it released the leases, hence the refusal.
                    raise self._closed_error() from None
                raise

    def _checkpoint_records(self, lasts: Dict[str, Record], raise_errors: bool) -> None:
        """Checkpoints each shard up to its record in ``lasts``; every shard is
        tried, the first error raised (or logged) afterwards."""
        first_error: Optional[KcheckError] = None
        consumer = self._handle.ptr
        for shard_id, last in lasts.items():
            position = (last.sequence_number, last.sub_sequence_number)
            if self._checkpointed.get(shard_id) != position:
                try:
                    _lib.kcheck_consumer_checkpoint_record(consumer, last._native_record())
                except KcheckError as error:
                    if first_error is None:
                        first_error = error
                    continue
                self._checkpointed[shard_id] = position
            with self._hand_lock:
                if self._last_by_shard.get(shard_id) is last:
                    del self._last_by_shard[shard_id]  # lets its batch go
        if first_error is not None:
            if raise_errors:
                raise first_error
            _log.warning("checkpoint at close failed: %s", first_error)

    # ------------------------------------------------------------------ monitoring

    def stats(self) -> Dict[str, Any]:
        """The consumer's figures: owner, stream, per-shard positions, lag and
        counters, lease and checkpoint counters (``kcheck_consumer_stats_json``)."""
        self._check_process()
        if self._closed:
            raise self._closed_error()
        out = ctypes.c_void_p()
        _lib.kcheck_consumer_stats_json(self._handle.ptr, _byref(out))
        result: Dict[str, Any] = json.loads(_native.take_string(out.value))
        return result

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Stops the consumer: writes the final checkpoints (automatic mode),
        releases its leases so other consumers take them at once, and joins
        its threads. Idempotent.

        In automatic mode, the records handed out before the last one are
        checkpointed first; the last record handed out is not counted as
        processed, and records read ahead but not handed out never are.

        In a process forked from the one that created the consumer, only
        this copy is dropped: the parent's consumer goes on.
        """
        if self._pid != os.getpid():
            self._closed = True
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._auto_checkpoint and self._current is not None:
                    # Processed: everything handed out before the last record.
                    # (Earlier batches were acknowledged by the library already.)
                    processed: Dict[str, Record] = {}
                    with self._hand_lock:
                        self._last_handed_in_current(processed, exclude_last=True)
                    self._checkpoint_records(processed, raise_errors=False)
            finally:
                # Ends hand-out of the rest, also for an iterator in another thread.
                self._drop_buffered()
                try:
                    if self._handle.ptr:
                        _lib.kcheck_consumer_close(self._handle.ptr)
                finally:
                    self.checkpointer._unregister(self)
                    _open_consumers.discard(self)

    def __enter__(self) -> "Consumer":
        self._check_process()
        if self._closed:
            raise self._closed_error()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # Dropped without close(): close as close() would (the native
        # consumer itself is freed by its finalizer).
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<kcheck.Consumer stream={self.stream_name!r} owner={self._owner_id!r} {state}>"
