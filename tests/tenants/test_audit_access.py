"""Audit of issue 24 (the attacker holds tenant A's api key, callback key and a portal
link): keys of one kind do not work as the other, a cursor or filter does not widen a
tenant's scope, another tenant's ids answer as if they did not exist, and a deleted
tenant's portal session ends."""

from __future__ import annotations

from urllib.parse import urlsplit

from tests.console.console_support import csrf_of
from tests.fanout.fanout_helpers import AUTH, client_for
from tests.helpers import receipt
from tests.tenants.support import SENDER_B, bearer, make_tenant, one


def test_a_callback_key_is_no_api_key_and_an_api_key_no_callback_key(make_rt):
    rt = make_rt(HOOKLINE_CALLBACK_TOKEN="source-token")
    api = client_for(rt)
    t = make_tenant(rt, "Acme", "acme_agent")
    assert api.get("/v1/events", headers=bearer(t.callback_key)).status_code == 401
    assert api.get("/v1/events", headers=bearer(t.api_key)).status_code == 200
    assert api.post(f"/callbacks/kaleyra-rcs?token={t.api_key}",
                    data=receipt("DELIVERED")).status_code == 401
    assert api.post(f"/callbacks/kaleyra-rcs?token={t.callback_key}",
                    data=receipt("DELIVERED")).status_code == 202
    # Nor does a tenant's key sign in to the console as the operator's token does.
    assert api.get("/v1/events", headers=bearer("source-token")).status_code == 401


def test_a_cursor_or_filter_naming_another_tenant_s_rows_does_not_widen_the_scope(world):
    rt, api, a, b, eps, _ = world
    key = bearer(a.api_key)
    answered, seen = 0, 0
    their_event = one(rt, "SELECT max(id) FROM events WHERE tenant_id = %s", b.id)
    their_inbound = one(rt, "SELECT max(event_id) FROM inbound_messages WHERE tenant_id = %s",
                        b.id)
    their_sub = one(rt, "SELECT max(id) FROM subscriptions WHERE tenant_id = %s", b.id)
    msisdn = one(rt, "SELECT msisdn FROM subscriptions WHERE tenant_id = %s", b.id)
    for url in (f"/v1/events?after={their_event + 1}", f"/v1/events?after={their_event}",
                "/v1/events?source=kaleyra-rcs", "/v1/events?type=message.delivered",
                "/v1/events?since=2000-01-01T00:00:00Z",
                f"/v1/inbound?after={their_inbound + 1}", f"/v1/inbound?sender={SENDER_B}",
                f"/v1/inbound?msisdn={msisdn}",
                f"/v1/subscriptions?after={their_sub + 1}",
                f"/v1/subscriptions?sender={SENDER_B}", "/v1/subscriptions?sender=*",
                f"/v1/subscriptions?msisdn={msisdn}&status=opted_out",
                f"/v1/endpoints?after={eps[b.id]['id'][:-1]}",
                f"/v1/events?tenant={b.id}", f"/v1/endpoints?tenant_id={b.id}"):
        r = api.get(url, headers=key)
        if r.status_code == 400:  # an unknown parameter is refused, never obeyed
            continue
        assert r.status_code == 200, (url, r.get_json())
        answered += 1
        seen += len(r.get_json()["items"])
        for item in r.get_json()["items"]:
            assert item.get("tenant_id") in (a.id, None), (url, item)
            assert item.get("sender") != SENDER_B, (url, item)
            assert item.get("id") != eps[b.id]["id"], url
    assert answered >= 12 and seen  # the filters ran, and A's own rows came through


def test_another_tenant_s_ids_answer_as_if_they_did_not_exist(world):
    _, api, a, b, eps, deliveries = world
    key = bearer(a.api_key)
    for theirs, nobody in ((f"/v1/endpoints/{eps[b.id]['id']}", "/v1/endpoints/ep_nonexistent"),
                           (f"/v1/deliveries/{deliveries[b.id]}", "/v1/deliveries/dl_nonexistent"),
                           ("/v1/messages/msg-b", "/v1/messages/msg-nonexistent")):
        one_, other = api.get(theirs, headers=key), api.get(nobody, headers=key)
        assert one_.status_code == other.status_code == 404
        assert one_.get_json()["type"] == other.get_json()["type"]
        assert set(one_.get_json()) == set(other.get_json())
    # The operator's routes are 403 whether the tenant named exists or not.
    assert api.get(f"/v1/tenants/{b.id}", headers=key).status_code == 403
    assert api.get("/v1/tenants/tn_nonexistent", headers=key).status_code == 403


def test_a_deleted_tenant_s_keys_and_portal_sessions_end(make_rt):
    rt = make_rt()
    api = client_for(rt)
    t = make_tenant(rt, "Gone", "gone_agent")
    link = api.post(f"/v1/tenants/{t.id}/portal-links", headers=AUTH, json={}).get_json()
    c = api.application.test_client()
    assert c.get(urlsplit(link["url"]).path).status_code == 302
    assert c.get("/console/endpoints").status_code == 200
    assert api.delete(f"/v1/tenants/{t.id}", headers=AUTH).status_code == 204
    assert api.get("/v1/events", headers=bearer(t.api_key)).status_code == 401
    assert c.get("/console/endpoints").status_code == 302  # to the sign-in page
    assert api.application.test_client().get(urlsplit(link["url"]).path).status_code == 403


def test_a_revoked_api_key_fails_on_the_next_request(world):
    _, api, a, _, _, _ = world
    key = bearer(a.api_key)
    assert api.get("/v1/endpoints", headers=key).status_code == 200
    (made,) = [k for k in api.get(f"/v1/tenants/{a.id}/keys", headers=AUTH).get_json()["items"]
               if k["kind"] == "api"]
    assert made["last_used_at"] is not None and "key" not in made
    assert api.delete(f"/v1/tenants/{a.id}/keys/{made['id']}", headers=AUTH).status_code == 204
    assert api.get("/v1/endpoints", headers=key).status_code == 401
    # Another tenant's key id is not found under this tenant (nor revoked).
    assert api.delete(f"/v1/keys/{made['id']}", headers=AUTH).status_code == 404


def test_the_console_takes_a_tenant_s_api_key_only(make_rt):
    rt = make_rt()
    api = client_for(rt)
    t = make_tenant(rt, "Acme", "acme_agent")
    c = api.application.test_client()
    token = csrf_of(c)
    r = c.post("/console/login", data={"csrf_token": token, "username": "",
                                        "password": t.callback_key})
    assert r.status_code == 401
    assert c.get("/console/endpoints").status_code == 302  # still signed out
    # Nor is a tenant's key taken with a user name (the operator's token user).
    r = c.post("/console/login", data={"csrf_token": token, "username": "api-token",
                                        "password": t.api_key})
    assert r.status_code == 401


def test_a_tenant_cannot_name_an_owner_for_its_endpoint(world):
    rt, api, a, b, eps, _ = world
    key = bearer(a.api_key)
    r = api.post("/v1/endpoints", headers=key, json={
        "url": "http://127.0.0.1:9/x", "event_types": ["*"], "tenant_id": b.id})
    assert r.status_code == 400 or r.get_json()["tenant_id"] == a.id, r.get_json()
    r = api.patch(f"/v1/endpoints/{eps[a.id]['id']}", headers=key, json={"tenant_id": b.id})
    assert r.status_code == 400, r.get_json()
    assert one(rt, "SELECT count(*) FROM endpoints WHERE tenant_id = %s", b.id) == 1
