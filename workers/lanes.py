"""Claimed deliveries waiting for a sending thread: one lane per endpoint.

At most ``cap`` sends per endpoint run at once, and threads take lanes in
turn, so a slow endpoint's backlog holds at most ``cap`` threads and never
stands in front of another endpoint's work. Endpoints marked slow (their
answers take long: the sender decides) may together hold at most
``slow_threads`` threads, so however many of them there are, the rest of the
threads stay for the others.
"""

from __future__ import annotations

import threading
from collections import deque

from shared.db.outbox.claims import Claimed


class Lanes:
    def __init__(self, cap: int, slow_threads: int | None = None) -> None:
        self.cap = cap
        self.slow_threads = slow_threads
        self._cond = threading.Condition()
        self._queued: dict[str, deque[Claimed]] = {}
        self._running: dict[str, int] = {}
        # Endpoints with queued work and a free slot, each listed once, in turn;
        # slow ones in a line of their own.
        self._ready: deque[str] = deque()
        self._ready_slow: deque[str] = deque()
        self._listed: set[str] = set()
        self._slow: set[str] = set()
        self._slow_running = 0  # sends running to slow endpoints
        self._slow_turn = False  # both lines ready: they take turns
        self._closed = False

    def _list_if_ready(self, endpoint_id: str) -> None:
        if (endpoint_id not in self._listed and self._queued.get(endpoint_id)
                and self._running.get(endpoint_id, 0) < self.cap):
            self._line_of(endpoint_id).append(endpoint_id)
            self._listed.add(endpoint_id)
            self._cond.notify()

    def _line_of(self, endpoint_id: str) -> deque[str]:
        return self._ready_slow if endpoint_id in self._slow else self._ready

    def _unlist(self, endpoint_id: str) -> None:
        if endpoint_id in self._listed:
            self._listed.discard(endpoint_id)
            self._line_of(endpoint_id).remove(endpoint_id)

    def _slow_open(self) -> bool:
        return bool(self._ready_slow) and (
            self.slow_threads is None or self._slow_running < self.slow_threads)

    def _line(self) -> deque[str] | None:
        """The line to take from now, or None if nothing may start."""
        slow = self._slow_open()
        if slow and self._ready:
            self._slow_turn = not self._slow_turn
            return self._ready_slow if self._slow_turn else self._ready
        return self._ready_slow if slow else (self._ready or None)

    def add(self, batch: list[Claimed]) -> None:
        with self._cond:
            for c in batch:
                self._queued.setdefault(c.endpoint_id, deque()).append(c)
            for endpoint_id in dict.fromkeys(c.endpoint_id for c in batch):
                self._list_if_ready(endpoint_id)

    def take(self, timeout: float | None = None) -> Claimed | None:
        """The next delivery to send (blocks); None once closed or on the timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._ready or self._slow_open() or self._closed,
                                timeout)
            line = None if self._closed else self._line()
            if line is None:
                return None
            endpoint_id = line.popleft()
            self._listed.discard(endpoint_id)
            item = self._queued[endpoint_id].popleft()
            self._running[endpoint_id] = self._running.get(endpoint_id, 0) + 1
            if line is self._ready_slow:
                self._slow_running += 1
            self._list_if_ready(endpoint_id)  # to the back of the line: fairness
            return item

    def done(self, endpoint_id: str) -> None:
        with self._cond:
            self._running[endpoint_id] -= 1
            if not self._running[endpoint_id]:
                del self._running[endpoint_id]
            if endpoint_id in self._slow:
                self._slow_running -= 1
                if self._ready_slow:
                    self._cond.notify()  # a slow lane may start again
            if not self._queued.get(endpoint_id):
                self._queued.pop(endpoint_id, None)
            self._list_if_ready(endpoint_id)

    def set_slow(self, endpoint_id: str, slow: bool, keep: int) -> list[Claimed]:
        """Mark an endpoint slow or not. Made slow, what is queued for it beyond
        ``keep`` is handed back (claimed for a fast endpoint, it would wait long)."""
        with self._cond:
            if slow == (endpoint_id in self._slow):
                return []
            self._unlist(endpoint_id)  # from the line it is in now
            (self._slow.add if slow else self._slow.discard)(endpoint_id)
            # Its sends already running count from now on (or no longer).
            running = self._running.get(endpoint_id, 0)
            self._slow_running += running if slow else -running
            if not slow and running and self._ready_slow:
                self._cond.notify(running)  # room for that many slow sends again
            queued = self._queued.get(endpoint_id) or deque()
            extra = [queued.pop() for _ in range(len(queued) - keep)] if slow else []
            self._list_if_ready(endpoint_id)
            return extra[::-1]

    def slow_load(self) -> int:
        """Deliveries of slow endpoints queued or being sent."""
        with self._cond:
            return self._slow_running + sum(len(self._queued.get(e) or ()) for e in self._slow)

    def drop(self, endpoint_id: str) -> list[Claimed]:
        """Take back what is queued for one endpoint (it was paused or disabled)."""
        with self._cond:
            queued = self._queued.pop(endpoint_id, None) or deque()
            self._unlist(endpoint_id)
            return list(queued)

    def close(self) -> list[Claimed]:
        """Stop handing out work; returns what was still queued (its claims will expire)."""
        with self._cond:
            self._closed = True
            left = [c for q in self._queued.values() for c in q]
            self._queued.clear()
            self._ready.clear()
            self._ready_slow.clear()
            self._listed.clear()
            self._cond.notify_all()
            return left
