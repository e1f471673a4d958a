"""Celery tasks. Names and queues are explicit; see workers.queues."""

from __future__ import annotations

import logging
import time

from celery import shared_task

from shared import queue, runtime
from workers import queues
from workers.pipeline import DatabaseUnavailable, Outcome, process_lease

log = logging.getLogger(__name__)

# How long one drain task keeps leasing batches before handing over to a fresh
# task: long enough to amortise Celery's per-task cost, short enough to stay
# far below the time limits.
DRAIN_BUDGET_SECONDS = 5.0
RETRY_LEASES_PER_ROUND = 20


def send_drain() -> None:
    from workers.celery_app import app

    app.send_task(queues.TASK_DRAIN, queue=queues.DRAIN)


def kick_drain() -> bool:
    """Queue a drain unless one is queued already."""
    return queue.kick(runtime.get().redis, send_drain)


def drain_round(rt: runtime.Runtime) -> Outcome | None:
    """Reclaim expired leases, work the retry list one by one, then one batch."""
    inbox = rt.inbox
    inbox.reclaim_expired()
    total = Outcome()
    for _ in range(RETRY_LEASES_PER_ROUND):
        lease = inbox.lease(1, from_retry=True)
        if lease is None:
            break
        _merge(total, process_lease(rt, lease))
    lease = inbox.lease(rt.settings.batch_size)
    if lease is None:
        return total if total.applied or total.dead_letters or total.requeued else None
    if rt.redis.llen(queue.INBOX):
        # More work than one batch: let another worker process start on it now.
        kick_drain()
    _merge(total, process_lease(rt, lease))
    return total


def _merge(total: Outcome, part: Outcome) -> None:
    total.applied += part.applied
    total.notifications += part.notifications
    total.dead_letters += part.dead_letters
    total.requeued += part.requeued
    total.latencies += part.latencies


@shared_task(name=queues.TASK_DRAIN, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def drain() -> int:
    rt = runtime.get()
    if queue.backing_off(rt.redis):
        return 0
    # Cleared before leasing: any envelope pushed after this kicks a new drain.
    queue.clear_kick(rt.redis)
    deadline = time.monotonic() + DRAIN_BUDGET_SECONDS
    done = 0
    try:
        while time.monotonic() < deadline:
            outcome = drain_round(rt)
            if outcome is None:
                return done
            done += len(outcome.applied) + outcome.dead_letters
    except DatabaseUnavailable as exc:
        # No Celery retry: the batch is back in the inbox, and the scheduler's
        # tick kicks a new drain once the back-off has passed.
        pause = queue.back_off(rt.redis)
        log.warning("database unavailable, drains pause %.1fs", pause,
                    extra={"error": str(exc), "pause_seconds": pause})
        return done
    queue.recovered(rt.redis)
    kick_drain()
    return done


@shared_task(name=queues.TASK_TICK, ignore_result=True)
def tick() -> None:
    """Once a second: reclaim expired leases and make sure queued work has a drain."""
    rt = runtime.get()
    rt.inbox.reclaim_expired()
    depths = queue.depths(rt.redis, rt.settings.lease_seconds)
    if (depths.inbox or depths.retry) and not queue.backing_off(rt.redis):
        kick_drain()
