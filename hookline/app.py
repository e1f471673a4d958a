"""The ingest app wired to the Celery side: ingest itself does not import workers."""

from __future__ import annotations

from typing import Any

from flask import Flask

from ingest import app as ingest_app
from shared import runtime
from workers import dispatch_kick, producer


def _send_drain() -> None:
    producer.send_drain(runtime.get().settings)


def create_app(**kwargs: Any) -> Flask:
    """``ingest.app.create_app`` with the drain and fan-out kicks that queue Celery tasks."""
    kwargs.setdefault("send_drain", _send_drain)
    kwargs.setdefault("kick_fanout", dispatch_kick.kick_dispatch)
    return ingest_app.create_app(**kwargs)
