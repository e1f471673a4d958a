"""A warm shutdown must not wait 30 seconds for a result nobody reads.

When a worker is told to stop, Celery's prefork pool (5.x with billiard 4.x)
forgets every task a pool process has not acknowledged yet, because the broker
will deliver it again. A task already written down the process's pipe is run
all the same. The pool process then reports the result and, before it exits,
waits for the main process to read it (billiard's ``_ensure_messages_consumed``,
up to 30 seconds). The main process reads results at shutdown only while it
still remembers a task, so it never reads that one: the worker hangs for 30
seconds, which under an orchestrator's grace period (30 s on Kubernetes) ends in
SIGKILL. Under a steady flow of small tasks this happened on half of the warm
shutdowns measured (``tests/faults/test_workers.py``,
``tests/ops/test_ops_shutdown.py``).

The fix keeps reading the pool processes' results until they have all exited.
Each has been sent its stop sentinel by then, so the wait is bounded by the
tasks they are finishing. (The forgotten task runs without Celery's time
limits, which are armed by the acknowledgement the pool no longer matches to
it; hookline's drain and dispatch end within their own time budgets.) Its
message was not acknowledged, so it is delivered again; hookline's tasks are
idempotent (leases and ids in Redis and PostgreSQL), so the second run finds
nothing to do.
"""

from __future__ import annotations

from typing import Any

from billiard.pool import TERMINATE, WorkersJoined
from celery.concurrency import asynpool

_MARK = "_hookline_reads_until_exit"


def _read_until_exited(handler: Any) -> None:
    """Celery's own loop, without its stop at an empty task cache: read each pool
    process's results, and after each, join those that have exited, until all
    have (or the pool is terminated)."""
    outqueues = set(handler.fileno_to_outq)
    while outqueues and handler._state != TERMINATE:
        closed: set[int] = set()
        for fd in outqueues:
            asynpool.iterate_file_descriptors_safely(
                [fd], handler.fileno_to_outq, handler._flush_outqueue,
                closed.add, handler.fileno_to_outq, handler.on_state_change)
            try:
                handler.join_exited_workers(shutdown=True)
            except WorkersJoined:
                return
        outqueues -= closed


def install() -> None:
    original = asynpool.ResultHandler.on_stop_not_started
    if getattr(original, _MARK, False):
        return

    def on_stop_not_started(self: Any) -> None:
        original(self)
        _read_until_exited(self)

    setattr(on_stop_not_started, _MARK, True)
    asynpool.ResultHandler.on_stop_not_started = on_stop_not_started  # type: ignore[method-assign]
