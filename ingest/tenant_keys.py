"""Callback keys as ingest sees them: a snapshot held in the process, refreshed often.

The callback path must not wait for PostgreSQL (it stays within 0.9x of a bare
LPUSH), so ingest holds every live callback key's hash and refreshes the snapshot
at most every SNAPSHOT_SECONDS, on the request that finds it stale. A key made or
revoked counts within that time (docs/tenants.md). PostgreSQL down: a snapshot
already held goes on serving; with none yet, the caller answers 503. The keys seen
since the last refresh have their last_used_at written at the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from psycopg_pool import ConnectionPool

from shared.db import keys

log = logging.getLogger(__name__)

SNAPSHOT_SECONDS = 2.0


class KeysUnavailable(Exception):
    """No snapshot yet, and PostgreSQL cannot give one."""


class CallbackKeys:
    def __init__(self, pool: Callable[[], ConnectionPool],
                 ttl: float = SNAPSHOT_SECONDS) -> None:
        self._pool = pool
        self.ttl = ttl
        self._keys: dict[bytes, tuple[str, str]] | None = None
        self._loaded_at = 0.0
        self._used: set[str] = set()
        self._lock = threading.Lock()

    def tenant_of(self, presented: str) -> str | None:
        """The tenant of the live callback key ``presented``; None if it is not one."""
        if not presented.startswith(keys.PREFIX):
            return None
        snapshot = self._snapshot()
        hit = snapshot.get(keys.digest(presented))
        if hit is None:
            return None
        self._used.add(hit[0])
        return hit[1]

    def forget(self) -> None:
        """Refresh at the next lookup (after this process revoked a key)."""
        self._loaded_at = 0.0

    def _snapshot(self) -> dict[bytes, tuple[str, str]]:
        current = self._keys
        if current is not None and time.monotonic() - self._loaded_at < self.ttl:
            return current
        # One thread refreshes; the others go on with the stale snapshot meanwhile.
        if not self._lock.acquire(blocking=current is None):
            return current  # type: ignore[return-value]
        try:
            if self._keys is None or time.monotonic() - self._loaded_at >= self.ttl:
                self._refresh()
        finally:
            self._lock.release()
        if self._keys is None:
            raise KeysUnavailable("callback keys cannot be read from PostgreSQL")
        return self._keys

    def _refresh(self) -> None:
        used, self._used = self._used, set()
        try:
            with self._pool().connection(timeout=2) as conn:
                self._keys = keys.live_callback_keys(conn)
                if used:
                    keys.touch(conn, used)
        except Exception as exc:  # the pool's own errors too: keep serving what we hold
            log.warning("could not refresh callback keys: %s", exc)
            self._used |= used
            # Try again after a while, not on every request.
            self._loaded_at = time.monotonic() if self._keys is not None else 0.0
            return
        self._loaded_at = time.monotonic()
