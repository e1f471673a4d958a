"""Claimed deliveries waiting for a sending thread: one lane per endpoint.

At most ``cap`` sends per endpoint run at once, and threads take lanes in
turn, so a slow endpoint's backlog holds at most ``cap`` threads and never
stands in front of another endpoint's work.
"""

from __future__ import annotations

import threading
from collections import deque

from shared.db.deliveries import Claimed


class Lanes:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._cond = threading.Condition()
        self._queued: dict[str, deque[Claimed]] = {}
        self._running: dict[str, int] = {}
        # Endpoints with queued work and a free slot, each listed once, in turn.
        self._ready: deque[str] = deque()
        self._listed: set[str] = set()
        self._closed = False

    def _list_if_ready(self, endpoint_id: str) -> None:
        if (endpoint_id not in self._listed and self._queued.get(endpoint_id)
                and self._running.get(endpoint_id, 0) < self.cap):
            self._ready.append(endpoint_id)
            self._listed.add(endpoint_id)
            self._cond.notify()

    def add(self, batch: list[Claimed]) -> None:
        with self._cond:
            for c in batch:
                self._queued.setdefault(c.endpoint_id, deque()).append(c)
            for endpoint_id in dict.fromkeys(c.endpoint_id for c in batch):
                self._list_if_ready(endpoint_id)

    def take(self, timeout: float | None = None) -> Claimed | None:
        """The next delivery to send (blocks); None once closed or on the timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._ready or self._closed, timeout)
            if self._closed or not self._ready:
                return None
            endpoint_id = self._ready.popleft()
            self._listed.discard(endpoint_id)
            item = self._queued[endpoint_id].popleft()
            self._running[endpoint_id] = self._running.get(endpoint_id, 0) + 1
            self._list_if_ready(endpoint_id)  # to the back of the line: fairness
            return item

    def done(self, endpoint_id: str) -> None:
        with self._cond:
            self._running[endpoint_id] -= 1
            if not self._running[endpoint_id]:
                del self._running[endpoint_id]
            if not self._queued.get(endpoint_id):
                self._queued.pop(endpoint_id, None)
            self._list_if_ready(endpoint_id)

    def drop(self, endpoint_id: str) -> list[Claimed]:
        """Take back what is queued for one endpoint (it was paused or disabled)."""
        with self._cond:
            queued = self._queued.pop(endpoint_id, None) or deque()
            if endpoint_id in self._listed:
                self._listed.discard(endpoint_id)
                self._ready.remove(endpoint_id)
            return list(queued)

    def close(self) -> list[Claimed]:
        """Stop handing out work; returns what was still queued (its claims will expire)."""
        with self._cond:
            self._closed = True
            left = [c for q in self._queued.values() for c in q]
            self._queued.clear()
            self._ready.clear()
            self._listed.clear()
            self._cond.notify_all()
            return left
