"""Per-record cost of the Python layer of kcheck (the ctypes package).

Starts the emulators, fills a stream, then:

1. drains it with ``for record in consumer`` (touching ``record.data``),
   reporting per record the CPU of the iterating (Python) thread -- the
   package's overhead plus the library calls made on that thread -- and the
   CPU of the whole process (which adds the library's fetch threads:
   HTTP, JSON and base64 decoding);
2. times the two Python steps alone on a batch already in memory (CPU
   time of this thread, best of 15 runs):
   decoding a batch into Record objects (``decode_batch``), and handing
   records out through the consumer's iterator.

Run from the repository root (after ``cargo build --release``):

    target/py-venv/bin/python bindings/python/benchmarks/record_overhead.py \
        [--records 50000] [--record-size 1024] [--shards 2]

``KCHECK_EMULATORS`` overrides the emulator binary (default
target/release/kcheck-emulators, else target/debug/kcheck-emulators);
``KCHECK_LIBRARY`` the library.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "bindings" / "python"))
sys.path.insert(0, str(REPO / "bindings" / "python" / "tests"))

for key, value in {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}.items():
    os.environ[key] = value


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50000)
    parser.add_argument("--record-size", type=int, default=1024)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()

    binary = os.environ.get("KCHECK_EMULATORS")
    if not binary:
        release = REPO / "target/release/kcheck-emulators"
        binary = str(release if release.is_file() else REPO / "target/debug/kcheck-emulators")
    emulators = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    endpoints = json.loads(emulators.stdout.readline())  # type: ignore[union-attr]
    try:
        from conftest import Kinesis  # the tests' tiny unsigned client

        import kcheck
        from kcheck.consumer import BATCH_SIZE
        from kcheck.record import decode_batch

        kinesis = Kinesis(endpoints["kinesis"])
        kinesis.create_stream("overhead", args.shards)
        body = b"x" * args.record_size
        kinesis.put_records("overhead", [body] * args.records)
        print(f"library: {kcheck.library_path}")
        print(f"{args.records} records of {args.record_size} bytes on {args.shards} shard(s)")

        # 1. A full drain.
        cpu0, thread0, wall0 = process_cpu(), time.thread_time(), time.perf_counter()
        seen = touched = 0
        with kcheck.Consumer(
            "overhead",
            checkpointer=kcheck.MemoryCheckPointer(),
            endpoint_url=endpoints["kinesis"],
            idle_timeout=5,
        ) as consumer:
            for record in consumer:
                seen += 1
                touched += len(record.data)
                if seen == args.records:
                    break
        cpu, thread, wall = process_cpu() - cpu0, time.thread_time() - thread0, time.perf_counter() - wall0
        assert seen == args.records, seen
        print(
            f"drain: {wall:.2f} s wall; per record: {cpu / seen * 1e6:.2f} us CPU (process), "
            f"{thread / seen * 1e6:.2f} us CPU (iterating thread)"
        )

        # 2. The Python steps alone, on batches already returned by the library.
        kinesis.put_records("overhead", [body] * BATCH_SIZE)
        consumer = kcheck.Consumer(
            "overhead", checkpointer=kcheck.MemoryCheckPointer(), endpoint_url=endpoints["kinesis"], idle_timeout=5
        )
        it = iter(consumer)
        next(it)
        batch = consumer._current[0]._batch  # type: ignore[index]
        size = len(consumer._current)  # type: ignore[arg-type]
        rounds = max(1, 20000 // size)

        def best_of(step, repeats: int = 15) -> float:
            """Thread CPU per record of `step`, the best of `repeats` (robust to other load)."""
            best = float("inf")
            for _ in range(repeats):
                start = time.thread_time()
                for _ in range(rounds):
                    step()
                best = min(best, (time.thread_time() - start) / (rounds * size))
            return best

        decoded = []

        def decode_step() -> None:
            decoded[:] = [decode_batch(batch)[0]]  # the previous list is freed here, as in a drain

        decode = best_of(decode_step)
        records = decoded[0]

        def hand_out() -> None:
            consumer._current = records
            consumer._current_it = iter(records)
            count = 0
            for record in consumer._records():
                count += 1
                if count == size:
                    break

        iterate = best_of(hand_out)
        consumer._current = None
        consumer._current_it = None
        consumer.close()
        print(
            f"python steps per record (batches of {size}): decode {decode * 1e9:.0f} ns, "
            f"hand-out {iterate * 1e9:.0f} ns, total {(decode + iterate) * 1e9:.0f} ns"
        )
    finally:
        emulators.stdin.close()  # type: ignore[union-attr]
        emulators.wait(timeout=10)


if __name__ == "__main__":
    main()
