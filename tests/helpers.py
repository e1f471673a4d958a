"""Small builders shared by the tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson

from shared import inbox
from shared.envelope import Envelope, new_id
from shared.runtime import Runtime
from workers import queues
from workers.celery_app import make_app
from workers.tasks import drain_round

FIXTURES = Path(__file__).parent / "fixtures"
DAY = 86400.0
T0 = datetime(2025, 6, 16, 13, 46, 38, 929000, tzinfo=UTC)


def receipt(kind: str, message_id: str = "msg-1", event_id: str | None = "auto",
            offset: float = 0.0, **extra: object) -> bytes:
    """A Kaleyra RCS delivery receipt as the provider would POST it."""
    doc: dict[str, object] = {
        "type": kind,
        "from": "917673908652",
        "to": "mmx_traffic",
        "sentAt": (T0 + timedelta(seconds=offset)).isoformat().replace("+00:00", "Z"),
        "messageId": message_id,
    }
    if event_id == "auto":
        doc["eventId"] = f"{message_id}-{kind}"
    elif event_id is not None:
        doc["eventId"] = event_id
    doc.update(extra)
    return orjson.dumps(doc)


def enqueue(rt: Runtime, body: bytes, source: str = "kaleyra-rcs",
            event: str | None = None) -> str:
    env = Envelope(id=new_id(), source=source, event=event, received_at=time.time(), body=body)
    inbox.push(rt.redis, env.encode())
    return env.id


def drain_all(rt: Runtime, rounds: int = 1000) -> int:
    """Run drain rounds in this process until the inbox and retry list are empty."""
    applied = 0
    for _ in range(rounds):
        outcome = drain_round(rt)
        if outcome is None:
            return applied
        applied += len(outcome.applied)
    raise AssertionError("inbox never emptied")


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def clean(rt: Runtime) -> None:
    rt.redis.flushdb()
    with rt.pool.connection() as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations'")]
        if tables:
            conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def enqueue_at(rt, body: bytes, age_days: float, source: str = "kaleyra-rcs") -> str:
    """A callback received ``age_days`` ago."""
    env = Envelope(id=new_id(), source=source, event=None,
                   received_at=time.time() - age_days * DAY, body=body)
    inbox.push(rt.redis, env.encode())
    return env.id


def z(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def send_drains(rt, n: int) -> None:
    """Queue drain tasks on the test's broker (this process's Celery app may point elsewhere
    when the tests run on embedded services)."""
    inbox.clear_kick(rt.redis)
    app = make_app(rt.settings)
    for _ in range(n):
        app.send_task(queues.TASK_DRAIN, queue=queues.DRAIN)
