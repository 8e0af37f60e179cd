"""kcheck.Producer against the Kinesis emulator: records put are read back
by kcheck's Consumer, flush and close semantics, errors, use after close."""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List

import pytest

from conftest import FAST_CONSUMER, Kinesis, unique

import kcheck
from kcheck import (
    Consumer,
    InvalidArgumentError,
    InvalidConfigError,
    Producer,
    ProducerClosedError,
    ServiceError,
)


def producer_for(emulators: Any, stream: str, **options: Any) -> Producer:
    options = {"buffer_time": 0.05, **options}
    return Producer(stream, endpoint_url=emulators.kinesis, **options)


def read_back(emulators: Any, stream: str, count: int) -> List[kcheck.Record]:
    records: List[kcheck.Record] = []
    with Consumer(stream, endpoint_url=emulators.kinesis, idle_timeout=2, **FAST_CONSUMER) as consumer:
        for record in consumer:
            records.append(record)
            if len(records) == count:
                break
    return records


def test_records_put_are_read_back_by_the_consumer(emulators: Any, make_stream: Any) -> None:
    stream = make_stream(2)
    with producer_for(emulators, stream) as producer:
        tickets = [producer.put(f"item-{n}", partition_key=f"key-{n % 3}") for n in range(30)]
        assert tickets == list(range(30))
        producer.put(b"\x00raw\xffbytes", partition_key="bytes-key")
        producer.put("no key given")
        producer.flush()
        assert producer.record_status(0) == "ACCEPTED"
        stats = producer.stats()
        assert stats["records_put"] == 32
        assert stats["records_sent"] == 32
        assert stats["queue_depth"] == 0
        assert stats["shards"] == 2
        assert producer.take_failures() == []
    records = read_back(emulators, stream, 32)
    by_key: Dict[str, List[bytes]] = {}
    for record in records:
        by_key.setdefault(record.partition_key, []).append(record.data)
    assert by_key["key-0"] == [f"item-{n}".encode() for n in range(0, 30, 3)]
    assert by_key["bytes-key"] == [b"\x00raw\xffbytes"]
    generated = [key for key in by_key if not key.startswith(("key-", "bytes-"))]
    assert len(generated) == 1 and len(generated[0]) == 36  # a UUID
    assert by_key[generated[0]] == [b"no key given"]


def test_json_and_callable_processors(emulators: Any, stream: str) -> None:
    with producer_for(emulators, stream, processor="json") as producer:
        producer.put({"id": 1, "name": "one"}, partition_key="k")
    with producer_for(emulators, stream, processor=lambda item: f"<{item}>") as producer:
        producer.put(7, partition_key="k")
    records = read_back(emulators, stream, 2)
    assert json.loads(records[0].data) == {"id": 1, "name": "one"}
    assert records[1].data == b"<7>"
    with producer_for(emulators, stream) as producer:
        with pytest.raises(TypeError, match="bytes or str"):
            producer.put({"not": "bytes"})
    with pytest.raises(InvalidConfigError, match="processor"):
        producer_for(emulators, stream, processor="msgpack")


def test_flush_waits_until_records_are_stored(emulators: Any, kinesis: Kinesis, stream: str) -> None:
    # A buffer time far beyond the test: only flush sends.
    producer = producer_for(emulators, stream, buffer_time=600)
    try:
        producer.flush()  # nothing to wait for
        for n in range(5):
            producer.put(f"first-{n}", partition_key="k")
        assert producer.record_status(4) == "PENDING"
        started = time.monotonic()
        producer.flush(timeout=30)
        assert time.monotonic() - started < 30
        assert producer.record_status(4) == "ACCEPTED"
        shard = kinesis.shards(stream)[0]["ShardId"]
        iterator = kinesis.call(
            "GetShardIterator", {"StreamName": stream, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}
        )["ShardIterator"]
        stored = kinesis.call("GetRecords", {"ShardIterator": iterator})["Records"]
        assert len(stored) == 5, "flush returned before the records were stored"
    finally:
        producer.close()


def test_failed_records_are_named_by_flush(emulators: Any, kinesis: Kinesis, stream: str) -> None:
    with producer_for(emulators, stream) as producer:
        producer.put("before", partition_key="k")
        producer.flush()
        kinesis.call("DeleteStream", {"StreamName": stream})
        for n in range(3):
            producer.put(f"after-{n}", partition_key="k")
        with pytest.raises(ServiceError, match="3 records failed") as caught:
            producer.flush(timeout=30)
        assert "tickets 1, 2, 3" in str(caught.value)
        assert producer.record_status(2) == "FAILED"
        failures = producer.take_failures()
        assert [f["ticket"] for f in failures] == [1, 2, 3]
        assert failures[0]["data"] == b"after-0"
        assert failures[0]["partition_key"] == "k"
        assert failures[0]["status"] == "KCHECK_STATUS_SERVICE_ERROR"
        assert producer.take_failures() == []


def test_bad_partition_keys_and_options_are_clear_errors(emulators: Any, stream: str) -> None:
    with producer_for(emulators, stream) as producer:
        with pytest.raises(InvalidArgumentError, match="partition key must be 1 to 256 characters"):
            producer.put(b"x", partition_key="")
        with pytest.raises(InvalidArgumentError, match="partition key"):
            producer.put(b"x", partition_key="k" * 257)
        with pytest.raises(InvalidArgumentError, match="NUL"):
            producer.put(b"x", partition_key="a\0b")
        with pytest.raises(InvalidArgumentError, match="explicit hash key"):
            producer.put(b"x", partition_key="k", explicit_hash_key="-1")
        assert producer.put(b"ok", partition_key="k") == 0  # nothing was queued before
    with pytest.raises(InvalidConfigError, match="batch_size"):
        producer_for(emulators, stream, batch_size=501)
    with pytest.raises(InvalidConfigError, match="put_rate_limit_per_shard"):
        producer_for(emulators, stream, put_rate_limit_per_shard=0)
    with pytest.raises(ServiceError, match="ResourceNotFound"):
        producer_for(emulators, unique("missing"))



def test_shard_refresh_interval_rereads_the_shard_map(emulators: Any, stream: str) -> None:
    with pytest.raises(InvalidConfigError, match="shard_refresh_interval"):
        producer_for(emulators, stream, shard_refresh_interval=0)
    with pytest.raises(InvalidConfigError, match="shard_refresh_interval"):
        producer_for(emulators, stream, shard_refresh_interval=-1)
    with pytest.raises(TypeError, match="shard_refresh_interval"):
        producer_for(emulators, stream, shard_refresh_interval="1")
    with producer_for(emulators, stream, shard_refresh_interval=0.1) as producer:
        producer.put(b"x", partition_key="k")
        time.sleep(0.35)
        producer.flush()
        assert producer.stats()["shard_map_refreshes"] >= 2
    assert read_back(emulators, stream, 1)[0].data == b"x"

def test_context_manager_closes_and_use_after_close_raises(emulators: Any, stream: str) -> None:
    with producer_for(emulators, stream, buffer_time=600) as producer:
        producer.put(b"sent at close", partition_key="k")
    assert producer.closed
    assert read_back(emulators, stream, 1)[0].data == b"sent at close"
    with pytest.raises(ProducerClosedError, match="closed"):
        producer.put(b"late", partition_key="k")
    with pytest.raises(ProducerClosedError):
        producer.flush()
    with pytest.raises(ProducerClosedError):
        producer.stats()
    with pytest.raises(ProducerClosedError):
        with producer:
            pass
    producer.close()  # idempotent


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_cannot_use_the_parents_producer(emulators: Any, stream: str, tmp_path: Any) -> None:
    from test_fork_threads_signals import run_child

    child_findings = tmp_path / "child.json"
    findings = run_child(
        emulators,
        f"""
        from kcheck import Producer
        producer = Producer({stream!r}, endpoint_url=KINESIS, buffer_time=0.05)
        producer.put(b"parent-0", partition_key="k")
        pid = os.fork()
        if pid == 0:
            outcomes = {{
                "put": refused(lambda: producer.put(b"child", partition_key="k")),
                "flush": refused(producer.flush),
                "stats": refused(producer.stats),
                "take_failures": refused(producer.take_failures),
            }}
            producer.close()  # drops the copy only
            outcomes["after_close"] = refused(lambda: producer.put(b"child", partition_key="k"))
            with open({str(child_findings)!r}, "w") as out:
                json.dump(outcomes, out)
            sys.exit(0)
        child_exit = wait_for(pid)
        producer.put(b"parent-1", partition_key="k")
        producer.close()
        with open({str(child_findings)!r}) as found:
            child = json.load(found)
        print(json.dumps({{"child_exit": child_exit, "child": child}}))
        """,
    )
    assert findings["child_exit"] == 0
    assert findings["child"] == {
        name: "ForkError" for name in ("put", "flush", "stats", "take_failures", "after_close")
    }
    assert [record.data for record in read_back(emulators, stream, 2)] == [b"parent-0", b"parent-1"]
