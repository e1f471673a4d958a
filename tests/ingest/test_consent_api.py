"""GET /v1/subscriptions, /v1/inbound and /v1/events against the real database."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest

from ingest.app import create_app
from shared.model import Consent, ConsentScope
from tests.consent_support import (
    EXPECTED,
    FIXTURES,
    apply,
    consent_event,
    drain_notes,
    fast_rt,  # noqa: F401 (the cheaper rt fixture)
    module_rt,  # noqa: F401
)
from tests.helpers import T0, enqueue

AUTH = {"Authorization": "Bearer test-api-token"}
ROUTES = ["/v1/subscriptions/rcs/kio_rcs/19782412456", "/v1/subscriptions", "/v1/inbound",
          "/v1/events"]
RECEIVER = "917002088xxx"  # the Kaleyra.io unsubscription samples


@pytest.fixture
def api(rt):
    return create_app(rt=rt, send_drain=lambda: None).test_client()


def ingest(rt, *rels: str) -> None:
    for rel in rels:
        exp = EXPECTED[rel]
        enqueue(rt, (FIXTURES / rel).read_bytes(), source=exp["source"], event=exp["url_event"])
    drain_notes(rt)


def get(api, url: str) -> dict:
    resp = api.get(url, headers=AUTH)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


@pytest.mark.parametrize("url", ROUTES)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_new_routes_need_the_bearer_token(api, url, headers):
    assert api.get(url, headers=headers).status_code == 401


def test_unknown_subscription_may_be_sent_to(api):
    doc = get(api, "/v1/subscriptions/rcs/kio_rcs/19782412456")
    assert doc["status"] == "unknown" and doc["may_send"] is True
    assert doc["changed_at"] is None and doc["history"] == [] and doc["blocked_by"] == []


def test_all_scope_blocks_every_sender_on_the_channel_only(api, rt):
    ingest(rt, "kaleyra-io/flat/rcs_unsubscription__all.json")
    for sender in ("kio_rcs", "another_agent", "*"):
        doc = get(api, f"/v1/subscriptions/rcs/{quote(sender)}/{RECEIVER}")
        assert doc["may_send"] is False and doc["blocked_by"] == ["all"], sender
        assert doc["all_senders"]["status"] == "opted_out"
        assert [h["scope"] for h in doc["history"]] == ["all"]
    assert doc["status"] == "opted_out"  # sender '*' is the all-senders row itself
    assert get(api, f"/v1/subscriptions/rcs/kio_rcs/{RECEIVER}")["status"] == "unknown"
    assert get(api, f"/v1/subscriptions/sms/Demo12/{RECEIVER}")["may_send"] is True


def test_the_newer_of_sender_and_all_senders_consent_decides(api, rt):
    # An all-senders STOP, then a START to one sender: that sender is re-opened (its
    # opted_in notification went out), the others stay blocked. Before, the older
    # all-senders row blocked it for good: no provider sends an all-senders opt-in.
    url = "/v1/subscriptions/rcs/{}/+447700900001"
    apply(rt, [consent_event(Consent.OPT_OUT, 0, "all", sender="*", scope=ConsentScope.ALL)])
    apply(rt, [consent_event(Consent.OPT_IN, 10, "start", sender="agent_1", keyword=True)])
    doc = get(api, url.format("agent_1"))
    assert (doc["status"], doc["may_send"], doc["blocked_by"]) == ("opted_in", True, [])
    assert get(api, url.format("agent_2"))["blocked_by"] == ["all"]
    # A newer STOP to all blocks it again.
    apply(rt, [consent_event(Consent.OPT_OUT, 20, "all2", sender="*", scope=ConsentScope.ALL)])
    assert get(api, url.format("agent_1"))["blocked_by"] == ["all"]


def test_sender_scope_blocks_that_sender_only(api, rt):
    ingest(rt, "kaleyra-io/flat/sms_unsubscription__sender.json")
    doc = get(api, f"/v1/subscriptions/sms/Demo12/{RECEIVER}")
    assert (doc["status"], doc["may_send"], doc["blocked_by"]) == ("opted_out", False, ["sender"])
    assert doc["changed_at"] == "2023-07-08T12:52:54+00:00"
    assert doc["history"][0]["event_type"] == "subscription.opted_out"
    other = get(api, f"/v1/subscriptions/sms/Other1/{RECEIVER}")
    assert (other["status"], other["may_send"]) == ("unknown", True)


def test_category_is_recorded_but_does_not_decide_may_send(api, rt):
    ingest(rt, "kaleyra-io/flat/whatsapp_unsubscription__category.json")
    doc = get(api, "/v1/subscriptions/whatsapp/anyone/91700208xxxx")
    assert doc["may_send"] is True and doc["status"] == "unknown"
    assert [(c["category"], c["status"], c["scope"]) for c in doc["categories"]] == [
        ("WUC", "opted_out", "category")]
    assert doc["history"][0]["category"] == "WUC"


def test_plus_in_path_parameters(api, rt):
    apply(rt, [consent_event(Consent.OPT_OUT, 0, "k1", msisdn="+447700900001",
                             sender="+447123123123", keyword=True)])
    for url in ("/v1/subscriptions/rcs/+447123123123/+447700900001",
                "/v1/subscriptions/rcs/%2B447123123123/%2B447700900001"):
        doc = get(api, url)
        assert (doc["msisdn"], doc["status"], doc["may_send"]) == (
            "+447700900001", "opted_out", False)
        assert doc["history"][0]["keyword"] == "STOP"
        assert doc["history"][0]["event_type"] == "message.inbound"


def test_history_lists_every_consent_event_oldest_first(api, rt):
    for i, (consent, ms) in enumerate([(Consent.OPT_IN, 0), (Consent.OPT_OUT, 10),
                                       (Consent.OPT_OUT, 20), (Consent.OPT_IN, 5)]):
        apply(rt, [consent_event(consent, ms, f"h{i}")])
    doc = get(api, "/v1/subscriptions/rcs/agent_1/%2B447700900001")
    assert [h["status"] for h in doc["history"]] == [
        "opted_in", "opted_in", "opted_out", "opted_out"]
    assert [h["transition"] for h in doc["history"]] == [True, False, True, False]
    assert doc["changed_at"] == (T0 + timedelta(milliseconds=20)).isoformat()


def test_suppression_list_export_pages_and_filters(api, rt):
    for i in range(5):
        apply(rt, [consent_event(Consent.OPT_OUT, i, f"o{i}", msisdn=f"4470000000{i}")])
    apply(rt, [consent_event(Consent.OPT_IN, 9, "in", msisdn="447000000099")])
    ingest(rt, "kaleyra-io/flat/rcs_unsubscription__all.json")
    seen: list[str] = []
    url = "/v1/subscriptions?status=opted_out&channel=rcs&sender=agent_1&limit=2"
    while url:
        doc = get(api, url)
        assert len(doc["items"]) <= 2
        seen += [f"{i['sender']}/{i['msisdn']}" for i in doc["items"]]
        nxt = doc["next_after"]
        url = f"/v1/subscriptions?status=opted_out&channel=rcs&sender=agent_1&limit=2" \
              f"&after={nxt}" if nxt else None
    # Newest first; the all-senders block applies to agent_1 too.
    assert seen == [f"*/{RECEIVER}"] + [f"agent_1/4470000000{i}" for i in range(4, -1, -1)]
    opted_in = get(api, "/v1/subscriptions?status=opted_in")["items"]
    assert [i["msisdn"] for i in opted_in] == ["447000000099"]
    assert get(api, "/v1/subscriptions?channel=sms")["items"] == []
    assert api.get("/v1/subscriptions?status=maybe", headers=AUTH).status_code == 400
    assert api.get("/v1/subscriptions?after=x", headers=AUTH).status_code == 400


def test_inbound_lists_text_response_location_and_media(api, rt):
    ingest(rt, "kaleyra-rcs/mo_envelope_response_dial.json",
           "kaleyra-rcs/mo_envelope_location.json",
           "kaleyra-rcs/mo_envelope_user_message_stop.json",
           "comapi/message_inbound__rcs_pdf.json", "kaleyra-rcs/dr_read.json")
    items = get(api, "/v1/inbound")["items"]
    assert len(items) == 4  # the receipt is not an inbound message
    by_source = {i["message_id"]: i for i in items}
    dial = by_source[EXPECTED["kaleyra-rcs/mo_envelope_response_dial.json"]["message_id"]]
    assert dial["response"] == {"text": "Customer Support", "postback_data": "postback_data_1234",
                                "type": "ACTION", "mo_type": "DIAL"}
    assert any(i["location"] for i in items) and any(i["media"] for i in items)
    stop = get(api, "/v1/inbound?channel=rcs&sender=kio_rcs&msisdn=19782412456")["items"]
    assert [(i["text"], i["carrier_id"]) for i in stop] == [("STOP", "VZ")]
    page = get(api, "/v1/inbound?limit=3")
    assert len(page["items"]) == 3 and page["next_after"] == str(page["items"][-1]["event_id"])
    rest = get(api, f"/v1/inbound?limit=3&after={page['next_after']}")
    assert len(rest["items"]) == 1 and rest["next_after"] is None


def test_events_feed_filters_and_pages(api, rt):
    ingest(rt, "kaleyra-rcs/dr_sent.json", "kaleyra-rcs/dr_read.json",
           "comapi/message_sent__sms.json", "kaleyra-io/flat/sms_unsubscription__sender.json")
    everything = get(api, "/v1/events")["items"]
    assert len(everything) == 4 and [e["id"] for e in everything] == sorted(
        (e["id"] for e in everything), reverse=True)
    assert set(everything[0]) >= {"type", "source", "channel", "message_id", "sender", "msisdn",
                                  "occurred_at", "provider_status", "ingest_id", "data"}
    sent = get(api, "/v1/events?type=message.sent")["items"]
    assert sorted(e["source"] for e in sent) == ["comapi", "kaleyra-rcs"]
    assert [e["type"] for e in get(api, "/v1/events?source=kaleyra-io")["items"]] == [
        "subscription.opted_out"]
    assert get(api, "/v1/events?since=2999-01-01T00:00:00Z")["items"] == []
    assert len(get(api, "/v1/events?since=2000-01-01T00:00:00Z")["items"]) == 4
    first = get(api, "/v1/events?limit=3")
    assert len(get(api, f"/v1/events?after={first['next_after']}")["items"]) == 1
    assert api.get("/v1/events?type=message.bogus", headers=AUTH).status_code == 400
    assert api.get("/v1/events?since=yesterday", headers=AUTH).status_code == 400


@pytest.mark.parametrize("url,errors", [
    ("/v1/events?limit=ten", {"limit": "Not a valid integer."}),
    ("/v1/events?limit=", {"limit": "Not a valid integer."}),
    ("/v1/inbound?after=x", {"after": "not a cursor this list gave (pass next_after as is)"}),
    ("/v1/events?since=yesterday", {"since": "not an ISO-8601 timestamp: 'yesterday'"}),
    ("/v1/dead-letters?until=soon", {"until": "not an ISO-8601 timestamp: 'soon'"}),
    # Every bad parameter is named, not only the first.
    ("/v1/subscriptions?status=maybe&after=x",
     {"after": "not a cursor this list gave (pass next_after as is)",
      "status": "Must be one of: opted_in, opted_out."}),
])
def test_a_bad_query_parameter_is_a_400_that_names_it(api, url, errors):
    resp = api.get(url, headers=AUTH)
    doc = resp.get_json(force=True)
    assert resp.status_code == 400 and resp.mimetype == "application/problem+json", doc
    assert {e["name"]: e["detail"] for e in doc["errors"]} == errors, doc
    assert all(e["in"] == "query" for e in doc["errors"])


def test_limit_defaults_to_100_and_is_clamped(api, rt):
    ingest(rt, "kaleyra-rcs/dr_sent.json", "kaleyra-rcs/dr_read.json")
    assert len(get(api, "/v1/events?limit=0")["items"]) == 1
    assert len(get(api, "/v1/events?limit=-5")["items"]) == 1
    assert len(get(api, "/v1/events")["items"]) == 2
    assert get(api, "/v1/events?limit=1")["next_after"] is not None
