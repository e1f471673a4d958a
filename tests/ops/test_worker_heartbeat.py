"""The worker's liveness comes from a heartbeat its main process writes, also while the
broker is away; `hookline worker-alive` reads it (issue 22, defect 5)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from shared import heartbeat
from tests.procs import HOOKLINE, ROOT, hookline, stop, wait_for


def _alive(path, max_age: float) -> subprocess.CompletedProcess:
    return subprocess.run([*HOOKLINE, "worker-alive", "--file", str(path), "--max-age",
                           str(max_age)], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_worker_alive_reads_the_heartbeat_age(tmp_path):
    path = tmp_path / "beat"
    assert _alive(path, 60).returncode == 1  # none yet
    heartbeat.touch(path)
    assert _alive(path, 60).returncode == 0
    old = time.time() - 100
    os.utime(path, (old, old))
    done = _alive(path, 60)
    # 100 s and the moments a loaded machine takes to start the probe.
    assert done.returncode == 1 and re.search(r"is 10\ds old", done.stderr), done.stderr


def test_the_heartbeat_goes_on_while_the_broker_is_unreachable_and_stops_with_the_process(
        base_env, tmp_path):
    path = tmp_path / "beat"
    # No Redis at all: Celery's consumer sits in its reconnect loop, as in a Redis outage.
    env = {**base_env, "REDIS_URL": "redis://127.0.0.1:1/0", heartbeat.ENV: str(path)}
    proc = hookline(["worker", "--concurrency", "1", "--metrics-port", "0"], env,
                    tmp_path / "worker.log")
    try:
        wait_for(lambda: path.exists(), timeout=60, interval=0.2)
        wait_for(lambda: "Cannot connect" in (tmp_path / "worker.log").read_text()
                 or "Error" in (tmp_path / "worker.log").read_text(), timeout=30)
        first = path.stat().st_mtime
        # Longer than the reconnect loop's first sleeps: the beats go on all the while.
        wait_for(lambda: path.stat().st_mtime >= first + 4, timeout=20, interval=0.5)
        assert _alive(path, 5).returncode == 0
        os.kill(proc.pid, signal.SIGSTOP)  # a wedged main process
        try:
            time.sleep(6)
            assert _alive(path, 5).returncode == 1
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        wait_for(lambda: _alive(path, 5).returncode == 0, timeout=20, interval=0.5)
    finally:
        stop(proc)


def test_a_connected_worker_beats_from_its_event_loop(base_env, tmp_path):
    path = tmp_path / "beat"
    env = {**base_env, heartbeat.ENV: str(path)}
    log = tmp_path / "worker.log"
    proc = hookline(["worker", "--concurrency", "1", "--metrics-port", "0"], env, log)
    try:
        wait_for(lambda: " ready." in log.read_text(), timeout=60, interval=0.2)
        first = path.stat().st_mtime
        # Connected, the reconnect loop is idle: only the consumer's timer moves it on.
        wait_for(lambda: path.stat().st_mtime > first + heartbeat.INTERVAL_SECONDS / 2,
                 timeout=heartbeat.INTERVAL_SECONDS * 2.5, interval=0.5)
        assert "Cannot connect" not in log.read_text()
    finally:
        stop(proc)
