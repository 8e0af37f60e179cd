"""Errors: the exception hierarchy, bad parameters, missing resources."""

from __future__ import annotations

import pickle

import pytest

from conftest import FAST_LEASES, unique

import kcheck
from kcheck import errors


def test_hierarchy_and_attributes() -> None:
    expectations = {
        kcheck.InvalidArgumentError: (1, ValueError),
        kcheck.InvalidUtf8Error: (2, ValueError),
        kcheck.KcheckTimeoutError: (3, TimeoutError),
        kcheck.ConsumerClosedError: (4, kcheck.KcheckError),
        kcheck.InvalidConfigError: (6, ValueError),
        kcheck.LeaseLostError: (7, kcheck.KcheckError),
        kcheck.ServiceError: (8, kcheck.KcheckError),
        kcheck.TransportError: (9, ConnectionError),
        kcheck.CredentialsError: (10, kcheck.KcheckError),
        kcheck.MalformedResponseError: (11, kcheck.KcheckError),
        kcheck.InternalError: (12, kcheck.KcheckError),
        kcheck.PanicError: (13, kcheck.InternalError),
        kcheck.PoisonedError: (14, kcheck.InternalError),
        kcheck.ForkError: (15, kcheck.KcheckError),
    }
    for cls, (status, base) in expectations.items():
        error = errors.error_for_status(status, "the message", "SomeAwsException")
        assert type(error) is cls
        assert isinstance(error, kcheck.KcheckError) and isinstance(error, base)
        assert error.status == status
        assert error.status_name == kcheck._native.status_name(status)
        assert str(error) == "the message" and error.message == "the message"
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is cls and copy.status == status and str(copy) == "the message"
        assert error.code == copy.code == "SomeAwsException"
    unknown = errors.error_for_status(99, "future status")
    assert type(unknown) is kcheck.KcheckError and unknown.status == 99
    assert unknown.status_name == "KCHECK_STATUS_UNKNOWN"
    # OSError subclasses keep the message whole (no errno parsing).
    transport = kcheck.TransportError("connection refused")
    assert str(transport) == "connection refused" and transport.errno is None


def test_invalid_lease_timing_names_the_parameters() -> None:
    with pytest.raises(kcheck.InvalidConfigError) as caught:
        kcheck.DynamoDBCheckPointer(name="app", session_timeout=10, heartbeat_frequency=15)
    assert "heartbeat_frequency" in str(caught.value) and "session_timeout" in str(caught.value)
    assert caught.value.status_name == "KCHECK_STATUS_INVALID_CONFIG"
    with pytest.raises(kcheck.InvalidConfigError, match="heartbeat_frequency"):
        kcheck.MemoryCheckPointer(session_timeout=1, heartbeat_frequency=1)
    with pytest.raises(kcheck.InvalidConfigError, match="positive"):
        kcheck.MemoryCheckPointer(heartbeat_frequency=0)


def test_bad_checkpointer_parameters() -> None:
    with pytest.raises(kcheck.InvalidConfigError, match="name is empty"):
        kcheck.DynamoDBCheckPointer(name="")
    with pytest.raises(kcheck.InvalidConfigError, match="table_name"):
        kcheck.DynamoDBCheckPointer(name="app", table_name="x")
    with pytest.raises(kcheck.InvalidConfigError, match="session_timeout"):
        kcheck.DynamoDBCheckPointer(name="app", session_timeout=-1)
    with pytest.raises(kcheck.InvalidConfigError, match="ttl_hours"):
        kcheck.DynamoDBCheckPointer(name="app", ttl_hours=-1)
    with pytest.raises(TypeError, match="session_timeout"):
        kcheck.DynamoDBCheckPointer(name="app", session_timeout="60")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="auto_checkpoint"):
        kcheck.DynamoDBCheckPointer(name="app", auto_checkpoint="no")  # type: ignore[arg-type]


def test_embedded_nul_is_refused_before_the_call() -> None:
    with pytest.raises(kcheck.InvalidArgumentError, match="name must not contain a NUL"):
        kcheck.DynamoDBCheckPointer(name="a\0b")
    with pytest.raises(ValueError, match="stream_name"):
        kcheck.Consumer("stream\0name")
    with pytest.raises(kcheck.InvalidArgumentError, match="endpoint_url"):
        kcheck.DynamoDBCheckPointer(name="app", endpoint_url="http://\0")
    with pytest.raises(kcheck.InvalidUtf8Error, match="table_name is not valid UTF-8"):
        kcheck.DynamoDBCheckPointer(name="app", table_name="t\udc80")


def test_consumer_options_are_checked_by_the_library() -> None:
    # The library checks options before any request: no emulator needed.
    with pytest.raises(kcheck.InvalidConfigError, match="record_limit must be 1 to 10000, got 0"):
        kcheck.Consumer("s", record_limit=0)
    with pytest.raises(kcheck.InvalidConfigError, match="record_limit must be 1 to 10000, got 20000"):
        kcheck.Consumer("s", record_limit=20000)
    with pytest.raises(kcheck.InvalidConfigError, match="max_queue_size must be at least 1"):
        kcheck.Consumer("s", max_queue_size=0)
    with pytest.raises(kcheck.InvalidConfigError, match="max_shard_consumers must be at least 1"):
        kcheck.Consumer("s", max_shard_consumers=0)
    with pytest.raises(kcheck.InvalidConfigError, match="stream_name is empty"):
        kcheck.Consumer(" ")
    with pytest.raises(kcheck.InvalidConfigError, match=r"idle_poll_max_interval \(1s\) must not be shorter"):
        kcheck.Consumer("s", idle_poll_interval=2, idle_poll_max_interval=1)


def test_consumer_options_checked_in_python() -> None:
    with pytest.raises(kcheck.InvalidConfigError, match="iterator_type"):
        kcheck.Consumer("s", iterator_type="AT_SEQUENCE_NUMBER")
    with pytest.raises(kcheck.InvalidConfigError, match="needs a timestamp"):
        kcheck.Consumer("s", iterator_type="AT_TIMESTAMP")
    with pytest.raises(kcheck.InvalidConfigError, match="timestamp applies only"):
        kcheck.Consumer("s", timestamp=0)
    with pytest.raises(kcheck.InvalidConfigError, match="idle_timeout"):
        kcheck.Consumer("s", idle_timeout=float("nan"))
    with pytest.raises(kcheck.InvalidConfigError, match="record_limit"):
        kcheck.Consumer("s", record_limit=2**32 + 5)  # would wrap around in a uint32_t
    with pytest.raises(TypeError, match="checkpointer"):
        kcheck.Consumer("s", checkpointer=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="record_limit"):
        kcheck.Consumer("s", record_limit=1.5)  # type: ignore[arg-type]


def test_missing_stream_is_a_service_error_naming_it(emulators) -> None:
    name = unique("no-such-stream")
    with pytest.raises(kcheck.ServiceError) as caught:
        kcheck.Consumer(name, endpoint_url=emulators.kinesis)
    assert name in str(caught.value)
    assert "ResourceNotFoundException" in str(caught.value)
    assert caught.value.status == 8
    assert caught.value.code == "ResourceNotFoundException"
    # A failure that is not an AWS answer carries no code.
    with pytest.raises(kcheck.InvalidConfigError) as config_error:
        kcheck.Consumer("s", record_limit=0)
    assert config_error.value.code is None


def test_missing_table_without_create_table_names_it(emulators, stream) -> None:
    group = unique("app")
    checkpointer = kcheck.DynamoDBCheckPointer(name=group, create_table=False, endpoint_url=emulators.dynamodb)
    with pytest.raises(kcheck.KcheckError) as caught:
        kcheck.Consumer(stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis)
    assert f"kinesis-checkpoints-{group}" in str(caught.value)


def test_unreachable_endpoint_is_a_transport_error(stream) -> None:
    # Port 9 (discard) on loopback: nothing listens there.
    with pytest.raises(kcheck.TransportError) as caught:
        kcheck.Consumer(stream, endpoint_url="http://127.0.0.1:9")
    assert isinstance(caught.value, ConnectionError)


def test_closed_checkpointer_cannot_build_consumers(emulators, stream) -> None:
    checkpointer = kcheck.MemoryCheckPointer(**FAST_LEASES)
    checkpointer.close()
    checkpointer.close()  # idempotent
    assert checkpointer.closed
    with pytest.raises(kcheck.InvalidConfigError, match="closed"):
        kcheck.Consumer(stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis)
