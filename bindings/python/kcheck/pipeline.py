"""The consumer -> writer pipeline: each record a :class:`~kcheck.Consumer`
reads becomes DynamoDB writes through a :class:`~kcheck.DynamoDBWriter`,
and a shard's position is checkpointed only once every write derived from
the records up to it is written (``kcheck_pipeline_run``)."""

from __future__ import annotations

import ctypes
import signal
import threading
from operator import length_hint
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Union

from . import _native
from .checkpointers import Seconds, seconds_to_ms
from .consumer import Consumer
from .errors import (
    STATUS_CALLBACK_FAILED,
    STATUS_CLOSED,
    ConsumerClosedError,
    InvalidConfigError,
    KcheckError,
    WriterClosedError,
)
from .record import Record, record_from_fields
from .writer import DynamoDBWriter, _encode

__all__ = ["Pipeline", "Put", "Delete"]

_lib = _native.lib


class Put:
    """A put of ``item`` (a plain dict, converted as
    :meth:`DynamoDBWriter.put` converts it) into ``table`` [the writer's
    default table], for a pipeline's transform to return."""

    __slots__ = ("item", "table")

    def __init__(self, item: Mapping[str, Any], table: Optional[str] = None) -> None:
        self.item = item
        self.table = table

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Put):
            return NotImplemented
        return (self.item, self.table) == (other.item, other.table)

    def __repr__(self) -> str:
        table = "" if self.table is None else f", table={self.table!r}"
        return f"Put({_native.quote(self.item)}{table})"


class Delete:
    """A delete of the item with ``key`` (a plain dict of only the key
    attributes) from ``table`` [the writer's default table], for a
    pipeline's transform to return."""

    __slots__ = ("key", "table")

    def __init__(self, key: Mapping[str, Any], table: Optional[str] = None) -> None:
        self.key = key
        self.table = table

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Delete):
            return NotImplemented
        return (self.key, self.table) == (other.key, other.table)

    def __repr__(self) -> str:
        table = "" if self.table is None else f", table={self.table!r}"
        return f"Delete({_native.quote(self.key)}{table})"


Transform = Callable[[Record], Iterable[Union[Mapping[str, Any], Put, Delete]]]
Stop = Union[threading.Event, Callable[[], Any], None]


def _emit(emitter: int, write: Any) -> None:
    if isinstance(write, Put):
        call, data, table = _lib.kcheck_pipeline_emit_put, _encode(write.item, "item"), write.table
    elif isinstance(write, Delete):
        call, data, table = _lib.kcheck_pipeline_emit_delete, _encode(write.key, "key"), write.table
    elif isinstance(write, Mapping):
        call, data, table = _lib.kcheck_pipeline_emit_put, _encode(write, "item"), None
    else:
        raise TypeError(
            f"a transform yields dicts (items put into the default table), kcheck.Put or kcheck.Delete, "
            f"got {type(write).__name__}"
        )
    table_arg = None if table is None else _native.encode(table, "table")
    call(emitter, table_arg, data, len(data))


def _stop_predicate(stop: Stop) -> Callable[[], Any]:
    if stop is None:
        return lambda: False
    if isinstance(stop, threading.Event):
        return stop.is_set
    if callable(stop):
        return stop
    raise TypeError(f"stop must be a threading.Event or a callable, got {type(stop).__name__}")


class _Interrupts:
    """While a run blocks in the library on the main thread, Ctrl-C only
    sets a flag that the callbacks read: a KeyboardInterrupt raised by the
    default handler at a callback's first instruction would escape the
    callback's ``try`` and reach the library as an undefined return value."""

    def __init__(self) -> None:
        self.interrupted = False
        self._previous: Any = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self.interrupted = True

    def __enter__(self) -> "_Interrupts":
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Pipeline:
    """Reads records from ``consumer``, turns each into writes with a
    transform, and writes them through ``writer``, checkpointing a shard's
    position only once every item derived from the records up to it is
    written::

        checkpointer = DynamoDBCheckPointer("orders-app", auto_checkpoint=False)
        with Consumer("orders", checkpointer=checkpointer) as consumer, \\
                DynamoDBWriter("orders") as writer:
            Pipeline(consumer, writer).run(
                lambda record: [json.loads(record.data)], stop=stop_event
            )

    A crash anywhere in between makes the shard's next owner read those
    records again and rewrite their items (puts are idempotent): nothing is
    lost. Several processes running pipelines on one lease table share the
    shards.

    Args:
        consumer: a :class:`~kcheck.Consumer` whose checkpointer was made
            with ``auto_checkpoint=False`` (automatic checkpoints would run
            ahead of the writes): another raises
            :class:`~kcheck.InvalidConfigError`.
        writer: the :class:`~kcheck.DynamoDBWriter`; plain dicts go to its
            default table.
        checkpoint_interval: how often, in seconds, written positions are
            checkpointed [1.0].
    """

    def __init__(self, consumer: Consumer, writer: DynamoDBWriter, *, checkpoint_interval: Seconds = 1.0) -> None:
        if not isinstance(consumer, Consumer):
            raise TypeError(f"consumer must be a kcheck.Consumer, got {type(consumer).__name__}")
        if not isinstance(writer, DynamoDBWriter):
            raise TypeError(f"writer must be a kcheck.DynamoDBWriter, got {type(writer).__name__}")
        if consumer._auto_checkpoint:
            raise InvalidConfigError(
                "a pipeline checkpoints only what is written: create the consumer's checkpointer "
                "with auto_checkpoint=False"
            )
        interval_ms = seconds_to_ms(checkpoint_interval, "checkpoint_interval")
        if interval_ms == 0:
            raise InvalidConfigError(f"checkpoint_interval must be at least 0.001 s, got {checkpoint_interval!r}")
        self.consumer = consumer
        self.writer = writer
        self.checkpoint_interval = checkpoint_interval
        self._interval_ms = interval_ms
        self._failed = False

    def _consumer_pointer(self) -> int:
        consumer = self.consumer
        consumer._check_process()
        if consumer.closed or not consumer._handle.ptr:
            raise ConsumerClosedError(f"consumer of {consumer.stream_name!r} is closed")
        current = consumer._current_it
        if (current is not None and length_hint(current)) or consumer._undecoded is not None:
            raise KcheckError(
                "the consumer holds records read by iteration but not handed out yet: "
                "a pipeline would skip them; run pipelines on a consumer that is not iterated"
            )
        return consumer._handle.ptr

    def run(self, transform: Transform, stop: Stop = None) -> Dict[str, int]:
        """Runs until ``stop`` (a :class:`threading.Event`, or a callable
        returning true to stop; asked before each batch of up to 500
        records, so within 0.2 s while no record comes) or until the
        consumer is closed from another thread; then waits for the writes
        and checkpoints them. Returns the run's counters: ``records``,
        ``writes``, ``checkpoints``, ``records_pending``.

        ``transform(record)`` gets each :class:`~kcheck.Record` (the type
        the consumer yields, but not checkpointable) on the calling thread
        and returns an iterable of writes: plain dicts (put into the
        writer's default table), :class:`~kcheck.Put` or
        :class:`~kcheck.Delete`. An exception it raises (or ``stop``
        raises, or Ctrl-C on the main thread) stops the run at once,
        before its record is checkpointed, and is raised from here once the
        library has returned; the writes of that record are dropped.

        After a failure, close the consumer rather than run again with it:
        it had read records the failed run never transformed, which a new
        run would skip. Once closed, the shards' next owner reads them
        again from the last checkpoint; a second ``run`` of this pipeline
        raises :class:`~kcheck.KcheckError`.

        Raises:
            the transform's exception; KeyboardInterrupt;
            WriterClosedError: the writer is closed;
            ConsumerClosedError: the consumer was closed before the run;
            InvalidArgumentError: an item the table refuses (no key, over
                400 KB); ServiceError (or the status of the failure): a
                write failed for good.
        """
        if not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        if self._failed:
            raise KcheckError(
                "an earlier run of this pipeline failed: close the consumer (the shards' next owner "
                "reads the unfinished records again) and run a new pipeline on a new consumer"
            )
        should_stop = _stop_predicate(stop)
        writer = self.writer._usable()
        consumer = self._consumer_pointer()
        failures: List[BaseException] = []
        interrupts = _Interrupts()

        def on_record(_user_data: Optional[int], fields: Optional[int], emitter: Optional[int]) -> int:
            try:
                if interrupts.interrupted:
                    raise KeyboardInterrupt
                writes = transform(record_from_fields(fields or 0))
                if writes is None:
                    raise TypeError("the transform returned None: return an iterable of writes (empty for none)")
                for write in writes:
                    _emit(emitter or 0, write)
                return 0
            except BaseException as error:  # ctypes would print and drop it
                failures.append(error)
                return STATUS_CALLBACK_FAILED

        def keep_going(_user_data: Optional[int]) -> bool:
            try:
                if interrupts.interrupted:
                    raise KeyboardInterrupt
                return not should_stop()
            except BaseException as error:
                failures.append(error)
                return False

        # Kept referenced until the library has returned.
        transform_callback = _native.PIPELINE_TRANSFORM(on_record)
        keep_going_callback = _native.PIPELINE_KEEP_GOING(keep_going)
        stats = _native.PipelineStats()
        library_error: Optional[KcheckError] = None
        with interrupts:
            try:
                _lib.kcheck_pipeline_run(
                    consumer,
                    writer,
                    transform_callback,
                    keep_going_callback,
                    None,
                    self._interval_ms,
                    ctypes.byref(stats),
                )
            except KcheckError as error:
                library_error = error
        if library_error is not None:
            # Records read but never transformed: a new run would skip them.
            self._failed = True
        if interrupts.interrupted and not failures:
            failures.append(KeyboardInterrupt())
        if failures:
            raise failures[0]
        if library_error is not None:
            if library_error.status == STATUS_CLOSED:
                raise WriterClosedError(str(library_error)) from None
            raise library_error
        return {
            "records": stats.records,
            "writes": stats.writes,
            "checkpoints": stats.checkpoints,
            "records_pending": stats.records_pending,
        }

    def __repr__(self) -> str:
        return f"<kcheck.Pipeline {self.consumer!r} -> {self.writer!r}>"

