"""Builders for the fan-out tests (fixtures: tests/fanout/conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from standardwebhooks.webhooks import Webhook

from ingest.app import create_app
from shared.model import NormalisedEvent
from shared.runtime import Runtime
from tests.helpers import drain_all, enqueue, receipt
from tests.receiver import Received
from workers import fanout

AUTH = {"Authorization": "Bearer test-api-token"}

# Fast schedules for tests; the address guard lifted for the local receiver.
FAST = dict(
    HOOKLINE_ALLOW_PRIVATE_ENDPOINTS="true",
    HOOKLINE_RETRY_SCHEDULE="0.2,0.2,0.2",
    HOOKLINE_DELIVERY_TIMEOUT="2",
    HOOKLINE_BREAKER_FAILURES="50",
)


def client_for(rt: Runtime):
    app = create_app(rt=rt, send_drain=lambda: None)
    app.extensions["hookline.kick_fanout"] = lambda: None
    return app.test_client()


def create_endpoint(api, url: str, **fields: Any) -> dict[str, Any]:
    body = {"event_types": ["*"], **fields, "url": url}
    resp = api.post("/v1/endpoints", json=body, headers=AUTH)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def apply_receipts(rt: Runtime, *kinds: str, message_id: str = "msg-1",
                   offsets: tuple[float, ...] | None = None) -> None:
    """Callbacks through the real drain (parse, dedupe, apply, outbox)."""
    for i, kind in enumerate(kinds):
        offset = offsets[i] if offsets else float(i)
        enqueue(rt, receipt(kind, message_id=message_id, offset=offset))
    drain_all(rt)


def deliver(rt: Runtime, until: Callable[[], Any] | None = None, timeout: float = 10.0,
            budget: float = 0.3) -> Any:
    """Run the dispatcher in this process until ``until()`` is truthy (or, without
    it, until nothing is due and nothing is in flight)."""
    deadline = time.monotonic() + timeout
    while True:
        _, idle = fanout.dispatch(rt, budget=budget)
        if until is None and idle:
            fanout.dispatcher_for(rt).flush(timeout)
            return None
        if until is not None:
            value = until()
            if value:
                return value
        if time.monotonic() > deadline:
            pytest.fail(f"delivery condition not met within {timeout}s")
        time.sleep(0.01)


def verify(req: Received, secret: str) -> dict[str, Any]:
    """Standard Webhooks verification, exactly as a customer's receiver would do it."""
    return Webhook(secret).verify(req.body, req.headers)


def body(req: Received) -> dict[str, Any]:
    return orjson.loads(req.body)


def rows(rt: Runtime, sql: str, *params: Any) -> list[tuple]:
    with rt.pool.connection() as conn:
        return conn.execute(sql, params).fetchall()


def delivery_rows(rt: Runtime, endpoint_id: str) -> list[tuple]:
    return rows(rt, "SELECT id, status, attempts, type FROM deliveries WHERE endpoint_id = %s "
                    "ORDER BY seq", endpoint_id)


def sample_event() -> NormalisedEvent:
    return NormalisedEvent(
        type="message.read", source="kaleyra-rcs", channel="rcs",
        occurred_at=datetime(2025, 6, 16, 13, 46, 38, tzinfo=UTC), dedupe_key="e:1",
        message_id="m1", sender="agent", msisdn="4477", status="read", ingest_id="i1",
    )
