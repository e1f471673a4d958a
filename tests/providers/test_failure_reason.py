"""A failed message says why: each provider's failing receipts through the real pipeline
(Redis inbox, drain, PostgreSQL) to GET /v1/messages/<id>, its failure_reason and
failure_code and each history entry's reason and code; and the rules of the upsert."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ingest.app import create_app
from tests.consent_support import EXPECTED, FIXTURES, url_event
from tests.helpers import drain_all, enqueue, receipt

AUTH = {"Authorization": "Bearer test-api-token"}


@pytest.fixture
def api(rt):
    return create_app(rt=rt, send_drain=lambda: None).test_client()


def _fixture(rel: str) -> dict[str, Any]:
    return orjson.loads((FIXTURES / rel).read_bytes())


def _with(rel: str, path: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
    """Fixture ``rel`` with ``fields`` set in the object at ``path``: the seeds show
    no Kaleyra failure with its reason, so those fields are modelled on a real one."""
    doc = _fixture(rel)
    target = doc
    for key in path:
        target = target[key]
    target.update(fields)
    return doc


def _envelope(rel: str, **fields: Any) -> dict[str, Any]:
    """A Kaleyra RCS receipt in the carrier envelope of seed 001."""
    return {"data": _fixture(rel), **fields}


WA = "kaleyra-io/whatsapp_message_status__failed.json"
RCS_IO = "kaleyra-io/rcs_message_status__failed.json"
SMS = "kaleyra-io/flat/sms_message_status__undeliv.json"
SMS_EXPIRED = "kaleyra-io/flat/sms_message_status__expired.json"
DR = "kaleyra-rcs/dr_error.json"

# (fixture, body, failure_reason, failure_code); body None is the fixture as it is.
CASES = [
    ("comapi/message_failed__sms_validation.json", None,
     "body field is not valid. Unicode content is not allowed when PreventUnicode is true.",
     "UnicodeBodyRejected"),
    ("comapi/message_failed__sms_rejected.json", None, "Rejected by operator", "4"),
    ("comapi/message_failed__email.json", None, "Not delivering to unsubscribed address", "606"),
    ("comapi/message_failed__rcs.json", None, "The profile is not tester", None),
    ("comapi/message_failed__general.json", None,
     "The message failed because it could not be sent to any of the configured channels.", None),
    (WA, _with(WA, ("payload",), error={"code": 131026, "title": "Message undeliverable",
                                        "message": "Receiver is incapable of receiving"}),
     "Receiver is incapable of receiving", "131026"),
    (RCS_IO, _with(RCS_IO, ("payload",), reason="Recipient is not RCS capable"),
     "Recipient is not RCS capable", None),
    (SMS, _with(SMS, err="001"), "UNDELIV", "001"),
    (SMS_EXPIRED, _with(SMS_EXPIRED, err="003"), "EXPIRED", "003"),
    (DR, _with(DR, error={"code": "E403", "message": "Agent not launched on carrier"}),
     "Agent not launched on carrier", "E403"),
    (DR, _envelope(DR, code="5001", message="Message delivery failed", error={}),
     "Message delivery failed", "5001"),
]


def _ingest(rt, rel: str, body: dict[str, Any] | None = None) -> None:
    raw = (FIXTURES / rel).read_bytes() if body is None else orjson.dumps(body)
    enqueue(rt, raw, source=EXPECTED[rel]["source"], event=url_event(rel))


def _message(api, rel: str) -> dict[str, Any]:
    exp = EXPECTED[rel]
    resp = api.get(f"/v1/messages/{exp['message_id']}?source={exp['source']}", headers=AUTH)
    assert resp.status_code == 200, resp.get_data()
    return resp.get_json()


@pytest.mark.parametrize(("rel", "body", "reason", "code"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_a_failed_message_says_why(api, rt, rel, body, reason, code):
    _ingest(rt, rel, body)
    drain_all(rt)
    doc = _message(api, rel)
    assert doc["status"] == EXPECTED[rel]["status"] and doc["status"] in ("failed", "expired")
    assert (doc["failure_reason"], doc["failure_code"]) == (reason, code)
    (event,) = doc["events"]
    assert (event["status"], event["reason"], event["code"]) == (doc["status"], reason, code)


@pytest.mark.parametrize("rel", ["kaleyra-rcs/dr_delivered.json", "comapi/message_sent__sms.json",
                                 "kaleyra-io/flat/sms_message_status__delivrd.json"])
def test_a_message_that_did_not_fail_has_no_reason(api, rt, rel):
    _ingest(rt, rel)
    drain_all(rt)
    doc = _message(api, rel)
    assert doc["status"] != "failed"
    assert (doc["failure_reason"], doc["failure_code"]) == (None, None)
    assert [(e["reason"], e["code"]) for e in doc["events"]] == [(None, None)]


def _error(reason: str | None, event_id: str, offset: float = 0.0) -> bytes:
    extra = {"error": {"code": "E1", "message": reason}} if reason else {}
    return receipt("ERROR", event_id=event_id, offset=offset, **extra)


def _apply(api, rt, bodies: list[bytes], one_batch: bool) -> dict[str, Any]:
    for body in bodies:
        enqueue(rt, body)
        if not one_batch:
            drain_all(rt)
    drain_all(rt)
    return api.get("/v1/messages/msg-1", headers=AUTH).get_json()


@pytest.mark.parametrize("one_batch", [True, False])
@pytest.mark.parametrize("delivered_first", [True, False])
def test_a_later_ranked_status_clears_the_reason_and_the_history_keeps_it(
        api, rt, one_batch, delivered_first):
    bodies = [_error("Agent not launched", "e-1"), receipt("DELIVERED", offset=5)]
    doc = _apply(api, rt, bodies[::-1] if delivered_first else bodies, one_batch)
    # Delivered outranks failed: the message is no longer failed, so no reason.
    assert (doc["status"], doc["failure_reason"], doc["failure_code"]) == (
        "delivered", None, None)
    assert [(e["status"], e["reason"], e["code"]) for e in doc["events"]] == [
        ("failed", "Agent not launched", "E1"), ("delivered", None, None)]


@pytest.mark.parametrize("one_batch", [True, False])
@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_two_failures_of_one_message_give_the_same_reason_in_any_order(
        api, rt, one_batch, order):
    errors = [_error(None, "e-0"), _error("B: network timeout", "e-1", 1),
              _error("A: agent not launched", "e-2", 2)]
    doc = _apply(api, rt, [errors[i] for i in order], one_batch)
    # One with a reason beats one without; between two, the smaller text.
    assert (doc["failure_reason"], doc["failure_code"]) == ("A: agent not launched", "E1")
    assert sorted(e["reason"] or "" for e in doc["events"]) == [
        "", "A: agent not launched", "B: network timeout"]


def test_the_failure_fields_are_documented(api):
    doc = api.get("/v1/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    message, event = schemas["Message"]["properties"], schemas["MessageEvent"]["properties"]
    for props, names in ((message, ("failure_reason", "failure_code")),
                         (event, ("reason", "code"))):
        for name in names:
            assert props[name]["type"] == ["string", "null"], (name, props[name])
            assert "provider" in props[name]["description"], name


def test_a_fan_out_body_carries_the_reason():
    from shared.notifications import Notification, payload
    from shared.providers import parse

    rel = "comapi/message_failed__email.json"
    (event,) = parse("comapi", None, _fixture(rel))
    data = payload(Notification(7, event.type, event))["data"]
    assert (data["failure_reason"], data["failure_code"]) == (
        "Not delivering to unsubscribed address", "606")
