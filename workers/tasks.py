"""Celery tasks. Names and queues are explicit; see workers.queues."""

from __future__ import annotations

import gc
import logging
import time
from datetime import UTC, datetime, timedelta

import psycopg
from celery import shared_task
from celery.signals import worker_process_init

from shared import inbox, runtime
from shared.db import convert, events, partitions, retention
from workers import dispatch_kick, hooks, producer, queues
from workers.ahead import ReadAhead
from workers.pipeline import DatabaseUnavailable, Outcome, parse_lease, process_lease

log = logging.getLogger(__name__)

# How long one drain task keeps leasing batches before handing over to a fresh
# task: long enough to amortise Celery's per-task cost, short enough to stay
# far below the time limits.
DRAIN_BUDGET_SECONDS = 5.0
RETRY_LEASES_PER_ROUND = 20
# A drain allocates tens of thousands of short-lived objects per batch. With the
# default thresholds the collector kept re-scanning everything a pool process
# inherits (Celery, kombu, hookline's modules): about a tenth of the drain's CPU
# (docs/benchmarks.md). Those are frozen out of its reach and young objects are
# collected less often; memory stays the same.
GC_THRESHOLDS = (10_000, 10, 10)


@worker_process_init.connect
def _tune_gc(**_: object) -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def send_drain() -> None:
    producer.send_drain(runtime.get().settings)


def kick_drain() -> bool:
    """Queue a drain unless one is queued already."""
    return inbox.kick(runtime.get().redis, send_drain)


def kick_fanout() -> None:
    try:
        # Flag-guarded: at most one queued dispatch, whatever the rate.
        dispatch_kick.kick_dispatch()
    except Exception as exc:
        # The scheduler's fan-out tick sends them within a second anyway.
        log.warning("could not kick fan-out: %s", exc, extra={"error": repr(exc)})


def drain_round(rt: runtime.Runtime, ahead: ReadAhead | None = None) -> Outcome | None:
    """Reclaim expired leases, work the retry list one by one, then one batch. With
    ``ahead``, the next batch is leased and parsed while this one commits."""
    inbox = rt.inbox
    inbox.reclaim_expired()
    total = Outcome()
    retried = False
    for _ in range(RETRY_LEASES_PER_ROUND):
        lease = inbox.lease(1, from_retry=True)
        if lease is None:
            break
        retried = True
        part = process_lease(rt, lease)
        _merge(total, part)
        if part.stalled:
            # PostgreSQL is holding something up: the rest waits for the next round
            # rather than each envelope waiting out its own lock timeout now.
            break
    batch = ahead.take() if ahead is not None else None
    lease = batch.lease if batch is not None else inbox.lease(rt.settings.batch_size)
    if lease is None:
        # A retry list of duplicates (a worker died between commit and release)
        # applies nothing, yet is work: left to the tick, it drained 20 a second.
        return total if retried else None
    more = inbox.backlog(lease)
    if more:
        # More work than one batch: let another worker process start on it now.
        kick_drain()
    parsed = batch.parsed if batch is not None else parse_lease(rt, lease)
    if ahead is not None and more:
        ahead.start()
    _merge(total, process_lease(rt, lease, parsed))
    return total


def _merge(total: Outcome, part: Outcome) -> None:
    total.applied += part.applied
    total.notifications += part.notifications
    total.enqueued += part.enqueued
    total.dead_letters += part.dead_letters
    total.requeued += part.requeued
    total.latencies += part.latencies
    total.tally.update(part.tally)
    total.ingest_ids += part.ingest_ids
    total.stalled += part.stalled


@shared_task(name=queues.TASK_DRAIN, acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def drain() -> int:
    rt = runtime.get()
    if inbox.backing_off(rt.redis):
        return 0
    # Cleared before leasing: any envelope pushed after this kicks a new drain.
    inbox.clear_kick(rt.redis)
    deadline = time.monotonic() + DRAIN_BUDGET_SECONDS
    done = 0
    committed = False
    ahead = ReadAhead(rt)
    try:
        # A worker shutting down finishes the batch in hand and leaves the rest to others.
        while time.monotonic() < deadline and not hooks.stopping():
            outcome = drain_round(rt, ahead)
            if outcome is None:
                return done
            if not committed:
                # A batch committed, so PostgreSQL is reachable: back-off doubles over
                # consecutive failures only. (Reset only when a drain used its whole
                # budget, an old outage's count made the next blip pause 30 s.)
                inbox.recovered(rt.redis)
                committed = True
            done += len(outcome.applied) + outcome.dead_letters
            if outcome.enqueued:
                # The round committed deliveries: send them now, not at the next tick.
                # (Not for events no endpoint takes: each dispatch planned two claims
                # over the outbox's partitions, beside the drains, for nothing.)
                kick_fanout()
    except DatabaseUnavailable as exc:
        # No Celery retry: the batch is back in the inbox, and the scheduler's
        # tick kicks a new drain once the back-off has passed.
        pause = inbox.back_off(rt.redis)
        log.warning("database unavailable, drains pause %.1fs", pause,
                    extra={"error": str(exc), "pause_seconds": pause})
        return done
    finally:
        ahead.give_back()
    inbox.recovered(rt.redis)
    kick_drain()
    return done


@shared_task(name=queues.TASK_TICK, ignore_result=True)
def tick() -> None:
    """Once a second: reclaim expired leases and make sure queued work has a drain."""
    rt = runtime.get()
    rt.inbox.reclaim_expired()
    depths = inbox.depths(rt.redis, rt.settings.lease_seconds, rt.settings.inbox_shards)
    if (depths.inbox or depths.retry) and not inbox.backing_off(rt.redis):
        kick_drain()


# Well below the soft time limit; a purge with rows left sends itself again.
PURGE_BUDGET_SECONDS = 120.0
# The conversion of a pre-010 installation, after the purge, within the same limit.
CONVERT_BUDGET_SECONDS = 60.0


@shared_task(name=queues.TASK_PURGE, ignore_result=True)
def purge() -> dict[str, int]:
    """Storage upkeep: make the partitions ahead, drop (and delete) what is older than
    HOOKLINE_RETENTION_DAYS (shared.db.retention), and move an installation's rows from
    before migration 010 across (shared.db.convert)."""
    rt = runtime.get()
    cutoff = datetime.now(UTC) - timedelta(days=rt.settings.retention_days)
    with psycopg.connect(rt.settings.require_database(), autocommit=True) as conn:
        interval = rt.settings.partition_interval_days
        partitions.ensure(conn, interval_days=interval)
        out = retention.purge(conn, cutoff, budget_seconds=PURGE_BUDGET_SECONDS)
        moved = convert.Moved(finished=True)
        if not out.skipped:
            partitions.analyze_parents(conn)
            moved = convert.step(conn, cutoff, interval, events.DEDUPE_DAYS,
                                 budget_seconds=CONVERT_BUDGET_SECONDS)
    if out.skipped:
        return {}
    log.info("retention dropped %s partitions (about %s rows) and deleted %s",
             len(out.dropped), out.dropped_rows, out.deleted,
             extra={"deleted": out.deleted, "dropped": out.dropped, "kept": out.kept,
                    "cutoff": cutoff.isoformat(), "converted": moved.events})
    if not out.finished or not (moved.finished or moved.skipped):
        producer.send_purge(rt.settings)
    return {**out.deleted, "partitions_dropped": len(out.dropped), "converted": moved.events}
