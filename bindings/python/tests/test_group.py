"""kcheck.ConsumerGroup: a group's leases, exported and imported checkpoints,
resets, snapshots and restores (against the emulators)."""

from __future__ import annotations

import json
from typing import Any, List

import pytest

from conftest import FAST_CONSUMER, Kinesis, payloads, unique
from test_consumer import dynamodb as dynamodb_checkpointer

import kcheck
from kcheck import (
    Consumer,
    ConsumerGroup,
    InvalidArgumentError,
    MemoryCheckPointer,
    Record,
    ServiceError,
)


def manual_consumer(emulators: Any, stream: str, group: str, **options: Any) -> Consumer:
    return Consumer(
        stream,
        checkpointer=dynamodb_checkpointer(emulators, group, auto_checkpoint=False),
        endpoint_url=emulators.kinesis,
        **{**FAST_CONSUMER, **options},
    )


def take(consumer: Consumer, count: int) -> List[Record]:
    records: List[Record] = []
    for record in consumer:
        records.append(record)
        if len(records) == count:
            break
    assert len(records) == count, f"{len(records)} of {count} records"
    return records


def process(emulators: Any, stream: str, group: str, count: int) -> List[Record]:
    """A run of the job: reads `count` records, checkpoints them, stops."""
    with manual_consumer(emulators, stream, group, idle_timeout=10) as consumer:
        records = take(consumer, count)
        consumer.checkpoint(records[-1])
    return records


def unprocessed(emulators: Any, stream: str, group: str) -> List[bytes]:
    """What a restarted job reads: everything after the group's checkpoints."""
    with manual_consumer(emulators, stream, group, idle_timeout=2) as consumer:
        return [record.data for record in consumer]


def group_of(emulators: Any, name: str) -> ConsumerGroup:
    return ConsumerGroup(
        dynamodb_checkpointer(emulators, name, auto_checkpoint=False),
        kinesis_endpoint_url=emulators.kinesis,
        region_name="us-east-1",
    )


def test_exported_checkpoints_seed_another_group(emulators: Any, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(30))
    first, second = unique("py-first"), unique("py-second")
    tenth = process(emulators, stream, first, 10)[-1]
    source = group_of(emulators, first)
    (lease,) = source.leases()
    assert lease["stream"] == stream
    assert lease["state"] == "free"
    assert lease["checkpoint"] == f"{tenth.sequence_number}/0"
    exported = source.export()
    assert exported == [
        {"group": first, "stream": stream, "shard": lease["shard"], "sequence": tenth.sequence_number}
    ]

    # The second group's table is created by its first consumer.
    assert unprocessed(emulators, stream, second)[:1] == payloads(1)
    target = group_of(emulators, second)
    (change,) = target.import_checkpoints(exported, force=True)  # its lease is free anyway
    assert change["stream"] == stream
    assert change["after"] == f"{tenth.sequence_number}/0"
    assert change["fenced"] is None
    assert unprocessed(emulators, stream, second) == payloads(30)[10:]

    # JSON lines work too, as `kcheck checkpoints export` writes them.
    lines = "".join(json.dumps(entry) + "\n" for entry in exported)
    (change,) = target.import_checkpoints(lines)
    assert change["before"] == f"{tenth.sequence_number}/0"
    assert target.import_checkpoints([]) == []
    source.close()
    source.close()
    with pytest.raises(Exception, match="closed"):
        source.export()


def test_process_snapshot_process_restore_rereads_exactly_the_unsnapshotted_batch(
    emulators: Any, kinesis: Kinesis, stream: str
) -> None:
    kinesis.put_records(stream, payloads(30))
    name = unique("py-spark")
    group = group_of(emulators, name)
    assert group.snapshots() == []
    first_batch = process(emulators, stream, name, 10)
    info = group.snapshot("batch-1", retention=3600)
    assert info["label"] == "batch-1"
    assert info["checkpoints"] == 1
    assert info["created_at"] > 0
    with pytest.raises(InvalidArgumentError, match="already has a snapshot"):
        group.snapshot("batch-1")

    second_batch = process(emulators, stream, name, 10)
    assert [r.data for r in second_batch] == payloads(30)[10:20]
    assert [s["label"] for s in group.snapshots()] == ["batch-1"]

    (change,) = group.restore("batch-1")
    assert change["before"] == f"{second_batch[-1].sequence_number}/0"
    assert change["after"] == f"{first_batch[-1].sequence_number}/0"
    again = process(emulators, stream, name, 10)
    assert [r.data for r in again] == [r.data for r in second_batch]

    # Another history table, kept apart from the default one.
    history = unique("py-history")
    group.snapshot("other", history_table=history)
    assert [s["label"] for s in group.snapshots(history_table=history)] == ["other"]
    assert [s["label"] for s in group.snapshots()] == ["batch-1"]
    with pytest.raises(InvalidArgumentError, match="no snapshot"):
        group.restore("batch-1", history_table=history)


def test_a_running_group_is_refused_unless_forced(emulators: Any, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(20))
    name = unique("py-live")
    group = group_of(emulators, name)
    consumer = manual_consumer(emulators, stream, name, idle_timeout=10)
    try:
        records = take(consumer, 5)
        consumer.checkpoint(records[-1])
        (lease,) = group.leases()
        assert lease["state"] == "alive"
        assert lease["owner"] == consumer.owner_id
        with pytest.raises(InvalidArgumentError, match="running") as refused:
            group.reset(stream, "trim-horizon")
        assert consumer.owner_id in str(refused.value)
        with pytest.raises(InvalidArgumentError, match="running"):
            group.import_checkpoints(group.export())
        (change,) = group.reset(stream, "trim-horizon", shard=lease["shard"], force=True)
        assert change["fenced"] == consumer.owner_id
        assert change["after"] is None
    finally:
        try:
            consumer.close()
        except Exception:  # fenced: its lease is gone
            pass
    assert unprocessed(emulators, stream, name) == payloads(20)
    # A position older than any record still in the shard is said.
    (change,) = group.reset(stream, "sequence:1", shard=lease["shard"])
    assert "older than the oldest record" in change["note"]


def test_bad_input_raises_before_anything_is_written(emulators: Any, kinesis: Kinesis, stream: str) -> None:
    assert "ConsumerGroup" in kcheck.__all__
    with pytest.raises(InvalidArgumentError, match="DynamoDB"):
        ConsumerGroup(MemoryCheckPointer())  # type: ignore[arg-type]
    name = unique("py-bad")
    group = group_of(emulators, name)
    with pytest.raises(ServiceError, match=f"kinesis-checkpoints-{name}"):
        group.leases()
    line = json.dumps({"group": "g", "stream": stream, "shard": "shardId-000000000000", "sequence": "49"})
    with pytest.raises(InvalidArgumentError, match="line 3"):
        group.import_checkpoints(f"{line}\n\nnot json\n")
    with pytest.raises(InvalidArgumentError, match="unknown field"):
        group.import_checkpoints([{"group": "g", "stream": stream, "shard": "s", "extra": 1}])
    with pytest.raises(InvalidArgumentError, match="appears twice"):
        group.import_checkpoints([json.loads(line), json.loads(line)])
    with pytest.raises(TypeError):
        group.import_checkpoints(json.loads(line))  # one dict, not a list
    with pytest.raises(TypeError):
        group.import_checkpoints([line], force=True)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        group.reset(stream, "latest", force="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="trim-horizon, latest"):
        group.reset(stream, "yesterday")
    kinesis.put_records(stream, payloads(1))
    process(emulators, stream, name, 1)  # creates the table
    with pytest.raises(InvalidArgumentError, match="has no leases"):
        group.reset(unique("py-other-stream"), "latest")
    with pytest.raises(InvalidArgumentError, match="'#'"):
        group.snapshot("a#b")
    with pytest.raises(InvalidArgumentError, match="no snapshot"):
        group.restore("never")
    with pytest.raises(InvalidArgumentError, match="NUL"):
        group.snapshot("a\0b")
    with pytest.raises(Exception, match="retention"):
        group.snapshot("x", retention=-1)


def test_checkpoints_copy_through_the_kcl_layout_and_back(emulators: Any, kinesis: Kinesis, stream: str) -> None:
    from test_writer import DynamoDB

    kinesis.put_records(stream, payloads(10))
    name, moved = unique("py-mover"), unique("py-moved")
    fourth = process(emulators, stream, name, 4)[-1]
    dynamodb = DynamoDB(emulators.dynamodb)
    kcl = unique("py-kcl")
    dynamodb.call(
        "CreateTable",
        {
            "TableName": kcl,
            "AttributeDefinitions": [{"AttributeName": "leaseKey", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "leaseKey", "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        },
    )
    copied = group_of(emulators, name).copy_to("kcl", kcl, stream=stream)
    assert copied["notes"] == []
    (change,) = copied["changes"]
    assert change["after"] == f"{fourth.sequence_number}/0"

    assert unprocessed(emulators, stream, moved)[:1] == payloads(1)  # creates its table
    target = group_of(emulators, moved)
    (change,) = target.copy_from("kcl", kcl, stream=stream, force=True)["changes"]
    assert change["after"] == f"{fourth.sequence_number}/0"
    assert unprocessed(emulators, stream, moved) == payloads(10)[4:]
    with pytest.raises(InvalidArgumentError, match="format"):
        target.copy_from("kcl2", kcl)
    with pytest.raises(InvalidArgumentError, match="one stream"):
        target.copy_from("async-kinesis", kcl)
