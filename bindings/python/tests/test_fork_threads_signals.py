"""What real programs do around a consumer: fork, threads, signals, exit.

Each case runs in a child interpreter (it forks, installs signal handlers,
or exits), prints one JSON line of findings, and is judged here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, Dict, Tuple

import pytest

from conftest import FAST_CONSUMER, FAST_LEASES, PACKAGE_DIR, payloads, unique

import kcheck
from kcheck import Consumer, MemoryCheckPointer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

# Shared by the child scripts: the emulators, fast lease timing, and a
# DynamoDB consumer of the test's stream.
PRELUDE = """
import json, os, signal, sys, threading, time
import kcheck
from kcheck import Consumer, DynamoDBCheckPointer, ForkError

def dynamodb_consumer(stream, group, **options):
    checkpointer = DynamoDBCheckPointer(name=group, endpoint_url=DYNAMODB, **FAST_LEASES)
    return Consumer(stream, checkpointer=checkpointer, endpoint_url=KINESIS, **FAST_CONSUMER, **options)

def wait_for(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)

def refused(call):
    # A ForkError naming this process's parent, or what happened instead.
    try:
        call()
    except ForkError as error:
        expected = f"created in process {os.getppid()}"
        return "ForkError" if expected in str(error) else f"ForkError without {expected!r}: {error}"
    except BaseException as error:
        return f"{type(error).__name__}: {error}"
    return "no error"
"""


def run_child(emulators: Any, code: str, timeout: float = 60) -> Dict[str, Any]:
    """Runs PRELUDE + `code` in a fresh interpreter; returns its last stdout
    line as JSON. Fails with its stderr when it fails or hangs."""
    findings = run_child_with_output(emulators, code, timeout)[1]
    del findings["stderr"]
    return findings


def run_child_with_output(emulators: Any, code: str, timeout: float = 60) -> Tuple[str, Dict[str, Any]]:
    """run_child, also giving the child's first stdout line, and its stderr
    in the findings (as "stderr")."""
    script = (
        f"KINESIS = {emulators.kinesis!r}\nDYNAMODB = {emulators.dynamodb!r}\n"
        f"FAST_LEASES = {FAST_LEASES!r}\nFAST_CONSUMER = {FAST_CONSUMER!r}\n"
        + PRELUDE
        + textwrap.dedent(code)
    )
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR), PYTHONUNBUFFERED="1")
    # Its own process group: whatever it forked is killed with it.
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        stdout, stderr = child.communicate()
        pytest.fail(f"the child did not finish within {timeout} s; stderr:\n{stderr}")
    finally:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert child.returncode == 0, stderr
    assert "panicked" not in stderr and "Exception ignored" not in stderr, stderr
    lines = stdout.strip().splitlines()
    assert lines, stderr
    findings: Dict[str, Any] = json.loads(lines[-1])
    findings["stderr"] = stderr
    return lines[0], findings


# --------------------------------------------------------------------------- fork


def test_a_forked_child_that_just_exits_leaves_the_parents_leases(emulators, make_stream) -> None:
    stream = make_stream(2, payloads(200))
    child_pid, findings = run_child_with_output(
        emulators,
        f"""
        import logging
        logging.basicConfig(level=logging.INFO, format="%(process)d %(name)s: %(message)s")
        # The idle timeout lets several heartbeats pass after the last record.
        consumer = dynamodb_consumer({stream!r}, {unique("fork-exit")!r}, idle_timeout=2.5)
        seen = [next(consumer).data]
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # runs the interpreter's exit hooks, as any child that returns does
        child_exit = wait_for(pid)
        print(pid, flush=True)
        seen += [record.data for record in consumer]
        consumer.checkpoint()
        stats = consumer.stats()
        consumer.close()
        print(json.dumps({{"child_exit": child_exit, "records": len(seen), "distinct": len(set(seen)),
                          "lease_losses": stats["lease_losses"], "checkpoint_failures": stats["checkpoint_failures"]}}))
        """,
    )
    # The child never touched the library's consumer (it logs whatever it does).
    child_lines = [line for line in findings.pop("stderr").splitlines() if line.startswith(f"{child_pid} ")]
    assert child_lines == [], child_lines
    assert findings == {
        "child_exit": 0,
        "records": 200,
        "distinct": 200,
        "lease_losses": 0,
        "checkpoint_failures": 0,
    }


def test_a_forked_child_that_uses_the_consumer_gets_fork_error(emulators, make_stream, tmp_path) -> None:
    stream = make_stream(1, payloads(50))
    child_findings = str(tmp_path / "child.json")
    findings = run_child(
        emulators,
        f"""
        consumer = dynamodb_consumer({stream!r}, {unique("fork-use")!r}, idle_timeout=1)
        first = next(consumer)  # the rest of its batch stays buffered
        pid = os.fork()
        if pid == 0:
            outcomes = {{
                "next": refused(lambda: next(consumer)),
                "iter": refused(lambda: iter(consumer)),
                "checkpoint": refused(consumer.checkpoint),
                "checkpoint_record": refused(lambda: consumer.checkpoint(first)),
                "stats": refused(consumer.stats),
                "manual_checkpoint": refused(consumer.checkpointer.manual_checkpoint),
                "new_consumer_same_checkpointer": refused(
                    lambda: Consumer({stream!r}, checkpointer=consumer.checkpointer, endpoint_url=KINESIS)
                ),
            }}
            consumer.close()  # drops the copy only
            outcomes["after_close"] = refused(lambda: next(consumer))
            with open({child_findings!r}, "w") as out:
                json.dump(outcomes, out)
            sys.exit(0)
        child_exit = wait_for(pid)
        rest = [record.data for record in consumer]
        stats = consumer.stats()
        consumer.close()
        with open({child_findings!r}) as found:
            child = json.load(found)
        print(json.dumps({{"child_exit": child_exit, "child": child, "parent_records": 1 + len(rest),
                          "lease_losses": stats["lease_losses"]}}))
        """,
    )
    assert findings["child"] == {
        name: "ForkError"
        for name in (
            "next",
            "iter",
            "checkpoint",
            "checkpoint_record",
            "stats",
            "manual_checkpoint",
            "new_consumer_same_checkpointer",
            "after_close",
        )
    }
    assert findings["child_exit"] == 0
    assert findings["parent_records"] == 50 and findings["lease_losses"] == 0


def test_forked_children_using_the_checkpointer_do_not_disturb_a_busy_parent(emulators, make_stream) -> None:
    stream = make_stream(2, payloads(4000))
    findings = run_child(
        emulators,
        f"""
        consumer = dynamodb_consumer({stream!r}, {unique("fork-busy")!r}, idle_timeout=2)
        checkpointer = consumer.checkpointer
        errors, seen = [], []
        def read():
            try:
                for record in consumer:
                    seen.append(record.data)
                    if len(seen) % 50 == 0:
                        consumer.checkpoint()  # keeps the shared connections busy
                        time.sleep(0.005)
            except BaseException as error:
                errors.append(repr(error))
        reader = threading.Thread(target=read)
        reader.start()
        time.sleep(0.3)
        children = []
        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                outcomes = [
                    refused(lambda: Consumer({stream!r}, checkpointer=checkpointer, endpoint_url=KINESIS)),
                    refused(checkpointer.manual_checkpoint),
                ]
                os._exit(0 if outcomes == ["ForkError", "ForkError"] else 1)
            children.append(pid)
            time.sleep(0.1)
        exits = [wait_for(pid) for pid in children]
        reader.join(60)
        stats = consumer.stats()
        consumer.close()
        print(json.dumps({{"exits": exits, "errors": errors, "records": len(seen), "distinct": len(set(seen)),
                          "lease_losses": stats["lease_losses"], "checkpoint_failures": stats["checkpoint_failures"]}}))
        """,
    )
    assert findings == {
        "exits": [0, 0, 0],
        "errors": [],
        "records": 4000,
        "distinct": 4000,
        "lease_losses": 0,
        "checkpoint_failures": 0,
    }


# --------------------------------------------------------------------------- threads


@pytest.mark.timeout(120)
def test_two_threads_iterating_one_consumer_share_its_records(emulators, make_stream) -> None:
    expected = payloads(8000)
    stream = make_stream(2, expected)
    consumer = Consumer(stream, endpoint_url=emulators.kinesis, idle_timeout=1.5, **FAST_CONSUMER)
    seen: Dict[str, list] = {"a": [], "b": []}
    errors = []

    def iterate(name: str) -> None:
        try:
            for record in consumer:
                seen[name].append(record.data)
        except BaseException as error:  # reported below
            errors.append(repr(error))

    threads = [threading.Thread(target=iterate, args=(name,)) for name in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    wedged = [thread.name for thread in threads if thread.is_alive()]
    consumer.close()
    assert not wedged and not errors, (wedged, errors)
    both = seen["a"] + seen["b"]
    assert len(both) == len(expected) and sorted(both) == sorted(expected)


# --------------------------------------------------------------------------- signals


def test_close_from_a_signal_handler_during_checkpoint(emulators, make_stream) -> None:
    """A signal handler closes the consumer at every point a checkpoint can be
    interrupted: after each library call inside it (deterministic), and at
    random moments. The only answers are success and ConsumerClosedError."""
    stream = make_stream(2, payloads(3000))
    findings = run_child(
        emulators,
        f"""
        import random
        import kcheck.consumer as consumer_module
        from kcheck import ConsumerClosedError

        outcomes = {{}}
        def note(outcome):
            outcomes[outcome] = outcomes.get(outcome, 0) + 1

        current = []
        signal.signal(signal.SIGUSR1, lambda *_: current[0].close())
        signal.signal(signal.SIGALRM, lambda *_: current[0].close())

        class SignalAfterCall:
            # The library with a signal arriving as each checkpoint call returns.
            def __init__(self, lib, after):
                self._lib, self._after = lib, after
            def __getattr__(self, name):
                return getattr(self._lib, name)
            @property
            def kcheck_consumer_checkpoint_record(self):
                def call(*args):
                    try:
                        return self._lib.kcheck_consumer_checkpoint_record(*args)
                    finally:
                        self._after()
                return call

        def trial(interrupt):
            checkpointer = kcheck.MemoryCheckPointer(auto_checkpoint=False)
            consumer = Consumer({stream!r}, checkpointer=checkpointer, endpoint_url=KINESIS, **FAST_CONSUMER)
            current[:] = [consumer]
            taken = [next(consumer) for _ in range(random.randrange(100, 3000))]
            interrupt()
            try:
                while not consumer.closed:
                    consumer.checkpoint()
                note("ok")
            except ConsumerClosedError:
                note("ConsumerClosedError")
            except BaseException as error:
                note(f"{{type(error).__name__}}: {{error}}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                consumer_module._lib = real
                consumer.close()

        real = consumer_module._lib
        def raise_after_each_call():
            consumer_module._lib = SignalAfterCall(real, lambda: os.kill(os.getpid(), signal.SIGUSR1))
        def alarm_soon():
            signal.setitimer(signal.ITIMER_REAL, random.uniform(0.00005, 0.003))
        for _ in range(3):
            trial(raise_after_each_call)
        for _ in range(15):
            trial(alarm_soon)
        print(json.dumps(outcomes))
        """,
        timeout=120,
    )
    assert set(findings) <= {"ok", "ConsumerClosedError"}, findings


def test_keyboard_interrupt_inside_a_finalizer_or_log_callback_is_delivered(emulators) -> None:
    findings = run_child(
        emulators,
        """
        import kcheck.record as record_module
        from kcheck import _logging

        def interrupted(*args):
            raise KeyboardInterrupt  # Ctrl-C arriving while the finalizer or callback runs

        def outcome_of(action):
            try:
                action()
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline:
                    pass
                return "swallowed"
            except KeyboardInterrupt:
                return "delivered"

        record_module._batch_free = interrupted
        batch = [record_module._Batch(1)]
        finalizer = outcome_of(batch.clear)
        _logging._logger_for = interrupted
        # Through the C trampoline, as the library calls it.
        callback = outcome_of(lambda: _logging._TRAMPOLINE(None, 3, b"kcheck", b"a log record"))
        print(json.dumps({"finalizer": finalizer, "log_callback": callback}))
        """,
    )
    assert findings == {"finalizer": "delivered", "log_callback": "delivered"}


def test_ctrl_c_during_heavy_iteration_is_never_swallowed(emulators, make_stream) -> None:
    stream = make_stream(2, payloads(20000))
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR), PYTHONUNBUFFERED="1")
    code = f"""
        import kcheck
        print("ready", flush=True)
        while True:  # a new group each round: the whole stream again
            consumer = kcheck.Consumer({stream!r}, endpoint_url={emulators.kinesis!r}, idle_timeout=0.5)
            for record in consumer:
                pass
            consumer.close()
    """
    for delay in (0.3, 0.55, 0.8):
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
            time.sleep(delay)
            child.send_signal(signal.SIGINT)
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"SIGINT after {delay} s was swallowed: still iterating 5 s later")
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        stderr = child.stderr.read() if child.stderr else ""
        assert child.returncode in (-signal.SIGINT, 1, 128 + signal.SIGINT), (child.returncode, stderr)
        assert "KeyboardInterrupt" in stderr and "Exception ignored" not in stderr, stderr


# --------------------------------------------------------------------------- exit


def test_a_non_daemon_thread_still_iterating_lets_the_process_exit(emulators, make_stream) -> None:
    stream = make_stream(1)
    start = time.monotonic()
    findings = run_child(
        emulators,
        f"""
        consumer = dynamodb_consumer({stream!r}, {unique("exit")!r})
        def iterate():
            for record in consumer:  # an empty stream, no idle timeout
                pass
        threading.Thread(target=iterate).start()
        time.sleep(0.5)
        print(json.dumps({{"main": "returned"}}))
        """,
        timeout=30,
    )
    assert findings == {"main": "returned"}
    assert time.monotonic() - start < 20


# --------------------------------------------------------------------------- smaller


def test_checkpointing_another_consumers_record_is_refused_as_such(emulators, make_stream) -> None:
    stream = make_stream(1, payloads(3))
    with Consumer(stream, endpoint_url=emulators.kinesis, checkpointer=MemoryCheckPointer()) as first:
        with Consumer(stream, endpoint_url=emulators.kinesis, checkpointer=MemoryCheckPointer()) as second:
            theirs = next(first)
            next(second)  # the same shard id, another consumer
            with pytest.raises(kcheck.InvalidArgumentError, match="not returned by this consumer"):
                second.checkpoint(theirs)


def test_huge_inputs_give_short_messages(emulators, stream: str) -> None:
    huge = "a" * (1 << 20)
    with pytest.raises(kcheck.InvalidConfigError, match="region name is 1048576 bytes long") as caught:
        Consumer(stream, endpoint_url=emulators.kinesis, region_name=huge)
    assert len(str(caught.value)) < 200
    with pytest.raises(kcheck.KcheckError) as caught:
        Consumer(huge, endpoint_url=emulators.kinesis)
    assert len(str(caught.value)) < 2000, len(str(caught.value))
    with pytest.raises(kcheck.InvalidConfigError, match="iterator_type") as caught:
        Consumer(stream, endpoint_url=emulators.kinesis, iterator_type=huge)
    assert len(str(caught.value)) < 200
