"""The fan-out API (/v1/endpoints, /v1/deliveries) against real PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from shared.db.outbox import claims
from tests.fanout.fanout_helpers import (
    AUTH,
    apply_receipts,
    client_for,
    create_endpoint,
    deliver,
    delivery_rows,
)
from tests.receiver import Reply

ROUTES = [
    ("GET", "/v1/endpoints"), ("POST", "/v1/endpoints"), ("GET", "/v1/endpoints/ep_x"),
    ("PATCH", "/v1/endpoints/ep_x"), ("DELETE", "/v1/endpoints/ep_x"),
    ("POST", "/v1/endpoints/ep_x/rotate-secret"), ("GET", "/v1/endpoints/ep_x/deliveries"),
    ("POST", "/v1/endpoints/ep_x/replay"), ("GET", "/v1/deliveries/msg_x"),
    ("POST", "/v1/deliveries/msg_x/retry"),
]


@pytest.mark.parametrize("method,path", ROUTES)
def test_every_route_needs_the_bearer_token(api, method, path):
    assert api.open(path, method=method, json={}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert api.open(path, method=method, json={}, headers=wrong).status_code == 401


def test_create_get_list_patch_delete(api, receiver):
    ep = create_endpoint(api, receiver.url(), event_types=["message.read", "message.failed"],
                         filter={"source": "kaleyra-rcs"}, description="CRM", ordered=True)
    assert ep["id"].startswith("ep_") and ep["secret"].startswith("whsec_")
    assert ep["filter"] == {"source": ["kaleyra-rcs"]} and ep["ordered"] and ep["enabled"]
    got = api.get(f"/v1/endpoints/{ep['id']}", headers=AUTH).get_json()
    assert got["url"] == receiver.url() and got["description"] == "CRM"
    assert got["event_types"] == ["message.read", "message.failed"]
    listed = api.get("/v1/endpoints", headers=AUTH).get_json()["items"]
    assert [e["id"] for e in listed] == [ep["id"]]

    patch = {"url": receiver.url("/v2"), "event_types": ["*"], "filter": None, "enabled": False}
    doc = api.patch(f"/v1/endpoints/{ep['id']}", json=patch, headers=AUTH).get_json()
    assert doc["url"].endswith("/v2") and doc["event_types"] == ["*"] and doc["filter"] == {}
    assert not doc["enabled"] and doc["disabled_reason"] == "disabled through the API"

    assert api.delete(f"/v1/endpoints/{ep['id']}", headers=AUTH).status_code == 204
    assert api.get(f"/v1/endpoints/{ep['id']}", headers=AUTH).status_code == 404
    assert api.delete(f"/v1/endpoints/{ep['id']}", headers=AUTH).status_code == 404


def test_secrets_are_only_in_the_create_and_rotate_answers(api, frt, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    ep = create_endpoint(api, receiver.url())
    rotated = api.post(f"/v1/endpoints/{ep['id']}/rotate-secret", headers=AUTH).get_json()
    secrets = [ep["secret"], rotated["secret"]]
    apply_receipts(frt, "SENT")
    deliver(frt)
    (delivery_id,) = delivery_rows(frt, ep["id"])[0][:1]
    answers = [
        api.get("/v1/endpoints", headers=AUTH).data,
        api.get(f"/v1/endpoints/{ep['id']}", headers=AUTH).data,
        api.patch(f"/v1/endpoints/{ep['id']}", json={"description": "x"}, headers=AUTH).data,
        api.get(f"/v1/endpoints/{ep['id']}/deliveries", headers=AUTH).data,
        api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH).data,
    ]
    for data in answers:
        assert b"whsec_" not in data and b"secret\"" not in data
    for secret in secrets:
        assert secret not in caplog.text
        assert secret[6:] not in caplog.text


U = "http://127.0.0.1:9/x"


@pytest.mark.parametrize("body,needle", [
    ({"url": "ftp://example.com", "event_types": ["*"]}, "scheme"),
    ({"url": U, "event_types": []}, "event_types"),
    ({"url": U, "event_types": ["message.nope"]}, "message.nope"),
    ({"event_types": ["*"]}, "url: Missing data for required field"),
    ({"url": U, "event_types": ["*"], "colour": "red"}, "colour"),
    ({"url": U, "event_types": ["*"], "filter": {"region": "eu"}}, "region"),
    ({"url": U, "event_types": ["*"], "filter": {"source": 3}}, "filter.source"),
    ({"url": U, "event_types": ["*"], "ordered": "yes"}, "ordered"),
])
def test_bad_endpoints_are_refused_with_the_reason(api, body, needle):
    resp = api.post("/v1/endpoints", json=body, headers=AUTH)
    assert resp.status_code == 400 and needle in resp.get_json()["detail"], resp.get_json()


def test_the_address_guard_refuses_loopback_unless_lifted(fast_rt, receiver):
    guarded = client_for(fast_rt(HOOKLINE_ALLOW_PRIVATE_ENDPOINTS="false"))
    for url in (receiver.url(), f"http://localhost:{receiver.port}/hook"):
        resp = guarded.post("/v1/endpoints", json={"url": url, "event_types": ["*"]},
                            headers=AUTH)
        assert resp.status_code == 400
        assert "loopback" in resp.get_json()["detail"]
        assert "HOOKLINE_ALLOW_PRIVATE_ENDPOINTS" in resp.get_json()["detail"]
    resp = guarded.post("/v1/endpoints", json={"url": "http://169.254.169.254/latest",
                                               "event_types": ["*"]}, headers=AUTH)
    assert "link-local" in resp.get_json()["detail"]


def test_the_address_guard_also_holds_at_send_time(fast_rt, receiver):
    # Saved while the guard was lifted; sent by a worker where it is not.
    lifted = fast_rt()
    ep = create_endpoint(client_for(lifted), receiver.url("/private"))
    apply_receipts(lifted, "SENT")
    guarded = fast_rt(HOOKLINE_ALLOW_PRIVATE_ENDPOINTS="false")
    deliver(guarded, until=lambda: delivery_rows(guarded, ep["id"])[0][2] >= 1)
    assert receiver.requests() == []
    doc = client_for(guarded).get(
        f"/v1/deliveries/{delivery_rows(guarded, ep['id'])[0][0]}", headers=AUTH).get_json()
    error = doc["attempt_history"][0]["error"]
    assert error.startswith("refused:") and "loopback" in error


def test_deliveries_are_listed_newest_first_paged_and_filtered(api, frt, receiver):
    ep = create_endpoint(api, receiver.url("/l"))
    receiver.script("/l", Reply(500))
    apply_receipts(frt, "SENT", "DELIVERED", "READ")
    deliver(frt, until=lambda: len(receiver.requests("/l")) >= 3)
    base = f"/v1/endpoints/{ep['id']}/deliveries"
    page = api.get(f"{base}?limit=2", headers=AUTH).get_json()
    assert len(page["items"]) == 2 and page["next_after"]
    rest = api.get(f"{base}?limit=2&after={page['next_after']}", headers=AUTH).get_json()
    assert len(rest["items"]) == 1 and rest["next_after"] is None
    every = page["items"] + rest["items"]
    oldest_first = [r[0] for r in delivery_rows(frt, ep["id"])]
    assert [d["id"] for d in every] == oldest_first[::-1]
    assert set(every[0]) >= {"id", "status", "attempts", "next_attempt_at", "last_status_code",
                             "in_flight", "created_at", "event_id"}
    failed = api.get(f"{base}?status=failed", headers=AUTH).get_json()["items"]
    assert len(failed) == 1 and failed[0]["last_status_code"] == 500
    assert api.get(f"{base}?status=lost", headers=AUTH).status_code == 400
    assert api.get("/v1/endpoints/ep_nope/deliveries", headers=AUTH).status_code == 404


def test_one_delivery_with_body_and_attempts(api, frt, receiver):
    ep = create_endpoint(api, receiver.url("/one"))
    apply_receipts(frt, "READ")
    deliver(frt)
    (delivery_id,) = delivery_rows(frt, ep["id"])[0][:1]
    doc = api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH).get_json()
    assert doc["status"] == "succeeded" and doc["payload"]["type"] == "message.read"
    assert doc["payload"] == orjson.loads(receiver.requests("/one")[0].body)
    assert [a["status_code"] for a in doc["attempt_history"]] == [200]
    assert api.get("/v1/deliveries/msg_nope", headers=AUTH).status_code == 404


def test_a_delivery_in_flight_cannot_be_retried(api, frt, receiver):
    ep = create_endpoint(api, receiver.url("/f"))
    apply_receipts(frt, "SENT")
    with frt.pool.connection() as conn:
        (claimed,) = claims.claim(conn, 1, claims.ClaimRules(8, 50, lease=30))
    resp = api.post(f"/v1/deliveries/{claimed.id}/retry", headers=AUTH)
    assert resp.status_code == 409 and "being sent" in resp.get_json()["detail"]
    listed = api.get(f"/v1/endpoints/{ep['id']}/deliveries", headers=AUTH).get_json()["items"]
    assert listed[0]["in_flight"] is True


def test_replay_counts_what_it_queued_in_the_window(api, frt, receiver):
    ep = create_endpoint(api, receiver.url("/rp"))
    apply_receipts(frt, "SENT", "READ")
    deliver(frt)
    now = datetime.now(UTC)
    url = f"/v1/endpoints/{ep['id']}/replay"
    past = {"since": (now - timedelta(days=2)).isoformat(),
            "until": (now - timedelta(days=1)).isoformat()}
    assert api.post(url, json=past, headers=AUTH).get_json()["queued"] == 0
    window = {"since": (now - timedelta(minutes=5)).isoformat()}
    assert api.post(url, json={**window, "status": "dead"}, headers=AUTH).get_json() == {
        "queued": 0, "endpoint_enabled": True}
    resp = api.post(url, json=window, headers=AUTH)
    assert resp.status_code == 202 and resp.get_json()["queued"] == 2
    deliver(frt)
    assert len(receiver.requests("/rp")) == 4
    for bad in ({}, {"since": "yesterday"}, {"since": now.isoformat(),
                                            "until": (now - timedelta(1)).isoformat()},
                {**window, "status": "lost"}):
        assert api.post(url, json=bad, headers=AUTH).status_code == 400, bad
    assert api.post("/v1/endpoints/ep_nope/replay", json=window,
                    headers=AUTH).status_code == 404


def test_deleting_an_endpoint_mid_flight_loses_nothing_else(api, frt, receiver):
    a = create_endpoint(api, receiver.url("/a"))
    b = create_endpoint(api, receiver.url("/b"))
    receiver.default("/a", Reply(delay=0.3))
    apply_receipts(frt, "SENT")
    from workers import fanout

    fanout.dispatch(frt, budget=0.05)
    assert api.delete(f"/v1/endpoints/{a['id']}", headers=AUTH).status_code == 204
    deliver(frt)
    assert fanout.dispatcher_for(frt).flush(5)
    assert delivery_rows(frt, b["id"])[0][1] == "succeeded"


def test_the_openapi_schemas_match_what_the_routes_answer(api, frt, receiver):
    from ingest import endpoints_openapi as docs

    created = api.post("/v1/endpoints", json={"url": receiver.url(), "event_types": ["*"]},
                       headers=AUTH).get_json()
    apply_receipts(frt, "SENT")
    deliver(frt)
    ep = created["id"]
    page = api.get(f"/v1/endpoints/{ep}/deliveries", headers=AUTH).get_json()
    since = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    answers = (
        (docs.EndpointWithSecretSchema, created),
        (docs.EndpointPageSchema, api.get("/v1/endpoints", headers=AUTH).get_json()),
        (docs.EndpointSchema, api.get(f"/v1/endpoints/{ep}", headers=AUTH).get_json()),
        (docs.DeliveryPageSchema, page),
        (docs.DeliveryDetailSchema,
         api.get(f"/v1/deliveries/{page['items'][0]['id']}", headers=AUTH).get_json()),
        (docs.RetryAcceptedSchema,
         api.post(f"/v1/deliveries/{page['items'][0]['id']}/retry", headers=AUTH).get_json()),
        (docs.EndpointReplayAcceptedSchema, api.post(f"/v1/endpoints/{ep}/replay", json={
            "since": since}, headers=AUTH).get_json()),
        (docs.EndpointWithSecretSchema,
         api.post(f"/v1/endpoints/{ep}/rotate-secret", headers=AUTH).get_json()),
    )
    for schema, body in answers:
        assert schema().validate(body) == {}, (schema, body)
        assert set(body) == set(schema().fields), (schema, set(body) ^ set(schema().fields))
    assert set(page["items"][0]) == set(docs.DeliverySchema().fields)
    doc = api.get("/v1/openapi.json").get_json()
    assert doc["paths"]["/v1/endpoints/{endpoint_id}/replay"]["post"]["summary"].startswith(
        "Queue again")
