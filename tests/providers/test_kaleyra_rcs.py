"""Kaleyra RCS beyond the seeds: refs and TTL_EXPIRATION_REVOKED (fixtures
``dr_sent_refs.json`` / ``dr_ttl_expiration_revoked.json``, run by every fixture
test), the enveloped ERROR receipt's error object, and file user messages.

No published sample of an MO file message was found: the bodies here are
constructed from the seed's USER_MESSAGE envelope with Kaleyra's send-API ``file``
member (fileUrl, thumbnailUrl; developers.kaleyra.io "Send a File Message") and
Google RBM's ``userFile``.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from shared.providers import UnsupportedEvent, parse
from tests.helpers import FIXTURES, drain_all, enqueue

SOURCE = "kaleyra-rcs"
START = orjson.loads((FIXTURES / SOURCE / "mo_envelope_user_message_start.json").read_bytes())
TTL = orjson.loads((FIXTURES / SOURCE / "dr_ttl_expiration_revoked.json").read_bytes())
PDF = "https://www.aeee.in/wp-content/uploads/2020/08/Sample-pdf.pdf"


def file_message(user_message: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(START)
    doc["data"]["userMessage"] = user_message
    return doc


@pytest.mark.parametrize("user_message", [
    {"type": "FILE", "file": {"fileUrl": PDF, "thumbnailUrl": "https://x.test/t.jpg"}},
    {"type": "FILE", "userFile": {"payload": {"mimeType": "application/pdf",
                                              "fileUri": PDF, "fileName": "Sample-pdf.pdf"}}},
])
def test_a_file_user_message_is_inbound_with_its_media(user_message):
    (event,) = parse(SOURCE, None, file_message(user_message))
    assert event.type == "message.inbound" and event.data["text"] is None
    (media,) = event.data["media"]
    assert media["url"] == PDF and media["type"] == "file"


def test_a_file_user_message_without_a_url_stays_unsupported():
    with pytest.raises(UnsupportedEvent):
        parse(SOURCE, None, file_message({"type": "FILE", "file": {"fileName": "x"}}))


def test_an_enveloped_error_receipt_takes_its_error_object():
    doc = {"code": "5001", "message": "Message delivery failed", "error": {
        "code": "E403", "message": "Agent not launched on carrier"},
        "data": {**TTL, "type": "ERROR"}}
    (event,) = parse(SOURCE, None, doc)
    assert (event.status, event.failure_reason, event.failure_code) == (
        "failed", "Agent not launched on carrier", "E403")
    assert event.data["ref"] == "child-reference-1"


def test_file_message_and_ttl_receipt_end_to_end(rt):
    enqueue(rt, orjson.dumps(file_message({"type": "FILE", "file": {"fileUrl": PDF}})))
    enqueue(rt, orjson.dumps(TTL))
    drain_all(rt)
    with rt.pool.connection() as conn:
        (media,) = conn.execute("SELECT media FROM inbound_messages").fetchone()
        status = conn.execute("SELECT status FROM messages WHERE message_id = %s",
                              (TTL["messageId"],)).fetchone()
    assert media[0]["url"] == PDF and status == ("expired",)
