"""The /v1 query API against real PostgreSQL and Redis."""

from __future__ import annotations

import pytest

from ingest.app import create_app
from shared import inbox
from tests.helpers import drain_all, enqueue, receipt

AUTH = {"Authorization": "Bearer test-api-token"}


@pytest.fixture
def api(rt):
    return create_app(rt=rt, send_drain=lambda: None).test_client()


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"Authorization": "Bearer TEST-API-TOKEN"},
                                     {"Authorization": "Basic test-api-token"}])
def test_api_needs_the_bearer_token(api, headers):
    assert api.get("/v1/messages/x", headers=headers).status_code == 401
    assert api.get("/v1/dead-letters", headers=headers).status_code == 401


def test_api_token_in_the_query_string_is_not_accepted(api):
    assert api.get("/v1/dead-letters?token=test-api-token").status_code == 401


def test_api_closed_when_no_token_configured(make_rt):
    rt = make_rt(HOOKLINE_API_TOKEN="")
    client = create_app(rt=rt, send_drain=lambda: None).test_client()
    assert client.get("/v1/dead-letters", headers={"Authorization": "Bearer "}).status_code == 401


def test_unknown_message_is_404(api):
    assert api.get("/v1/messages/nope", headers=AUTH).status_code == 404


def test_reverse_order_receipts_with_duplicates_read_back_as_read(api, rt):
    bodies = [receipt(k, offset=o) for k, o in
              (("READ", 9), ("DELIVERED", 4), ("SENT", 1))]
    for body in bodies + bodies[:2]:
        assert api.post("/callbacks/kaleyra-rcs", data=body).status_code == 202
    drain_all(rt)
    doc = api.get("/v1/messages/msg-1", headers=AUTH).get_json()
    assert doc["status"] == "read" and doc["source"] == "kaleyra-rcs"
    assert doc["sent_at"].startswith("2025-06-16T13:46:39.929")
    assert doc["delivered_at"] and doc["read_at"] and doc["failed_at"] is None
    assert [e["status"] for e in doc["events"]] == ["sent", "delivered", "read"]
    assert doc["events"][0]["event_id"] == "msg-1-SENT"
    assert doc["events"][0]["occurred_at"].endswith("+00:00")


def test_source_parameter_picks_among_sources(api, rt):
    enqueue(rt, receipt("SENT"))
    drain_all(rt)
    assert api.get("/v1/messages/msg-1?source=kaleyra-rcs", headers=AUTH).status_code == 200
    assert api.get("/v1/messages/msg-1?source=comapi", headers=AUTH).status_code == 404


def test_dead_letters_newest_first_and_replay_after_fix(api, rt):
    enqueue(rt, b'{"first": ')
    broken = receipt("SENT")[:-1]  # the missing closing brace of the seed
    enqueue(rt, broken)
    drain_all(rt)
    items = api.get("/v1/dead-letters", headers=AUTH).get_json()["items"]
    assert [i["body"] for i in items] == [broken.decode(), '{"first": ']
    assert set(items[0]) >= {"id", "source", "event", "reason", "received_at", "body"}

    # Replaying unchanged fails again, as a new dead letter of its own.
    resp = api.post(f"/v1/dead-letters/{items[0]['id']}/replay", headers=AUTH)
    assert resp.status_code == 202
    drain_all(rt)
    assert len(api.get("/v1/dead-letters", headers=AUTH).get_json()["items"]) == 3

    # Replaying with the fixed body applies it: a second replay, so it must be forced.
    resp = api.post(f"/v1/dead-letters/{items[0]['id']}/replay?force=true", headers=AUTH,
                    data=receipt("SENT"))
    assert resp.status_code == 202
    drain_all(rt)
    assert api.get("/v1/messages/msg-1", headers=AUTH).get_json()["status"] == "sent"
    letter = api.get("/v1/dead-letters?limit=500", headers=AUTH).get_json()["items"]
    replayed = next(i for i in letter if i["id"] == items[0]["id"])
    assert replayed["replay_ingest_id"] == resp.get_json()["id"]


def test_a_replay_leaves_the_drain_to_the_schedulers_tick(api, rt):
    # The replay cannot send a drain itself; a kick flag it claimed and left set
    # would hold the tick's drain off for 2 s.
    enqueue(rt, b'{"first": ')
    drain_all(rt)
    rt.redis.delete(inbox.KICK)  # as the drain task that ran did
    [item] = api.get("/v1/dead-letters", headers=AUTH).get_json()["items"]
    assert api.post(f"/v1/dead-letters/{item['id']}/replay", headers=AUTH).status_code == 202
    assert rt.redis.llen(inbox.INBOX) == 1 and not rt.redis.exists(inbox.KICK)


def test_a_dead_letter_replayed_already_is_409_unless_forced(api, rt):
    enqueue(rt, b'{"first": ')
    drain_all(rt)
    [item] = api.get("/v1/dead-letters", headers=AUTH).get_json()["items"]
    url = f"/v1/dead-letters/{item['id']}/replay"
    first = api.post(url, headers=AUTH)
    assert first.status_code == 202
    again = api.post(url, headers=AUTH)  # a retried request, a second click
    assert again.status_code == 409
    assert again.mimetype == "application/problem+json"  # as every /v1 error
    assert again.get_json()["replay_ingest_id"] == first.get_json()["id"]
    assert rt.redis.llen(inbox.INBOX) == 1  # nothing queued a second time
    forced = api.post(url + "?force=true", headers=AUTH)
    assert forced.status_code == 202 and rt.redis.llen(inbox.INBOX) == 2
    [letter] = api.get("/v1/dead-letters", headers=AUTH).get_json()["items"]
    assert letter["replay_ingest_id"] == forced.get_json()["id"]


def test_replay_of_unknown_dead_letter_is_404(api):
    assert api.post("/v1/dead-letters/999/replay", headers=AUTH).status_code == 404


def test_dead_letters_page_with_before(api, rt):
    for i in range(5):
        enqueue(rt, f"broken {i}".encode())
    drain_all(rt)
    page = api.get("/v1/dead-letters?limit=2", headers=AUTH).get_json()
    assert len(page["items"]) == 2 and page["next_after"]
    page2 = api.get(f"/v1/dead-letters?limit=2&after={page['next_after']}",
                    headers=AUTH).get_json()
    assert page2["items"][0]["id"] < page["items"][-1]["id"]


def test_readyz_reports_both_services(api):
    assert api.get("/readyz").get_json()["checks"] == {"redis": "ok"}  # the callback path
    doc = api.get("/readyz/full").get_json()
    assert doc["checks"] == {"redis": "ok", "postgresql": "ok"}
