"""The lease heartbeat: a batch being worked keeps its lease.

A lease that expires is taken for a dead worker: its envelopes go to the retry list
and each new lease of one counts an attempt. A batch that is merely slow (waiting for
a lock, a connection, a slow disk) must not look like that, so while this process
holds a lease, one thread per process moves its deadline on every quarter of
HOOKLINE_LEASE_SECONDS, and only while the lease is still ours (shared.inbox's
renew script). The batch's statements are bounded below the lease
(workers.pipeline.time_bounds), so a lease renewed this way is one whose batch is
still moving: each statement either finishes or is cancelled well within a lease,
and a stuck process stops renewing because it dies with its thread (SIGKILL, the
hard time limit). A lease found reclaimed is marked ``lost``: its batch then rolls
back instead of committing after its envelopes went to someone else.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis

from shared.inbox import Inbox, Lease

log = logging.getLogger(__name__)

# Renewed this often, as a share of the lease: three renewals in a row can fail before
# it lapses.
BEATS_PER_LEASE = 4


class LeaseRenewal:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[Inbox, Lease]] = {}
        self._thread: threading.Thread | None = None
        self._seconds = 60.0

    def watch(self, inbox: Inbox, lease: Lease) -> None:
        with self._lock:
            self._held[lease.id] = (inbox, lease)
            self._seconds = min(self._seconds, inbox.lease_seconds)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hookline-lease-renewal",
                                                daemon=True)
                self._thread.start()

    def forget(self, lease: Lease) -> None:
        with self._lock:
            self._held.pop(lease.id, None)

    def interval(self) -> float:
        return self._seconds / BEATS_PER_LEASE

    def beat(self) -> None:
        """Renew every lease held; mark the ones found reclaimed."""
        with self._lock:
            held = list(self._held.values())
        for inbox, lease in held:
            try:
                ours = inbox.renew(lease)
            except redis.RedisError as exc:
                # Tried again at the next beat; the lease has three more to go.
                log.warning("could not renew lease %s: %s", lease.id, exc,
                            extra={"lease": lease.id, "error": repr(exc)})
                continue
            if not ours:
                lease.lost = True
                self.forget(lease)
                log.warning("lease %s was reclaimed while its batch was in hand", lease.id,
                            extra={"lease": lease.id})

    def _run(self) -> None:
        while True:
            time.sleep(self.interval())
            try:
                self.beat()
            except Exception:
                # The thread must outlive any one failure (a Cluster error that is no
                # RedisError, a bug): dead, it would let every lease of this process lapse.
                log.exception("lease heartbeat failed; trying again at the next beat")


_beat = LeaseRenewal()


def _after_fork() -> None:
    # A forked child (Celery prefork) has none of its parent's threads or leases.
    global _beat
    _beat = LeaseRenewal()


os.register_at_fork(after_in_child=_after_fork)


def watch(inbox: Inbox, lease: Lease) -> None:
    _beat.watch(inbox, lease)


def forget(lease: Lease) -> None:
    _beat.forget(lease)
