"""Coalesced kicks: queue a task unless one is queued already and has not started.

A flag in Redis, set only if absent, stands for the queued task; the task deletes it
when it starts, so work arriving after that kicks a new one. The flag expires by
itself, so a task the broker lost holds nothing up for longer than its time to live.
Drains (shared.inbox) and dispatches (workers.fanout) are kicked this way.
"""

from __future__ import annotations

from collections.abc import Callable

import redis


def claim(client: redis.Redis, key: str, ttl_ms: int) -> bool:
    """Set the flag; True when it was not set, so this caller is the one to send."""
    return bool(client.set(key, b"1", nx=True, px=ttl_ms))


def coalesced(client: redis.Redis, key: str, ttl_ms: int, send: Callable[[], object]) -> bool:
    """Call ``send`` unless the flag under ``key`` is set; True when it was called."""
    if not claim(client, key, ttl_ms):
        return False
    try:
        send()
    except Exception:
        # Let the next kick (or the scheduler's tick) try again.
        client.delete(key)
        raise
    return True
