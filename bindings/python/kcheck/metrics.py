"""Prometheus metrics of consumers, producers and writers.

The library renders the figures it already keeps (``stats()``) as
Prometheus text (exposition format 0.0.4) with stable names and labels;
see the README for the list. :func:`render` returns that text for any
number of objects::

    from kcheck.metrics import render
    text = render(consumer, producer, writer)

With ``prometheus_client`` installed, :class:`KcheckCollector` plugs the
same figures into its registry (a custom collector, parsed from the text)::

    from prometheus_client import REGISTRY, start_http_server
    from kcheck.metrics import KcheckCollector

    collector = KcheckCollector(consumer, producer)
    REGISTRY.register(collector)
    start_http_server(9100)

Objects are held weakly: one that is garbage collected (or freed) drops
out of the next scrape.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from typing import Any, Iterable, Iterator, List

from . import _native

__all__ = ["CONTENT_TYPE", "KcheckCollector", "render"]

#: The ``Content-Type`` of the text :func:`render` returns.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _kind(obj: Any) -> int:
    from .consumer import Consumer
    from .producer import Producer
    from .writer import DynamoDBWriter

    if isinstance(obj, Consumer):
        return 0
    if isinstance(obj, Producer):
        return 1
    if isinstance(obj, DynamoDBWriter):
        return 2
    raise TypeError(f"expected a Consumer, Producer or DynamoDBWriter, got {type(obj).__name__}")


def _array(pointers: List[int]) -> Any:
    return (ctypes.c_void_p * len(pointers))(*pointers) if pointers else None


def render(*objects: Any) -> str:
    """The Prometheus text of ``objects`` (consumers, producers, writers),
    each metric family once. Objects already freed are left out."""
    groups: List[List[int]] = [[], [], []]
    kinds = [_kind(obj) for obj in objects]
    for kind, obj in zip(kinds, objects):
        ptr = obj._handle.ptr
        if ptr:
            groups[kind].append(ptr)
    out = ctypes.c_void_p()
    _native.lib.kcheck_metrics_render(
        _array(groups[0]),
        len(groups[0]),
        _array(groups[1]),
        len(groups[1]),
        _array(groups[2]),
        len(groups[2]),
        ctypes.byref(out),
    )
    return _native.take_string(out.value)


class KcheckCollector:
    """A ``prometheus_client`` collector of kcheck objects: each scrape
    renders them (:func:`render`) and yields the parsed metric families.

    ``describe()`` yields nothing, so registering never scrapes early and
    names are not checked against other collectors.
    """

    def __init__(self, *objects: Any) -> None:
        self._lock = threading.Lock()
        self._objects: "List[weakref.ReferenceType[Any]]" = []
        for obj in objects:
            self.add(obj)

    def add(self, obj: Any) -> "KcheckCollector":
        """Adds a Consumer, Producer or DynamoDBWriter (held weakly)."""
        _kind(obj)
        with self._lock:
            self._objects.append(weakref.ref(obj))
        return self

    def _alive(self) -> List[Any]:
        with self._lock:
            alive = [(ref, ref()) for ref in self._objects]
            self._objects = [ref for ref, obj in alive if obj is not None]
        return [obj for _, obj in alive if obj is not None]

    def render(self) -> str:
        """The text of every object still alive."""
        return render(*self._alive())

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.parser import text_string_to_metric_families

        yield from text_string_to_metric_families(self.render())
