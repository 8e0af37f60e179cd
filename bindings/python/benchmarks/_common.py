"""What the side-by-side benchmarks (compare_consumers.py, compare_producers.py) share.

The emulators (kcheck-emulators: ferrokinesis and dynoxide on loopback), the
fake AWS environment, the records' payloads, and the measurement: each
client under test runs in a fresh spawned child process, so its CPU time
(user+sys from getrusage), wall time and peak RSS are its own.
"""

import importlib
import json
import multiprocessing
import multiprocessing.connection
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # Never fall back to the instance metadata service, and never go through a proxy.
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
REGION = "us-east-1"
PUT_BATCH = 500  # PutRecords maximum


# --------------------------------------------------------------------------- emulators and data


def start_emulators():
    """Start kcheck-emulators; return (process, {"kinesis": url, "dynamodb": url})."""
    binary = os.environ.get("KCHECK_EMULATORS", str(REPO / "target/release/kcheck-emulators"))
    if not os.path.exists(binary):
        sys.exit(f"{binary} not found: run `cargo build --release -p kcheck-emulators` or set KCHECK_EMULATORS")
    # It serves until its stdin closes, so keep the pipe open for the whole run.
    proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        sys.exit(f"{binary} exited without printing its endpoints (exit code {proc.wait()})")
    endpoints = json.loads(line)
    for url in endpoints.values():
        assert url.startswith("http://127.0.0.1:"), f"emulator endpoint is not loopback: {url}"
    return proc, endpoints


def stop_emulators(proc):
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def payload(index, size):
    """A JSON object padded to exactly `size` bytes (size >= 32)."""
    head = b'{"i":%d,"pad":"' % index
    return head + b"x" * (size - len(head) - 2) + b'"}'


def kinesis_client(endpoints):
    import boto3

    return boto3.client("kinesis", endpoint_url=endpoints["kinesis"], region_name=REGION)


def create_stream(endpoints, stream_name, shards):
    """Create a stream, wait until it is active; return a boto3 Kinesis client."""
    kinesis = kinesis_client(endpoints)
    kinesis.create_stream(StreamName=stream_name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1})
    return kinesis


# --------------------------------------------------------------------------- which clients can run


def importable(module):
    """(True, None) if `module` imports in this interpreter, else (False, why)."""
    found = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    if found.returncode == 0:
        return True, None
    return False, found.stderr.strip().splitlines()[-1] if found.stderr.strip() else f"import {module} failed"


def report_kcheck_library():
    """An installed package bundles the library of its install time: say
    which one runs (KCHECK_LIBRARY picks another)."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import kcheck._native as n; print(n.library_path)"],
        capture_output=True,
        text=True,
    )
    print(f"kcheck library: {loaded.stdout.strip()}", file=sys.stderr)


# --------------------------------------------------------------------------- measurement


def _child(work, module, args, prepare, sender):
    """Runs in a fresh spawned interpreter: import, prepare, then time `work` alone."""
    importlib.import_module(module)
    if prepare is not None:
        args = prepare(*args)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    count = work(*args)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    sender.send(
        {
            "records": count,
            "wall_s": wall,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "maxrss_mib": after.ru_maxrss / 1024,  # KiB on Linux
        }
    )


def run_isolated(work, module, args, timeout, prepare=None):
    """Run `work(*args)` (returning how many records it handled) in a fresh
    spawned child, after importing `module` and, if given, replacing args
    with `prepare(*args)`, both outside the timing. Its measurements, or
    None if it failed or timed out."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(work, module, args, prepare, sender))
    child.start()
    sender.close()
    # Wake on the result, the child's death (its traceback is on stderr) or the timeout.
    multiprocessing.connection.wait([receiver, child.sentinel], timeout)
    try:
        result = receiver.recv() if receiver.poll() else None
    except EOFError:  # the child died without sending
        result = None
    if result is None:
        child.kill()
    child.join()
    return result


def print_table(rows, what):
    """rows: (name, label, result) triples; `what` heads the first column."""
    header = f"{what:<36} {'records':>9} {'wall s':>8} {'records/s':>10} {'CPU µs/rec':>11} {'peak RSS MiB':>13}"
    print(header)
    print("-" * len(header))
    for _, label, r in rows:
        print(
            f"{label:<36} {r['records']:>9} {r['wall_s']:>8.2f} {r['records'] / r['wall_s']:>10.0f}"
            f" {r['cpu_s'] / r['records'] * 1e6:>11.2f} {r['maxrss_mib']:>13.1f}"
        )


def cpu_per_record(rows, names):
    """CPU seconds per record of each name, over all its runs in rows."""
    per_record = {}
    for name in names:
        runs = [r for ran, _, r in rows if ran == name]
        if runs:
            per_record[name] = sum(r["cpu_s"] for r in runs) / sum(r["records"] for r in runs)
    return per_record
