"""Kaleyra.io shapes beyond the seed's samples: vmn:message:in wrapped, voice records
without ``mid`` and with click-to-call fields, every SMS DLR status.

Constructed (no published samples; see tests/fixtures/SOURCES.md): the wrapped
vmn body is the seed's whatsapp:message:in text sample under the vmn event with
an SMS channel; the voice records are the seed's voice:message:out sample without
its ``mid``, with the click-to-call fields issue 21 names.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from shared.providers import parse
from tests.helpers import FIXTURES, drain_all, enqueue

SOURCE = "kaleyra-io"
WA_IN = orjson.loads((FIXTURES / SOURCE / "whatsapp_message_in__text.json").read_bytes())
VOICE = orjson.loads((FIXTURES / SOURCE / "flat/voice_message_out__answer.json").read_bytes())
SMS = orjson.loads((FIXTURES / SOURCE / "flat/sms_message_status__undeliv.json").read_bytes())


def wrapped_vmn() -> dict[str, Any]:
    doc = copy.deepcopy(WA_IN)
    doc["event"] = "vmn:message:in"
    doc["payload"]["channels"] = [{"name": "sms", "to": "919900012345"}]
    doc["payload"]["recipient"]["from"] = "919812345678"
    return doc


def click_to_call() -> dict[str, Any]:
    doc = {k: v for k, v in VOICE.items() if k not in ("mid", "status")}
    doc.update(status1="ANSWER", status2="NOANSWER", hangup_by="callee",
               billing={"credits": "0.5", "pulse": 60})
    return doc


def test_a_wrapped_vmn_message_is_inbound_from_recipient_from():
    (event,) = parse(SOURCE, None, wrapped_vmn())
    assert (event.type, event.channel, event.msisdn, event.sender) == (
        "message.inbound", "sms", "919812345678", "919900012345")
    assert event.data["text"] == "This is a simple text message from whatsapp channel"


def test_a_voice_record_without_mid_is_a_completed_call_identified_by_its_body():
    (event,) = parse(SOURCE, "voice:message:out", click_to_call())
    assert event.type == "call.completed" and event.message_id is None
    assert event.dedupe_key.startswith("h:")
    assert (event.sender, event.msisdn) == ("918919521234", "918867131234")  # JSON integers
    assert event.data["duration"] == "23" and event.data["hangup_by"] == "callee"
    assert event.provider_status == "NOANSWER" and event.data["outcome"] == "no_answer"


@pytest.mark.parametrize(("status", "outcome"), [
    ("ANSWER", "answered"), ("BUSY", "busy"), ("NOANSWER_LEG2", "no_answer"),
    ("CANCEL", "cancelled"), ("CHANUNAVAIL", "failed"), ("MISWIG", "other"),
])
def test_call_outcomes(status, outcome):
    (event,) = parse(SOURCE, "voice:message:out", {**VOICE, "status": status})
    assert event.data["outcome"] == outcome


@pytest.mark.parametrize(("status", "trace", "mapped", "reason"), [
    ("UNDELIV", None, "failed", "UNDELIV"),
    ("REJECTD", None, "failed", "REJECTD"),
    ("DNDNUMB", None, "failed", "DNDNUMB"),
    ("FAILED", None, "failed", "FAILED"),
    ("EXPIRED", None, "expired", "EXPIRED"),
    ("NOT-SENT", "DND-NUMB", "failed", "NOT-SENT: DND-NUMB"),
    ("UNDELIVERED", "ABSENT-SUB", "failed", "UNDELIVERED: ABSENT-SUB"),
    ("AWAITED-DLR", None, "sent", None),
    ("DELIVERED", None, "delivered", None),
])
def test_every_documented_sms_status(status, trace, mapped, reason):
    doc = {**SMS, "status": status, **({"status_trace": trace} if trace else {})}
    (event,) = parse(SOURCE, "sms:message:status", doc)
    assert (event.status, event.provider_status, event.failure_reason) == (
        mapped, status, reason)


def test_wrapped_vmn_and_a_repeated_voice_record_end_to_end(rt):
    enqueue(rt, orjson.dumps(wrapped_vmn()), source=SOURCE)
    for _ in range(2):
        enqueue(rt, orjson.dumps(click_to_call()), source=SOURCE, event="voice:message:out")
    drain_all(rt)
    with rt.pool.connection() as conn:
        types = [r[0] for r in conn.execute("SELECT type FROM events ORDER BY type")]
        (msisdn,) = conn.execute("SELECT msisdn FROM inbound_messages").fetchone()
        letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    assert types == ["call.completed", "message.inbound"] and letters == 0
    assert msisdn == "919812345678"
