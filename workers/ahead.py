"""Read-ahead: lease and parse the next inbox batch while this one commits.

A drain that works batch after batch spends about a third of its time waiting
for PostgreSQL to apply one (docs/benchmarks.md). Waiting on the socket does
not hold the GIL, so one helper thread per worker process leases the next
batch meanwhile, parses it and encodes its events insert's parameters (all of
which the drain's thread would otherwise do between two batches). Batches
still commit one at a time, in lease order, in the drain's own thread: the
helper never touches PostgreSQL. Only the inbox is read ahead; the retry
list's one-at-a-time leases are not.

A batch read ahead and not applied (the drain's budget ran out, the worker is
stopping, or PostgreSQL is away) goes back to the oldest end of the inbox, as
a batch does on an outage. Two batches given back together may swap places;
the SQL rules make arrival order irrelevant.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from shared.inbox import Lease
from shared.runtime import Runtime
from workers import lease_renewal
from workers.pipeline import Parsed, parse_lease

# With two threads busy, the drain's thread, woken by PostgreSQL's answer, gets the
# GIL back only when the helper's switch interval ends: 5 ms by default, after
# every statement. 1 ms cut a batch's wall time by about a tenth
# (docs/benchmarks.md).
SWITCH_INTERVAL_SECONDS = 0.001

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_executor_pid = 0


def _pool() -> ThreadPoolExecutor:
    """One helper thread per process, made after fork (Celery prefork)."""
    global _executor, _executor_pid
    with _lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(1, thread_name_prefix="hookline-read-ahead")
            _executor_pid = os.getpid()
            sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        return _executor


@dataclass(slots=True)
class Batch:
    lease: Lease
    parsed: Parsed


class ReadAhead:
    """At most one inbox batch leased and parsed ahead of the drain."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._next: Future[Batch | None] | None = None

    def start(self) -> None:
        if self._next is None:
            self._next = _pool().submit(self._fetch)

    def take(self) -> Batch | None:
        """The batch read ahead, once parsed; None if none was started or the inbox
        was empty. Errors leasing it (Redis) are raised here, in the drain."""
        pending, self._next = self._next, None
        return pending.result() if pending is not None else None

    def give_back(self) -> None:
        """Return a batch read ahead but not applied to the inbox's oldest end."""
        batch = self.take()
        if batch is not None:
            lease_renewal.forget(batch.lease)
            self.rt.inbox.release(batch.lease, requeue=batch.lease.items, to_inbox=True)

    def _fetch(self) -> Batch | None:
        lease = self.rt.inbox.lease(self.rt.settings.batch_size)
        if lease is None:
            return None
        # Kept while it waits for the batch before it to commit, however long that takes.
        lease_renewal.watch(self.rt.inbox, lease)
        return Batch(lease, parse_lease(self.rt, lease))
