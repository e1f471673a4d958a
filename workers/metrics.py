"""Prometheus metrics for workers, correct across the processes of a Celery prefork pool.

`hookline worker` sets PROMETHEUS_MULTIPROC_DIR before anything imports
prometheus_client: pool processes count into their own files and the worker's
main process serves the sum on --metrics-port (see workers.hooks).

Counters and histograms are written by the drain, once per batch. The queue
and endpoint gauges are not written by anyone: they are read from Redis and
PostgreSQL when /metrics is scraped, so every worker replica reports the same
fresh value (a gauge refreshed by a periodic task would go stale on a replica
that stops receiving that task, and max() over replicas would keep the stale
reading alive).

The metric objects are made on first use, so importing this module registers
nothing.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared import config, inbox
from shared.db import stats
from shared.prom import observe_many
from shared.runtime import redis_client

log = logging.getLogger(__name__)

APPLIED = "applied"
DUPLICATE = "duplicate"
DEAD_LETTER = "dead_letter"
# A dead letter was never parsed into an event, so it has no event type.
NO_TYPE = "unknown"

BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class WorkerMetrics:
    events: Counter
    dead_letters: Counter
    batch_size: Histogram
    ack_to_commit: Histogram
    stalled: Counter


@functools.cache
def _metrics() -> WorkerMetrics:
    return WorkerMetrics(
        events=Counter(
            "hookline_events_applied_total",
            "Parsed events by source, type and outcome (applied, duplicate, dead_letter)",
            ["source", "type", "outcome"],
        ),
        dead_letters=Counter(
            "hookline_dead_letters_total", "Callbacks set aside as dead letters", ["source"]
        ),
        batch_size=Histogram(
            "hookline_batch_size", "Envelopes per leased batch", buckets=BATCH_BUCKETS
        ),
        ack_to_commit=Histogram(
            "hookline_ack_to_commit_seconds",
            "From the 202 at ingest to the commit of the envelope's batch",
            buckets=LATENCY_BUCKETS,
        ),
        stalled=Counter(
            "hookline_envelopes_stalled_total",
            "Envelopes sent to the retry list uncounted: their batch hit a statement or lock "
            "timeout in PostgreSQL, or lost its lease",
        ),
    )


def record_batch(size: int, tally: Tally, latencies: list[float], stalled: int = 0) -> None:
    """Count one processed lease. ``tally`` maps (source, type, outcome) to events."""
    m = _metrics()
    m.batch_size.observe(size)
    if stalled:
        m.stalled.inc(stalled)
    letters: Tally = Tally()
    for (source, type_, outcome), n in tally.items():
        m.events.labels(source, type_, outcome).inc(n)
        if outcome == DEAD_LETTER:
            letters[source] += n
    for source, n in letters.items():
        m.dead_letters.labels(source).inc(n)
    observe_many(m.ack_to_commit, latencies)


class StateCollector(Collector):
    """Queue depths and endpoint health, read from Redis and PostgreSQL at scrape time."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self._redis = redis_client(settings.require_redis()) if settings.redis_url else None

    def describe(self) -> list:
        # Nothing to declare up front: registering must not read Redis or PostgreSQL.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._queue()
        yield from self._endpoints()
        yield from self._storage()
        yield from self._backlog()

    def _queue(self) -> Iterator[GaugeMetricFamily]:
        if self._redis is None:
            return
        try:
            d = inbox.depths(self._redis, self.settings.lease_seconds,
                             self.settings.inbox_shards)
        except Exception as exc:
            log.warning("metrics: cannot read the inbox: %s", exc)
            return
        yield _gauge("hookline_inbox_depth", "Callbacks queued, not yet leased", d.inbox)
        yield _gauge("hookline_retry_depth", "Envelopes waiting to be retried one by one",
                     d.retry)
        yield _gauge("hookline_active_leases", "Batches leased by workers, not yet released",
                     d.leases)
        yield _gauge("hookline_oldest_lease_age_seconds", "Age of the oldest live lease",
                     d.oldest_lease_age)
        yield _gauge("hookline_inbox_shards", "Inbox shards counted in the depths above",
                     d.shards)

    def _read(self, what: str, read: Callable[[str], Any]) -> Any:
        """``read(database_url)``; None without PostgreSQL, or (logged) when it fails."""
        if not self.settings.database_url:
            return None
        try:
            return read(self.settings.database_url)
        except Exception as exc:
            log.warning("metrics: cannot read %s: %s", what, exc)
            return None

    def _endpoints(self) -> Iterator[GaugeMetricFamily]:
        failing = self._read("endpoint health", stats.endpoints_failing_now)
        if failing is None:
            return
        yield _gauge("hookline_endpoints_failing",
                     "Enabled customer endpoints whose recent deliveries are failing", failing)
        held = self._read("held deliveries", stats.held_deliveries_now)
        if held is None:
            return
        held_age, stranded = held
        yield _gauge("hookline_held_delivery_oldest_seconds",
                     "How long the oldest delivery held behind an earlier one of its message "
                     "(ordered endpoints) has waited", held_age)
        yield _gauge("hookline_held_deliveries_stranded",
                     "Messages whose first delivery in line is held: nothing will let it go",
                     stranded)

    def _storage(self) -> Iterator[GaugeMetricFamily]:
        storage = self._read("the partitions", stats.storage_now)
        if storage is None:
            return
        ahead, default_rows = storage
        yield _gauge("hookline_partitions_ahead_seconds",
                     "Time until the first partitioned table has no partition made ahead",
                     ahead)
        yield _gauge("hookline_default_partition_rows",
                     "Rows (planner estimate) in the default partitions: times with no "
                     "partition", default_rows)

    def _backlog(self) -> Iterator[GaugeMetricFamily]:
        reading = self._read("the fan-out backlog", lambda url: shared_reading(
            self._redis, lambda: stats.fanout_backlog_now(url)))
        if reading is None:
            return
        pending, held, oldest = reading
        yield _gauge("hookline_deliveries_pending",
                     "Deliveries waiting to be sent or retried (held ones apart)", pending)
        yield _gauge("hookline_deliveries_held",
                     "Deliveries of ordered endpoints held behind an earlier one of their "
                     "message", held)
        yield _gauge("hookline_oldest_due_delivery_age_seconds",
                     "How long the oldest due delivery has waited past its due time", oldest)


# The backlog gauges count the outbox's unsettled rows: cheap, but a pass over the
# backlog, so one worker replica reads them per interval and the others (and the next
# scrapes) take its reading from Redis.
BACKLOG_KEY = "hookline:metrics:fanout-backlog"
BACKLOG_LOCK = "hookline:metrics:fanout-backlog:lock"
BACKLOG_REFRESH_SECONDS = 15


def shared_reading(client: redis.Redis | None, read: Callable[[], Any]) -> Any:
    """``read()``, or a reading another process took less than BACKLOG_REFRESH_SECONDS
    ago; while one process reads, the others serve the previous reading."""
    if client is None:
        return read()
    raw = client.get(BACKLOG_KEY)
    cached = orjson.loads(raw) if raw else None
    if cached is not None and time.time() - cached["t"] < BACKLOG_REFRESH_SECONDS:
        return cached["v"]
    if cached is not None and not client.set(BACKLOG_LOCK, b"1", nx=True,
                                             ex=BACKLOG_REFRESH_SECONDS):
        return cached["v"]
    value = read()
    client.set(BACKLOG_KEY, orjson.dumps({"t": time.time(), "v": value}),
               ex=BACKLOG_REFRESH_SECONDS * 4)
    return value


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def registry(settings: config.Settings) -> CollectorRegistry:
    """What the worker's /metrics serves: the pool processes' files plus live state."""
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)
    reg.register(StateCollector(settings))
    return reg
