"""Beats shared.heartbeat from the worker's main process (connected by workers.celery_app).

Two places, so that only a wedged process goes quiet: a timer on the consumer's event
loop while it runs, and the callback Celery's broker reconnect loop calls about once a
second while the broker is away (where the event loop does not turn).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from celery.signals import worker_init

from shared import heartbeat

log = logging.getLogger(__name__)


def beat() -> None:
    try:
        heartbeat.touch()
    except OSError as exc:  # a full or read-only disk: the probe will say so
        log.warning("cannot write the worker heartbeat: %s", exc, extra={"error": repr(exc)})


class Heartbeat(bootsteps.StartStopStep):
    """On the consumer's blueprint: its timer fires from the event loop."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None

    def start(self, c: Any) -> None:
        beat()
        self.tref = c.timer.call_repeatedly(heartbeat.INTERVAL_SECONDS, beat)

    def stop(self, c: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None


@worker_init.connect
def _start(**_: object) -> None:
    # Imported here, in the worker only: ingest imports the Celery app (so this module)
    # to send drains, and must not load the consumer machinery for it.
    from celery.worker.consumer import consumer as celery_consumer

    check = celery_consumer.maybe_shutdown
    if getattr(check, "beats", False):
        return

    def beating_check() -> None:
        beat()
        check()

    beating_check.beats = True  # type: ignore[attr-defined]
    # Consumer.ensure_connected passes this module global as the callback kombu's retry
    # loop calls between attempts and each second of its sleeps: the broker is away, the
    # event loop does not turn, and the process is alive.
    celery_consumer.maybe_shutdown = beating_check
    beat()
