"""Audit of issue 24: with its own callback key, tenant A cannot opt B's users out of
B's sender, and no filter of A's endpoint brings it B's events."""

from __future__ import annotations

import orjson

from tests.fanout.fanout_helpers import AUTH, client_for
from tests.helpers import FIXTURES, drain_all, enqueue, receipt
from tests.tenants.support import SENDER_B, bearer, enqueue_as, one, two_tenants

MO_STOP = FIXTURES / "kaleyra-rcs" / "mo_flat_user_message_stop.json"


def test_a_key_s_stop_naming_another_tenant_s_sender_binds_only_its_own_tenant(rt):
    a, b = two_tenants(rt)
    api = client_for(rt)
    doc = orjson.loads(MO_STOP.read_bytes())
    enqueue_as(rt, orjson.dumps({**doc, "to": SENDER_B}), a.id)
    drain_all(rt)
    msisdn = one(rt, "SELECT msisdn FROM subscriptions")
    assert one(rt, "SELECT tenant_id FROM subscriptions") == a.id
    url = f"/v1/subscriptions/rcs/{SENDER_B}/{msisdn}"
    for key in (bearer(b.api_key), AUTH):  # B, and the operator (B owns the sender)
        got = api.get(url, headers=key).get_json()
        assert got["may_send"] and got["status"] == "unknown", got
        assert got["history"] == []
    assert api.get("/v1/subscriptions", headers=bearer(b.api_key)).get_json()["items"] == []
    assert api.get("/v1/inbound", headers=bearer(b.api_key)).get_json()["items"] == []


def test_an_endpoint_filter_naming_another_tenant_s_sender_hears_nothing_of_it(make_rt):
    rt = make_rt(HOOKLINE_ALLOW_PRIVATE_ENDPOINTS="true")
    a, b = two_tenants(rt)
    api = client_for(rt)
    r = api.post("/v1/endpoints", headers=bearer(a.api_key),
                 json={"url": "http://127.0.0.1:9/x", "event_types": ["*"],
                       "filter": {"sender": [SENDER_B], "source": ["kaleyra-rcs"]}})
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["tenant_id"] == a.id
    enqueue(rt, receipt("DELIVERED", message_id="msg-b", to=SENDER_B))  # B's, by sender
    enqueue_as(rt, receipt("READ", message_id="msg-c", to=SENDER_B), b.id)  # B's key
    enqueue(rt, receipt("SENT", message_id="msg-n", to="nobody_s"))  # no tenant's
    drain_all(rt)
    assert one(rt, "SELECT count(*) FROM events") == 3
    assert one(rt, "SELECT count(*) FROM deliveries") == 0
