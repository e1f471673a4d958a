"""Every payload family in the seeds, through the real pipeline (Redis inbox, drain,
PostgreSQL): the events rows, and their effects (message status, subscription,
inbound message) or the dead letter."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shared.providers.kaleyra_io import URL_HINT
from tests.consent_support import (
    BROKEN,
    EXPECTED,
    FIXTURES,
    drain_notes,
    fast_rt,  # noqa: F401 (the cheaper rt fixture)
    module_rt,  # noqa: F401
    subscription,
    transitions,
    url_event,
)
from tests.helpers import enqueue

# The seed texts that are whole-message keywords (seeds 000 and 001).
KEYWORD_FIXTURES = {
    "kaleyra-rcs/mo_envelope_user_message_stop.json": "opted_out",
    "kaleyra-rcs/mo_flat_user_message_stop.json": "opted_out",
    "kaleyra-rcs/mo_envelope_user_message_start.json": "opted_in",
    "kaleyra-rcs/mo_flat_user_message_start.json": "opted_in",
}


def rows(rt, sql: str, *params: Any) -> list[dict[str, Any]]:
    with rt.pool.connection() as conn:
        cur = conn.execute(sql, params)
        names = [c.name for c in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def ingest(rt, rel: str) -> list:
    exp = EXPECTED[rel]
    enqueue(rt, (FIXTURES / rel).read_bytes(), source=exp["source"], event=exp["url_event"])
    return drain_notes(rt)


def test_every_fixture_has_a_test_and_a_url_event_rule():
    assert len(EXPECTED) >= 70
    for rel, exp in EXPECTED.items():
        assert url_event(rel) == exp["url_event"], rel


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_fixture_is_applied_with_its_effects(rt, rel):
    exp = EXPECTED[rel]
    notes = ingest(rt, rel)
    assert rows(rt, "SELECT reason FROM dead_letters") == []
    events = rows(rt, "SELECT * FROM events ORDER BY id")
    assert [e["type"] for e in events] == exp["types"]
    for e in events:
        assert (e["source"], e["channel"], e["message_id"], e["sender"], e["msisdn"]) == (
            exp["source"], exp["channel"], exp["message_id"], exp["sender"], exp["msisdn"])
        assert (e["status"], e["provider_status"], e["dedupe_key"]) == (
            exp["status"], exp["provider_status"], exp["dedupe_key"])
        assert e["ingest_id"] and e["raw"] == orjson.loads((FIXTURES / rel).read_bytes())
    _check_status(rt, exp)
    _check_consent(rt, rel, exp, notes)
    _check_inbound(rt, exp, events)


def _check_status(rt, exp: dict[str, Any]) -> None:
    found = rows(rt, "SELECT status, sender, msisdn, failure_reason, failure_code FROM messages")
    if exp["status"] is None:
        assert found == []
        return
    failure = {"reason": exp.get("failure_reason"), "code": exp.get("failure_code")}
    assert found == [{"status": exp["status"], "sender": exp["sender"], "msisdn": exp["msisdn"],
                      **{f"failure_{k}": v for k, v in failure.items()}}]
    (history,) = rows(rt, "SELECT status, provider_status, reason, code "
                          "FROM message_status_history")
    assert history == {"status": exp["status"], "provider_status": exp["provider_status"],
                       **failure}


def _check_consent(rt, rel: str, exp: dict[str, Any], notes: list) -> None:
    expected = KEYWORD_FIXTURES.get(rel)
    if exp["consent"] is not None:
        expected = {"opt_in": "opted_in", "opt_out": "opted_out"}[exp["consent"]]
    if expected is None:
        assert rows(rt, "SELECT * FROM subscriptions") == []
        assert transitions(notes) == []
        assert [n.type for n in notes] == exp["types"]
        return
    scope = exp["consent_scope"]
    sender = exp["sender"] if scope == "sender" else "*"
    category = orjson.loads((FIXTURES / rel).read_bytes())["value"] if scope == "category" else ""
    sub = subscription(rt, exp["channel"], sender, exp["msisdn"], category)
    assert sub is not None and (sub["status"], sub["scope"]) == (expected, scope)
    # The first consent ever is a transition; a keyword text also notifies as itself.
    assert transitions(notes) == [f"subscription.{expected}"]
    plain = [n.type for n in notes if not n.type.startswith("subscription.")]
    assert plain == (["message.inbound"] if rel in KEYWORD_FIXTURES else [])
    (hist,) = rows(rt, "SELECT status, keyword, transition, category FROM consent_history")
    assert hist["status"] == expected and hist["transition"] is True
    assert hist["category"] == category
    assert hist["keyword"] == ({"opted_in": "START", "opted_out": "STOP"}[expected]
                               if rel in KEYWORD_FIXTURES else None)


def _check_inbound(rt, exp: dict[str, Any], events: list[dict[str, Any]]) -> None:
    found = rows(rt, "SELECT * FROM inbound_messages")
    if "message.inbound" not in exp["types"]:
        assert found == []
        return
    (row,) = found
    data = events[0]["data"]
    assert row["event_id"] == events[0]["id"] and row["message_id"] == exp["message_id"]
    assert (row["sender"], row["msisdn"], row["channel"]) == (
        exp["sender"], exp["msisdn"], exp["channel"])
    for key in ("text", "response", "location", "media", "carrier_id"):
        assert row[key] == data.get(key), key
    # Something of the message is kept, whatever its kind.
    assert any(row[k] for k in ("text", "response", "location", "media"))


@pytest.mark.parametrize(("rel", "mo_type", "postback"), [
    ("kaleyra-rcs/mo_envelope_response_dial.json", "DIAL", "postback_data_1234"),
    ("kaleyra-rcs/mo_envelope_response_reply.json", "REPLY", "flight_offer"),
    ("kaleyra-rcs/mo_envelope_response_open_url.json", "OPEN_URL", "one_way_trip"),
])
def test_suggestion_responses_keep_text_postback_and_mo_type(rt, rel, mo_type, postback):
    ingest(rt, rel)
    (row,) = rows(rt, "SELECT response, carrier_id FROM inbound_messages")
    assert row["response"]["mo_type"] == mo_type
    assert row["response"]["postback_data"] == postback and row["response"]["text"]
    assert row["carrier_id"] in ("ATT", "VZ")


def test_location_and_media_are_kept(rt):
    for rel in ("kaleyra-rcs/mo_envelope_location.json", "comapi/message_inbound__rcs_gif.json",
                "kaleyra-io/whatsapp_message_in__image.json"):
        ingest(rt, rel)
    found = rows(rt, "SELECT source, location, media FROM inbound_messages ORDER BY event_id")
    assert found[0]["location"] == {"latitude": 28.658577, "longitude": 77.4736007}
    assert found[1]["media"][0]["url"] and found[2]["media"][0]["type"] == "image"


def test_inbound_without_a_time_takes_its_receipt_time(rt):
    rel = "kaleyra-io/whatsapp_message_in__text.json"
    ingest(rt, rel)
    (event,) = rows(rt, "SELECT occurred_at, received_at, data FROM events")
    assert event["data"]["occurred_at_estimated"] is True
    assert event["occurred_at"] == event["received_at"]


def test_all_fixtures_in_one_batch(rt):
    for rel in sorted(EXPECTED):
        exp = EXPECTED[rel]
        enqueue(rt, (FIXTURES / rel).read_bytes(), source=exp["source"], event=exp["url_event"])
    drain_notes(rt)
    assert rows(rt, "SELECT reason FROM dead_letters") == []
    total = sum(len(exp["types"]) for exp in EXPECTED.values())
    assert rows(rt, "SELECT count(*) AS n FROM events") == [{"n": total}]


@pytest.mark.parametrize("rel", BROKEN)
def test_broken_fixture_is_a_dead_letter_saying_invalid_json(rt, rel):
    body = (FIXTURES / rel).read_bytes()
    enqueue(rt, body, source=rel.split("/")[0], event=url_event(rel))
    drain_notes(rt)
    (letter,) = rows(rt, "SELECT source, event, reason, body FROM dead_letters")
    assert letter["reason"].startswith("invalid JSON")
    assert bytes(letter["body"]) == body and letter["event"] == url_event(rel)
    assert rows(rt, "SELECT * FROM events") == []


@pytest.mark.parametrize(("source", "event", "doc", "needle"), [
    ("kaleyra-rcs", None, {"type": "BOGUS", "from": "1", "to": "a", "sentAt": "2025-01-01"},
     "type='BOGUS'"),
    ("comapi", None, {"eventId": "e", "name": "message.bogus", "payload": {}},
     "name='message.bogus'"),
    ("kaleyra-io", None, {"event": "bogus:event", "payload": {}}, "event='bogus:event'"),
    ("kaleyra-io", "bogus:event", {"id": "1"}, "'bogus:event'"),
])
def test_unknown_type_is_a_dead_letter_for_later_replay(rt, source, event, doc, needle):
    enqueue(rt, orjson.dumps(doc), source=source, event=event)
    drain_notes(rt)
    (letter,) = rows(rt, "SELECT source, reason FROM dead_letters")
    assert letter["source"] == source
    assert letter["reason"].startswith(f"unsupported event type for {source}")
    assert needle in letter["reason"]


@pytest.mark.parametrize("rel", sorted(r for r in EXPECTED if r.startswith("kaleyra-io/flat/")))
def test_flat_kaleyra_io_payload_without_its_url_event_is_a_dead_letter(rt, rel):
    enqueue(rt, (FIXTURES / rel).read_bytes(), source="kaleyra-io", event=None)
    drain_notes(rt)
    (letter,) = rows(rt, "SELECT reason FROM dead_letters")
    assert letter["reason"] == URL_HINT
    assert "needs its event in the URL" in letter["reason"]


def test_message_api_works_for_every_source(rt):
    from ingest.app import create_app

    client = create_app(rt=rt, send_drain=lambda: None).test_client()
    auth = {"Authorization": "Bearer test-api-token"}
    for rel in ("comapi/message_sent__sms.json", "comapi/message_delivered__sms.json",
                "kaleyra-io/flat/sms_message_status__delivrd.json",
                "kaleyra-io/whatsapp_message_status__read.json", "kaleyra-rcs/dr_read.json"):
        ingest(rt, rel)
    for rel, status in (("comapi/message_delivered__sms.json", "delivered"),
                        ("kaleyra-io/flat/sms_message_status__delivrd.json", "delivered"),
                        ("kaleyra-io/whatsapp_message_status__read.json", "read"),
                        ("kaleyra-rcs/dr_read.json", "read")):
        exp = EXPECTED[rel]
        doc = client.get(f"/v1/messages/{exp['message_id']}?source={exp['source']}",
                         headers=auth).get_json()
        assert doc["status"] == status, rel
