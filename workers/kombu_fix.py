"""A worker must outlive its broker restarting.

When the Redis connection drops while the worker holds unacknowledged messages,
kombu (5.x) closes the channel after its transport has let go of the connection:
restoring those messages builds a new Redis client from ``transport.client``,
which is None by then, and the AttributeError escapes every handler written for
connection errors. The worker stops ("Unrecoverable error") instead of
reconnecting, and nothing is drained until someone restarts it (seen in
``tests/faults/test_servers.py``, Redis ``kill -9``; kombu issues 582 and 970
show the same path). Raised as the connection error it is, kombu's handlers
ignore it and the consumer reconnects. The messages are not lost: kombu returns
unacknowledged messages after the visibility timeout, and hookline's ticks send
drains and dispatches again long before.
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

_MARK = "_hookline_closed_client_fix"


def install() -> None:
    original = kombu_redis.Channel._connparams
    if getattr(original, _MARK, False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is already closed")
        return original(self, asynchronous)

    setattr(_connparams, _MARK, True)
    kombu_redis.Channel._connparams = _connparams  # type: ignore[method-assign]
