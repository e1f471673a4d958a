"""The worker's liveness heartbeat: a file whose modification time the worker's main
process moves on while its event loop turns, and while it waits to reconnect to the
broker. `hookline worker-alive` (the k8s liveness probe) reads its age: a wedged main
process lets it go stale, a Redis outage does not (unlike `celery inspect ping`, which
needs the broker and so restarted every worker while Redis was away).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV = "HOOKLINE_WORKER_HEARTBEAT_FILE"
DEFAULT_FILE = "/tmp/hookline-worker.heartbeat"
# How often the worker touches it, and the age past which the probe calls it dead: many
# beats, and more than the broker reconnect loop's longest sleep (30 s) plus a connect.
INTERVAL_SECONDS = 10.0
MAX_AGE_SECONDS = 120.0


def heartbeat_file(env: os._Environ | dict[str, str] | None = None) -> Path:
    return Path((os.environ if env is None else env).get(ENV) or DEFAULT_FILE)


def touch(path: Path | None = None) -> None:
    path = path or heartbeat_file()
    try:
        os.utime(path)
    except FileNotFoundError:
        path.write_bytes(b"")


def age(path: Path | None = None) -> float | None:
    """Seconds since the last beat; None when there was none."""
    try:
        return max(0.0, time.time() - (path or heartbeat_file()).stat().st_mtime)
    except FileNotFoundError:
        return None
