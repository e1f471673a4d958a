"""Prometheus metrics for ingest (multi-process safe when PROMETHEUS_MULTIPROC_DIR is set).

A callback request only notes its source, status and time in a queue; a thread
in each server process adds them to the metrics once a second, and /metrics
does too before answering. In multi-process mode every metric write locks and
writes a memory-mapped file: written per request, the counter and the histogram
were about 4 % of an ingest request's instructions (docs/benchmarks.md). The
price is that another process's last second may not be in a scrape yet.
"""

from __future__ import annotations

import atexit
import collections
import logging
import multiprocessing.util
import os
import threading
import time

from flask import Flask, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from shared.prom import observe_many
from shared.providers import SOURCES

REQUESTS = Counter(
    "hookline_ingest_requests_total", "Callback requests by source and status code",
    ["source", "code"],
)
ACK_SECONDS = Histogram(
    "hookline_ingest_ack_seconds", "Time from request to answer",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
)
ENQUEUE_FAILURES = Counter(
    "hookline_ingest_enqueue_failures_total", "Callbacks refused with 503 because Redis failed"
)

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class _Pending:
    """Requests noted and not yet in the metrics. deque.append and popleft are
    atomic, so the request threads and the flusher need no lock."""

    def __init__(self) -> None:
        self.noted: collections.deque[tuple[str, int, float]] = collections.deque()
        self.flushing = threading.Lock()
        self.thread_started = False
        # Children by (source, code): labels() builds and locks on every call.
        self.children: dict[tuple[str, int], Counter] = {}

    def note(self, source: str, code: int, started: float) -> None:
        self.noted.append((source, code, time.perf_counter() - started))
        if not self.thread_started:
            try:
                self._start()
            except RuntimeError as exc:  # no thread now: the next request tries again
                log.warning("could not start the metrics thread: %s", exc)

    def flush(self) -> None:
        with self.flushing:
            noted = self.noted
            batch = [noted.popleft() for _ in range(len(noted))]
            if not batch:
                return
            counts = collections.Counter((source, code) for source, code, _ in batch)
            for key, n in counts.items():
                child = self.children.get(key)
                if child is None:
                    child = self.children[key] = REQUESTS.labels(key[0], str(key[1]))
                child.inc(n)
            observe_many(ACK_SECONDS, (seconds for _, _, seconds in batch))

    def _start(self) -> None:
        with self.flushing:
            if self.thread_started:
                return
            self.thread_started = True
        try:
            threading.Thread(target=self._run, name="hookline-metrics", daemon=True).start()
        except RuntimeError:
            self.thread_started = False
            raise
        # A granian worker is a multiprocessing child: it ends in os._exit, where
        # atexit does not run and multiprocessing's finalizers do. Registered
        # here, after the child has started, as a child's start clears them.
        multiprocessing.util.Finalize(self, self.flush, exitpriority=10)

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except Exception:  # the next second tries again; the queue must not grow
                log.exception("could not update the ingest metrics")

    def forked(self) -> None:
        """In a forked child: the parent's thread, lock and notes stay behind (the
        parent counts its own requests)."""
        self.noted = collections.deque()
        self.flushing = threading.Lock()
        self.thread_started = False


_pending = _Pending()
os.register_at_fork(after_in_child=_pending.forked)
atexit.register(_pending.flush)


def _observe(source: str, code: int, started: float) -> None:
    # The key space is bounded: an unknown source is counted as "unknown", so a
    # caller cannot grow the metrics by inventing URLs.
    _pending.note(source if source in SOURCES else "unknown", code, started)


def render() -> Response:
    _pending.flush()
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        data = generate_latest(registry)
    else:
        data = generate_latest()
    return Response(data, mimetype=CONTENT_TYPE_LATEST)


def install(app: Flask) -> None:
    app.extensions["hookline.observe"] = _observe
    app.extensions["hookline.enqueue_failed"] = ENQUEUE_FAILURES.inc
    app.add_url_rule("/metrics", "metrics", render)
