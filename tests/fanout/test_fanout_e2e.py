"""Fan-out through the real processes: ingest, `hookline worker`, `hookline scheduler`."""

from __future__ import annotations

import time
import uuid

import httpx
import psycopg
import pytest

from tests.helpers import receipt
from tests.procs import CALLBACK_AUTH, running_stack
from tests.receiver import Receiver, Reply

AUTH = {"Authorization": "Bearer test-api-token"}
# Message ids of this module's own: the events table is shared with the other
# end-to-end modules, and a receipt they already posted is a duplicate, which
# notifies nobody (the endpoint would wait for it in vain).
RUN = uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def fanout_stack(base_env, database_url, tmp_path_factory):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE endpoints CASCADE")  # nothing left over from other tests
    env = {**base_env, "HOOKLINE_ALLOW_PRIVATE_ENDPOINTS": "true",
           "HOOKLINE_RETRY_SCHEDULE": "0.3,0.3"}
    logdir = tmp_path_factory.mktemp("fanout-stack")
    with running_stack(env, logdir, worker_args=["--metrics-port", "0"]) as base:
        yield base


def _post(base: str, kind: str, message_id: str) -> float:
    r = httpx.post(f"{base}/callbacks/kaleyra-rcs", content=receipt(kind, message_id=message_id),
                   headers=CALLBACK_AUTH)
    assert r.status_code == 202, r.text
    return time.monotonic()


def test_a_callback_reaches_the_customer_endpoint_well_under_a_second(fanout_stack, receiver):
    from standardwebhooks.webhooks import Webhook

    resp = httpx.post(f"{fanout_stack}/v1/endpoints", headers=AUTH,
                      json={"url": receiver.url("/e2e"), "event_types": ["*"]})
    assert resp.status_code == 201, resp.text
    secret = resp.json()["secret"]
    _post(fanout_stack, "SENT", f"warm-up-{RUN}")  # worker and connections warm up
    receiver.wait(1, "/e2e", timeout=30)
    latencies = []
    for i in range(5):
        accepted = _post(fanout_stack, "DELIVERED", f"e2e-{RUN}-{i}")
        got = receiver.wait(2 + i, "/e2e", timeout=10)[-1]
        latencies.append(got.at - accepted)
        delivered = Webhook(secret).verify(got.body, got.headers)
        assert delivered["data"]["message_id"] == f"e2e-{RUN}-{i}"
    print(f"callback 202 -> delivery: {[round(x, 3) for x in latencies]} s")
    # Kicked by the drain, not waiting for the once-a-second tick (which alone
    # would put about half of these over 0.5 s).
    assert max(latencies) < 0.5, latencies


def test_a_failed_delivery_is_retried_by_the_scheduled_dispatcher(fanout_stack, receiver):
    receiver.script("/e2e", Reply(500))
    accepted = _post(fanout_stack, "READ", f"e2e-retry-{RUN}")
    first, second = receiver.wait(8, "/e2e", timeout=15)[-2:]
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert second.at - first.at >= 0.3 * 0.8 - 0.05
    assert second.at - accepted < 5  # the tick picked the retry up within about a second
