"""kcheck.Pipeline: records of a consumer become items of a writer, and
only what is written is checkpointed (against the emulators)."""

from __future__ import annotations

import re
import signal
import threading
import time
from typing import Any, Dict, List

import pytest

from conftest import FAST_CONSUMER, Kinesis, payloads, unique
from test_abi import _header_text
from test_consumer import dynamodb as dynamodb_checkpointer
from test_writer import DynamoDB

import kcheck
from kcheck import (
    Consumer,
    Delete,
    DynamoDBWriter,
    InvalidArgumentError,
    InvalidConfigError,
    KcheckError,
    Pipeline,
    Put,
    Record,
    WriterClosedError,
)
from kcheck import _native


@pytest.fixture(scope="module")
def dynamodb(emulators: Any) -> DynamoDB:
    return DynamoDB(emulators.dynamodb)


def manual_consumer(emulators: Any, stream: str, group: str) -> Consumer:
    return Consumer(
        stream,
        checkpointer=dynamodb_checkpointer(emulators, group, auto_checkpoint=False),
        endpoint_url=emulators.kinesis,
        **FAST_CONSUMER,
    )


def writer_for(emulators: Any, table: str, **options: Any) -> DynamoDBWriter:
    return DynamoDBWriter(table, endpoint_url=emulators.dynamodb, buffer_time=0.02, threads=2, **options)


def unchecked(emulators: Any, stream: str, group: str) -> List[bytes]:
    """What a restarted consumer of the group reads: what was not checkpointed."""
    checkpointer = dynamodb_checkpointer(emulators, group, auto_checkpoint=False)
    with Consumer(
        stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis, idle_timeout=2, **FAST_CONSUMER
    ) as consumer:
        return [record.data for record in consumer]


def test_stats_struct_matches_the_header() -> None:
    match = re.search(r"typedef struct \{([^{}]*)\} kcheck_pipeline_stats;", _header_text())
    assert match
    assert re.findall(r"(\w+);", match.group(1)) == [name for name, _ in _native.PipelineStats._fields_]


def test_every_records_item_lands_in_its_shards_table(emulators: Any, kinesis: Kinesis, dynamodb: DynamoDB) -> None:
    stream = unique("py-stream")
    kinesis.create_stream(stream, 2)
    shards = [shard["ShardId"] for shard in kinesis.shards(stream)]
    tables = {shard: dynamodb.create_table() for shard in shards}
    written = kinesis.put_records(stream, payloads(40))
    shard_of = {data: result["ShardId"] for data, result in zip(payloads(40), written)}
    assert set(shard_of.values()) == set(shards), "the records spread over both shards"
    group = unique("pipeline")
    default = tables[shards[0]]
    seen: List[Record] = []

    def transform(record: Record) -> Any:
        seen.append(record)
        item = {"pk": record.data.decode(), "sequence": record.sequence_number, "shard": record.shard_id}
        table = tables[record.shard_id]
        temporary = {"pk": f"temporary-{record.data.decode()}"}
        put = item if table == default else Put(item, table=table)  # a dict goes to the default table
        return [put, Put(temporary, table=table), Delete(temporary, table=table)]

    consumer = manual_consumer(emulators, stream, group)
    with writer_for(emulators, default, tables={t: None for t in tables.values() if t != default}) as writer:
        pipeline = Pipeline(consumer, writer, checkpoint_interval=0.05)
        stats = pipeline.run(transform, stop=lambda: len(seen) >= 40)
    consumer.close()

    assert all(type(record) is Record for record in seen)
    assert sorted(record.data for record in seen) == sorted(payloads(40))
    assert stats["records"] == 40 and stats["writes"] == 120, stats
    assert stats["checkpoints"] >= 2 and stats["records_pending"] == 0, stats
    for shard, table in tables.items():
        items = dynamodb.scan(table)
        expected = sorted(data.decode() for data, s in shard_of.items() if s == shard)
        assert sorted(item["pk"] for item in items) == expected, "no temporary item remains"
        assert all(item["shard"] == shard for item in items)
    # Everything read was checkpointed.
    assert unchecked(emulators, stream, group) == []


def test_an_exception_of_the_transform_stops_the_run_and_is_raised(
    emulators: Any, make_stream: Any, dynamodb: DynamoDB
) -> None:
    stream = make_stream(shards=1, records=payloads(10))
    table = dynamodb.create_table()
    group = unique("pipeline")
    failure = ValueError("no such customer")
    seen: List[bytes] = []

    def transform(record: Record) -> Any:
        seen.append(record.data)
        if record.data == payloads(10)[5]:
            raise failure
        return [{"pk": record.data.decode()}]

    consumer = manual_consumer(emulators, stream, group)
    with writer_for(emulators, table) as writer:
        pipeline = Pipeline(consumer, writer, checkpoint_interval=0.01)
        with pytest.raises(ValueError) as raised:
            pipeline.run(transform)
        assert raised.value is failure
        assert seen == payloads(10)[:6]
        # Records read but never transformed would be skipped by a new run.
        with pytest.raises(KcheckError, match="earlier run of this pipeline failed"):
            pipeline.run(transform)
    consumer.close()
    stored = {item["pk"] for item in dynamodb.scan(table)}
    assert payloads(10)[5].decode() not in stored
    assert stored <= {p.decode() for p in payloads(10)[:5]}
    # Nothing from the failing record on was checkpointed.
    again = unchecked(emulators, stream, group)
    assert again[-5:] == payloads(10)[5:], again


@pytest.mark.parametrize("how", ["raised", "signal"])
def test_keyboard_interrupt_stops_the_run_and_is_raised(
    emulators: Any, make_stream: Any, dynamodb: DynamoDB, how: str
) -> None:
    stream = make_stream(shards=1, records=payloads(10))
    table = dynamodb.create_table()
    seen: List[bytes] = []
    handler = signal.getsignal(signal.SIGINT)

    def transform(record: Record) -> Any:
        seen.append(record.data)
        if len(seen) == 3:
            if how == "raised":
                raise KeyboardInterrupt
            signal.raise_signal(signal.SIGINT)  # Ctrl-C
        return [{"pk": record.data.decode()}]

    consumer = manual_consumer(emulators, stream, unique("pipeline"))
    with writer_for(emulators, table) as writer:
        with pytest.raises(KeyboardInterrupt):
            Pipeline(consumer, writer).run(transform)
    consumer.close()
    assert signal.getsignal(signal.SIGINT) is handler
    # Ctrl-C during the third record stops the run before the fourth.
    assert len(seen) == 3 if how == "raised" else len(seen) in (3, 4), seen


def test_stop_ends_the_run_with_the_writes_done(emulators: Any, make_stream: Any, dynamodb: DynamoDB) -> None:
    stream = make_stream(shards=1)
    table = dynamodb.create_table()
    consumer = manual_consumer(emulators, stream, unique("pipeline"))
    stop = threading.Event()
    with writer_for(emulators, table) as writer:
        pipeline = Pipeline(consumer, writer)
        # Nothing to read: an Event set by another thread ends the wait.
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        assert pipeline.run(lambda record: [], stop=stop)["records"] == 0
        assert time.monotonic() - started < 5

        Kinesis(emulators.kinesis).put_records(stream, payloads(20))
        stop.clear()
        seen: List[Record] = []

        def transform(record: Record) -> Any:
            seen.append(record)
            if len(seen) == 20:
                stop.set()
            yield {"pk": record.data.decode(), "n": len(seen)}

        stats = pipeline.run(transform, stop=stop)
        assert stats["records"] == 20 and stats["writes"] == 20, stats
        assert stats["records_pending"] == 0, stats
        # Written before run returned.
        assert sorted(item["pk"] for item in dynamodb.scan(table)) == [p.decode() for p in payloads(20)]
    consumer.close()


def test_a_consumer_that_checkpoints_automatically_is_refused(emulators: Any, stream: str, dynamodb: DynamoDB) -> None:
    table = dynamodb.create_table()
    with writer_for(emulators, table) as writer:
        with Consumer(stream, endpoint_url=emulators.kinesis, **FAST_CONSUMER) as automatic:
            with pytest.raises(InvalidConfigError, match="auto_checkpoint=False"):
                Pipeline(automatic, writer)
            # The library refuses it too.
            automatic._auto_checkpoint = False
            with pytest.raises(InvalidConfigError, match="auto_checkpoint"):
                Pipeline(automatic, writer).run(lambda record: [], stop=lambda: True)
        with pytest.raises(TypeError):
            Pipeline(writer, writer)  # type: ignore[arg-type]


def test_writes_a_transform_cannot_make_are_raised(emulators: Any, make_stream: Any, dynamodb: DynamoDB) -> None:
    table = dynamodb.create_table()
    cases: Dict[str, Any] = {
        "not a write": (lambda record: [42], TypeError),
        "None": (lambda record: None, TypeError),
        "no number": (lambda record: [Put({"pk": "a", "n": float("nan")})], InvalidArgumentError),
        "bad table name": (lambda record: [Put({"pk": "a"}, table="a\0b")], InvalidArgumentError),
    }
    for name, (transform, error) in cases.items():
        stream = make_stream(shards=1, records=payloads(1))
        consumer = manual_consumer(emulators, stream, unique("pipeline"))
        with writer_for(emulators, table) as writer:
            with pytest.raises(error):
                Pipeline(consumer, writer).run(transform)
        consumer.close()
    assert dynamodb.scan(table) == []

    # A writer closed before the run.
    stream = make_stream(shards=1)
    consumer = manual_consumer(emulators, stream, unique("pipeline"))
    writer = writer_for(emulators, table)
    pipeline = Pipeline(consumer, writer)
    writer.close()
    with pytest.raises(WriterClosedError):
        pipeline.run(lambda record: [])
    consumer.close()


def test_put_and_delete_are_exported() -> None:
    assert kcheck.Put({"pk": "a"}, table="t") == Put({"pk": "a"}, "t")
    assert Delete({"pk": "a"}) != Delete({"pk": "a"}, "t")
    assert "Pipeline" in kcheck.__all__ and "Put" in kcheck.__all__ and "Delete" in kcheck.__all__
