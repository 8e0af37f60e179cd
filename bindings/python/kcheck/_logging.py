"""Bridges kcheck's log records into Python's :mod:`logging`.

One ``CFUNCTYPE`` trampoline, kept alive for the life of the process, is
installed with ``kcheck_set_log_callback``. A record of Rust target
``kcheck::consumer::keeper`` goes to the logger ``kcheck.consumer.keeper``
(targets of other crates land under ``kcheck.``, e.g. ``kcheck.ureq``), at
the matching level (TRACE becomes 5, below DEBUG).

The library only formats and sends records up to a maximum level, derived
from ``logging.getLogger("kcheck").getEffectiveLevel()``: it is read when
this module loads and again whenever a consumer or checkpointer is created
(or :func:`refresh_log_level` is called), so configure logging first.

The callback runs on kcheck's threads (lease keeper, coordinator, fetchers)
and on the calling thread; ctypes takes the GIL for it. Nothing it raises
reaches C: errors are dropped (logging's own handlers report theirs), and a
KeyboardInterrupt that lands in it on the main thread is re-raised there
after the current call returns. The callback is removed at interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Dict, Optional

from . import _native

__all__ = ["refresh_log_level", "TRACE"]

#: Python level used for kcheck's TRACE records.
TRACE = 5

_PYTHON_LEVELS = {
    _native.LOG_LEVEL_ERROR: logging.ERROR,
    _native.LOG_LEVEL_WARN: logging.WARNING,
    _native.LOG_LEVEL_INFO: logging.INFO,
    _native.LOG_LEVEL_DEBUG: logging.DEBUG,
    _native.LOG_LEVEL_TRACE: TRACE,
}

_ROOT = logging.getLogger("kcheck")
# A library leaves output to the application (logging HOWTO): without a
# configured handler, kcheck's records are not printed by logging's last resort.
_ROOT.addHandler(logging.NullHandler())
_loggers: Dict[bytes, logging.Logger] = {}
_lock = threading.Lock()
_installed_level: Optional[int] = None
_shut_down = False


def _logger_for(target: bytes) -> logging.Logger:
    logger = _loggers.get(target)
    if logger is None:
        name = target.decode("utf-8", "replace").replace("::", ".")
        if name != "kcheck" and not name.startswith("kcheck."):
            name = "kcheck." + name
        logger = _loggers[target] = logging.getLogger(name)
    return logger


def _on_log(user_data: Optional[int], level: int, target: Optional[bytes], message: Optional[bytes]) -> None:
    try:
        logger = _logger_for(target or b"kcheck")
        python_level = _PYTHON_LEVELS.get(level, logging.INFO)
        if logger.isEnabledFor(python_level):
            logger.log(python_level, "%s", (message or b"").decode("utf-8", "replace"))
    except KeyboardInterrupt:
        # Raised here by the signal handler (main thread): ctypes would print
        # and drop it.
        _native.redeliver_interrupt()
    except BaseException:  # never let anything unwind into C
        pass


# Module-level and never freed: the library may call it from any thread.
_TRAMPOLINE = _native.LOG_CALLBACK(_on_log)


def _native_level(python_level: int) -> int:
    if python_level <= TRACE:
        return _native.LOG_LEVEL_TRACE
    if python_level <= logging.DEBUG:
        return _native.LOG_LEVEL_DEBUG
    if python_level <= logging.INFO:
        return _native.LOG_LEVEL_INFO
    if python_level <= logging.WARNING:
        return _native.LOG_LEVEL_WARN
    if python_level <= logging.CRITICAL:
        return _native.LOG_LEVEL_ERROR
    return _native.LOG_LEVEL_OFF


def refresh_log_level() -> None:
    """Re-reads the effective level of the ``kcheck`` logger and tells the library."""
    global _installed_level
    level = _native_level(_ROOT.getEffectiveLevel())
    with _lock:
        if _shut_down or level == _installed_level:
            return
        _native.lib.kcheck_set_log_callback(_TRAMPOLINE, None, level)
        _installed_level = level


def _uninstall() -> None:
    """Stops logging before the interpreter finalizes (library threads may outlive it)."""
    global _shut_down, _installed_level
    with _lock:
        _shut_down = True
        _installed_level = None
        try:
            _native.lib.kcheck_set_log_callback(_native.LOG_CALLBACK(), None, _native.LOG_LEVEL_OFF)
        except Exception:
            pass


def _after_fork_in_child() -> None:
    """A parent's thread may have held the lock at fork time: it would never
    be released in the child."""
    global _lock
    _lock = threading.Lock()


refresh_log_level()
atexit.register(_uninstall)
os.register_at_fork(after_in_child=_after_fork_in_child)
