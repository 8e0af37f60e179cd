"""A consumer group's leases, checkpoints and snapshots, seen from outside its
consumers: :class:`ConsumerGroup` (the tools of ``kcheck leases`` and
``kcheck checkpoints``, with the same JSON shapes as dicts).

Moving the checkpoints of a running group races its consumers: every call
that writes raises :class:`~kcheck.InvalidArgumentError` (before writing
anything) when a lease it would move is alive, unless ``force=True``; a
forced write fences the owner, which lets the shard go, and the next owner
starts from the position written.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

from . import _native
from .checkpointers import DynamoDBCheckPointer, Seconds, _flag, seconds_to_ms
from .errors import ForkError, InvalidArgumentError, InvalidConfigError

__all__ = ["ConsumerGroup"]

_lib = _native.lib
_byref = ctypes.byref

Checkpoints = Union[str, bytes, Iterable[Dict[str, Any]]]

_FORMATS = {"kcl": _native.TABLE_FORMAT_KCL, "async-kinesis": _native.TABLE_FORMAT_ASYNC_KINESIS}


def _lines(text: str) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _optional(value: Optional[str], name: str) -> Optional[bytes]:
    return None if value is None else _native.encode(value, name)


class ConsumerGroup:
    """The consumer group of a :class:`~kcheck.DynamoDBCheckPointer`: its
    group name, table, endpoint, region and session timeout (which judges
    whether a lease is alive).

    Positions an import, reset or restore writes are checked against the
    stream through Kinesis at ``kinesis_endpoint_url`` in ``region_name``
    (each None: resolved as the AWS SDKs do): a shard gone from the stream,
    or a position older than its oldest record, is said in the change's
    ``note``, and so is a stream that could not be read.

    The checkpointer may be closed afterwards. Results are lists of dicts:
    a change is ``{"stream", "shard", "before", "after", "fenced", "note"}``
    where ``before`` and ``after`` are ``"SEQUENCE/SUB"``, ``"SHARD_END"``
    or None, and ``fenced`` is the owner a forced write fenced.
    """

    def __init__(
        self,
        checkpointer: DynamoDBCheckPointer,
        *,
        kinesis_endpoint_url: Optional[str] = None,
        region_name: Optional[str] = None,
    ) -> None:
        if not isinstance(checkpointer, DynamoDBCheckPointer):
            raise InvalidArgumentError(
                "a group's leases and checkpoints live in DynamoDB: give a DynamoDBCheckPointer, "
                f"not {type(checkpointer).__name__}"
            )
        self._pid = os.getpid()
        self.name: str = checkpointer.name
        self.table_name: str = checkpointer.table_name
        out = ctypes.c_void_p()
        _lib.kcheck_group_new(
            checkpointer._native_handle(),
            _optional(kinesis_endpoint_url, "kinesis_endpoint_url"),
            _optional(region_name, "region_name"),
            _byref(out),
        )
        self._ptr: Optional[int] = out.value
        self._finalizer: Callable[[], Any] = weakref.finalize(self, _lib.kcheck_group_free, out.value)

    def _usable(self) -> int:
        if self._pid != os.getpid():
            raise ForkError(f"this ConsumerGroup was created in process {self._pid}; create a new one after fork")
        if self._ptr is None:
            raise InvalidConfigError(f"ConsumerGroup {self.name!r} is closed")
        return self._ptr

    def _string(self, call: Callable[..., Any], *args: Any) -> str:
        out = ctypes.c_void_p()
        call(self._usable(), *args, _byref(out))
        return _native.take_string(out.value)

    # ------------------------------------------------------------------ reading

    def leases(self) -> List[Dict[str, Any]]:
        """Every lease of the group, on every stream, ordered by stream and
        shard: ``stream``, ``shard``, ``owner``, ``state`` (``"alive"``,
        ``"expired"``, ``"free"`` or ``"finished"``), ``checkpoint``,
        ``counter``, ``renewed_at_ms``, ``handoff_to`` and ``ttl`` (epoch
        seconds). A missing table raises :class:`~kcheck.ServiceError`."""
        return _lines(self._string(_lib.kcheck_group_leases_json))

    def export(self) -> List[Dict[str, Any]]:
        """Every checkpoint of the group, as ``kcheck checkpoints export``
        writes them: ``group``, ``stream``, ``shard`` and, when set,
        ``sequence``, ``sub_sequence``, ``parents`` and ``start``. Give them
        to :meth:`import_checkpoints` of this group or another."""
        return _lines(self._string(_lib.kcheck_group_export_json))

    # ------------------------------------------------------------------ writing

    def import_checkpoints(self, checkpoints: Checkpoints, force: bool = False) -> List[Dict[str, Any]]:
        """Writes exported checkpoints (a list of dicts from :meth:`export`,
        or their JSON lines as str or bytes) into this group, whatever group
        they name; returns the changes. A bad entry, or a shard named twice,
        raises :class:`~kcheck.InvalidArgumentError` and nothing is written."""
        if isinstance(checkpoints, str):
            data = _native.encode(checkpoints, "checkpoints")
        elif isinstance(checkpoints, (bytes, bytearray)):
            data = bytes(checkpoints)
        elif isinstance(checkpoints, dict):
            raise TypeError("checkpoints must be a list of dicts or JSON lines, got one dict")
        else:
            lines = []
            for index, entry in enumerate(checkpoints):
                if not isinstance(entry, dict):
                    raise TypeError(f"checkpoints[{index}] must be a dict, got {type(entry).__name__}")
                lines.append(json.dumps(entry))
            data = "".join(f"{line}\n" for line in lines).encode("utf-8")
        force_flag = _flag(force, "force")
        return _lines(self._string(_lib.kcheck_group_import_json, data, len(data), force_flag))

    def reset(self, stream: str, to: str, shard: Optional[str] = None, force: bool = False) -> List[Dict[str, Any]]:
        """Moves the checkpoints of ``stream`` (of ``shard`` only, or of
        every shard with a lease) to ``to``: ``"trim-horizon"``,
        ``"latest"``, ``"timestamp:MILLIS"`` or ``"sequence:N[/SUB]"``
        (resume after that record). Returns the changes."""
        return _lines(
            self._string(
                _lib.kcheck_group_reset,
                _native.encode(stream, "stream"),
                _optional(shard, "shard"),
                _native.encode(to, "to"),
                _flag(force, "force"),
            )
        )

    # ------------------------------------------------------------------ snapshots

    def snapshot(
        self, label: str, history_table: Optional[str] = None, retention: Optional[float] = None
    ) -> Dict[str, Any]:
        """Stores every checkpoint of the group under ``label`` (not empty, no
        ``#``) in ``history_table`` [the lease table's name + ``-history``,
        created when missing]. ``retention``: seconds after which the
        snapshot expires [kept for ever]. Returns ``{"label", "created_at"
        (epoch milliseconds), "checkpoints"}``; a label already taken raises
        :class:`~kcheck.InvalidArgumentError`."""
        seconds = 0
        if retention is not None:
            if isinstance(retention, bool) or not isinstance(retention, (int, float)):
                raise TypeError(f"retention must be a number of seconds, got {type(retention).__name__}")
            if not math.isfinite(retention) or retention <= 0 or retention >= 2**64:
                raise InvalidConfigError(f"retention must be a positive number of seconds, got {retention!r}")
            seconds = max(1, math.ceil(retention))
        info: Dict[str, Any] = json.loads(
            self._string(
                _lib.kcheck_group_snapshot,
                _native.encode(label, "label"),
                _optional(history_table, "history_table"),
                seconds,
            )
        )
        return info

    def snapshots(self, history_table: Optional[str] = None) -> List[Dict[str, Any]]:
        """The group's snapshots in ``history_table``, oldest first (none
        when the table does not exist yet)."""
        return _lines(self._string(_lib.kcheck_group_snapshots_json, _optional(history_table, "history_table")))

    def restore(self, label: str, history_table: Optional[str] = None, force: bool = False) -> List[Dict[str, Any]]:
        """Writes snapshot ``label``'s checkpoints back, as
        :meth:`import_checkpoints` does; returns the changes. An unknown
        label raises :class:`~kcheck.InvalidArgumentError`."""
        return _lines(
            self._string(
                _lib.kcheck_group_restore,
                _native.encode(label, "label"),
                _optional(history_table, "history_table"),
                _flag(force, "force"),
            )
        )

    # ------------------------------------------------------------------ other layouts

    def _copy(
        self,
        call: Callable[..., Any],
        format: str,
        table: str,
        stream: Optional[str],
        session_timeout: Optional[Seconds],
        force: bool,
    ) -> Dict[str, List[Any]]:
        if format not in _FORMATS:
            raise InvalidArgumentError(f"format is 'kcl' or 'async-kinesis', not {_native.quote(format)}")
        timeout_ms = 0 if session_timeout is None else max(1, seconds_to_ms(session_timeout, "session_timeout"))
        changes, notes = ctypes.c_void_p(), ctypes.c_void_p()
        call(
            self._usable(),
            _FORMATS[format],
            _native.encode(table, "table"),
            _optional(stream, "stream"),
            timeout_ms,
            _flag(force, "force"),
            _byref(changes),
            _byref(notes),
        )
        return {
            "changes": _lines(_native.take_string(changes.value)),
            "notes": _lines(_native.take_string(notes.value)),
        }

    def copy_from(
        self,
        format: str,
        table: str,
        stream: Optional[str] = None,
        session_timeout: Optional[Seconds] = None,
        force: bool = False,
    ) -> Dict[str, List[Any]]:
        """Copies every checkpoint of another consumer's ``table`` into this
        group. ``format``: ``"kcl"`` (a Java KCL lease table; ``stream``
        names the stream of a single-stream table) or ``"async-kinesis"``
        (``stream`` required; an owner that wrote within ``session_timeout``
        seconds [the group's] is alive). Returns ``{"changes": [...],
        "notes": [...]}``: the notes say what the source's layout could not
        express (left as it was)."""
        return self._copy(_lib.kcheck_group_copy_from, format, table, stream, session_timeout, force)

    def copy_to(
        self,
        format: str,
        table: str,
        stream: Optional[str] = None,
        session_timeout: Optional[Seconds] = None,
        force: bool = False,
    ) -> Dict[str, List[Any]]:
        """Copies every checkpoint of this group into another consumer's
        ``table`` (arguments as :meth:`copy_from`); what that layout cannot
        hold is left as it was, with a ``note`` on its change."""
        return self._copy(_lib.kcheck_group_copy_to, format, table, stream, session_timeout, force)

    # ------------------------------------------------------------------ lifetime

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def close(self) -> None:
        """Frees the native group. Idempotent."""
        self._ptr = None
        self._finalizer()

    def __enter__(self) -> "ConsumerGroup":
        self._usable()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<kcheck.ConsumerGroup name={self.name!r} table={self.table_name!r}>"
