"""Lease and checkpoint stores: :class:`DynamoDBCheckPointer`, :class:`RedisCheckPointer` and :class:`MemoryCheckPointer`.

The same parameters as async-kinesis's checkpointers (times in seconds, int
or float). The native checkpointer is built at construction, so invalid
parameters raise at once (:class:`~kcheck.errors.InvalidConfigError`, whose
message names the parameter). Consumers built with a checkpointer keep
their own native reference: closing or dropping the checkpointer does not
affect them.
"""

from __future__ import annotations

import ctypes
import math
import os
import weakref
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Union

from . import _logging, _native
from .errors import ForkError, InvalidConfigError, KcheckError

if TYPE_CHECKING:  # pragma: no cover
    from .consumer import Consumer

__all__ = ["CheckPointer", "DynamoDBCheckPointer", "MemoryCheckPointer", "RedisCheckPointer"]

Seconds = Union[int, float]

_lib = _native.lib


def seconds_to_ms(value: Seconds, name: str) -> int:
    """A duration in seconds as whole milliseconds for the library."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise InvalidConfigError(f"{name} must be a finite, non-negative number of seconds, got {value!r}")
    ms = round(value * 1000)
    if ms > 2**64 - 1:
        raise InvalidConfigError(f"{name} is too long: {value!r} seconds")
    return int(ms)


def check_int(value: Any, name: str, low: int, high: int) -> int:
    """An integer parameter within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidConfigError(f"{name} must be {low} to {high}, got {value}")
    return value


def _flag(value: Any, name: str) -> int:
    if not isinstance(value, (bool, int)) or value not in (0, 1):
        raise TypeError(f"{name} must be True or False, got {_native.quote(value)}")
    return 1 if value else 0


class CheckPointer:
    """Base of kcheck's checkpointers: owns one native ``kcheck_checkpointer``.

    Consumers given the same checkpointer share its leases and register
    with it, so :meth:`manual_checkpoint` can checkpoint all of them. A
    checkpointer belongs to the process that created it (its HTTP
    connections and credentials too): in a forked child, giving it to a
    consumer or :meth:`manual_checkpoint` raises :class:`~kcheck.ForkError`.
    """

    def __init__(self, builder: int, session_timeout: Seconds, heartbeat_frequency: Seconds, auto_checkpoint: bool) -> None:
        """Applies the lease settings to ``builder`` (consumed) and builds the checkpointer."""
        self._pid = os.getpid()
        self._ptr: Optional[int] = None
        self._finalizer: Optional[Callable[[], Any]] = None
        self._consumers: "weakref.WeakSet[Consumer]" = weakref.WeakSet()
        self.session_timeout = session_timeout
        self.heartbeat_frequency = heartbeat_frequency
        self.auto_checkpoint = auto_checkpoint
        try:
            self.auto_checkpoint = bool(_flag(auto_checkpoint, "auto_checkpoint"))
            self._configure(builder)
        except BaseException:
            _lib.kcheck_checkpointer_builder_free(builder)
            raise
        out = ctypes.c_void_p()
        _lib.kcheck_checkpointer_builder_build(builder, ctypes.byref(out))  # consumes the builder
        self._ptr = out.value
        self._finalizer = weakref.finalize(self, _lib.kcheck_checkpointer_free, out.value)

    def _configure(self, builder: int) -> None:
        _lib.kcheck_checkpointer_builder_set_session_timeout_ms(
            builder, seconds_to_ms(self.session_timeout, "session_timeout")
        )
        _lib.kcheck_checkpointer_builder_set_heartbeat_frequency_ms(
            builder, seconds_to_ms(self.heartbeat_frequency, "heartbeat_frequency")
        )
        _lib.kcheck_checkpointer_builder_set_auto_checkpoint(builder, int(self.auto_checkpoint))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (consumers already built keep working)."""
        return self._ptr is None

    def _check_process(self) -> None:
        if self._pid != os.getpid():
            # Its connections and credentials belong to the parent process.
            raise ForkError(
                f"this {type(self).__name__} was created in process {self._pid}; "
                "create a new checkpointer after fork"
            )

    def _native_handle(self) -> int:
        self._check_process()
        if self._ptr is None:
            raise InvalidConfigError(f"this {type(self).__name__} is closed: give consumers an open checkpointer")
        return self._ptr

    def _register(self, consumer: "Consumer") -> None:
        self._consumers.add(consumer)

    def _unregister(self, consumer: "Consumer") -> None:
        self._consumers.discard(consumer)

    @property
    def consumers(self) -> List["Consumer"]:
        """The open consumers built with this checkpointer."""
        return [c for c in list(self._consumers) if not c.closed]

    def manual_checkpoint(self) -> None:
        """Checkpoints every open consumer built with this checkpointer.

        Each consumer checkpoints, per shard, the last record it handed out
        (see :meth:`kcheck.Consumer.checkpoint`). With
        ``auto_checkpoint=False`` this is the only way progress is saved.
        Every consumer is tried; the first error is raised afterwards.
        """
        self._check_process()
        first_error: Optional[KcheckError] = None
        for consumer in self.consumers:
            try:
                consumer.checkpoint()
            except KcheckError as error:
                if first_error is None:
                    first_error = error
        if first_error is not None:
            raise first_error

    def close(self) -> None:
        """Frees the native checkpointer. Idempotent; consumers built with it are unaffected."""
        self._ptr = None
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> "CheckPointer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class DynamoDBCheckPointer(CheckPointer):
    """Leases and checkpoints of consumer group ``name`` in a DynamoDB table.

    Args:
        name: the consumer group (application) name.
        table_name: the table [``kinesis-checkpoints-{name}``]; groups may share one.
        session_timeout: seconds after which an unrenewed lease is dead [60].
        heartbeat_frequency: seconds between lease renewals [15]; shorter
            than ``session_timeout``.
        auto_checkpoint: checkpoint processed records automatically [True];
            with False, only :meth:`manual_checkpoint` and
            :meth:`kcheck.Consumer.checkpoint` write.
        create_table: create the table when missing [True]; the table is
            checked (or created) when a consumer starts.
        endpoint_url: a custom DynamoDB endpoint (e.g. a local emulator).
        region_name: the region [AWS_DEFAULT_REGION, the profile, or us-east-1].
        ttl_hours: hours after its last write that DynamoDB's TTL may delete
            an item [24].
    """

    def __init__(
        self,
        name: str,
        table_name: Optional[str] = None,
        session_timeout: Seconds = 60,
        heartbeat_frequency: Seconds = 15,
        auto_checkpoint: bool = True,
        create_table: bool = True,
        endpoint_url: Optional[str] = None,
        region_name: Optional[str] = None,
        ttl_hours: int = 24,
    ) -> None:
        _logging.refresh_log_level()
        self.name = name
        self.table_name = table_name if table_name is not None else f"kinesis-checkpoints-{name}"
        self._table_name = table_name
        self.create_table = create_table
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.ttl_hours = ttl_hours
        builder = ctypes.c_void_p()
        _lib.kcheck_checkpointer_builder_new_dynamodb(_native.encode(name, "name"), ctypes.byref(builder))
        super().__init__(builder.value or 0, session_timeout, heartbeat_frequency, auto_checkpoint)

    def _configure(self, builder: int) -> None:
        super()._configure(builder)
        if self._table_name is not None:
            _lib.kcheck_checkpointer_builder_set_table_name(builder, _native.encode(self._table_name, "table_name"))
        _lib.kcheck_checkpointer_builder_set_create_table(builder, _flag(self.create_table, "create_table"))
        if self.endpoint_url is not None:
            _lib.kcheck_checkpointer_builder_set_endpoint_url(builder, _native.encode(self.endpoint_url, "endpoint_url"))
        if self.region_name is not None:
            _lib.kcheck_checkpointer_builder_set_region_name(builder, _native.encode(self.region_name, "region_name"))
        _lib.kcheck_checkpointer_builder_set_ttl_hours(builder, check_int(self.ttl_hours, "ttl_hours", 0, 2**32 - 1))

    def __repr__(self) -> str:
        return (
            f"DynamoDBCheckPointer(name={self.name!r}, table_name={self.table_name!r}, "
            f"session_timeout={self.session_timeout!r}, heartbeat_frequency={self.heartbeat_frequency!r}, "
            f"auto_checkpoint={self.auto_checkpoint!r})"
        )


class RedisCheckPointer(CheckPointer):
    """Leases and checkpoints of consumer group ``name`` in Redis.

    The same leases as :class:`DynamoDBCheckPointer` (fencing counter,
    hand-overs, checkpoints with sub-sequence numbers), kept in one Redis
    hash per shard; every change is one atomic Lua script. Needs a library
    built with the ``redis`` feature (otherwise
    :class:`~kcheck.errors.InvalidConfigError`: "built without Redis support").

    Args:
        name: the consumer group (application) name.
        session_timeout: seconds after which an unrenewed lease is dead [60].
        heartbeat_frequency: seconds between lease renewals [15].
        auto_checkpoint: checkpoint processed records automatically [True].
        url: ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://…``
            for TLS; None reads ``REDIS_HOST`` [localhost], ``REDIS_PORT``
            [6379], ``REDIS_PASSWORD`` and ``REDIS_DB`` [0] as async-kinesis
            does (when the checkpointer is created).
        ttl_hours: hours after its shard left the stream that a lease may be
            deleted [24]; 0 keeps leases for good.
    """

    def __init__(
        self,
        name: str,
        session_timeout: Seconds = 60,
        heartbeat_frequency: Seconds = 15,
        auto_checkpoint: bool = True,
        url: Optional[str] = None,
        ttl_hours: int = 24,
    ) -> None:
        _logging.refresh_log_level()
        self.name = name
        self._url = url
        self.ttl_hours = ttl_hours
        builder = ctypes.c_void_p()
        _lib.kcheck_checkpointer_builder_new_redis(_native.encode(name, "name"), ctypes.byref(builder))
        super().__init__(builder.value or 0, session_timeout, heartbeat_frequency, auto_checkpoint)

    def _configure(self, builder: int) -> None:
        super()._configure(builder)
        if self._url is not None:
            _lib.kcheck_checkpointer_builder_set_url(builder, _native.encode(self._url, "url"))
        _lib.kcheck_checkpointer_builder_set_ttl_hours(builder, check_int(self.ttl_hours, "ttl_hours", 0, 2**32 - 1))

    def __repr__(self) -> str:
        # Never the url: it may hold the password.
        return (
            f"RedisCheckPointer(name={self.name!r}, session_timeout={self.session_timeout!r}, "
            f"heartbeat_frequency={self.heartbeat_frequency!r}, auto_checkpoint={self.auto_checkpoint!r})"
        )


class MemoryCheckPointer(CheckPointer):
    """Leases and checkpoints kept in this process.

    Consumers given the same instance share its leases (each shard is read
    by one of them at a time); nothing survives the process.

    Args:
        session_timeout: seconds after which an unrenewed lease is dead [60].
        heartbeat_frequency: seconds between lease renewals [15].
        auto_checkpoint: checkpoint processed records automatically [True].
        name: accepted for compatibility with async-kinesis; informational.
    """

    def __init__(
        self,
        session_timeout: Seconds = 60,
        heartbeat_frequency: Seconds = 15,
        auto_checkpoint: bool = True,
        *,
        name: str = "",
    ) -> None:
        _logging.refresh_log_level()
        self.name = name
        builder = ctypes.c_void_p()
        _lib.kcheck_checkpointer_builder_new_memory(ctypes.byref(builder))
        super().__init__(builder.value or 0, session_timeout, heartbeat_frequency, auto_checkpoint)

    def __repr__(self) -> str:
        return (
            f"MemoryCheckPointer(session_timeout={self.session_timeout!r}, "
            f"heartbeat_frequency={self.heartbeat_frequency!r}, auto_checkpoint={self.auto_checkpoint!r})"
        )
