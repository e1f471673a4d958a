"""Small builders shared by the tests."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson

from shared import inbox
from shared.envelope import Envelope, new_id
from shared.runtime import Runtime
from workers.tasks import drain_round

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
