"""Kicking a fan-out dispatch: at most one queued, none while one runs.

Apart from workers.fanout so that what only kicks (ingest, through the composition
root; a drain) does not load the dispatcher and declare its delivery metrics.
"""

from __future__ import annotations

import time

import redis

from shared import kicks, runtime
from workers import producer

KICK_KEY = "hookline:fanout:kick"          # a dispatch is queued and not started yet
RUNNING_KEY = "hookline:fanout:running"    # zset: running dispatches, scored by expiry
KICK_TTL_MS = 2000


def send_dispatch() -> None:
    producer.send_dispatch(runtime.get().settings)


def running(client: redis.Redis) -> bool:
    return client.zcount(RUNNING_KEY, time.time(), "+inf") > 0


def kick_dispatch(force: bool = False) -> bool:
    """Queue a dispatch unless one is queued already (or, unless ``force``, one
    is running: it will find the new work itself). True when one was sent."""
    client = runtime.get().redis
    if not force and running(client):
        return False
    return kicks.coalesced(client, KICK_KEY, KICK_TTL_MS, send_dispatch)
