"""The two-tenant world the isolation tests (API and console) read and act on, and the
fan-out fixtures (a real receiver, fast runtimes) for these tests too."""

from __future__ import annotations

import orjson
import pytest

from tests.fanout.conftest import fast_rt, frt, receiver
from tests.fanout.fanout_helpers import client_for
from tests.helpers import FIXTURES, drain_all, enqueue, receipt
from tests.tenants.support import SENDER_A, SENDER_B, bearer, one, two_tenants

__all__ = ["fast_rt", "frt", "receiver", "world"]

MO_STOP = FIXTURES / "kaleyra-rcs" / "mo_flat_user_message_stop.json"


def _mo_stop(sender: str, n: int) -> bytes:
    doc = orjson.loads(MO_STOP.read_bytes())
    return orjson.dumps({**doc, "to": sender, "eventId": f"mo-{n}", "messageId": f"mo-{n}"})


@pytest.fixture
def world(make_rt):
    """Tenants A and B, each with an endpoint (made with its own key), a message, an
    inbound STOP (so a subscription), the events, and deliveries."""
    rt = make_rt(HOOKLINE_ALLOW_PRIVATE_ENDPOINTS="true")
    a, b = two_tenants(rt)
    api = client_for(rt)
    eps = {}
    for t in (a, b):
        r = api.post("/v1/endpoints", headers=bearer(t.api_key),
                     json={"url": "http://127.0.0.1:9/hook", "event_types": ["*"]})
        assert r.status_code == 201, r.get_json()
        eps[t.id] = r.get_json()
    enqueue(rt, receipt("DELIVERED", message_id="msg-a"))
    enqueue(rt, receipt("DELIVERED", message_id="msg-b", to=SENDER_B))
    enqueue(rt, _mo_stop(SENDER_A, 1))
    enqueue(rt, _mo_stop(SENDER_B, 2))
    drain_all(rt)
    deliveries = {t.id: one(rt, "SELECT min(id) FROM deliveries WHERE endpoint_id = %s",
                            eps[t.id]["id"]) for t in (a, b)}
    return rt, api, a, b, eps, deliveries


