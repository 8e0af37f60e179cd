"""Prometheus text of consumers, producers and writers (kcheck.metrics),
the prometheus_client collector, and the consumer's ``on_event`` hook."""

from __future__ import annotations

import re
import threading
from typing import Any, Dict, List

import pytest

from conftest import FAST_CONSUMER, payloads, wait_until

from kcheck import Consumer, ConsumerEvent, MemoryCheckPointer, Producer
from kcheck.metrics import KcheckCollector, render


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels include ``labels``."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line[len(name) : line.rindex("}") + 1]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {name} {labels} in\n{text}")


def test_render_of_nothing_is_empty() -> None:
    assert render() == ""
    with pytest.raises(TypeError):
        render(object())


def test_consumer_and_producer_figures(emulators: Any, make_stream: Any) -> None:
    stream = make_stream(1, payloads(7))
    events: List[ConsumerEvent] = []
    lock = threading.Lock()

    def on_event(event: ConsumerEvent) -> None:
        with lock:
            events.append(event)

    with Consumer(
        stream,
        checkpointer=MemoryCheckPointer(),
        endpoint_url=emulators.kinesis,
        on_event=on_event,
        **FAST_CONSUMER,
    ) as consumer:
        records = [next(consumer) for _ in range(7)]
        produced = make_stream(1)
        with Producer(produced, endpoint_url=emulators.kinesis) as producer:
            producer.put(b"x" * 10, partition_key="k")
            producer.flush()
            text = render(consumer, producer)
        labels: Dict[str, str] = {"group": "memory", "stream": stream, "owner": consumer.owner_id}
        assert sample(text, "kcheck_consumer_records_total", **labels) == 7
        assert sample(text, "kcheck_lease_gains_total", **labels) == 1
        assert sample(text, "kcheck_lease_losses_total", **labels) == 0
        assert sample(text, "kcheck_shard_millis_behind_latest", stream=stream) == 0
        assert sample(text, "kcheck_producer_records_sent_total", stream=produced) == 1
        assert text.count("# TYPE kcheck_consumer_records_total counter\n") == 1
        assert wait_until(lambda: events, timeout=10)  # told on the event thread
        with lock:
            assert [(e.kind, e.group, e.stream) for e in events] == [("lease_gained", "memory", stream)]
            assert events[0].shard_id.startswith("shardId-")
    count = len(events)
    assert render(consumer) != ""  # closed, not freed: its final figures
    assert len(events) == count  # nothing after close


def test_a_failing_event_callback_is_logged_not_raised(
    emulators: Any, make_stream: Any, caplog: Any
) -> None:
    stream = make_stream(1, payloads(1))

    def on_event(event: ConsumerEvent) -> None:
        raise RuntimeError("boom")

    with Consumer(stream, endpoint_url=emulators.kinesis, on_event=on_event, **FAST_CONSUMER) as consumer:
        assert wait_until(lambda: "on_event callback failed" in caplog.text, timeout=10)
        assert consumer.stats()["lease_gains"] == 1
    with pytest.raises(TypeError):
        Consumer(stream, endpoint_url=emulators.kinesis, on_event=42)


def test_prometheus_client_collector(emulators: Any, make_stream: Any) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    stream = make_stream(1, payloads(3))
    registry = prometheus_client.CollectorRegistry()
    with Consumer(stream, endpoint_url=emulators.kinesis, **FAST_CONSUMER) as consumer:
        records = [next(consumer) for _ in range(3)]
        collector = KcheckCollector(consumer)
        registry.register(collector)
        labels = {"group": "memory", "stream": stream, "owner": consumer.owner_id}
        assert registry.get_sample_value("kcheck_consumer_records_total", labels) == 3
        assert registry.get_sample_value("kcheck_lease_gains_total", labels) == 1
        exposed = prometheus_client.generate_latest(registry).decode()
        assert "# TYPE kcheck_consumer_records_total counter" in exposed
        assert sample(exposed, "kcheck_consumer_shards", **labels) == 1
    del consumer, records
    import gc

    gc.collect()
    assert collector.render() == ""  # a collected consumer drops out
