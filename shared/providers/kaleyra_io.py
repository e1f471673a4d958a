"""Kaleyra.io webhook events (seed 004) on source ``kaleyra-io``.

Two shapes arrive:

- wrapped ``{"event": "<name>", "payload": {...}}`` (whatsapp / rcs message
  status and inbound);
- flat: the body is the payload itself and the event is named by the URL
  (``/callbacks/kaleyra-io/<event>``), which the registry passes as ``event``.
  A flat body without a URL event cannot be read and is a ParseError.

Dispatch is by event name, so any known event is read the same way in either
shape. Unknown event names are UnsupportedEvent.

Decisions:

- Receipts set ``status`` from the provider value: wrapped statuses are the
  model's own names (sent, delivered, read, failed, deleted, expired); SMS
  statuses are SMPP (DELIVRD, UNDELIV, ...). Anything else is status
  ``unknown`` (type message.unknown) with the raw value in provider_status. The
  documented ``"sent|delivered|read|failed|deleted"`` is such a value.
- Failure reason and code (failed and expired receipts; seed 004 shows neither):
  a wrapped status's ``reason``, else its ``error`` (a string, or an object's
  message / title / description / details), and the error's ``code``; an SMS
  DLR's SMPP ``err`` code (its text is only the SMPP status: no reason).
- occurred_at: wrapped status -> the status's own time (``delivered_at`` /
  ``read_at``), else ``timestamp``, else ``processed_at``; SMS status ->
  ``deliv_time``, else ``sent_time``, else ``submit_time`` (naive times are UTC);
  unsubscription -> ``created_at``; voice -> ``end_at``, else ``start_at``;
  contact -> ``updated_at``, else ``created_at``. Inbound messages carry no time
  at all in the samples: those (and any event missing every time field) use the
  parse time and say so with ``data["occurred_at_estimated"] = True``.
- Unsubscriptions are opted_out with scope from ``type``: ``all`` -> ALL with
  sender ``"*"``, ``sender`` -> SENDER with sender = value, ``category`` ->
  CATEGORY with ``data["category"]`` = value. Their ``id`` is a per-channel
  record number, so the dedupe event id is ``"<event>:<id>"``. A status that
  reports the unsubscriber was deleted/removed is not an opt-out and is left
  unsupported (a dead letter) rather than guessed at.
- vmn:message:in has no published sample: it is read leniently from the
  incoming-SMS callback fields (``source``, ``recipient``, ``message``,
  ``keyword``, ``timestamp``) and common aliases.
- contacts carry an identity that is usually an e-mail: msisdn is only set
  when the identity looks like a phone number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from shared.model import (
    FAILURE_STATUSES,
    STATUS_EVENT_TYPE,
    STATUS_ORDER,
    Consent,
    ConsentScope,
    EventType,
    NormalisedEvent,
    dedupe_key,
)
from shared.providers.base import (
    BaseSchema,
    Format,
    LooseString,
    ParseError,
    UnsupportedEvent,
    UTCDateTime,
    error_parts,
    failure,
    instances,
    load,
)
from shared.providers.base import (
    optional_text as _text,
)
from shared.providers.common import LocationSchema, dig, first_text, first_time, inbound_data
from shared.timeutil import utcnow

SOURCE = "kaleyra-io"
URL_HINT = f"{SOURCE} flat payload needs its event in the URL (/callbacks/{SOURCE}/<event>)"

WRAPPED_STATUS: dict[str, str] = {s: s for s in STATUS_ORDER if s != "unknown"}
# SMPP statuses, Kaleyra's own (developers.kaleyra.io "SMS Status and Status Trace
# Codes"; messaging.kaleyra.com "Delivery Reports"), and the older push's DNDNUMB.
SMPP_STATUS: dict[str, str] = {
    "DELIVRD": "delivered",
    "DELIVERED": "delivered",
    "ACCEPTD": "sent",
    "ENROUTE": "sent",
    "SENT": "sent",
    "AWAITED-DLR": "sent",
    "UNDELIV": "failed",
    "UNDELIVERED": "failed",
    "REJECTD": "failed",
    "REJECTED": "failed",
    "FAILED": "failed",
    "NOT-SENT": "failed",
    "NOTSENT": "failed",
    "DNDNUMB": "failed",
    "DND-NUMB": "failed",
    "EXPIRED": "expired",
    "DELETED": "deleted",
}
SMS_ALIASES: dict[str, str] = {
    "message_id": "id", "msgid": "id", "my_id": "custom", "delivered": "deliv_time",
    "dlr_time": "deliv_time", "number": "mobile", "to": "mobile",
}
SCOPES: dict[str, ConsentScope] = {
    "all": ConsentScope.ALL,
    "sender": ConsentScope.SENDER,
    "category": ConsentScope.CATEGORY,
}
CALL_OUTCOMES: tuple[tuple[str, str], ...] = (
    ("ANSWER", "answered"), ("IVR-ANSWER", "answered"), ("BUSY", "busy"),
    ("NOANSWER", "no_answer"), ("CANCEL", "cancelled"), ("FAILED", "failed"),
    ("CHANUNAVAIL", "failed"), ("CONGESTION", "failed"), ("DND", "failed"),
    ("NOTALLOWED", "failed"),
)
MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "file", "sticker"})
PHONE_RE = re.compile(r"\+?\d{6,15}")

# The flat incoming-SMS callback's fields first, then the wrapped form's (the user at
# ``recipient.from``, the text at ``message.payload.text``, as whatsapp:message:in).
VMN_MSISDN_KEYS = ("source", "from", "sender", "mobile", ("recipient", "from"))
VMN_NUMBER_KEYS = ("recipient", "to", "vmn")
VMN_TEXT_KEYS = ("message", "text", "body", "msg", ("message", "payload", "text"),
                 ("message", "text"))
VMN_TIME_KEYS = ("timestamp", "received_at", "created_at")


# --- schemas -----------------------------------------------------------------------------


def _required_text() -> LooseString:
    """An id or number that must be present and non-empty."""
    return LooseString(required=True, validate=validate.Length(min=1))


def _optional(field: type[fields.Field], count: int) -> tuple[fields.Field, ...]:
    """``count`` optional fields (None when absent), unpacked into that many names.

    One fresh instance each: marshmallow binds a field to the one name it is declared
    under. Unpacking keeps declaration order, which is the order of the loaded dict.
    """
    return tuple(field(load_default=None) for _ in range(count))


class StatusSchema(BaseSchema):
    id = _required_text()
    channel = fields.String(load_default=None)
    from_ = LooseString(data_key="from", load_default=None)
    to = LooseString(load_default=None)
    status = _required_text()
    delivered_at, read_at, processed_at, timestamp = _optional(UTCDateTime, 4)
    foreign_id, reason = _optional(LooseString, 2)
    error = fields.Raw(load_default=None)


class ChannelSchema(BaseSchema):
    name = fields.String(load_default=None)
    to = LooseString(load_default=None)


class RecipientSchema(BaseSchema):
    from_ = LooseString(data_key="from", required=True, validate=validate.Length(min=1))
    user = fields.Dict(load_default=None)


class MessageSchema(BaseSchema):
    type = fields.String(required=True, validate=validate.Length(min=1))
    payload = fields.Dict(required=True)


class InboundSchema(BaseSchema):
    id = _required_text()
    channels = fields.List(fields.Nested(ChannelSchema), load_default=None)
    recipient = fields.Nested(RecipientSchema, required=True)
    message = fields.Nested(MessageSchema, required=True)
    timestamp = UTCDateTime(load_default=None)


class TextContentSchema(BaseSchema):
    text = fields.String(required=True)


class MediaContentSchema(BaseSchema):
    url = fields.String(required=True, validate=validate.Length(min=1))
    caption = fields.String(load_default=None)
    filename = fields.String(load_default=None)


class SmsStatusSchema(BaseSchema):
    id = _required_text()
    mobile = _required_text()
    status = _required_text()
    sender, credits, units = _optional(LooseString, 3)
    deliv_time, sent_time, submit_time = _optional(UTCDateTime, 3)
    cid, custom, err = _optional(LooseString, 3)
    sid, status_trace, description = _optional(LooseString, 3)


class UnsubscriptionSchema(BaseSchema):
    id = LooseString(load_default=None)
    receiver = _required_text()
    type = fields.String(required=True, validate=validate.OneOf(list(SCOPES)))
    value = LooseString(load_default=None)
    created_at = UTCDateTime(load_default=None)
    status = fields.String(load_default=None)

    @validates_schema
    def _value_present(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["type"] != "all" and not data.get("value"):
            raise ValidationError(f"required for an unsubscription of type {data['type']}", "value")


class VoiceSchema(BaseSchema):
    mid = LooseString(load_default=None)
    from_ = LooseString(data_key="from", load_default=None)
    to = _required_text()
    bridge, source, flow_id = _optional(LooseString, 3)
    start_at, end_at = _optional(UTCDateTime, 2)
    duration, status, recording_url = _optional(LooseString, 3)
    # Click-to-call records: each leg's status, who hung up, what it cost.
    status1, status2, hangup_by = _optional(LooseString, 3)
    billing = fields.Raw(load_default=None)


class ContactSchema(BaseSchema):
    id = _required_text()
    identity = LooseString(load_default=None)
    first_name, middle_name, last_name = _optional(LooseString, 3)
    gender, birth_date, company = _optional(LooseString, 3)
    attributes = fields.Dict(load_default=None)
    created_at, updated_at = _optional(UTCDateTime, 2)
    status = fields.String(load_default=None)


(_STATUS, _INBOUND, _TEXT, _MEDIA, _LOCATION, _SMS_STATUS, _UNSUBSCRIPTION, _VOICE,
 _CONTACT) = instances(StatusSchema, InboundSchema, TextContentSchema, MediaContentSchema,
                       LocationSchema, SmsStatusSchema, UnsubscriptionSchema,
                       VoiceSchema, ContactSchema)


# --- helpers -----------------------------------------------------------------------------


def _channel(event: str) -> str:
    return event.split(":", 1)[0]


def _when(*candidates: datetime | None) -> tuple[datetime, dict[str, Any]]:
    """The first known time; else now, flagged so the apply layer knows it is a guess."""
    for candidate in candidates:
        if candidate is not None:
            return candidate, {}
    return utcnow(), {"occurred_at_estimated": True}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _status_time(status: str, r: dict[str, Any]) -> datetime | None:
    own = {"delivered": r["delivered_at"], "read": r["read_at"]}.get(status)
    return own or r["timestamp"] or r["processed_at"]


def _message_event(
    type_: EventType, message_id: str | None, kind: str, doc: Any, **fields: Any
) -> list[NormalisedEvent]:
    """The one event of a callback about one message (a receipt, an inbound message, a
    call); ``fields`` are the rest of its NormalisedEvent fields. Kaleyra.io sends no event
    ids: it is deduped on the message id and ``kind`` (a receipt's provider status, else
    the event name)."""
    key = dedupe_key(None, message_id, kind, doc)
    return [NormalisedEvent(type=type_.value, source=SOURCE, dedupe_key=key,
                            message_id=message_id, **fields)]


# --- wrapped: whatsapp / rcs message status ----------------------------------------------


def _status_failure(r: dict[str, Any]) -> tuple[str | None, str | None]:
    reason, code = error_parts(r["error"])
    return failure(r["reason"] or reason, code)


def _message_status(payload: Any, event: str, doc: Any) -> list[NormalisedEvent]:
    r = load(_STATUS, payload, f"{SOURCE} {event} payload")
    status = WRAPPED_STATUS.get(r["status"].lower(), "unknown")
    occurred, data = _when(_status_time(status, r))
    data.update(foreign_id=r["foreign_id"])
    if status == "failed":
        data.update(reason=r["reason"], details=r["error"])
    reason, code = _status_failure(r) if status in FAILURE_STATUSES else (None, None)
    return _message_event(
        STATUS_EVENT_TYPE[status], r["id"], r["status"], doc,
        channel=r["channel"] or _channel(event), occurred_at=occurred,
        sender=r["from_"], msisdn=r["to"], status=status, provider_status=r["status"], data=data,
        failure_reason=reason, failure_code=code,
    )


# --- wrapped: whatsapp / rcs inbound -----------------------------------------------------


def _content(message: dict[str, Any], what: str) -> dict[str, Any]:
    """data["text"|"media"|"location"] for one inbound message, by its type."""
    kind, body = message["type"], message["payload"]
    if kind == "text":
        return {"text": load(_TEXT, body, what)["text"]}
    if kind in MEDIA_TYPES:
        m = load(_MEDIA, body, what)
        media = {"url": m["url"], "type": kind, "caption": m["caption"]}
        return {"text": None, "media": [{**media, "filename": m["filename"] or None}]}
    if kind == "location":
        return {"text": None, "location": dict(load(_LOCATION, body, what))}
    raise UnsupportedEvent(f"unsupported event type for {SOURCE}: {what} type {kind!r}")


def _business_number(channels: list[dict[str, Any]] | None, channel: str) -> str | None:
    """The number the user wrote to: the entry for this channel, else any with a number."""
    numbered = [c for c in channels or [] if c.get("to")]
    named = [c for c in numbered if c.get("name") == channel]
    return (named or numbered)[0]["to"] if numbered else None


def _message_in(payload: Any, event: str, doc: Any) -> list[NormalisedEvent]:
    r = load(_INBOUND, payload, f"{SOURCE} {event} payload")
    channel = _channel(event)
    occurred, data = _when(r["timestamp"])
    data.update(inbound_data(**_content(r["message"], f"{SOURCE} {event} message.payload"),
                             user=r["recipient"]["user"], message_type=r["message"]["type"]))
    return _message_event(
        EventType.MESSAGE_INBOUND, r["id"], event, doc,
        channel=channel, occurred_at=occurred, sender=_business_number(r["channels"], channel),
        msisdn=r["recipient"]["from_"], provider_status=event, data=data,
    )


# --- flat: sms status, unsubscriptions, voice, vmn, contacts -----------------------------


def _sms_fields(payload: Any) -> Any:
    """The push's other names (a GET or form callback) for the fields of the JSON one."""
    if not isinstance(payload, dict):
        return payload
    renamed = {new: payload[old] for old, new in SMS_ALIASES.items()
               if old in payload and new not in payload}
    return {**payload, **renamed} if renamed else payload


def _sms_failure(r: dict[str, Any]) -> tuple[str | None, str | None]:
    """The provider's status is the reason (with its trace, e.g. UNDELIVERED: ABSENT-SUB);
    the SMPP error, else the trace, the code."""
    trace = r["status_trace"] if r["status_trace"] != r["status"] else None
    reason = f"{r['status']}: {trace}" if trace else r["status"]
    return failure(reason, r["err"] or trace)


def _sms_status(payload: Any, event: str, doc: Any) -> list[NormalisedEvent]:
    r = load(_SMS_STATUS, _sms_fields(payload), f"{SOURCE} {event}")
    status = SMPP_STATUS.get(r["status"].upper(), "unknown")
    occurred, data = _when(r["deliv_time"], r["sent_time"], r["submit_time"])
    kept = ("credits", "units", "cid", "custom", "sid", "status_trace", "description")
    data.update({k: r[k] for k in kept if r[k] is not None})
    reason, code = _sms_failure(r) if status in FAILURE_STATUSES else (None, None)
    return _message_event(
        STATUS_EVENT_TYPE[status], r["id"], r["status"], doc,
        channel="sms", occurred_at=occurred,
        sender=r["sender"], msisdn=r["mobile"], status=status, provider_status=r["status"],
        data=data, failure_reason=reason, failure_code=code,
    )


def _refuse_removal(status: str | None, event: str) -> None:
    # A deleted unsubscriber is the opposite of an opt-out: never guess, dead-letter it.
    if status and re.search(r"delet|remov", status, re.IGNORECASE):
        raise UnsupportedEvent(
            f"unsupported event type for {SOURCE}: {event} with status {status[:100]!r}"
        )


def _unsubscription(payload: Any, event: str, doc: Any) -> list[NormalisedEvent]:
    r = load(_UNSUBSCRIPTION, payload, f"{SOURCE} {event}")
    _refuse_removal(r["status"], event)
    scope = SCOPES[r["type"]]
    occurred, data = _when(r["created_at"])
    data.update(unsubscription_type=r["type"], value=r["value"])
    if scope is ConsentScope.CATEGORY:
        data["category"] = r["value"]
    sender = {ConsentScope.ALL: "*", ConsentScope.SENDER: r["value"]}.get(scope)
    return [
        NormalisedEvent(
            type=EventType.SUBSCRIPTION_OPTED_OUT.value,
            source=SOURCE,
            channel=_channel(event),
            occurred_at=occurred,
            # Ids are per-channel record numbers: qualify them with the event.
            dedupe_key=dedupe_key(f"{event}:{r['id']}" if r["id"] else None, None, None, doc),
            sender=sender,
            msisdn=r["receiver"],
            provider_status=r["status"] or event,
            provider_event_id=r["id"],
            consent=Consent.OPT_OUT,
            consent_scope=scope,
            data=data,
        )
    ]


def _voice_out(payload: Any, event: str, doc: Any) -> list[NormalisedEvent]:
    r = load(_VOICE, payload, f"{SOURCE} {event}")
    occurred, data = _when(r["end_at"], r["start_at"])
    data.update(
        bridge=r["bridge"],
        call_source=r["source"],
        flow_id=r["flow_id"],
        started_at=_iso(r["start_at"]),
        ended_at=_iso(r["end_at"]),
        duration=r["duration"],
        call_status=r["status"],
        recording_url=r["recording_url"],
        outcome=_call_outcome(r["status"] or r["status2"] or r["status1"]),
    )
    data.update({k: r[k] for k in ("status1", "status2", "hangup_by", "billing")
                 if r[k] is not None})
    # Without a mid, the record itself is its identity (dedupe on the body's hash).
    return _message_event(
        EventType.CALL_COMPLETED, r["mid"], event, doc,
        channel="voice", occurred_at=occurred, sender=r["from_"], msisdn=r["to"],
        provider_status=r["status"] or r["status2"] or r["status1"], data=data,
    )


def _call_outcome(status: str | None) -> str | None:
    """answered / busy / no_answer / failed / cancelled from Kaleyra's call status
    (support.kaleyra.com "API Operator Status for Voice"); None when there is none."""
    if not status:
        return None
    word = status.upper()
    for prefix, outcome in CALL_OUTCOMES:
        if word.startswith(prefix):
            return outcome
    return "other"


def _vmn_in(payload: Any, event: str, doc: Any) -> list[NormalisedEvent]:
    if not isinstance(payload, dict):
        raise ParseError(f"{SOURCE} {event}: expected a JSON object, got {type(payload).__name__}")
    msisdn = first_text(payload, VMN_MSISDN_KEYS)
    if msisdn is None:
        keys = ", ".join(k if isinstance(k, str) else ".".join(k) for k in VMN_MSISDN_KEYS)
        raise ParseError(f"{SOURCE} {event}: no sender number (expected one of {keys})")
    text = next((t for t in (dig(payload, k) for k in VMN_TEXT_KEYS) if isinstance(t, str)),
                None)
    number = first_text(payload, VMN_NUMBER_KEYS) or _business_number(
        payload.get("channels") if isinstance(payload.get("channels"), list) else None, "sms")
    message_id = _text(payload.get("id"))
    occurred, data = _when(first_time(payload, VMN_TIME_KEYS))
    data.update(inbound_data(text=text))
    data.update({k: payload[k] for k in ("keyword", "operator", "circle") if _text(payload.get(k))})
    return _message_event(
        EventType.MESSAGE_INBOUND, message_id, event, doc,
        channel="sms", occurred_at=occurred,
        sender=number, msisdn=msisdn, provider_status=event,
        data=data,
    )


def _contact(payload: Any, event: str, doc: Any) -> list[NormalisedEvent]:
    r = load(_CONTACT, payload, f"{SOURCE} {event}")
    identity = r["identity"]
    occurred, data = _when(r["updated_at"], r["created_at"])
    names = ("identity", "first_name", "middle_name", "last_name", "gender", "birth_date")
    contact = {k: r[k] for k in (*names, "company", "attributes")}
    data.update(contact_id=r["id"], contact=contact, created_at=_iso(r["created_at"]))
    is_phone = identity is not None and PHONE_RE.fullmatch(identity) is not None
    return [
        NormalisedEvent(
            type=EventType.CONTACT_UPDATED.value,
            source=SOURCE,
            channel="contacts",
            occurred_at=occurred,
            # No event id and no message: the body itself (it carries updated_at).
            dedupe_key=dedupe_key(None, None, None, doc),
            msisdn=identity if is_phone else None,
            provider_status=r["status"] or event,
            data=data,
        )
    ]


EventParser = Callable[[Any, str, Any], list[NormalisedEvent]]
EVENTS: dict[str, EventParser] = {
    "whatsapp:message:status": _message_status,
    "rcs:message:status": _message_status,
    "whatsapp:message:in": _message_in,
    "rcs:message:in": _message_in,
    "sms:message:status": _sms_status,
    "sms:unsubscription": _unsubscription,
    "whatsapp:unsubscription": _unsubscription,
    "rcs:unsubscription": _unsubscription,
    "voice:unsubscription": _unsubscription,
    "voice:message:out": _voice_out,
    "vmn:message:in": _vmn_in,
    "contacts:subscriber:subscription": _contact,
}


# --- formats -----------------------------------------------------------------------------


def _is_wrapped(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("event"), str) and "payload" in doc


def matches_wrapped(doc: Any, event: str | None) -> bool:
    return _is_wrapped(doc) and doc["event"] in EVENTS


def matches_flat(doc: Any, event: str | None) -> bool:
    # A wrapped body with an unknown event falls through to UnsupportedEvent.
    return isinstance(doc, dict) and not _is_wrapped(doc)


def parse_wrapped(doc: Any, event: str | None) -> list[NormalisedEvent]:
    name = doc["event"]
    return EVENTS[name](doc["payload"], name, doc)


def parse_flat(doc: Any, event: str | None) -> list[NormalisedEvent]:
    if not event:
        raise ParseError(URL_HINT)
    parser = EVENTS.get(event)
    if parser is None:
        raise UnsupportedEvent(f"unsupported event type for {SOURCE}: URL event {event[:100]!r}")
    return parser(doc, event, doc)


FORMATS = [
    Format(source=SOURCE, name="kaleyra-io-wrapped", matches=matches_wrapped, parse=parse_wrapped,
           needs="{\"event\": <a known event>, \"payload\": ...}"),
    Format(source=SOURCE, name="kaleyra-io-flat", matches=matches_flat, parse=parse_flat,
           fallback=True),
]
