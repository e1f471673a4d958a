"""Every /v1 route with two tenants: each list, get and action made with the other
tenant's key finds nothing and changes nothing; the operator's routes are 403."""

from __future__ import annotations

import re

import pytest

from ingest.auth import TENANT_VIEWS
from tests.fanout.fanout_helpers import AUTH
from tests.tenants.support import SENDER_A, SENDER_B, bearer, one


def _items(api, url: str, key: str) -> list[dict]:
    r = api.get(url, headers=bearer(key))
    assert r.status_code == 200, (url, r.get_json())
    return r.get_json()["items"]


def test_lists_hold_only_the_tenant_s_own_rows(world):
    _, api, a, b, eps, _ = world
    for me, other, mine in ((a, b, "msg-a"), (b, a, "msg-b")):
        events = _items(api, "/v1/events", me.api_key)
        assert events and {e["tenant_id"] for e in events} == {me.id}
        assert mine in {e["message_id"] for e in events}
        inbound = _items(api, "/v1/inbound", me.api_key)
        assert len(inbound) == 1
        subs = _items(api, "/v1/subscriptions", me.api_key)
        assert len(subs) == 1 and subs[0]["tenant_id"] == me.id
        assert [e["id"] for e in _items(api, "/v1/endpoints", me.api_key)] == [eps[me.id]["id"]]
        # Filters do not widen the scope.
        assert _items(api, f"/v1/inbound?sender={other_sender(other, a)}", me.api_key) == []
    # The operator sees both.
    assert len(_items(api, "/v1/inbound", "test-api-token")) == 2
    assert len(_items(api, "/v1/endpoints", "test-api-token")) == 2


def other_sender(other, a) -> str:
    return SENDER_A if other is a else SENDER_B


def test_another_tenant_s_resources_are_404_and_unchanged(world):
    rt, api, a, b, eps, deliveries = world
    for me, other, theirs in ((a, b, "msg-b"), (b, a, "msg-a")):
        key = bearer(me.api_key)
        ep = eps[other.id]["id"]
        d = deliveries[other.id]
        assert api.get(f"/v1/messages/{theirs}", headers=key).status_code == 404
        assert api.get(f"/v1/endpoints/{ep}", headers=key).status_code == 404
        assert api.patch(f"/v1/endpoints/{ep}", headers=key,
                         json={"url": "http://127.0.0.1:9/stolen"}).status_code == 404
        assert api.post(f"/v1/endpoints/{ep}/rotate-secret", headers=key).status_code == 404
        assert api.get(f"/v1/endpoints/{ep}/deliveries", headers=key).status_code == 404
        assert api.post(f"/v1/endpoints/{ep}/replay", headers=key,
                        json={"since": "2000-01-01T00:00:00Z"}).status_code == 404
        assert api.get(f"/v1/deliveries/{d}", headers=key).status_code == 404
        assert api.post(f"/v1/deliveries/{d}/retry", headers=key).status_code == 404
        assert api.delete(f"/v1/endpoints/{ep}", headers=key).status_code == 404
        # Its own are there.
        assert api.get(f"/v1/endpoints/{eps[me.id]['id']}", headers=key).status_code == 200
        assert api.get(f"/v1/deliveries/{deliveries[me.id]}", headers=key).status_code == 200
    # Nothing changed: both endpoints as made, their deliveries untouched.
    for t in (a, b):
        ep = api.get(f"/v1/endpoints/{eps[t.id]['id']}", headers=AUTH).get_json()
        assert ep["url"] == "http://127.0.0.1:9/hook"
        assert ep["previous_secret_signs_until"] is None
        assert one(rt, "SELECT requeued_at FROM deliveries WHERE id = %s",
                   deliveries[t.id]) is None


def test_consent_of_another_tenant_is_not_shown(world):
    rt, api, a, b, _, _ = world
    msisdn = one(rt, "SELECT msisdn FROM subscriptions WHERE tenant_id = %s", a.id)
    url = f"/v1/subscriptions/rcs/{SENDER_A}/{msisdn}"
    own = api.get(url, headers=bearer(a.api_key)).get_json()
    assert own["status"] == "opted_out" and own["history"]
    seen_by_b = api.get(url, headers=bearer(b.api_key)).get_json()
    assert seen_by_b["status"] == "unknown" and seen_by_b["may_send"]
    assert seen_by_b["history"] == [] and seen_by_b["subscription"] is None


@pytest.mark.parametrize("method,url", [
    ("GET", "/v1/tenants"), ("POST", "/v1/tenants"), ("GET", "/v1/tenants/{me}"),
    ("PATCH", "/v1/tenants/{me}"), ("DELETE", "/v1/tenants/{me}"),
    ("GET", "/v1/tenants/{me}/keys"), ("POST", "/v1/tenants/{me}/keys"),
    ("DELETE", "/v1/tenants/{me}/keys/key_x"), ("GET", "/v1/keys"), ("POST", "/v1/keys"),
    ("DELETE", "/v1/keys/key_x"), ("GET", "/v1/dead-letters"),
    ("POST", "/v1/dead-letters/1/replay"),
])
def test_the_operator_s_routes_are_403_to_a_tenant(world, method, url):
    rt, api, a, _, _, _ = world
    r = api.open(url.format(me=a.id), method=method, headers=bearer(a.api_key),
                 json={"name": "x", "kind": "api"})
    assert r.status_code == 403, r.get_json()
    assert r.get_json()["type"].endswith("forbidden")
    assert one(rt, "SELECT count(*) FROM tenants") == 2


def test_a_tenant_endpoint_cannot_name_tenants(world):
    _, api, a, b, eps, _ = world
    r = api.post("/v1/endpoints", headers=bearer(a.api_key),
                 json={"url": "http://127.0.0.1:9/x", "event_types": ["*"],
                       "filter": {"tenant": [b.id]}})
    assert r.status_code == 400, r.get_json()
    r = api.patch(f"/v1/endpoints/{eps[a.id]['id']}", headers=bearer(a.api_key),
                  json={"filter": {"tenant": b.id}})
    assert r.status_code == 400, r.get_json()


def test_every_route_not_scoped_for_tenants_is_403_to_them(world):
    # A /v1 route added later is the operator's until it is scoped and listed.
    _, api, a, _, _, _ = world
    app = api.application
    routes = [(r, m) for r in app.url_map.iter_rules() if r.rule.startswith("/v1/")
              for m in sorted((r.methods or set()) - {"HEAD", "OPTIONS"})
              if r.endpoint not in TENANT_VIEWS and r.endpoint != "openapi.openapi_document"]
    assert len(routes) >= 13
    for rule, method in routes:
        url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "1" if m.group(1) == "letter_id" else a.id,
                     rule.rule)
        r = api.open(url, method=method, headers=bearer(a.api_key), json={})
        assert r.status_code == 403, (method, url, r.get_json())
