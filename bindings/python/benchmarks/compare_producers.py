"""Side-by-side CPU benchmark of Kinesis producers against the local emulators.

Each producer writes the same records into its own fresh stream in a fresh
child process (multiprocessing, spawn), so its CPU time, wall time and peak
RSS are its own. Nothing leaves loopback: the streams live in the emulators
started by `kcheck-emulators` (ferrokinesis), and the AWS credentials are fake.

How to run, from the repository root:

    python3.11 -m venv target/bench-venv \
      && target/bench-venv/bin/pip install -r bindings/python/benchmarks/requirements.txt \
      && cargo build --release -p kcheck-emulators -p kcheck \
      && PYTHONPATH=$PWD/bindings/python KCHECK_LIBRARY=$PWD/target/release/libkcheck.so \
         target/bench-venv/bin/python bindings/python/benchmarks/compare_producers.py

Useful flags: --shards 4 --records 20000 --record-sizes 100,1024 --repeat 1
--producers async-kinesis,kcheck --limits per-shard|defaults|lifted. KCHECK_EMULATORS overrides
the emulator binary's path (default target/release/kcheck-emulators).

Method:
  * every run of every producer gets its own fresh stream;
  * the records are built in the child before timing starts: payloads are
    JSON objects padded to the record size (carrying their index), partition
    keys cycle through --keys distinct keys, the same for both producers;
  * a producer is created, puts every record from one thread (async-kinesis:
    one task on one event loop), and is closed, which sends what is still
    buffered; CPU = user+sys of the child over all that (imports already
    done; kcheck's sending thread included), records/s = records over the
    same wall time; peak RSS is the child's ru_maxrss (interpreter and
    imports included);
  * afterwards a reader (boto3, in the parent, untimed) reads every shard
    from TRIM_HORIZON and checks that each record arrived exactly once.

Both producers keep their defaults (batches of up to 500, 0.5 s buffer
time) except for two things. The processor: async-kinesis gets a
pass-through that sends the payload bytes as they are, as kcheck does,
instead of its default JsonProcessor. The rate limits (--limits):
  * per-shard (default): both at Kinesis's 1000 records/s and 1 MiB/s per
    shard of the stream. kcheck's defaults are exactly that; async-kinesis's
    defaults are the same numbers, but it builds its throttles before it
    has read the stream's shards, so they hold for the whole stream (one
    shard's worth): its per-shard options are multiplied by --shards here
    to give it the same total;
  * defaults: each library as constructed with its defaults (async-kinesis
    then sends 1000 records/s into the whole stream, whatever its shards);
  * lifted: both far beyond what the emulator handles (it does not enforce
    the limits), measuring the clients at full speed.
"""

import argparse
import asyncio
import os
import re
import sys
import time

from _common import (
    FAKE_AWS_ENV,
    REGION,
    cpu_per_record,
    create_stream,
    importable,
    payload,
    print_table,
    report_kcheck_library,
    run_isolated,
    start_emulators,
    stop_emulators,
)

# Per-shard limits for --limits lifted: far more than the emulator takes.
LIFTED_RECORDS_PER_SECOND = 10**9
LIFTED_KIB_PER_SECOND = 10**9
# Kinesis's per-shard write limits, the default of both producers.
RECORDS_PER_SECOND = 1000
KIB_PER_SECOND = 1024


def build_records(endpoints, stream_name, total_records, record_size, keys, limits):
    """The records, built in the child before timing: (payload, partition key) pairs."""
    records = [(payload(i, record_size), f"key-{i % keys}") for i in range(total_records)]
    return endpoints, stream_name, records, limits


# --------------------------------------------------------------------------- producers under test
#
# Each one is `callable(endpoints, stream_name, records, limits) -> records put`,
# limits being None (the library's defaults) or (records/s, KiB/s) per shard;
# it must create a producer, put every (payload, partition key) pair, and close
# it, returning once everything is sent. PRODUCERS below registers them.


def produce_with_async_kinesis(endpoints, stream_name, records, limits):
    """async-kinesis: `await producer.put(...)` in an `async with Producer`, default tuning."""
    from kinesis import Producer
    from kinesis.aggregators import SimpleAggregator
    from kinesis.processors import Processor

    class BytesProcessor(Processor, SimpleAggregator):
        """Sends the payload bytes as they are, as kcheck does (the default JsonProcessor encodes JSON)."""

        def serialize(self, item):
            return item

    options = {}
    if limits is not None:
        # Over the whole stream, not per shard (see the module's docstring); KiB/s, it warns above 1024.
        options = {"put_rate_limit_per_shard": limits[0], "put_bandwidth_limit_per_shard": limits[1]}

    async def run():
        async with Producer(
            stream_name=stream_name,
            endpoint_url=endpoints["kinesis"],
            region_name=REGION,
            processor=BytesProcessor(),
            **options,
        ) as producer:
            for data, key in records:
                await producer.put(data, partition_key=key)
        return len(records)

    return asyncio.run(run())


def produce_with_kcheck(endpoints, stream_name, records, limits):
    """kcheck through its Python ctypes binding: the synchronous twin of the async-kinesis producer.

    Runs the checkout's package (PYTHONPATH) with the library KCHECK_LIBRARY names, or an
    installed package with the library it bundled; skipped (see available()) otherwise.
    """
    from kcheck import Producer

    options = {}
    if limits is not None:
        options = {"put_rate_limit_per_shard": limits[0], "put_bandwidth_limit_per_shard": limits[1] * 1024}
    producer = Producer(stream_name, endpoint_url=endpoints["kinesis"], region_name=REGION, **options)
    try:
        for data, key in records:
            producer.put(data, partition_key=key)
        producer.flush()  # raises if a record failed for good
        sent = producer.stats()
    finally:
        producer.close()
    assert sent["records_sent"] == len(records), sent
    return len(records)


# name -> (callable, module that must import for it to run; imported before timing starts)
PRODUCERS = {
    "async-kinesis": (produce_with_async_kinesis, "kinesis"),
    "kcheck": (produce_with_kcheck, "kcheck"),
}


# --------------------------------------------------------------------------- the reader

INDEX = re.compile(rb'^\{"i":(\d+),')


def read_indices(kinesis, stream_name):
    """Every record's payload index, reading each shard from TRIM_HORIZON to its end."""
    indices = []
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            for record in page["Records"]:
                found = INDEX.match(record["Data"])
                indices.append(int(found.group(1)) if found else -1)
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return indices


def check_arrived(kinesis, stream_name, total):
    """None if records 0..total-1 each arrived exactly once, else what is wrong."""
    indices = read_indices(kinesis, stream_name)
    distinct = set(indices)
    if len(indices) == total and distinct == set(range(total)):
        return None
    missing = total - len(distinct & set(range(total)))
    return f"read {len(indices)} records, {len(distinct)} distinct, {missing} of {total} missing"


# --------------------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--records", type=int, default=20_000, help="records per run")
    parser.add_argument("--record-sizes", default="100,1024", help="payload bytes (>= 32), comma-separated")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct partition keys")
    parser.add_argument("--repeat", type=int, default=1, help="runs per producer and size, each on a fresh stream")
    parser.add_argument("--producers", default=",".join(PRODUCERS), help="comma-separated subset of: %(default)s")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per producer run")
    parser.add_argument(
        "--limits",
        choices=["per-shard", "defaults", "lifted"],
        default="per-shard",
        help="the producers' rate limits, see the module's docstring [%(default)s]",
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.record_sizes.split(",")]
    if min(sizes) < 32:
        parser.error("--record-sizes must be at least 32")

    os.environ.update(FAKE_AWS_ENV)  # inherited by the spawned children
    producers = {}
    for name in args.producers.split(","):
        if name not in PRODUCERS:
            parser.error(f"unknown producer {name!r}; known: {', '.join(PRODUCERS)}")
        ok, why = importable(PRODUCERS[name][1])
        if not ok:
            print(f"skipping {name}: {why}", file=sys.stderr)
            continue
        if name == "kcheck":
            report_kcheck_library()
        producers[name] = PRODUCERS[name]
    if not producers:
        sys.exit("no producer to run")

    # Each producer's (records/s, KiB/s) per shard, None for its defaults.
    per_shard = (RECORDS_PER_SECOND, KIB_PER_SECOND)
    limits = {
        "per-shard": {"async-kinesis": tuple(v * args.shards for v in per_shard), "kcheck": per_shard},
        "lifted": dict.fromkeys(PRODUCERS, (LIFTED_RECORDS_PER_SECOND, LIFTED_KIB_PER_SECOND)),
        "defaults": dict.fromkeys(PRODUCERS),
    }[args.limits]
    described = {
        "per-shard": "both at 1000 records/s and 1 MiB/s per shard",
        "lifted": "rate limits lifted",
        "defaults": "each producer's default limits",
    }[args.limits]
    proc, endpoints = start_emulators()
    tables = {size: [] for size in sizes}
    failed = False
    try:
        print(f"emulators: {endpoints}", file=sys.stderr)
        for size in sizes:
            for run in range(1, args.repeat + 1):
                for name, (produce, module) in producers.items():
                    stream = f"bench-{name}-{size}-{run}-{os.getpid()}"
                    kinesis = create_stream(endpoints, stream, args.shards)
                    result = run_isolated(
                        produce,
                        module,
                        (endpoints, stream, args.records, size, args.keys, limits[name]),
                        args.timeout,
                        prepare=build_records,
                    )
                    if result is None:
                        print(f"{name}: run {run} failed (see above) or timed out ({args.timeout} s)", file=sys.stderr)
                        failed = True
                        continue
                    start = time.perf_counter()
                    wrong = check_arrived(kinesis, stream, args.records)
                    print(
                        f"{stream}: {result['records']} records of {size} B put in {result['wall_s']:.1f} s,"
                        f" read back in {time.perf_counter() - start:.1f} s: {wrong or 'all arrived once'}",
                        file=sys.stderr,
                    )
                    if wrong:
                        failed = True
                    kinesis.delete_stream(StreamName=stream)  # the emulator keeps what it stores
                    label = name if args.repeat == 1 else f"{name} #{run}"
                    tables[size].append((name, label if not wrong else f"{label} (MISSING)", result))
    finally:
        stop_emulators(proc)

    for size, rows in tables.items():
        print(f"\n{args.records} records x {size} B, {args.keys} keys, {args.shards} shards, {described}")
        print_table(rows, "producer")
        per_record = cpu_per_record(rows, producers)
        if "kcheck" in per_record:
            for other in per_record:
                if other != "kcheck":
                    ratio = per_record["kcheck"] / per_record[other]
                    print(
                        f"CPU per record, kcheck / {other}: {ratio:.3f}"
                        f" ({1 / ratio:.1f}x less; target: kcheck <= 0.1 of it)"
                    )
    if failed or any(len(rows) != args.repeat * len(producers) for rows in tables.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
