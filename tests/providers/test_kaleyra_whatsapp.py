"""Kaleyra.io WhatsApp API V2 (Meta's Cloud API ``value`` in ``meta_object``).

The single-entry fixtures (``fixtures/kaleyra-io/whatsapp_*.json``) run through
every fixture test in test_providers / test_families (parse, and ingest -> drain
-> PostgreSQL). Here: the kinds those tests cannot hold (several events in one
callback, inbound messages without text, media or location), consent keywords,
and /v1 finding a message by both of its ids. ``whatsapp_v2_more.jsonl`` holds
those callbacks, one per line (see tests/fixtures/SOURCES.md).
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from ingest.app import create_app
from shared.providers import ParseError, UnsupportedEvent, parse
from tests.helpers import FIXTURES, drain_all, enqueue

SOURCE = "kaleyra-io"
AUTH = {"Authorization": "Bearer test-api-token"}
MORE: dict[str, Any] = {
    line["name"]: line["body"]
    for line in map(orjson.loads, (FIXTURES / SOURCE / "whatsapp_v2_more.jsonl")
                    .read_bytes().splitlines())
}


def fixture(name: str) -> Any:
    return orjson.loads((FIXTURES / SOURCE / f"{name}.json").read_bytes())


def value(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["meta_object"]["value"]


def two_statuses() -> dict[str, Any]:
    """Constructed: the delivered and read fixtures' entries in one callback."""
    doc = fixture("whatsapp_v2__status_delivered")
    value(doc)["statuses"] += value(fixture("whatsapp_v2__status_read"))["statuses"]
    return doc


# --- parsing ------------------------------------------------------------------------------


def test_failed_status_gives_code_and_details_and_keeps_the_refs():
    (event,) = parse(SOURCE, None, fixture("whatsapp_v2__status_failed"))
    assert (event.status, event.failure_code) == ("failed", "130472")
    assert event.failure_reason.startswith("Failed to send message because")
    assert {k: event.data[k] for k in ("ref", "ref1", "trace_id")} == {
        "ref": "order-1042", "ref1": "campaign-7",
        "trace_id": "3f1c0c9e-6f0b-4f9a-9c52-1d2e0b7a4c11"}
    assert "ref2" not in event.data  # empty in the callback


def test_the_message_id_is_the_wamid_and_kaleyras_own_is_an_alias():
    (event,) = parse(SOURCE, None, fixture("whatsapp_v2__status_sent"))
    assert event.message_id == event.data["wamid"] == "wamid.xyzxyz"
    assert event.data["message_id_aliases"] == ["1b2e4c7a-8d3f-4e61-a0b9-5c7d2e9f4a10"]


def test_several_statuses_are_several_events_each_deduped_on_its_own():
    events = parse(SOURCE, None, two_statuses())
    assert [e.status for e in events] == ["delivered", "read"]
    assert len({e.dedupe_key for e in events}) == 2
    assert all("message_id_aliases" not in e.data for e in events)


@pytest.mark.parametrize(("name", "kind", "check"), [
    ("reaction", "reaction", lambda d: d["reaction"] == {"message_id": "wamid.yzxyzx=",
                                                          "emoji": "\U0001f62e"}),
    ("unreaction_empty", "reaction", lambda d: d["reaction"]["emoji"] is None),
    ("contacts", "contacts", lambda d: len(d["contacts"]) == 3),
    ("order", "order", lambda d: d["order"]["catalog_id"] == "354160437058781"),
    ("unsupported_with_type", "unsupported",
     lambda d: d["unsupported"] == {"type": "pool"} and d["errors"][0]["code"] == 131051),
    ("system", "system", lambda d: d["system"]["type"] == "user_changed_number"),
    ("referral", "text", lambda d: d["text"] == "BODY" and d["referral"]["source_id"] == "ADID"),
    ("forwarded", "text", lambda d: d["context"] == {"forwarded": True}),
])
def test_every_message_type_is_an_inbound_kept_with_its_type(name, kind, check):
    (event,) = parse(SOURCE, None, MORE[name])
    assert event.type == "message.inbound" and event.data["message_type"] == kind
    assert event.sender == "972123456789" and event.msisdn == "972987654321"
    if name != "system":  # Meta's system message comes without contacts[]
        assert event.data["user"]["profile"]["name"] == "Test Name"
    assert check(event.data)


@pytest.mark.parametrize(("name", "status"), [("status_played", "read"),
                                              ("status_with_tracker", "sent")])
def test_other_statuses(name, status):
    (event,) = parse(SOURCE, None, MORE[name])
    assert event.status == status


def test_a_status_without_its_id_is_a_parse_error_naming_the_entry():
    doc = fixture("whatsapp_v2__status_read")
    del value(doc)["statuses"][0]["id"]
    with pytest.raises(ParseError, match=r"statuses\[0\]: id"):
        parse(SOURCE, None, doc)


def test_a_meta_object_of_another_field_is_unsupported_naming_its_keys():
    doc = {"meta_object": {"field": "message_template_status_update",
                           "value": {"event": "APPROVED"}}, "extra_info": {}}
    with pytest.raises(UnsupportedEvent, match="top-level keys: extra_info, meta_object"):
        parse(SOURCE, None, doc)


# --- end to end ---------------------------------------------------------------------------


@pytest.fixture
def api(rt):
    return create_app(rt=rt, send_drain=lambda: None).test_client()


def count(rt, sql: str) -> int:
    with rt.pool.connection() as conn:
        return conn.execute(sql).fetchone()[0]


def test_a_two_status_callback_twice_is_two_events_and_the_message_is_read(rt, api):
    body = orjson.dumps(two_statuses())
    for _ in range(2):
        assert api.post(f"/callbacks/{SOURCE}", data=body).status_code == 202
    drain_all(rt)
    assert count(rt, "SELECT count(*) FROM events") == 2
    doc = api.get("/v1/messages/wamid.xyzxyz", headers=AUTH).get_json()
    # (In the fixtures, the read entry's time is the earlier one.)
    assert doc["status"] == "read" and sorted(e["status"] for e in doc["events"]) == [
        "delivered", "read"]


def test_a_message_is_found_by_the_wamid_and_by_kaleyras_id(rt, api):
    for name in ("whatsapp_v2__status_sent", "whatsapp_v2__status_delivered"):
        enqueue(rt, orjson.dumps(fixture(name)), source=SOURCE)
    drain_all(rt)
    by_wamid = api.get("/v1/messages/wamid.xyzxyz", headers=AUTH).get_json()
    by_kaleyra = api.get("/v1/messages/1b2e4c7a-8d3f-4e61-a0b9-5c7d2e9f4a10",
                         headers=AUTH).get_json()
    assert by_wamid == by_kaleyra
    assert by_wamid["message_id"] == "wamid.xyzxyz" and by_wamid["status"] == "delivered"


@pytest.mark.parametrize(("word", "status"), [("STOP", "opted_out"), (" start ", "opted_in")])
def test_whatsapp_keywords_change_consent(rt, word, status):
    doc = copy.deepcopy(fixture("whatsapp_v2__message_text"))
    value(doc)["messages"][0]["text"]["body"] = word  # constructed from the text fixture
    enqueue(rt, orjson.dumps(doc), source=SOURCE)
    drain_all(rt)
    with rt.pool.connection() as conn:
        row = conn.execute(
            "SELECT status, scope FROM subscriptions WHERE channel = 'whatsapp' "
            "AND sender = '972123456789' AND msisdn = '972987654321'").fetchone()
    assert row == (status, "sender")
