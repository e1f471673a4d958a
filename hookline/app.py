"""The ingest app wired to the Celery side: ingest itself does not import workers."""

from __future__ import annotations

from typing import Any

from flask import Flask

from ingest import app as ingest_app


def _send_drain() -> None:
    # Imported on first use, as before the move: the Celery app (and the worker
    # metrics it declares) stays out of ingest processes that never kick.
    from workers.tasks import send_drain

    send_drain()


def _kick_fanout() -> None:
    from workers.fanout import kick_dispatch

    kick_dispatch()


def create_app(**kwargs: Any) -> Flask:
    """``ingest.app.create_app`` with the drain and fan-out kicks that queue Celery tasks."""
    kwargs.setdefault("send_drain", _send_drain)
    kwargs.setdefault("kick_fanout", _kick_fanout)
    return ingest_app.create_app(**kwargs)
