"""Shared fixtures: the local AWS emulators and a small Kinesis client.

The session starts ``kcheck-emulators`` (ferrokinesis for Kinesis, dynoxide
for DynamoDB, on free loopback ports): its path comes from
``KCHECK_EMULATORS``, else ``target/debug/kcheck-emulators`` (built with
``cargo build -p kcheck-emulators`` when missing). It serves until its
stdin closes.

Streams are created and filled over the Kinesis JSON API with ``urllib``:
the emulators do not verify SigV4 signatures, so requests carry a
well-formed but unsigned ``Authorization`` header and no AWS SDK is needed.

Unless ``KCHECK_LIBRARY`` is set, the package loads the most recently built
of the repository's ``target/{debug,release}/libkcheck.so``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import pytest

REPO = Path(__file__).resolve().parents[3]
PACKAGE_DIR = REPO / "bindings" / "python"

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}
# Set before kcheck starts any consumer (and inherited by child processes).
for _key, _value in FAKE_AWS_ENV.items():
    os.environ[_key] = _value
for _key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(_key, None)


def _pick_library() -> Optional[Path]:
    if os.environ.get("KCHECK_LIBRARY"):
        return Path(os.environ["KCHECK_LIBRARY"])
    built = [p for p in (REPO / "target/debug/libkcheck.so", REPO / "target/release/libkcheck.so") if p.is_file()]
    if not built:
        return None
    newest = max(built, key=lambda p: p.stat().st_mtime)
    os.environ["KCHECK_LIBRARY"] = str(newest)
    return newest


LIBRARY = _pick_library()
if str(PACKAGE_DIR) not in sys.path:
    sys.path.insert(0, str(PACKAGE_DIR))

# Fast lease timing for tests where leases matter.
FAST_LEASES = {"session_timeout": 3, "heartbeat_frequency": 0.5}
FAST_CONSUMER = {"discovery_interval": 0.3, "idle_poll_interval": 0.1, "checkpoint_interval": 0.2}


def pytest_report_header(config: Any) -> str:
    return f"kcheck library: {LIBRARY or '(none found: the package will report what it tried)'}"


# --------------------------------------------------------------------------- emulators


def _emulators_binary() -> Path:
    explicit = os.environ.get("KCHECK_EMULATORS")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            pytest.exit(f"KCHECK_EMULATORS={explicit} does not exist", returncode=2)
        return path
    path = REPO / "target" / "debug" / "kcheck-emulators"
    if not path.is_file():
        build = subprocess.run(["cargo", "build", "-p", "kcheck-emulators"], cwd=REPO)
        if build.returncode != 0 or not path.is_file():
            pytest.exit(
                f"{path} is missing and `cargo build -p kcheck-emulators` failed; "
                "build it or set KCHECK_EMULATORS",
                returncode=2,
            )
    return path


class Emulators:
    """The running emulators: ``kinesis`` and ``dynamodb`` endpoint URLs."""

    def __init__(self, process: "subprocess.Popen[str]", endpoints: Dict[str, str]) -> None:
        self.process = process
        self.kinesis: str = endpoints["kinesis"]
        self.dynamodb: str = endpoints["dynamodb"]


@pytest.fixture(scope="session")
def emulators() -> Iterator[Emulators]:
    binary = _emulators_binary()
    process = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline() if process.stdout else ""
    if not line:
        code = process.wait(timeout=10)
        pytest.exit(f"{binary} exited without printing its endpoints (exit code {code})", returncode=2)
    endpoints = json.loads(line)
    for url in endpoints.values():
        assert url.startswith("http://127.0.0.1:"), url
    try:
        yield Emulators(process, endpoints)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------- Redis


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port, without persistence."""

    def __init__(self, extra: Sequence[str] = ()) -> None:
        import shutil
        import socket

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server; tests/run_all.sh does so)")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    answer = conn.recv(64)
                if answer.startswith((b"+PONG", b"-NOAUTH")):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                pytest.fail("redis-server did not answer PING")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- Kinesis client


class KinesisError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:500]!r}")
        self.status = status
        self.body = body


class Kinesis:
    """A tiny Kinesis JSON-API client for the emulator (unsigned requests)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint

    def call(self, operation: str, body: Dict[str, Any]) -> Dict[str, Any]:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        request = urllib.request.Request(
            self.endpoint,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": f"Kinesis_20131202.{operation}",
                "X-Amz-Date": amz_date,
                # Well-formed, not verified by the emulator.
                "Authorization": (
                    f"AWS4-HMAC-SHA256 Credential=test/{amz_date[:8]}/us-east-1/kinesis/aws4_request, "
                    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64
                ),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise KinesisError(error.code, error.read()) from None
        return json.loads(raw) if raw else {}

    def create_stream(self, name: str, shards: int = 1) -> None:
        self.call("CreateStream", {"StreamName": name, "ShardCount": shards})
        deadline = time.monotonic() + 10
        while True:
            summary = self.call("DescribeStreamSummary", {"StreamName": name})["StreamDescriptionSummary"]
            if summary["StreamStatus"] == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"stream {name} is still {summary['StreamStatus']}")
            time.sleep(0.05)

    def shards(self, name: str) -> List[Dict[str, Any]]:
        return list(self.call("ListShards", {"StreamName": name})["Shards"])

    def put_records(
        self,
        name: str,
        records: Sequence[Union[bytes, Tuple[bytes, str]]],
        explicit_hash_key: Optional[str] = None,
    ) -> List[Dict[str, Any]]:
        """Puts records (data, or (data, partition key)), 500 per request; returns
        each record's ShardId and SequenceNumber in order."""
        results: List[Dict[str, Any]] = []
        items = [r if isinstance(r, tuple) else (r, f"pk-{i}") for i, r in enumerate(records)]
        for start in range(0, len(items), 500):
            entries = []
            for data, key in items[start : start + 500]:
                entry = {"Data": base64.b64encode(data).decode(), "PartitionKey": key}
                if explicit_hash_key is not None:
                    entry["ExplicitHashKey"] = explicit_hash_key
                entries.append(entry)
            response = self.call("PutRecords", {"StreamName": name, "Records": entries})
            assert response.get("FailedRecordCount", 0) == 0, response
            results.extend(response["Records"])
        return results


@pytest.fixture(scope="session")
def kinesis(emulators: Emulators) -> Kinesis:
    return Kinesis(emulators.kinesis)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def stream(kinesis: Kinesis) -> str:
    """A new, empty one-shard stream."""
    name = unique("py-stream")
    kinesis.create_stream(name, 1)
    return name


@pytest.fixture
def make_stream(kinesis: Kinesis) -> Any:
    """make_stream(shards=1, records=()) -> name of a new stream, filled."""

    def make(shards: int = 1, records: Iterable[Union[bytes, Tuple[bytes, str]]] = ()) -> str:
        name = unique("py-stream")
        kinesis.create_stream(name, shards)
        records = list(records)
        if records:
            kinesis.put_records(name, records)
        return name

    return make


def payloads(count: int, prefix: str = "record") -> List[bytes]:
    return [f"{prefix}-{i:05d}".encode() for i in range(count)]


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


# --------------------------------------------------------------------------- KPL aggregates


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def kpl_aggregate(user_records: Sequence[Tuple[str, Optional[str], bytes]]) -> bytes:
    """A KPL aggregated record of (partition key, explicit hash key or None, data)
    user records: magic, protobuf AggregatedRecord, MD5 of the protobuf."""
    import hashlib

    keys: List[str] = []
    hashes: List[str] = []
    entries = b""
    for key, hash_key, data in user_records:
        if key not in keys:
            keys.append(key)
        entry = _varint(1 << 3 | 0) + _varint(keys.index(key))
        if hash_key is not None:
            if hash_key not in hashes:
                hashes.append(hash_key)
            entry += _varint(2 << 3 | 0) + _varint(hashes.index(hash_key))
        entry += _field(3, data)
        entries += _field(3, entry)
    message = b"".join(_field(1, k.encode()) for k in keys) + b"".join(_field(2, h.encode()) for h in hashes) + entries
    return b"\xf3\x89\x9a\xc2" + message + hashlib.md5(message).digest()
