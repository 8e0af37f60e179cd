"""RedisCheckPointer: consumers sharing leases through a real redis-server."""

from __future__ import annotations

import os
from typing import Any

import pytest

from conftest import FAST_CONSUMER, FAST_LEASES, RedisServer, payloads

from kcheck import Consumer, InvalidConfigError, RedisCheckPointer


def redis_checkpointer(name: str, **options: Any) -> RedisCheckPointer:
    try:
        return RedisCheckPointer(name, **{**FAST_LEASES, **options})
    except InvalidConfigError as error:
        if "built without Redis support" in str(error):
            pytest.skip("the library was built without the redis feature")
        raise


def test_a_consumer_checkpoints_in_redis_and_the_next_one_resumes(emulators, make_stream, kinesis, redis_server) -> None:
    expected = payloads(60)
    stream = make_stream(shards=2, records=expected)
    options = {"endpoint_url": emulators.kinesis, "idle_timeout": 2, **FAST_CONSUMER}
    checkpointer = redis_checkpointer("app", url=redis_server.url)
    with Consumer(stream, checkpointer=checkpointer, **options) as consumer:
        got = [record.data for record in consumer]
    assert sorted(got) == sorted(expected)
    assert "redis://" not in repr(checkpointer)
    # The next consumer of the group starts after the checkpoints.
    more = payloads(10, prefix="more")
    kinesis.put_records(stream, more)
    with Consumer(stream, checkpointer=redis_checkpointer("app", url=redis_server.url), **options) as consumer:
        got = [record.data for record in consumer]
    assert sorted(got) == sorted(more)


def test_the_server_comes_from_the_environment_and_the_password_never_shows(monkeypatch) -> None:
    server = RedisServer(["--requirepass", "s3cr3t-pw"])
    try:
        monkeypatch.setenv("REDIS_HOST", "127.0.0.1")
        monkeypatch.setenv("REDIS_PORT", str(server.port))
        monkeypatch.setenv("REDIS_PASSWORD", "s3cr3t-pw")
        monkeypatch.setenv("REDIS_DB", "1")
        assert os.environ["REDIS_PORT"] == str(server.port)
        redis_checkpointer("app")  # reads the environment when created
        with pytest.raises(InvalidConfigError) as error:
            redis_checkpointer("a:b", url=f"redis://:s3cr3t-pw@127.0.0.1:{server.port}/0")
        assert "s3cr3t-pw" not in str(error.value)
    finally:
        server.stop()
