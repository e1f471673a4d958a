"""Prometheus metrics for ingest (multi-process safe when PROMETHEUS_MULTIPROC_DIR is set)."""

from __future__ import annotations

import os
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


# Children by (source, code): labels() builds and locks on every call. The key
# space is bounded: an unknown source is counted as "unknown", so a caller
# cannot grow the metrics (or this cache) by inventing URLs.
_CHILDREN: dict[tuple[str, int], Counter] = {}


def _observe(source: str, code: int, started: float) -> None:
    if source not in SOURCES:
        source = "unknown"
    child = _CHILDREN.get((source, code))
    if child is None:
        child = _CHILDREN[(source, code)] = REQUESTS.labels(source, str(code))
    child.inc()
    ACK_SECONDS.observe(time.perf_counter() - started)


def render() -> Response:
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
