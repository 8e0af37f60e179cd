"""The examples of async-kinesis's DynamoDB checkpointing guide, synchronously.

Each example is written as the guide writes it (``async with``/``async
for`` become ``with``/``for``), pointed at the local emulators and with an
``idle_timeout`` so that iteration ends.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import List

import pytest

from conftest import FAST_CONSUMER, FAST_LEASES, payloads, unique

from kcheck import Consumer, DynamoDBCheckPointer, InvalidConfigError, MemoryCheckPointer


def test_simple_setup(emulators, make_stream) -> None:
    stream_name = make_stream(shards=2, records=payloads(300))
    name = unique("my-app")
    seen: List[bytes] = []

    with Consumer(
        stream_name=stream_name,
        checkpointer=DynamoDBCheckPointer(
            name=name,  # Used to generate table name
            endpoint_url=emulators.dynamodb,
        ),
        endpoint_url=emulators.kinesis,
        idle_timeout=1,
    ) as consumer:
        for record in consumer:
            seen.append(record.data)

    assert sorted(seen) == sorted(payloads(300))
    # Per shard, records arrive in the order they were written.
    assert consumer.closed


def test_multiple_consumer_groups_share_a_table(emulators, make_stream) -> None:
    stream = make_stream(shards=2, records=payloads(200))
    table = unique("kinesis-checkpoints")

    # Analytics consumer group
    analytics_consumer = Consumer(
        stream_name=stream,
        checkpointer=DynamoDBCheckPointer(
            name=unique("analytics"),
            table_name=table,  # Share table across groups
            endpoint_url=emulators.dynamodb,
            **FAST_LEASES,
        ),
        endpoint_url=emulators.kinesis,
        idle_timeout=1.5,
        **FAST_CONSUMER,
    )

    # Archival consumer group
    archival_consumer = Consumer(
        stream_name=stream,
        checkpointer=DynamoDBCheckPointer(
            name=unique("archival"),
            table_name=table,  # Same table, different app name
            endpoint_url=emulators.dynamodb,
            **FAST_LEASES,
        ),
        endpoint_url=emulators.kinesis,
        idle_timeout=1.5,
        **FAST_CONSUMER,
    )

    results = {}

    def drain(label: str, consumer: Consumer) -> None:
        with consumer:
            results[label] = [record.data for record in consumer]

    threads = [
        threading.Thread(target=drain, args=("analytics", analytics_consumer)),
        threading.Thread(target=drain, args=("archival", archival_consumer)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Both groups get every record, once each.
    assert Counter(results["analytics"]) == Counter(payloads(200))
    assert Counter(results["archival"]) == Counter(payloads(200))


def test_manual_checkpointing_of_batches(emulators, make_stream) -> None:
    stream = make_stream(shards=1, records=payloads(250))
    name = unique("batch-processor")
    processed: List[bytes] = []

    def process_batch(batch: List[bytes]) -> None:
        processed.extend(batch)

    checkpointer = DynamoDBCheckPointer(
        name=name,
        auto_checkpoint=False,
        endpoint_url=emulators.dynamodb,
        **FAST_LEASES,
    )
    consumer = Consumer(stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis, idle_timeout=1)

    # Process batch then checkpoint once
    batch = []
    for record in consumer:
        batch.append(record.data)
        if len(batch) >= 100:
            process_batch(batch)
            checkpointer.manual_checkpoint()
            batch = []
    consumer.close()
    assert processed == payloads(200)
    assert batch == payloads(250)[200:]  # read, but never checkpointed

    # A restart resumes after the last checkpoint: the unprocessed batch comes again.
    checkpointer = DynamoDBCheckPointer(name=name, auto_checkpoint=False, endpoint_url=emulators.dynamodb, **FAST_LEASES)
    with Consumer(stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis, idle_timeout=1) as consumer:
        again = [record.data for record in consumer]
    assert again == payloads(250)[200:]


def test_manual_checkpoint_covers_every_consumer_of_the_checkpointer(emulators, make_stream) -> None:
    stream = make_stream(shards=2)
    from conftest import Kinesis

    kinesis = Kinesis(emulators.kinesis)
    shards = [s["HashKeyRange"]["StartingHashKey"] for s in kinesis.shards(stream)]
    for index, hash_key in enumerate(shards):
        kinesis.put_records(stream, payloads(20, prefix=f"shard{index}"), explicit_hash_key=hash_key)
    name = unique("shared")
    checkpointer = DynamoDBCheckPointer(name=name, auto_checkpoint=False, endpoint_url=emulators.dynamodb, **FAST_LEASES)
    first = Consumer(stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis, max_shard_consumers=1, idle_timeout=1, **FAST_CONSUMER)
    second = Consumer(stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis, max_shard_consumers=1, idle_timeout=1, **FAST_CONSUMER)
    assert set(checkpointer.consumers) == {first, second}
    seen = [record.data for record in first] + [record.data for record in second]
    assert Counter(seen) == Counter(payloads(20, "shard0") + payloads(20, "shard1"))
    checkpointer.manual_checkpoint()  # both consumers, each for its own shard
    first.close()
    second.close()
    assert checkpointer.consumers == []

    checkpointer = DynamoDBCheckPointer(name=name, auto_checkpoint=False, endpoint_url=emulators.dynamodb, **FAST_LEASES)
    with Consumer(stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis, idle_timeout=1) as consumer:
        assert list(consumer) == []


@pytest.mark.parametrize(
    "session_timeout, heartbeat_frequency",
    [
        (60, 15),  # the defaults
        (120, 30),  # slower heartbeat = lower cost
        (30, 10),  # for fast processing
        (300, 60),  # for batch processing
        (3, 0.5),  # what these tests use
    ],
)
def test_custom_timeouts(emulators, make_stream, session_timeout, heartbeat_frequency) -> None:
    stream = make_stream(records=payloads(5))
    checkpointer = DynamoDBCheckPointer(
        name=unique("realtime"),
        session_timeout=session_timeout,
        heartbeat_frequency=heartbeat_frequency,
        endpoint_url=emulators.dynamodb,
    )
    assert checkpointer.session_timeout == session_timeout
    with Consumer(stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis, idle_timeout=1) as consumer:
        assert [record.data for record in consumer] == payloads(5)


def test_invalid_timeouts_name_the_parameter() -> None:
    with pytest.raises(InvalidConfigError) as caught:
        DynamoDBCheckPointer(name="realtime", session_timeout=10, heartbeat_frequency=30)
    message = str(caught.value)
    assert "heartbeat_frequency (30s) must be shorter than session_timeout (10s)" in message


def test_complete_configuration_example(emulators, make_stream) -> None:
    stream = make_stream(records=payloads(3))
    checkpointer = DynamoDBCheckPointer(
        name=unique("my-app"),  # Application name (required)
        table_name=unique("custom-table"),  # Override default table name
        session_timeout=60,  # Seconds before shard is considered abandoned
        heartbeat_frequency=15,  # Seconds between heartbeat updates
        auto_checkpoint=True,  # Checkpoint automatically vs manually
        create_table=True,  # Create table if it doesn't exist
        endpoint_url=emulators.dynamodb,  # Custom endpoint (for LocalStack testing)
        region_name="us-east-1",  # AWS region
        ttl_hours=24,  # Hours to retain old records
    )
    with Consumer(stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis, region_name="us-east-1", idle_timeout=1) as consumer:
        assert [record.data for record in consumer] == payloads(3)


def test_memory_checkpointer_shares_leases_between_consumers(emulators, make_stream) -> None:
    stream = make_stream(shards=2, records=payloads(100))
    checkpointer = MemoryCheckPointer(**FAST_LEASES)
    consumers = [
        Consumer(stream, checkpointer=checkpointer, endpoint_url=emulators.kinesis, max_shard_consumers=1, idle_timeout=1, **FAST_CONSUMER)
        for _ in range(2)
    ]
    seen = [[record for record in consumer] for consumer in consumers]
    for consumer in consumers:
        consumer.close()
    # Each consumer held one shard; together they read every record once.
    assert all(seen)
    assert {r.shard_id for r in seen[0]}.isdisjoint({r.shard_id for r in seen[1]})
    assert Counter(r.data for r in seen[0] + seen[1]) == Counter(payloads(100))
