"""Loads ``libkcheck.so`` and declares every function of its C ABI.

Where the library is looked for, in order:

1. ``KCHECK_LIBRARY``: an explicit path (nothing else is tried when set);
2. ``libkcheck.so`` next to this module (what ``pip install`` bundles);
3. the repository's ``target/release/libkcheck.so``, then
   ``target/debug/libkcheck.so`` (when this package runs from a checkout).

The first file that exists is loaded by its full path with ``ctypes.CDLL``
(which releases the GIL during every call) and must report
``kcheck_abi_version() == 1``; otherwise ``ImportError`` names the path (or
lists the places tried).

Every function of ``include/kcheck.h`` gets its ``argtypes`` and ``restype``
here (``FUNCTIONS``); a test compares them with the header. Functions that
return a ``kcheck_status`` raise the matching :mod:`kcheck.errors` exception
on failure, with ``kcheck_last_error_message()`` read at once on the same
thread -- except ``kcheck_consumer_next`` and ``kcheck_consumer_next_batch``,
whose TIMED_OUT, CLOSED and IDLE_TIMEOUT statuses are not failures: the
consumer reads their status itself.
"""

from __future__ import annotations

import _thread
import ctypes
import os
import struct
import sys
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_double,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import InvalidArgumentError, InvalidUtf8Error, KcheckError, error_for_status

#: The C ABI version this package is written for (``KCHECK_ABI_VERSION``).
ABI_VERSION = 1
LIBRARY_FILE = "libkcheck.so"
ENV_LIBRARY = "KCHECK_LIBRARY"

# enum kcheck_initial_position
INITIAL_POSITION_TRIM_HORIZON = 0
INITIAL_POSITION_LATEST = 1
INITIAL_POSITION_AT_TIMESTAMP = 2

# enum kcheck_record_status
RECORD_STATUS_PENDING = 0
RECORD_STATUS_ACCEPTED = 1
RECORD_STATUS_FAILED = 2

# enum kcheck_table_format
TABLE_FORMAT_KCL = 0
TABLE_FORMAT_ASYNC_KINESIS = 1

# enum kcheck_log_level
LOG_LEVEL_OFF = 0
LOG_LEVEL_ERROR = 1
LOG_LEVEL_WARN = 2
LOG_LEVEL_INFO = 3
LOG_LEVEL_DEBUG = 4
LOG_LEVEL_TRACE = 5


class RecordFields(Structure):
    """Mirror of ``kcheck_record_fields`` (frozen in the ABI)."""

    _fields_ = [
        ("data", c_void_p),
        ("data_len", c_size_t),
        ("partition_key", c_void_p),
        ("partition_key_len", c_size_t),
        ("sequence_number", c_void_p),
        ("sequence_number_len", c_size_t),
        ("sub_sequence_number", c_uint64),
        ("shard_id", c_void_p),
        ("shard_id_len", c_size_t),
        ("approximate_arrival_timestamp_ms", c_int64),
        ("explicit_hash_key", c_void_p),
        ("explicit_hash_key_len", c_size_t),
    ]


#: ``struct`` format of one ``kcheck_record_fields`` in native layout (the
#: same alignment rules as ctypes and the C compiler): pointers ``P``,
#: ``size_t`` ``N``, ``uint64_t`` ``Q``, ``int64_t`` ``q``.
RECORD_FIELDS_FORMAT = "@PNPNPNQPNqPN"
RECORD_FIELDS = struct.Struct(RECORD_FIELDS_FORMAT)
RECORD_FIELDS_SIZE = ctypes.sizeof(RecordFields)


def _check_record_fields_layout() -> None:
    """The unpack format must read exactly what the Structure describes."""
    if RECORD_FIELDS.size != RECORD_FIELDS_SIZE:
        raise ImportError(
            f"kcheck: struct format {RECORD_FIELDS_FORMAT!r} is {RECORD_FIELDS.size} bytes "
            f"but kcheck_record_fields is {RECORD_FIELDS_SIZE} on this platform"
        )
    values = tuple(range(1, len(RecordFields._fields_) + 1))
    sample = RecordFields(*values)
    unpacked = RECORD_FIELDS.unpack(ctypes.string_at(ctypes.addressof(sample), RECORD_FIELDS_SIZE))
    if unpacked != values:
        raise ImportError(
            f"kcheck: struct format {RECORD_FIELDS_FORMAT!r} does not match the layout "
            f"of kcheck_record_fields on this platform ({unpacked} != {values})"
        )


_check_record_fields_layout()

#: ``void (*)(void *user_data, uint32_t level, const char *target, const char *message)``
LOG_CALLBACK = CFUNCTYPE(None, c_void_p, c_uint32, c_char_p, c_char_p)

#: ``void (*)(void *user_data, uint32_t kind, const char *group, const char *stream,
#: const char *shard_id, const char *message)``
EVENT_CALLBACK = CFUNCTYPE(None, c_void_p, c_uint32, c_char_p, c_char_p, c_char_p, c_char_p)
#: ``kcheck_event_kind`` values, by number.
EVENT_KINDS = ("lease_gained", "lease_lost", "lease_received", "lease_handed_over", "checkpoint_failed")


class PipelineStats(Structure):
    """Mirror of ``kcheck_pipeline_stats`` (frozen in the ABI)."""

    _fields_ = [
        ("records", c_uint64),
        ("writes", c_uint64),
        ("checkpoints", c_uint64),
        ("records_pending", c_uint64),
    ]


#: ``uint32_t (*)(void *user_data, const kcheck_record_fields *record, kcheck_pipeline_emitter *emitter)``;
#: the record's address comes as an int (read with ``RECORD_FIELDS``).
PIPELINE_TRANSFORM = CFUNCTYPE(c_uint32, c_void_p, c_void_p, c_void_p)
#: ``bool (*)(void *user_data)``
PIPELINE_KEEP_GOING = CFUNCTYPE(c_bool, c_void_p)

_status = c_uint32
_out_ptr = POINTER(c_void_p)

#: Every function of kcheck.h: name -> (restype, argtypes, raises on failure).
#: Opaque handles are ``c_void_p``; borrowed strings ``c_char_p``; owned
#: strings come back through a ``c_void_p`` out-param and are freed with
#: ``kcheck_string_free``.
FUNCTIONS: Dict[str, Tuple[Any, Sequence[Any], bool]] = {
    "kcheck_version": (c_char_p, [], False),
    "kcheck_abi_version": (c_uint32, [], False),
    "kcheck_last_error_message": (c_char_p, [], False),
    "kcheck_last_error_code": (c_char_p, [], False),
    "kcheck_string_free": (None, [c_void_p], False),
    "kcheck_status_name": (c_char_p, [c_uint32], False),
    # checkpointers
    "kcheck_checkpointer_builder_new_dynamodb": (_status, [c_char_p, _out_ptr], True),
    "kcheck_checkpointer_builder_new_memory": (_status, [_out_ptr], True),
    "kcheck_checkpointer_builder_new_redis": (_status, [c_char_p, _out_ptr], True),
    "kcheck_checkpointer_builder_set_url": (_status, [c_void_p, c_char_p], True),
    "kcheck_checkpointer_builder_set_session_timeout_ms": (_status, [c_void_p, c_uint64], True),
    "kcheck_checkpointer_builder_set_heartbeat_frequency_ms": (_status, [c_void_p, c_uint64], True),
    "kcheck_checkpointer_builder_set_auto_checkpoint": (_status, [c_void_p, c_uint32], True),
    "kcheck_checkpointer_builder_set_table_name": (_status, [c_void_p, c_char_p], True),
    "kcheck_checkpointer_builder_set_create_table": (_status, [c_void_p, c_uint32], True),
    "kcheck_checkpointer_builder_set_endpoint_url": (_status, [c_void_p, c_char_p], True),
    "kcheck_checkpointer_builder_set_region_name": (_status, [c_void_p, c_char_p], True),
    "kcheck_checkpointer_builder_set_ttl_hours": (_status, [c_void_p, c_uint32], True),
    "kcheck_checkpointer_builder_build": (_status, [c_void_p, _out_ptr], True),
    "kcheck_checkpointer_builder_free": (None, [c_void_p], False),
    "kcheck_checkpointer_free": (None, [c_void_p], False),
    # consumer groups: leases, checkpoints, snapshots
    "kcheck_group_new": (_status, [c_void_p, c_char_p, c_char_p, _out_ptr], True),
    "kcheck_group_leases_json": (_status, [c_void_p, _out_ptr], True),
    "kcheck_group_export_json": (_status, [c_void_p, _out_ptr], True),
    "kcheck_group_import_json": (_status, [c_void_p, c_char_p, c_size_t, c_uint32, _out_ptr], True),
    "kcheck_group_reset": (_status, [c_void_p, c_char_p, c_char_p, c_char_p, c_uint32, _out_ptr], True),
    "kcheck_group_snapshot": (_status, [c_void_p, c_char_p, c_char_p, c_uint64, _out_ptr], True),
    "kcheck_group_snapshots_json": (_status, [c_void_p, c_char_p, _out_ptr], True),
    "kcheck_group_restore": (_status, [c_void_p, c_char_p, c_char_p, c_uint32, _out_ptr], True),
    "kcheck_group_copy_from": (
        _status,
        [c_void_p, c_uint32, c_char_p, c_char_p, c_uint64, c_uint32, _out_ptr, _out_ptr],
        True,
    ),
    "kcheck_group_copy_to": (
        _status,
        [c_void_p, c_uint32, c_char_p, c_char_p, c_uint64, c_uint32, _out_ptr, _out_ptr],
        True,
    ),
    "kcheck_group_free": (None, [c_void_p], False),
    # consumers
    "kcheck_consumer_builder_new": (_status, [c_char_p, _out_ptr], True),
    "kcheck_consumer_builder_set_checkpointer": (_status, [c_void_p, c_void_p], True),
    "kcheck_consumer_builder_set_initial_position": (_status, [c_void_p, c_uint32, c_int64], True),
    "kcheck_consumer_builder_set_record_limit": (_status, [c_void_p, c_uint32], True),
    "kcheck_consumer_builder_set_max_queue_size": (_status, [c_void_p, c_size_t], True),
    "kcheck_consumer_builder_set_max_shard_consumers": (_status, [c_void_p, c_size_t], True),
    "kcheck_consumer_builder_set_idle_timeout_ms": (_status, [c_void_p, c_uint64], True),
    "kcheck_consumer_builder_set_checkpoint_interval_ms": (_status, [c_void_p, c_uint64], True),
    "kcheck_consumer_builder_set_discovery_interval_ms": (_status, [c_void_p, c_uint64], True),
    "kcheck_consumer_builder_set_idle_poll_interval_ms": (_status, [c_void_p, c_uint64], True),
    "kcheck_consumer_builder_set_idle_poll_max_interval_ms": (_status, [c_void_p, c_uint64], True),
    "kcheck_consumer_builder_set_endpoint_url": (_status, [c_void_p, c_char_p], True),
    "kcheck_consumer_builder_set_region_name": (_status, [c_void_p, c_char_p], True),
    "kcheck_consumer_builder_set_event_callback": (_status, [c_void_p, EVENT_CALLBACK, c_void_p], True),
    "kcheck_consumer_builder_build": (_status, [c_void_p, _out_ptr], True),
    "kcheck_consumer_builder_free": (None, [c_void_p], False),
    "kcheck_consumer_next": (_status, [c_void_p, c_uint64, _out_ptr], False),
    "kcheck_consumer_next_batch": (_status, [c_void_p, c_size_t, c_uint64, _out_ptr], False),
    "kcheck_consumer_checkpoint": (_status, [c_void_p], True),
    "kcheck_consumer_checkpoint_record": (_status, [c_void_p, c_void_p], True),
    "kcheck_consumer_stats_json": (_status, [c_void_p, _out_ptr], True),
    "kcheck_consumer_owner_id": (c_char_p, [c_void_p], False),
    "kcheck_consumer_close": (_status, [c_void_p], True),
    "kcheck_consumer_free": (None, [c_void_p], False),
    # producers
    "kcheck_producer_builder_new": (_status, [c_char_p, _out_ptr], True),
    "kcheck_producer_builder_set_endpoint_url": (_status, [c_void_p, c_char_p], True),
    "kcheck_producer_builder_set_region_name": (_status, [c_void_p, c_char_p], True),
    "kcheck_producer_builder_set_buffer_time_ms": (_status, [c_void_p, c_uint64], True),
    "kcheck_producer_builder_set_batch_size": (_status, [c_void_p, c_uint32], True),
    "kcheck_producer_builder_set_max_queue_size": (_status, [c_void_p, c_size_t], True),
    "kcheck_producer_builder_set_put_rate_limit_per_shard": (_status, [c_void_p, c_double], True),
    "kcheck_producer_builder_set_put_bandwidth_limit_per_shard": (_status, [c_void_p, c_double], True),
    "kcheck_producer_builder_set_aggregate": (_status, [c_void_p, c_uint32], True),
    "kcheck_producer_builder_set_shard_refresh_interval_ms": (_status, [c_void_p, c_uint64], True),
    "kcheck_producer_builder_build": (_status, [c_void_p, _out_ptr], True),
    "kcheck_producer_builder_free": (None, [c_void_p], False),
    "kcheck_producer_put": (
        _status,
        [c_void_p, c_char_p, c_size_t, c_char_p, c_char_p, c_uint64, POINTER(c_uint64)],
        True,
    ),
    "kcheck_producer_flush": (_status, [c_void_p, c_uint64], True),
    "kcheck_producer_close": (_status, [c_void_p], True),
    "kcheck_producer_record_status": (_status, [c_void_p, c_uint64, POINTER(c_uint32)], True),
    "kcheck_producer_stats_json": (_status, [c_void_p, _out_ptr], True),
    "kcheck_producer_take_failures_json": (_status, [c_void_p, _out_ptr], True),
    "kcheck_producer_free": (None, [c_void_p], False),
    # DynamoDB writers
    "kcheck_writer_builder_new": (_status, [c_char_p, _out_ptr], True),
    "kcheck_writer_builder_set_write_capacity": (_status, [c_void_p, c_double], True),
    "kcheck_writer_builder_add_table": (_status, [c_void_p, c_char_p, c_double], True),
    "kcheck_writer_builder_set_threads": (_status, [c_void_p, c_uint32], True),
    "kcheck_writer_builder_set_batch_size": (_status, [c_void_p, c_uint32], True),
    "kcheck_writer_builder_set_max_queue_size": (_status, [c_void_p, c_size_t], True),
    "kcheck_writer_builder_set_buffer_time_ms": (_status, [c_void_p, c_uint64], True),
    "kcheck_writer_builder_set_endpoint_url": (_status, [c_void_p, c_char_p], True),
    "kcheck_writer_builder_set_region_name": (_status, [c_void_p, c_char_p], True),
    "kcheck_writer_builder_build": (_status, [c_void_p, _out_ptr], True),
    "kcheck_writer_builder_free": (None, [c_void_p], False),
    "kcheck_writer_put": (
        _status,
        [c_void_p, c_char_p, c_char_p, c_size_t, c_uint64, POINTER(c_uint64)],
        True,
    ),
    "kcheck_writer_delete": (
        _status,
        [c_void_p, c_char_p, c_char_p, c_size_t, c_uint64, POINTER(c_uint64)],
        True,
    ),
    "kcheck_writer_flush": (_status, [c_void_p, c_uint64], True),
    "kcheck_writer_close": (_status, [c_void_p], True),
    "kcheck_writer_record_status": (_status, [c_void_p, c_uint64, POINTER(c_uint32)], True),
    "kcheck_writer_first_unwritten": (_status, [c_void_p, POINTER(c_uint64)], True),
    "kcheck_writer_stats_json": (_status, [c_void_p, _out_ptr], True),
    # Prometheus text of consumers, producers and writers
    "kcheck_metrics_render": (
        _status,
        [POINTER(c_void_p), c_size_t, POINTER(c_void_p), c_size_t, POINTER(c_void_p), c_size_t, _out_ptr],
        True,
    ),
    "kcheck_writer_take_failures_json": (_status, [c_void_p, _out_ptr], True),
    "kcheck_writer_free": (None, [c_void_p], False),
    # the consumer -> writer pipeline
    "kcheck_pipeline_run": (
        _status,
        [c_void_p, c_void_p, PIPELINE_TRANSFORM, PIPELINE_KEEP_GOING, c_void_p, c_uint64, POINTER(PipelineStats)],
        True,
    ),
    "kcheck_pipeline_emit_put": (_status, [c_void_p, c_char_p, c_char_p, c_size_t], True),
    "kcheck_pipeline_emit_delete": (_status, [c_void_p, c_char_p, c_char_p, c_size_t], True),
    # logging
    "kcheck_set_log_callback": (_status, [LOG_CALLBACK, c_void_p, c_uint32], True),
    # records and batches
    "kcheck_record_get_fields": (_status, [c_void_p, POINTER(RecordFields)], True),
    "kcheck_record_free": (None, [c_void_p], False),
    "kcheck_batch_len": (c_size_t, [c_void_p], False),
    "kcheck_batch_get": (c_void_p, [c_void_p, c_size_t], False),
    "kcheck_batch_get_fields": (_status, [c_void_p, _out_ptr, POINTER(c_size_t)], True),
    "kcheck_batch_get_bytes": (_status, [c_void_p, _out_ptr, POINTER(c_size_t)], True),
    "kcheck_batch_free": (None, [c_void_p], False),
}


def _repository_root() -> Optional[Path]:
    """The checkout this package runs from (bindings/python/kcheck/..), if any."""
    root = Path(__file__).resolve().parents[3]
    if (root / "Cargo.toml").is_file() and (root / "include" / "kcheck.h").is_file():
        return root
    return None


def library_candidates() -> List[Path]:
    """The paths tried, in order (see the module docstring)."""
    explicit = os.environ.get(ENV_LIBRARY)
    if explicit:
        return [Path(explicit)]
    candidates = [Path(__file__).resolve().parent / LIBRARY_FILE]
    root = _repository_root()
    if root is not None:
        candidates.append(root / "target" / "release" / LIBRARY_FILE)
        candidates.append(root / "target" / "debug" / LIBRARY_FILE)
    return candidates


def _load() -> Tuple[ctypes.CDLL, Path]:
    candidates = library_candidates()
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        tried = ", ".join(str(c) for c in candidates)
        raise ImportError(
            f"kcheck: {LIBRARY_FILE} not found (tried: {tried}). Install the package with "
            f"`pip install ./bindings/python`, build it with `cargo build --release`, "
            f"or set {ENV_LIBRARY} to its path."
        )
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as error:
        raise ImportError(f"kcheck: cannot load {path}: {error}") from error
    try:
        abi = lib.kcheck_abi_version
    except AttributeError as error:
        raise ImportError(f"kcheck: {path} is not a kcheck library (no kcheck_abi_version)") from error
    abi.argtypes = []
    abi.restype = c_uint32
    found = abi()
    if found != ABI_VERSION:
        raise ImportError(
            f"kcheck: {path} implements C ABI version {found}, but this package needs "
            f"version {ABI_VERSION}: rebuild the library or install a matching package"
        )
    return lib, path


lib, library_path = _load()

_last_error_message = lib.kcheck_last_error_message
_last_error_message.argtypes = []
_last_error_message.restype = c_char_p
_last_error_code = lib.kcheck_last_error_code
_last_error_code.argtypes = []
_last_error_code.restype = c_char_p


def last_error(status: int) -> KcheckError:
    """The exception for ``status``, with this thread's last error message and code."""
    raw = _last_error_message()
    message = raw.decode("utf-8", "replace") if raw else ""
    code = _last_error_code()
    return error_for_status(status, message, code.decode("utf-8", "replace") if code else None)


def _errcheck(status: int, func: Callable[..., Any], args: Tuple[Any, ...]) -> int:
    if status:
        raise last_error(status)
    return status


def _declare() -> None:
    missing = []
    for name, (restype, argtypes, raises) in FUNCTIONS.items():
        try:
            function = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        function.restype = restype
        function.argtypes = list(argtypes)
        if raises:
            function.errcheck = _errcheck
    if missing:
        raise ImportError(f"kcheck: {library_path} lacks {', '.join(missing)}: rebuild the library")


_declare()


def encode(value: str, name: str) -> bytes:
    """``value`` as a NUL-terminated UTF-8 argument; embedded NULs are refused."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if "\0" in value:
        raise InvalidArgumentError(f"{name} must not contain a NUL character")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates
        raise InvalidUtf8Error(f"{name} is not valid UTF-8: {error}") from None


def redeliver_interrupt() -> None:
    """Delivers Ctrl-C again once the running finalizer or ctypes callback
    has returned: Python prints and drops an exception raised in either.
    From another thread, or the interrupt would land in the same place."""
    try:
        _thread.start_new_thread(_thread.interrupt_main, ())
    except RuntimeError:  # interpreter shutdown: exiting anyway
        pass


def quote(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to about ``limit`` characters: a message never
    echoes a huge argument whole."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def take_string(pointer: Optional[int]) -> str:
    """Copies a string that kcheck allocated, then frees it with kcheck_string_free."""
    if not pointer:
        return ""
    try:
        return ctypes.string_at(pointer).decode("utf-8", "replace")
    finally:
        lib.kcheck_string_free(pointer)


def version() -> str:
    """The library's version, e.g. ``"0.1.0"``."""
    raw: bytes = lib.kcheck_version()
    return raw.decode()


def status_name(status: int) -> str:
    """The library's name for a status code."""
    raw: bytes = lib.kcheck_status_name(status)
    return raw.decode()
