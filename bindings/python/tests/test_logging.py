"""The bridge from kcheck's log records to Python's logging."""

from __future__ import annotations

import logging

from conftest import FAST_CONSUMER, FAST_LEASES, payloads, unique

import kcheck
from kcheck import _logging, _native


def test_lease_and_lifecycle_records_reach_python_logging(emulators, make_stream, caplog) -> None:
    caplog.set_level(logging.INFO, logger="kcheck")
    stream = make_stream(shards=2, records=payloads(10))
    checkpointer = kcheck.DynamoDBCheckPointer(name=unique("logged"), endpoint_url=emulators.dynamodb, **FAST_LEASES)
    with kcheck.Consumer(stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis, idle_timeout=1, **FAST_CONSUMER) as consumer:
        assert len(list(consumer)) == 10
    records = [r for r in caplog.records if r.name.startswith("kcheck")]
    messages = [(r.name, r.levelno, r.getMessage()) for r in records]
    assert ("kcheck.consumer", logging.INFO, f"consumer {consumer.owner_id} starting on {stream}") in messages
    taken = [m for m in messages if m[0] == "kcheck.consumer.coordinator" and "lease taken: shard" in m[2]]
    assert len(taken) == 2, messages
    assert any(name == "kcheck.consumer.keeper" and "released" in text for name, _, text in messages), messages
    assert not [name for name, _, _ in messages if name.startswith("kcheck.kcheck")]
    # Records from the library's threads, not only the caller's.
    assert {r.threadName for r in records} - {"MainThread"}


def test_level_follows_the_kcheck_logger(emulators, make_stream, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="kcheck")
    stream = make_stream(records=payloads(2))
    with kcheck.Consumer(stream, endpoint_url=emulators.kinesis, idle_timeout=0.5) as consumer:
        list(consumer)
    assert _logging._installed_level == _native.LOG_LEVEL_ERROR
    assert not [r for r in caplog.records if r.name.startswith("kcheck") and r.levelno < logging.ERROR]
    caplog.set_level(logging.DEBUG, logger="kcheck")
    kcheck.refresh_log_level()
    assert _logging._installed_level == _native.LOG_LEVEL_DEBUG


def test_level_mapping() -> None:
    assert _logging._native_level(1) == _native.LOG_LEVEL_TRACE
    assert _logging._native_level(kcheck.TRACE) == _native.LOG_LEVEL_TRACE
    assert _logging._native_level(logging.DEBUG) == _native.LOG_LEVEL_DEBUG
    assert _logging._native_level(logging.INFO) == _native.LOG_LEVEL_INFO
    assert _logging._native_level(logging.WARNING) == _native.LOG_LEVEL_WARN
    assert _logging._native_level(logging.ERROR) == _native.LOG_LEVEL_ERROR
    assert _logging._native_level(logging.CRITICAL) == _native.LOG_LEVEL_ERROR
    assert _logging._native_level(logging.CRITICAL + 1) == _native.LOG_LEVEL_OFF


def test_a_failing_handler_never_reaches_the_library(emulators, make_stream, caplog) -> None:
    class Exploding(logging.Handler):
        calls = 0

        def emit(self, record: logging.LogRecord) -> None:
            Exploding.calls += 1
            raise RuntimeError("handler bug")

        def handleError(self, record: logging.LogRecord) -> None:
            raise  # re-raise instead of printing: the bridge must swallow it

    handler = Exploding()
    logger = logging.getLogger("kcheck")
    logger.addHandler(handler)
    caplog.set_level(logging.INFO, logger="kcheck")
    try:
        stream = make_stream(records=payloads(20))
        with kcheck.Consumer(stream, endpoint_url=emulators.kinesis, idle_timeout=0.5) as consumer:
            assert len(list(consumer)) == 20
    finally:
        logger.removeHandler(handler)
    assert Exploding.calls > 0


def test_foreign_targets_are_put_under_kcheck() -> None:
    assert _logging._logger_for(b"kcheck::consumer::keeper").name == "kcheck.consumer.keeper"
    assert _logging._logger_for(b"kcheck").name == "kcheck"
    assert _logging._logger_for(b"ureq::unversioned::transport").name == "kcheck.ureq.unversioned.transport"
    assert _logging._logger_for(b"kcheckish").name == "kcheck.kcheckish"
