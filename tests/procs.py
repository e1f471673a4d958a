"""Real hookline processes for the tests, and waiting for what they do."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

HOOKLINE = [sys.executable, "-m", "hookline"]
# `hookline ingest` refuses to start with callbacks open: the processes under test get this
# token (unless their env names another), and the tests send it.
CALLBACK_TOKEN = "test-callback-token"
CALLBACK_AUTH = {"Authorization": f"Bearer {CALLBACK_TOKEN}"}
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(predicate: Callable[[], Any], timeout: float, interval: float) -> Any:
    """predicate()'s first truthy value within ``timeout`` seconds, else None: the caller
    decides how a timeout fails (a test failure, or an exception fault tests can catch)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy; returns its value or fails the test."""
    value = poll(predicate, timeout, interval)
    if not value:
        pytest.fail(f"condition not met within {timeout}s")
    return value


def wait_http(url: str, timeout: float = 30.0) -> None:
    def up() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=timeout, interval=0.2)


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout)


def hookline(argv: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path = ROOT
             ) -> subprocess.Popen:
    """`hookline *argv`, its stdout and stderr written to the file ``log``."""
    with log.open("w") as out:  # the child has a descriptor of its own
        if argv[:1] == ["ingest"]:
            env = {"HOOKLINE_CALLBACK_TOKEN": CALLBACK_TOKEN, **env}
        return subprocess.Popen([*HOOKLINE, *argv], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd)


def ingest_args(port: int, workers: int) -> list[str]:
    """`hookline ingest` on 127.0.0.1:``port`` with ``workers`` server processes."""
    return ["ingest", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]


@contextmanager
def running_stack(
    env: dict[str, str], logdir: Path, worker_args: Sequence[str] = ()
) -> Iterator[str]:
    """ingest + worker + scheduler as in production, logging into ``logdir``; yields the
    ingest base URL once /readyz answers, and stops all three on exit."""
    port = free_port()
    procs = [hookline(argv, env, logdir / f"{name}.log") for name, argv in (
        ("ingest", ingest_args(port, 1)),
        ("worker", ["worker", "--concurrency", "2", *worker_args]),
        ("scheduler", ["scheduler", "--schedule", str(logdir / "beat")]),
    )]
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/readyz")
    try:
        yield base
    finally:
        for p in procs:
            stop(p)
