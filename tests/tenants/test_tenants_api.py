"""/v1/tenants and /v1/keys: onboarding, keys shown once, revocation at once."""

from __future__ import annotations

import pytest

from shared.db import keys
from tests.fanout.fanout_helpers import AUTH, client_for
from tests.helpers import drain_all, receipt
from tests.tenants.support import one


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def api(rt):
    return client_for(rt)


def test_onboarding_a_customer(api, rt):
    r = api.post("/v1/tenants", headers=AUTH, json={
        "name": "Acme", "senders": [{"source": "kaleyra-rcs", "sender": "mmx_traffic"}]})
    assert r.status_code == 201, r.get_json()
    tenant = r.get_json()
    assert tenant["senders"] == [{"source": "kaleyra-rcs", "sender": "mmx_traffic",
                                  "channel": None}]
    taken = api.post("/v1/tenants", headers=AUTH, json={
        "name": "Bravo", "senders": [{"source": "kaleyra-rcs", "sender": "mmx_traffic"}]})
    assert taken.status_code == 409 and "another tenant" in taken.get_json()["detail"]
    bad = api.post("/v1/tenants", headers=AUTH, json={"name": "", "senders": [{"x": 1}]})
    assert bad.status_code == 400
    assert [t["id"] for t in api.get("/v1/tenants", headers=AUTH).get_json()["items"]] \
        == [tenant["id"]]
    patched = api.patch(f"/v1/tenants/{tenant['id']}", headers=AUTH, json={"name": "Acme Ltd"})
    assert patched.get_json()["name"] == "Acme Ltd"
    assert api.get("/v1/tenants/tn_none", headers=AUTH).status_code == 404

    made = api.post(f"/v1/tenants/{tenant['id']}/keys", headers=AUTH,
                    json={"name": "prod", "kind": "api"})
    assert made.status_code == 201
    key = made.get_json()
    assert key["key"].startswith("hk_") and key["kind"] == "api"
    listed = api.get(f"/v1/tenants/{tenant['id']}/keys", headers=AUTH).get_json()["items"]
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    assert api.get("/v1/events", headers=bearer(key["key"])).status_code == 200
    listed = api.get(f"/v1/tenants/{tenant['id']}/keys", headers=AUTH).get_json()["items"]
    assert listed[0]["last_used_at"] is not None

    # Revoked: the very next request is refused.
    assert api.delete(f"/v1/tenants/{tenant['id']}/keys/{key['id']}",
                      headers=AUTH).status_code == 204
    assert api.get("/v1/events", headers=bearer(key["key"])).status_code == 401
    assert api.delete(f"/v1/tenants/{tenant['id']}/keys/key_none",
                      headers=AUTH).status_code == 404

    assert api.delete(f"/v1/tenants/{tenant['id']}", headers=AUTH).status_code == 204
    assert api.get(f"/v1/tenants/{tenant['id']}", headers=AUTH).status_code == 404


def test_a_tenant_with_endpoints_is_not_deleted(api, rt):
    t = api.post("/v1/tenants", headers=AUTH, json={"name": "Acme"}).get_json()
    key = api.post(f"/v1/tenants/{t['id']}/keys", headers=AUTH,
                   json={"name": "k", "kind": "api"}).get_json()["key"]
    with rt.pool.connection() as conn:
        conn.execute("INSERT INTO endpoints (id, url, event_types, secret, tenant_id) "
                     "VALUES ('ep_x', 'http://x', '{*}', 's', %s)", (t["id"],))
    assert api.delete(f"/v1/tenants/{t['id']}", headers=AUTH).status_code == 409
    assert api.get("/v1/endpoints", headers=bearer(key)).get_json()["items"][0]["id"] == "ep_x"


def test_operator_keys_replace_the_api_token(api):
    made = api.post("/v1/keys", headers=AUTH, json={"name": "ops"}).get_json()
    op = bearer(made["key"])
    assert api.get("/v1/tenants", headers=op).status_code == 200
    assert api.get("/v1/dead-letters", headers=op).status_code == 200
    # It can make the next operator key and revoke itself.
    nxt = api.post("/v1/keys", headers=op, json={"name": "ops 2"}).get_json()
    assert [k["name"] for k in api.get("/v1/keys", headers=op).get_json()["items"]] \
        == ["ops", "ops 2"]
    assert api.delete(f"/v1/keys/{made['id']}", headers=bearer(nxt["key"])).status_code == 204
    assert api.get("/v1/tenants", headers=op).status_code == 401
    assert api.get("/v1/tenants", headers=bearer("hk_" + "x" * 43)).status_code == 401


def test_operator_keys_open_the_api_without_the_token(make_rt):
    rt = make_rt(HOOKLINE_API_TOKEN="")
    api = client_for(rt)
    with rt.pool.connection() as conn:
        key = keys.create(conn, None, "bootstrap", "operator")["key"]
    assert api.get("/v1/tenants", headers=AUTH).status_code == 401
    assert api.get("/v1/tenants", headers=bearer(key)).status_code == 200


def test_callbacks_with_a_tenant_s_callback_key(api, rt):
    t = api.post("/v1/tenants", headers=AUTH, json={"name": "Acme"}).get_json()
    made = api.post(f"/v1/tenants/{t['id']}/keys", headers=AUTH,
                    json={"name": "cb", "kind": "callback"}).get_json()
    assert api.post(f"/callbacks/kaleyra-rcs?token={made['key']}",
                    data=receipt("DELIVERED")).status_code == 202
    assert api.post("/callbacks/kaleyra-rcs", data=receipt("SENT"),
                    headers=bearer(made["key"])).status_code == 202
    assert api.post("/callbacks/kaleyra-rcs", data=receipt("SENT"),
                    headers=bearer("hk_" + "y" * 43)).status_code == 202  # no source token
    # An unknown key, with no source token in force, names no tenant (and is a duplicate).
    drain_all(rt)
    assert one(rt, "SELECT count(*) FROM events WHERE tenant_id = %s", t["id"]) == 2
    assert api.delete(f"/v1/tenants/{t['id']}/keys/{made['id']}", headers=AUTH).status_code \
        == 204
    assert api.post(f"/callbacks/kaleyra-rcs?token={made['key']}",
                    data=receipt("READ")).status_code == 202  # accepted, but as nobody's
    drain_all(rt)
    assert one(rt, "SELECT count(*) FROM events WHERE tenant_id IS NULL") == 1


def test_a_source_token_in_force_refuses_an_unknown_key(make_rt):
    rt = make_rt(HOOKLINE_CALLBACK_TOKEN="source-token")
    api = client_for(rt)
    t = api.post("/v1/tenants", headers=AUTH, json={"name": "Acme"}).get_json()
    made = api.post(f"/v1/tenants/{t['id']}/keys", headers=AUTH,
                    json={"name": "cb", "kind": "callback"}).get_json()
    post = lambda tok: api.post(f"/callbacks/kaleyra-rcs?token={tok}",  # noqa: E731
                                data=receipt("DELIVERED")).status_code
    assert post("source-token") == 202
    assert post(made["key"]) == 202
    assert post("hk_" + "z" * 43) == 401
    api.delete(f"/v1/tenants/{t['id']}/keys/{made['id']}", headers=AUTH)
    assert post(made["key"]) == 401
