"""Celery signal handlers for logging and metrics, connected by workers.celery_app.

Only worker processes import this (senders use workers.producer), so the
metrics server's imports sit at module level.
"""

from __future__ import annotations

import logging
import mmap
import os

from celery.signals import (
    setup_logging,
    worker_init,
    worker_process_shutdown,
    worker_shutting_down,
)
from prometheus_client import multiprocess, start_http_server

from shared import config, logs, tracing
from workers.metrics import registry

log = logging.getLogger(__name__)

# Set by `hookline worker --metrics-port`; 0 (or a bare `celery worker`) serves nothing.
metrics_port = 0
METRICS_ADDRESS = "0.0.0.0"


@setup_logging.connect
def _logging(loglevel: int | str | None = None, **_: object) -> None:
    # A receiver here stops Celery from installing its own handlers, so its
    # logs (task received / succeeded, worker and beat events) go through the
    # same formatter as ours: JSON when HOOKLINE_LOG_FORMAT=json.
    logs.setup(os.environ.get("HOOKLINE_LOG_FORMAT", "json"), level=loglevel or None)


@worker_init.connect
def _tracing(**_: object) -> None:
    # In the main process: the SDK's span processor starts its export thread again in
    # each pool process it forks.
    tracing.configure("hookline-worker")


@worker_init.connect
def _serve_metrics(**_: object) -> None:
    """In the worker's main process, before the pool starts."""
    if not metrics_port or "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return
    try:
        start_http_server(metrics_port, METRICS_ADDRESS, registry=registry(config.load()))
    except OSError as exc:
        # Metrics are not worth refusing work for; say so loudly instead.
        log.error("cannot serve worker metrics on :%d: %s", metrics_port, exc,
                  extra={"port": metrics_port})
        return
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    log.info("worker metrics on :%d/metrics (files in %s)", metrics_port, folder,
             extra={"port": metrics_port, "dir": folder})


# One shared byte, mapped before the pool forks, so every pool process sees the main
# process's "shutting down" at once (Celery tells only the main process).
_STOPPING = mmap.mmap(-1, 1)


@worker_shutting_down.connect
def _shutting_down(**_: object) -> None:
    _STOPPING[0] = 1


def stopping() -> bool:
    """True once this worker began its shutdown: finish the batch in hand, lease no more."""
    return _STOPPING[0] == 1


@worker_process_shutdown.connect
def _forget_process(**_: object) -> None:
    # Live gauges of a pool process that exits must not be reported any more.
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.mark_process_dead(os.getpid())
