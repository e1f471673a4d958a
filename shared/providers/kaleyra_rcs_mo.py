"""Kaleyra RCS mobile-originated events, flat (seed 000) and enveloped (seed 001).

Both forms arrive on ``kaleyra-rcs`` next to the delivery receipts and are told
apart by shape: the carrier envelope is ``{code, message, data, error}`` with the
event in ``data``; the flat form is the event itself. Receipt types (SENT,
DELIVERED, READ, ERROR) are left to ``kaleyra_rcs_receipts``.

``to`` is the agent service code (sender) and ``from`` the end user (msisdn);
occurred_at is ``sentAt``. Only the explicit SUBSCRIBE / UNSUBSCRIBE events carry
consent: a START/STOP text is an ordinary inbound message here, and keyword
handling is left to the apply layer (it is configurable there), so the text
always lands in ``data["text"]``. For a suggestion RESPONSE ``data["text"]`` is
None: the chip text is brand-authored and is kept in ``data["response"]``.
"""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from shared.model import Consent, EventType, NormalisedEvent, dedupe_key
from shared.providers.base import (
    BaseSchema,
    Format,
    LooseString,
    UnsupportedEvent,
    UTCDateTime,
    load,
)
from shared.providers.common import LocationSchema, first_text, inbound_data, is_envelope

SOURCE = "kaleyra-rcs"
CHANNEL = "rcs"

EVENT_TYPES: dict[str, EventType] = {
    "USER_MESSAGE": EventType.MESSAGE_INBOUND,
    "SUBSCRIBE": EventType.SUBSCRIPTION_OPTED_IN,
    "UNSUBSCRIBE": EventType.SUBSCRIPTION_OPTED_OUT,
    "COMPOSING": EventType.MESSAGE_COMPOSING,
}
CONSENT: dict[str, Consent] = {"SUBSCRIBE": Consent.OPT_IN, "UNSUBSCRIBE": Consent.OPT_OUT}
# userMessage.type -> the member that must carry its content.
USER_MESSAGE_CONTENT: dict[str, str] = {
    "TEXT": "text",
    "RESPONSE": "response",
    "LOCATION": "location",
}
# userMessage.type values that carry a file (no published MO sample: read leniently).
MEDIA_MESSAGES = frozenset({"FILE", "MEDIA", "IMAGE", "VIDEO", "AUDIO", "DOCUMENT"})


class ResponseSchema(BaseSchema):
    text = LooseString(load_default=None)
    postback_data = LooseString(data_key="postbackData", load_default=None)
    type = fields.String(required=True)  # REPLY or ACTION
    mo_type = fields.String(load_default=None)  # DIAL, OPEN_URL, VIEW_LOCATION, ...


class UserMessageSchema(BaseSchema):
    type = fields.String(required=True)
    text = fields.String(load_default=None)
    response = fields.Nested(ResponseSchema, load_default=None)
    location = fields.Nested(LocationSchema, load_default=None)
    file = fields.Raw(load_default=None)
    media = fields.Raw(load_default=None)
    user_file = fields.Raw(data_key="userFile", load_default=None)

    @validates_schema
    def _content_present(self, data: dict[str, Any], **kwargs: Any) -> None:
        member = USER_MESSAGE_CONTENT.get(data["type"])
        if member and data.get(member) is None:
            raise ValidationError(f"required for a {data['type']} userMessage", member)


def _media(um: dict[str, Any]) -> dict[str, Any] | None:
    """The file a user sent: Kaleyra's ``file`` / ``media`` (fileUrl, as in its send API)
    or Google RBM's ``userFile`` (payload.fileUri); None without a URL."""
    found = next((m for m in (um.get("file"), um.get("media"), um.get("user_file"))
                  if isinstance(m, dict)), None)
    if found is None:
        return None
    payload = found.get("payload") if isinstance(found.get("payload"), dict) else found
    url = first_text(payload, ("fileUrl", "fileUri", "url"))
    if not url:
        return None
    return {"url": url, "type": um["type"].lower(),
            "mime_type": first_text(payload, ("mimeType", "contentType")),
            "filename": first_text(payload, ("fileName", "name")), "caption": None,
            "thumbnail_url": first_text(found, ("thumbnailUrl", ("thumbnail", "fileUri")))}


class MoSchema(BaseSchema):
    type = fields.String(required=True, validate=validate.OneOf(list(EVENT_TYPES)))
    event_id = LooseString(data_key="eventId", load_default=None)
    from_ = LooseString(data_key="from", required=True, validate=validate.Length(min=1))
    to = LooseString(required=True, validate=validate.Length(min=1))
    sent_at = UTCDateTime(data_key="sentAt", required=True)
    message_id = LooseString(data_key="messageId", load_default=None)
    carrier_id = LooseString(data_key="carrierId", load_default=None)
    user_message = fields.Nested(UserMessageSchema, data_key="userMessage", load_default=None)

    @validates_schema
    def _user_message_present(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["type"] == "USER_MESSAGE" and data.get("user_message") is None:
            raise ValidationError("required for a USER_MESSAGE event", "userMessage")


class EnvelopeSchema(BaseSchema):
    code = LooseString(required=True)
    message = fields.Raw(load_default=None)
    data = fields.Dict(required=True)
    error = fields.Raw(load_default=None)


_MO = MoSchema()
_ENVELOPE = EnvelopeSchema()


def _is_mo(inner: Any) -> bool:
    return isinstance(inner, dict) and isinstance(inner.get("type"), str) and (
        inner["type"] in EVENT_TYPES
    )


def matches_flat(doc: Any, event: str | None) -> bool:
    return not is_envelope(doc) and _is_mo(doc)


def matches_envelope(doc: Any, event: str | None) -> bool:
    return is_envelope(doc) and _is_mo(doc["data"])


def _inbound_data(um: dict[str, Any], carrier_id: str | None) -> dict[str, Any]:
    kind = um["type"]
    if kind in MEDIA_MESSAGES and _media(um) is not None:
        return inbound_data(message_type=kind, media=[_media(um)], carrier_id=carrier_id)
    if kind not in USER_MESSAGE_CONTENT:
        raise UnsupportedEvent(
            f"unsupported event type for {SOURCE}: USER_MESSAGE with userMessage.type {kind!r}"
        )
    response = um["response"]
    return inbound_data(
        message_type=kind,
        text=um["text"] if kind == "TEXT" else None,
        response=_response(response) if kind == "RESPONSE" and response else None,
        location=dict(um["location"]) if kind == "LOCATION" and um["location"] else None,
        carrier_id=carrier_id,
    )


def _response(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": r["text"],
        "postback_data": r["postback_data"],
        "type": r["type"],
        "mo_type": r["mo_type"],
    }


def _data(r: dict[str, Any], envelope: dict[str, Any] | None) -> dict[str, Any]:
    if r["type"] == "USER_MESSAGE":
        data = _inbound_data(r["user_message"], r["carrier_id"])
    else:
        data = {"carrier_id": r["carrier_id"]} if r["carrier_id"] else {}
    if envelope is not None:
        data["code"] = envelope["code"]
        if envelope["error"]:
            data["error"] = envelope["error"]
    return data


def _to_events(
    r: dict[str, Any], doc: Any, envelope: dict[str, Any] | None
) -> list[NormalisedEvent]:
    return [
        NormalisedEvent(
            type=EVENT_TYPES[r["type"]].value,
            source=SOURCE,
            channel=CHANNEL,
            occurred_at=r["sent_at"],
            dedupe_key=dedupe_key(r["event_id"], r["message_id"], r["type"], doc),
            message_id=r["message_id"],
            sender=r["to"],
            msisdn=r["from_"],
            provider_status=r["type"],
            provider_event_id=r["event_id"],
            consent=CONSENT.get(r["type"]),
            data=_data(r, envelope),
        )
    ]


def parse_flat(doc: Any, event: str | None) -> list[NormalisedEvent]:
    r = load(_MO, doc, f"{SOURCE} MO")
    return _to_events(r, doc, None)


def parse_envelope(doc: Any, event: str | None) -> list[NormalisedEvent]:
    envelope = load(_ENVELOPE, doc, f"{SOURCE} MO envelope")
    r = load(_MO, envelope["data"], f"{SOURCE} MO envelope data")
    return _to_events(r, doc, envelope)


FORMATS = [
    Format(source=SOURCE, name="kaleyra-rcs-mo", matches=matches_flat, parse=parse_flat,
           needs="\"type\" USER_MESSAGE|SUBSCRIBE|UNSUBSCRIBE|COMPOSING"),
    Format(
        source=SOURCE,
        name="kaleyra-rcs-mo-envelope",
        matches=matches_envelope,
        parse=parse_envelope,
    ),
]
