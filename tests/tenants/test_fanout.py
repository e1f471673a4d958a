"""Fan-out end to end (drain, outbox, dispatcher, real HTTP): each tenant's endpoints
receive that tenant's events only; the operator's, every tenant's or those it names."""

from __future__ import annotations

import time

from shared import secretbox, signing
from shared.db import endpoints
from tests.fanout.fanout_helpers import body, deliver, verify
from tests.helpers import drain_all, enqueue, receipt
from tests.tenants.support import enqueue_as, two_tenants


def _endpoint(rt, url: str, tenant_id: str | None = None,
              filters: dict | None = None) -> tuple[str, str]:
    secret = signing.new_secret()
    sealed = secretbox.box(rt.settings.secret_keys).seal(secret)
    with rt.pool.connection() as conn:
        row = endpoints.create(conn, url=url, event_types=["*"], secret=sealed,
                               filters=filters, tenant_id=tenant_id)
    return row["id"], secret


def test_each_tenant_s_endpoints_receive_only_its_own_events(frt, receiver):
    a, b = two_tenants(frt)
    _, secret_a = _endpoint(frt, receiver.url("/a"), a.id)
    _endpoint(frt, receiver.url("/b"), b.id)
    _endpoint(frt, receiver.url("/operator"))
    _endpoint(frt, receiver.url("/only-b"), filters={"tenant": [b.id]})

    enqueue(frt, receipt("DELIVERED", message_id="msg-a"))            # A's sender
    enqueue_as(frt, receipt("DELIVERED", message_id="msg-b"), b.id)   # B's callback key
    enqueue(frt, receipt("DELIVERED", message_id="msg-n", to="nobody's"))  # no tenant
    drain_all(frt)
    deliver(frt, until=lambda: len(receiver.requests()) >= 6)
    time.sleep(0.3)  # anything wrongly sent would have arrived by now
    deliver(frt)

    def ids(path: str) -> list:
        return sorted(body(r)["data"]["message_id"] for r in receiver.requests(path))

    assert ids("/a") == ["msg-a"]
    assert ids("/b") == ["msg-b"]
    assert ids("/operator") == ["msg-a", "msg-b", "msg-n"]
    assert ids("/only-b") == ["msg-b"]
    got = verify(receiver.requests("/a")[0], secret_a)
    assert got["data"]["tenant_id"] == a.id
    untenanted = [r for r in receiver.requests("/operator")
                  if body(r)["data"]["message_id"] == "msg-n"]
    assert "tenant_id" not in body(untenanted[0])["data"]
