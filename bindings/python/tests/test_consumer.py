"""The consumer: records, checkpoints and read-ahead, closing, stats."""

from __future__ import annotations

import copy
import gc
import pickle
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List

import pytest

from conftest import FAST_CONSUMER, FAST_LEASES, Kinesis, kpl_aggregate, payloads, unique, wait_until

import kcheck
from kcheck import Consumer, ConsumerClosedError, DynamoDBCheckPointer, MemoryCheckPointer, Record


def dynamodb(emulators: Any, name: str, auto_checkpoint: bool = True) -> DynamoDBCheckPointer:
    return DynamoDBCheckPointer(
        name=name, auto_checkpoint=auto_checkpoint, endpoint_url=emulators.dynamodb, **FAST_LEASES
    )


def consumer_for(emulators: Any, stream: str, checkpointer: Any = None, **options: Any) -> Consumer:
    options = {"idle_timeout": 1, **FAST_CONSUMER, **options}
    return Consumer(stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis, **options)


def wait_for_full_batch(consumer: Consumer, first: Record, expected: int) -> None:
    """Asserts that the batch `first` came in also holds the next records (read-ahead)."""
    assert consumer._current is not None and consumer._current[0] is first
    assert len(consumer._current) >= expected, len(consumer._current)


# --------------------------------------------------------------------------- records


def test_record_fields(emulators, kinesis: Kinesis, stream: str) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    written = kinesis.put_records(stream, [(b"\x00binary\xff", "key-\u00e9"), (b"", "empty")])
    with consumer_for(emulators, stream) as consumer:
        records = list(consumer)
    assert [r.data for r in records] == [b"\x00binary\xff", b""]
    first = records[0]
    assert isinstance(first, Record)
    assert first.partition_key == "key-\u00e9"
    assert first.sequence_number == written[0]["SequenceNumber"]
    assert first.shard_id == written[0]["ShardId"]
    assert first.sub_sequence_number == 0
    assert first.explicit_hash_key is None  # plain records have none
    arrival = first.approximate_arrival_timestamp
    assert arrival is not None and arrival.tzinfo is timezone.utc
    assert before <= arrival <= datetime.now(timezone.utc) + timedelta(seconds=5)
    assert first.approximate_arrival_timestamp_ms == int(arrival.timestamp() * 1000)
    assert "shardId-000000000000" in repr(first) and "key-\u00e9" in repr(first)
    with pytest.raises(AttributeError):
        first.other = 1  # type: ignore[attr-defined]
    # Copies are detached: equal, but not checkpointable.
    for clone in (pickle.loads(pickle.dumps(first)), copy.copy(first)):
        assert clone == first and clone is not first and hash(clone) == hash(first)
        with pytest.raises(kcheck.InvalidArgumentError):
            clone._native_record()


def test_kpl_aggregated_records(emulators, kinesis: Kinesis, stream: str) -> None:
    aggregate = kpl_aggregate([("a", None, b"one"), ("b", "12345", b"two"), ("a", "12345", b"three")])
    written = kinesis.put_records(stream, [(aggregate, "outer"), (b"plain", "p")])
    group = unique("kpl")
    consumer = consumer_for(emulators, stream, dynamodb(emulators, group, auto_checkpoint=False))
    records = list(consumer)
    assert [(r.data, r.partition_key, r.explicit_hash_key, r.sub_sequence_number) for r in records] == [
        (b"one", "a", None, 0),
        (b"two", "b", "12345", 1),
        (b"three", "a", "12345", 2),
        (b"plain", "p", None, 0),
    ]
    assert {r.sequence_number for r in records[:3]} == {written[0]["SequenceNumber"]}
    assert "sub_sequence_number=1" in repr(records[1]) and "12345" in repr(records[1])
    # A checkpoint inside an aggregate resumes inside it.
    consumer.checkpoint(records[1])
    consumer.close()
    with consumer_for(emulators, stream, dynamodb(emulators, group, auto_checkpoint=False)) as restarted:
        assert [r.data for r in restarted] == [b"three", b"plain"]


def test_order_per_shard_and_large_batches(emulators, make_stream) -> None:
    stream = make_stream(shards=3, records=payloads(5000))
    with consumer_for(emulators, stream) as consumer:
        records = list(consumer)
    assert sorted(r.data for r in records) == sorted(payloads(5000))
    by_shard: Dict[str, List[Record]] = {}
    for record in records:
        by_shard.setdefault(record.shard_id, []).append(record)
    assert len(by_shard) == 3
    for shard_records in by_shard.values():
        numbers = [int(r.sequence_number) for r in shard_records]
        assert numbers == sorted(numbers)
        assert [r.data for r in shard_records] == sorted(r.data for r in shard_records)


def test_latest_skips_older_records(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(5, "old"))
    with consumer_for(emulators, stream, iterator_type="LATEST", idle_timeout=0.5) as consumer:
        seen: List[bytes] = []
        deadline = time.monotonic() + 15
        # The LATEST position is fixed when the shard starts: write until a new record shows up.
        while not any(d.startswith(b"new") for d in seen):
            assert time.monotonic() < deadline, "no new record arrived"
            kinesis.put_records(stream, [b"new"])
            seen.extend(r.data for r in consumer)
    assert not [d for d in seen if d.startswith(b"old")]


@pytest.mark.parametrize("form", ["aware", "naive", "epoch"])
def test_at_timestamp_sends_the_time_in_milliseconds(emulators, kinesis: Kinesis, stream: str, form: str) -> None:
    # The emulator keeps arrival times in whole seconds and does not filter
    # AT_TIMESTAMP reliably, but it refuses a future time and echoes it in
    # milliseconds: that shows exactly what kcheck sent.
    kinesis.put_records(stream, payloads(2))
    future = datetime.now(timezone.utc).replace(microsecond=123000) + timedelta(hours=1)
    timestamp = {"aware": future, "naive": future.replace(tzinfo=None), "epoch": future.timestamp()}[form]
    with consumer_for(emulators, stream, iterator_type="AT_TIMESTAMP", timestamp=timestamp) as consumer:
        with pytest.raises(kcheck.ServiceError) as caught:
            list(consumer)
    assert f"timestampInMillis: {int(future.timestamp()) * 1000 + 123}," in str(caught.value)


def test_at_timestamp_in_the_past_reads_from_there(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(4))
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    with consumer_for(emulators, stream, iterator_type="AT_TIMESTAMP", timestamp=past) as consumer:
        assert [r.data for r in consumer] == payloads(4)


# --------------------------------------------------------------------------- checkpoints and read-ahead


def test_checkpoint_never_covers_records_not_handed_out(emulators, kinesis: Kinesis, stream: str) -> None:
    """Read-ahead rule: with 50 records in one batch, taking 10 and checkpointing
    must save the 10th, not the end of the batch."""
    kinesis.put_records(stream, payloads(50))
    group = unique("readahead")
    consumer = consumer_for(emulators, stream, dynamodb(emulators, group, auto_checkpoint=False))
    taken = [next(consumer) for _ in range(10)]
    wait_for_full_batch(consumer, taken[0], 50)
    consumer.checkpoint()
    consumer.close()
    assert [r.data for r in taken] == payloads(50)[:10]

    with consumer_for(emulators, stream, dynamodb(emulators, group, auto_checkpoint=False)) as restarted:
        rest = [r.data for r in restarted]
    assert rest == payloads(50)[10:]


def test_checkpoint_with_the_batch_handed_out_entirely(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(30))
    group = unique("whole")
    consumer = consumer_for(emulators, stream, dynamodb(emulators, group, auto_checkpoint=False))
    seen = [r.data for r in consumer]  # ends at idle_timeout: every record handed out
    consumer.checkpoint()
    consumer.close()
    assert seen == payloads(30)
    kinesis.put_records(stream, [b"later"])
    with consumer_for(emulators, stream, dynamodb(emulators, group, auto_checkpoint=False)) as restarted:
        assert [r.data for r in restarted] == [b"later"]


def test_checkpoint_of_one_record(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(20))
    group = unique("one-record")
    consumer = consumer_for(emulators, stream, dynamodb(emulators, group, auto_checkpoint=False))
    records = list(consumer)
    consumer.checkpoint(records[6])
    stats = consumer.stats()
    assert stats["shards"][0]["last_checkpointed"].startswith(records[6].sequence_number)
    consumer.close()
    with consumer_for(emulators, stream, dynamodb(emulators, group, auto_checkpoint=False)) as restarted:
        assert [r.data for r in restarted] == payloads(20)[7:]


def test_checkpoint_of_a_record_from_another_consumer_is_refused(emulators, kinesis: Kinesis, make_stream) -> None:
    stream_a = make_stream(records=payloads(3))
    stream_b = make_stream(records=payloads(3))
    with consumer_for(emulators, stream_a) as a, consumer_for(emulators, stream_b) as b:
        record = next(a)
        next(b)
        # The library knows records by shard and lease tenure: B holds a shard
        # of the same id under another tenure, so it reports the lease as lost.
        with pytest.raises((kcheck.InvalidArgumentError, kcheck.LeaseLostError)):
            b.checkpoint(record)
        with pytest.raises(TypeError):
            b.checkpoint("not a record")  # type: ignore[arg-type]


def test_automatic_mode_close_counts_all_but_the_last_record_handed_out(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(40))
    group = unique("auto")
    consumer = consumer_for(emulators, stream, dynamodb(emulators, group))
    taken = []
    for record in consumer:
        taken.append(record.data)
        if len(taken) == 15:
            break  # record 15 (index 14) may not have been processed
    wait_for_full_batch(consumer, consumer._current[0], 40)  # type: ignore[index]
    consumer.close()

    with consumer_for(emulators, stream, dynamodb(emulators, group)) as restarted:
        rest = [r.data for r in restarted]
    assert rest == payloads(40)[14:]


def test_automatic_mode_resumes_after_everything_handed_out(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(25))
    group = unique("auto-all")
    with consumer_for(emulators, stream, dynamodb(emulators, group)) as consumer:
        assert [r.data for r in consumer] == payloads(25)  # iteration ended: all processed
    kinesis.put_records(stream, [b"next"])
    with consumer_for(emulators, stream, dynamodb(emulators, group)) as consumer:
        assert [r.data for r in consumer] == [b"next"]


# --------------------------------------------------------------------------- closing


def test_close_is_idempotent_and_later_use_raises(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(3))
    consumer = consumer_for(emulators, stream)
    assert next(consumer).data == payloads(3)[0]
    consumer.close()
    consumer.close()
    assert consumer.closed
    with pytest.raises(ConsumerClosedError):
        iter(consumer)
    with pytest.raises(ConsumerClosedError):
        next(consumer)
    with pytest.raises(ConsumerClosedError):
        consumer.checkpoint()
    with pytest.raises(ConsumerClosedError):
        with consumer:
            pass
    with pytest.raises(ConsumerClosedError):
        consumer.stats()
    assert "closed" in repr(consumer)


def test_close_inside_the_loop_ends_it(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(20))
    consumer = consumer_for(emulators, stream, idle_timeout=None)
    seen = []
    for record in consumer:
        seen.append(record)
        if len(seen) == 3:
            consumer.close()
    assert len(seen) == 3


def test_close_from_another_thread_ends_iteration(emulators, stream: str) -> None:
    consumer = consumer_for(emulators, stream, idle_timeout=None)
    timer = threading.Timer(0.5, consumer.close)
    start = time.monotonic()
    timer.start()
    assert list(consumer) == []  # empty stream, no idle timeout: only close ends it
    assert time.monotonic() - start < 5
    timer.join()


def test_iteration_after_idle_timeout_resumes_with_new_records(emulators, kinesis: Kinesis, stream: str) -> None:
    with consumer_for(emulators, stream, idle_timeout=0.5) as consumer:
        assert list(consumer) == []
        kinesis.put_records(stream, [b"late"])
        got = wait_until(lambda: list(consumer), timeout=10)
        assert [r.data for r in got] == [b"late"]


def test_dropped_consumer_releases_its_leases(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(10))
    group = unique("dropped")
    consumer = consumer_for(emulators, stream, dynamodb(emulators, group))
    assert next(consumer).data == payloads(10)[0]
    del consumer
    gc.collect()
    # Released at once: the next consumer of the group does not wait for the session timeout.
    start = time.monotonic()
    with consumer_for(emulators, stream, dynamodb(emulators, group)) as successor:
        first = next(successor)
    assert time.monotonic() - start < FAST_LEASES["session_timeout"]
    assert first.data == payloads(10)[0]  # the last record handed out was not processed


# --------------------------------------------------------------------------- monitoring


def test_stats(emulators, kinesis: Kinesis, make_stream) -> None:
    stream = make_stream(shards=2, records=payloads(30))
    with consumer_for(emulators, stream, dynamodb(emulators, unique("stats"))) as consumer:
        records = list(consumer)
        consumer.checkpoint()
        stats = consumer.stats()
    assert stats["owner"] == consumer.owner_id and consumer.owner_id
    assert stats["stream"] == stream
    shards = {s["shard_id"]: s for s in stats["shards"]}
    assert set(shards) == {r.shard_id for r in records}
    assert sum(s["records"] for s in shards.values()) == 30
    assert sum(s["bytes"] for s in shards.values()) == sum(len(r.data) for r in records)
    for shard in shards.values():
        last = [r for r in records if r.shard_id == shard["shard_id"]][-1]
        assert shard["last_delivered"] == f"{last.sequence_number}/0"
        assert shard["last_checkpointed"] == shard["last_delivered"]
        assert shard["owner"] == consumer.owner_id
    assert stats["lease_gains"] == 2
    assert stats["checkpoint_writes"] >= 2
    for key in ("lease_losses", "handoffs_given", "handoffs_received", "checkpoint_failures", "heartbeats"):
        assert isinstance(stats[key], int)


def test_checkpoint_from_another_thread_while_iterating(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(200))
    group = unique("threads")
    consumer = consumer_for(emulators, stream, dynamodb(emulators, group, auto_checkpoint=False), idle_timeout=1.5)
    errors: List[BaseException] = []
    stop = threading.Event()

    def checkpoint_often() -> None:
        while not stop.is_set():
            try:
                consumer.checkpoint()
            except ConsumerClosedError:
                return
            except BaseException as error:  # pragma: no cover - reported below
                errors.append(error)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=checkpoint_often)
    thread.start()
    count = 0
    for _ in consumer:
        count += 1
        time.sleep(0.001)
    stop.set()
    thread.join()
    consumer.checkpoint()
    consumer.close()
    assert not errors and count == 200
    with consumer_for(emulators, stream, dynamodb(emulators, group, auto_checkpoint=False)) as restarted:
        assert list(restarted) == []


def test_default_checkpointer_is_a_memory_one(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(2))
    with consumer_for(emulators, stream) as consumer:
        assert isinstance(consumer.checkpointer, MemoryCheckPointer)
        assert consumer.checkpointer.consumers == [consumer]
        assert len(list(consumer)) == 2
        consumer.checkpointer.manual_checkpoint()


def test_checkpointer_may_be_closed_after_building_consumers(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(5))
    checkpointer = dynamodb(emulators, unique("early-close"))
    consumer = consumer_for(emulators, stream, checkpointer)
    checkpointer.close()
    del checkpointer
    gc.collect()
    with consumer:
        assert [r.data for r in consumer] == payloads(5)
        consumer.checkpoint()


def test_partial_checkpoint_over_several_shards(emulators, kinesis: Kinesis, make_stream) -> None:
    stream = make_stream(shards=2)
    for index, shard in enumerate(kinesis.shards(stream)):
        kinesis.put_records(stream, payloads(30, f"s{index}"), explicit_hash_key=shard["HashKeyRange"]["StartingHashKey"])
    group = unique("partial")
    consumer = consumer_for(emulators, stream, dynamodb(emulators, group, auto_checkpoint=False))
    taken = [next(consumer) for _ in range(40)]
    consumer.checkpoint()
    consumer.close()
    last_taken = {r.shard_id: r.data for r in taken}

    with consumer_for(emulators, stream, dynamodb(emulators, group, auto_checkpoint=False)) as restarted:
        rest = list(restarted)
    for shard_id in {r.shard_id for r in rest} | set(last_taken):
        resumed = [r.data for r in rest if r.shard_id == shard_id]
        prefix = resumed[0][:2] if resumed else last_taken[shard_id][:2]
        everything = payloads(30, prefix.decode())
        handed = [r.data for r in taken if r.shard_id == shard_id]
        assert handed + resumed == everything, shard_id


def test_last_handed_per_shard_bookkeeping() -> None:
    """The per-shard positions checkpoint() and close() use, on made-up records."""

    def record(shard: str, n: int) -> Record:
        return Record(b"", "k", str(n), 0, shard, -1, None)

    consumer = Consumer.__new__(Consumer)
    consumer._hand_lock = threading.Lock()
    earlier = record("A", 1)
    consumer._last_by_shard = {"A": earlier, "C": record("C", 7)}
    batch = [record("A", 2), record("B", 3), record("A", 4), record("B", 5), record("A", 6)]
    consumer._current = batch
    consumer._current_it = iter(batch)
    consumer._current_shards = 2
    assert {k: v.sequence_number for k, v in consumer._last_handed().items()} == {"A": "1", "C": "7"}
    for _ in range(4):
        next(consumer._current_it)
    assert {k: v.sequence_number for k, v in consumer._last_handed().items()} == {"A": "4", "B": "5", "C": "7"}
    # At close, the very last record handed out is not counted.
    excluding = consumer._last_handed(exclude_last=True)
    assert {k: v.sequence_number for k, v in excluding.items()} == {"A": "4", "B": "3", "C": "7"}
    next(consumer._current_it)
    consumer._retire_current()
    assert {k: v.sequence_number for k, v in consumer._last_by_shard.items()} == {"A": "6", "B": "5", "C": "7"}
    assert consumer._current is None and consumer._handed_in_current() == 0


def test_repeated_checkpoint_writes_once(emulators, kinesis: Kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(10))
    with consumer_for(emulators, stream, dynamodb(emulators, unique("once"), auto_checkpoint=False)) as consumer:
        records = list(consumer)
        consumer.checkpoint()
        writes = consumer.stats()["checkpoint_writes"]
        consumer.checkpoint()
        consumer.checkpoint(records[-1])  # explicit: always sent (the library keeps it idempotent)
        consumer.checkpoint()
        assert consumer.stats()["checkpoint_writes"] <= writes + 1
        assert consumer.stats()["shards"][0]["last_checkpointed"] == f"{records[-1].sequence_number}/0"
