"""Whole-process behaviour: Ctrl-C and interpreter exit (installing the package: test_install.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from conftest import PACKAGE_DIR, payloads


def python_child(code: str) -> "subprocess.Popen[str]":
    """Runs `code` in a fresh interpreter that imports this checkout's package."""
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_ctrl_c_interrupts_iteration_promptly(emulators, stream: str) -> None:
    child = python_child(
        f"""
        import kcheck
        consumer = kcheck.Consumer({stream!r}, endpoint_url={emulators.kinesis!r})
        print("ready", flush=True)
        for record in consumer:  # an empty stream and no idle timeout: waits forever
            pass
        """
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(0.5)  # inside the loop, waiting in the library
        start = time.monotonic()
        child.send_signal(signal.SIGINT)
        child.wait(timeout=10)
        elapsed = time.monotonic() - start
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = child.stderr.read() if child.stderr else ""
    # An unhandled KeyboardInterrupt ends Python by SIGINT itself (exit -2).
    assert child.returncode in (-signal.SIGINT, 1, 128 + signal.SIGINT), (child.returncode, stderr)
    assert stderr.rstrip().endswith("KeyboardInterrupt"), stderr
    assert elapsed < 2.0, f"exited {elapsed:.2f} s after SIGINT"


def test_caught_ctrl_c_loses_no_record(emulators, kinesis, stream: str) -> None:
    """A KeyboardInterrupt caught by the program does not lose records: iteration goes on."""
    kinesis.put_records(stream, payloads(50))
    child = python_child(
        f"""
        import os, signal, threading
        import kcheck
        consumer = kcheck.Consumer({stream!r}, endpoint_url={emulators.kinesis!r}, idle_timeout=1)
        seen = []
        interrupted = 0
        while True:
            try:
                for record in consumer:
                    seen.append(record.data)
                    if len(seen) % 10 == 0 and interrupted < 3:
                        interrupted += 1
                        os.kill(os.getpid(), signal.SIGINT)
                break
            except KeyboardInterrupt:
                pass
        consumer.close()
        print(interrupted, len(seen), len(set(seen)), flush=True)
        """
    )
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out.split() == ["3", "50", "50"], (out, err)


def test_interpreter_exit_with_an_open_consumer(emulators, kinesis, stream: str) -> None:
    kinesis.put_records(stream, payloads(5))
    child = python_child(
        f"""
        import logging
        import kcheck
        logging.basicConfig(level=logging.DEBUG)
        consumer = kcheck.Consumer({stream!r}, endpoint_url={emulators.kinesis!r})
        record = next(consumer)
        cycle = [consumer]
        cycle.append(cycle)  # reachable only through a reference cycle at exit
        print(record.data.decode(), flush=True)
        """
    )
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out == "record-00000\n"
    assert "Exception ignored" not in err and "Traceback" not in err, err


def test_interpreter_exit_while_a_daemon_thread_iterates(emulators, stream: str) -> None:
    child = python_child(
        f"""
        import threading, time
        import kcheck
        consumer = kcheck.Consumer({stream!r}, endpoint_url={emulators.kinesis!r})
        ended = []
        def iterate():
            for record in consumer:  # empty stream: waits in the library
                pass
            ended.append(True)
        threading.Thread(target=iterate, daemon=True).start()
        time.sleep(0.5)
        print("exiting", flush=True)
        """
    )
    start = time.monotonic()
    out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert out == "exiting\n"
    assert "Exception ignored" not in err and "Traceback" not in err, err
    assert time.monotonic() - start < 10
