"""Side-by-side CPU benchmark of Kinesis consumers against the local emulators.

Each consumer drains an identically pre-filled stream from TRIM_HORIZON in a
fresh child process (multiprocessing, spawn), so its CPU time, wall time and
peak RSS are its own. Nothing leaves loopback: the streams and the checkpoint
tables live in the emulators started by `kcheck-emulators` (ferrokinesis and
dynoxide), and the AWS credentials are fake.

How to run, from the repository root:

    python3.11 -m venv target/bench-venv \
      && target/bench-venv/bin/pip install -r bindings/python/benchmarks/requirements.txt \
      && cargo build --release -p kcheck-emulators -p kcheck \
      && PYTHONPATH=$PWD/bindings/python KCHECK_LIBRARY=$PWD/target/release/libkcheck.so \
         target/bench-venv/bin/python bindings/python/benchmarks/compare_consumers.py

Useful flags: --shards 4 --records-per-shard 50000 --record-size 1024
--repeat 3 --consumers async-kinesis,kcheck. KCHECK_EMULATORS overrides the
emulator binary's path (default target/release/kcheck-emulators).

Method:
  * every run of every consumer gets its own fresh stream, filled with the same
    records (so no consumer reads a stream another has already warmed up), and
    its own checkpoint table name;
  * records are spread evenly over the shards with ExplicitHashKey, PutRecords
    in batches of 500; each payload is a JSON object padded to --record-size
    bytes, so async-kinesis's JSON processor can be tried too;
  * a consumer counts records, touching each payload (len), and stops once it
    has seen all of them; CPU = user+sys of the child from just before the
    consumer starts (imports already done) until it has closed; peak RSS is
    the child's ru_maxrss (interpreter and imports included).

async-kinesis runs with its defaults (record_limit=10000, shard_fetch_rate=1,
max_queue_size=10000, idle_timeout=2, ...) and DynamoDBCheckPointer against
dynoxide; the only option set is the processor: by default a pass-through
that yields the payload as bytes, as kcheck does, instead of async-kinesis's
default JsonProcessor (--async-kinesis-processor json measures that one).
"""

import argparse
import asyncio
import functools
import os
import sys
import time

from _common import (
    FAKE_AWS_ENV,
    PUT_BATCH,
    REGION,
    create_stream,
    cpu_per_record,
    importable,
    payload,
    print_table,
    report_kcheck_library,
    run_isolated,
    start_emulators,
    stop_emulators,
)

# --------------------------------------------------------------------------- data


def create_filled_stream(endpoints, stream_name, shards, records_per_shard, record_size):
    kinesis = create_stream(endpoints, stream_name, shards)
    # Route by each shard's own hash range rather than by partition-key hashing,
    # so every shard gets exactly records_per_shard records.
    hash_keys = [s["HashKeyRange"]["StartingHashKey"] for s in kinesis.list_shards(StreamName=stream_name)["Shards"]]
    assert len(hash_keys) == shards, hash_keys
    index = 0
    for hash_key in hash_keys:
        for start in range(0, records_per_shard, PUT_BATCH):
            batch = []
            for _ in range(min(PUT_BATCH, records_per_shard - start)):
                data = payload(index, record_size)
                batch.append({"Data": data, "PartitionKey": str(index), "ExplicitHashKey": hash_key})
                index += 1
            response = kinesis.put_records(StreamName=stream_name, Records=batch)
            # The emulator runs without --enforce-limits, so nothing is throttled.
            assert response["FailedRecordCount"] == 0, response
    return index


# --------------------------------------------------------------------------- consumers under test
#
# Each one is `callable(endpoints, stream_name, total_records) -> records seen`;
# it must drain the stream from TRIM_HORIZON, touch every payload, and return
# once it has seen total_records records. CONSUMERS below registers them.


def consume_with_async_kinesis(endpoints, stream_name, total_records, checkpointer="dynamodb", processor="bytes"):
    """async-kinesis: `async for` over kinesis.Consumer, default tuning."""
    from kinesis import Consumer, DynamoDBCheckPointer, JsonProcessor, MemoryCheckPointer, StringProcessor
    from kinesis.aggregators import SimpleAggregator
    from kinesis.processors import Processor

    class BytesProcessor(Processor, SimpleAggregator):
        """Hands the payload over as bytes, as kcheck does (the default JsonProcessor parses it)."""

        def deserialize(self, data):
            return data

    processors = {"bytes": BytesProcessor, "string": StringProcessor, "json": JsonProcessor}

    async def run():
        if checkpointer == "dynamodb":
            # Must be built inside the running loop: it starts its heartbeat task.
            cp = DynamoDBCheckPointer(name=stream_name, endpoint_url=endpoints["dynamodb"], region_name=REGION)
        else:
            cp = MemoryCheckPointer(name=stream_name)
        count = 0
        touched = 0
        async with Consumer(
            stream_name=stream_name,
            endpoint_url=endpoints["kinesis"],
            region_name=REGION,
            iterator_type="TRIM_HORIZON",
            checkpointer=cp,
            processor=processors[processor](),
        ) as consumer:
            # `async for` ends (StopAsyncIteration) whenever its queue stays empty
            # for idle_timeout (2 s), e.g. while the fetch loop sleeps 2 s on a
            # shard that returned no records; the consumer keeps running, so
            # iterate again until every record is in.
            while count < total_records:
                async for record in consumer:
                    touched += len(record)
                    count += 1
                    if count == total_records:
                        break
        assert touched > 0
        return count

    return asyncio.run(run())


def consume_with_kcheck(endpoints, stream_name, total_records):
    """kcheck through its Python ctypes binding: the synchronous twin of the async-kinesis consumer.

    Runs the checkout's package (PYTHONPATH) with the library KCHECK_LIBRARY names, or an
    installed package with the library it bundled; skipped (see available()) otherwise.
    """
    from kcheck import Consumer, DynamoDBCheckPointer

    count = 0
    touched = 0
    with Consumer(
        stream_name=stream_name,
        checkpointer=DynamoDBCheckPointer(name=stream_name, endpoint_url=endpoints["dynamodb"]),
        endpoint_url=endpoints["kinesis"],
        region_name=REGION,
        iterator_type="TRIM_HORIZON",
    ) as consumer:
        for record in consumer:
            touched += len(record.data)  # kcheck.Record: the payload is bytes in .data
            count += 1
            if count == total_records:
                break
    assert touched > 0
    return count


# name -> (callable, module that must import for it to run; imported before timing starts)
CONSUMERS = {
    "async-kinesis": (consume_with_async_kinesis, "kinesis"),
    "kcheck": (consume_with_kcheck, "kcheck"),
}


def available(name):
    """(True, None) if the consumer's package imports, else (False, why)."""
    return importable(CONSUMERS[name][1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--records-per-shard", type=int, default=50_000)
    parser.add_argument("--record-size", type=int, default=1024, help="payload bytes (>= 32)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per consumer, each on a fresh stream")
    parser.add_argument("--consumers", default=",".join(CONSUMERS), help="comma-separated subset of: %(default)s")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per consumer run")
    parser.add_argument("--async-kinesis-checkpointer", choices=["dynamodb", "memory"], default="dynamodb")
    parser.add_argument(
        "--async-kinesis-processor",
        choices=["bytes", "string", "json"],
        default="bytes",
        help="bytes: payload passed through as bytes, like kcheck; json is async-kinesis's default",
    )
    args = parser.parse_args()
    if args.record_size < 32:
        parser.error("--record-size must be at least 32")

    os.environ.update(FAKE_AWS_ENV)  # inherited by the spawned children
    total = args.shards * args.records_per_shard
    labels = {
        "async-kinesis": f"async-kinesis ({args.async_kinesis_checkpointer}, {args.async_kinesis_processor})",
        "kcheck": "kcheck (dynamodb)",
    }
    consumers = {}
    for name in args.consumers.split(","):
        if name not in CONSUMERS:
            parser.error(f"unknown consumer {name!r}; known: {', '.join(CONSUMERS)}")
        ok, why = available(name)
        if not ok:
            print(f"skipping {name}: {why}", file=sys.stderr)
            continue
        consume, module = CONSUMERS[name]
        if name == "kcheck":
            report_kcheck_library()
        if name == "async-kinesis":
            consume = functools.partial(
                consume, checkpointer=args.async_kinesis_checkpointer, processor=args.async_kinesis_processor
            )
        consumers[name] = (consume, module)
    if not consumers:
        sys.exit("no consumer to run")

    proc, endpoints = start_emulators()
    rows = []
    try:
        print(f"emulators: {endpoints}", file=sys.stderr)
        for run in range(1, args.repeat + 1):
            for name, (consume, module) in consumers.items():
                stream = f"bench-{name}-{run}-{os.getpid()}"
                start = time.perf_counter()
                create_filled_stream(endpoints, stream, args.shards, args.records_per_shard, args.record_size)
                filled = time.perf_counter() - start
                print(f"{stream}: {total} records of {args.record_size} B filled in {filled:.1f} s", file=sys.stderr)
                result = run_isolated(consume, module, (endpoints, stream, total), args.timeout)
                if result is None:
                    print(f"{name}: run {run} failed (see above) or timed out ({args.timeout} s)", file=sys.stderr)
                    continue
                if result["records"] != total:
                    print(f"{name}: saw {result['records']} of {total} records", file=sys.stderr)
                label = labels.get(name, name)
                rows.append((name, label if args.repeat == 1 else f"{label} #{run}", result))
    finally:
        stop_emulators(proc)

    print(f"\n{args.shards} shards x {args.records_per_shard} records x {args.record_size} B, from TRIM_HORIZON")
    print_table(rows, "consumer")
    # CPU per record, first consumer over each other one, over all runs of each.
    per_record = cpu_per_record(rows, consumers)
    names = list(per_record)
    for other in names[1:]:
        ratio = per_record[names[0]] / per_record[other]
        print(f"CPU per record, {names[0]} / {other}: {ratio:.2f}x")
    if len(rows) != args.repeat * len(consumers):
        sys.exit(1)


if __name__ == "__main__":
    main()
