"""Comapi / Dotdigital omnichannel message events (seed 003) on source ``comapi``.

Every event is ``{eventId, accountId, apiSpaceId, name, payload, revision, etag,
timestamp}``; ``name`` picks the event:

- ``message.sent|delivered|read|expired|failed``: a receipt for ``payload.id``.
  ``payload.details.channelStatus`` comes in two shapes: keyed by channel
  (``{"sms": {status, details, updatedOn}}``, sent and failed events) or the
  channel's own raw receipt (delivered / read events). It is kept whole in
  ``data["details"]``; a failure's reason goes to ``data["reason"]``.
  failure_reason / failure_code (failed and expired events) are the most specific
  the event gives: the channel's validation failures (``details`` and
  ``failureCode``), else the channel's own reason (``details.reason``, email's
  ``description``, ``reason``), else the general ``details.reason``; the code is
  the channel's ``code`` (email) or its gateway ``statusid`` (sms). An expired
  event carries neither.
- ``message.inbound``: text from ``body`` (or the text parts), media from
  ``messageParts`` / appMessaging parts / Messenger attachments.
- ``interaction.click``: no sample is published, so it is read leniently (message
  id from ``payload.messageId`` or ``payload.id``, ``payload.url``) and the whole
  payload is kept in ``data["payload"]``.

occurred_at is the event's own time, not the webhook's send time:
receipts use ``payload.updatedOn`` (Comapi's clock, the same for every event of a
message), else the channel's status time (``channelStatus.<channel>.updatedOn``,
or ``statustimeutc`` / ``publishTime`` / ``timestamp`` in a raw channel receipt),
else the top-level ``timestamp``. Inbound uses ``payload.receivedOn``, else
``channelData.receivedOn``, else ``timestamp``; clicks ``payload.clickedOn``,
else ``payload.updatedOn``, else ``timestamp``.

Dedupe is on ``eventId``. sender / msisdn are only derived on phone channels
(sms, mms, rcs), from the per-channel data the samples carry (e.g. sms ``to``,
rcs ``channelData.phoneNumber`` / ``agentId``, inbound ``from.phoneNumber``);
Messenger / appMessaging / email identities are not phone numbers and stay in
``data``. A receipt whose channel cannot be told (a general failure) has
channel ``unknown``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from marshmallow import fields, validate

from shared.model import FAILURE_STATUSES, STATUS_EVENT_TYPE, EventType, NormalisedEvent, dedupe_key
from shared.providers.base import (
    BaseSchema,
    Format,
    LooseString,
    ParseError,
    UTCDateTime,
    failure,
    instances,
    load,
)
from shared.providers.base import optional_text as _text
from shared.providers.common import dig, first, first_text, inbound_data, lenient_time

SOURCE = "comapi"
# Dotdigital "strongly recommends" batched webhooks (a JSON array of these events)
# and retries every answer but 2xx and 400 for 24 hours before dropping them, so a
# 413 loses a batch. No maximum batch size is published; an event of the seed is
# 1-3 KiB, so 1 MiB holds several hundred, and stays under one drain lease's
# HOOKLINE_BATCH_BYTES (2 MiB by default).
MAX_BODY_BYTES = {SOURCE: 1024 * 1024}
UNKNOWN_CHANNEL = "unknown"
CHANNELS = ("sms", "mms", "rcs", "fbMessenger", "appMessaging", "email")
PHONE_CHANNELS = frozenset({"sms", "mms", "rcs"})

RECEIPT_STATUS: dict[str, str] = {
    "message.sent": "sent",
    "message.delivered": "delivered",
    "message.read": "read",
    "message.expired": "expired",
    "message.failed": "failed",
}
INBOUND = "message.inbound"
CLICK = "interaction.click"
NAMES: tuple[str, ...] = (*RECEIPT_STATUS, INBOUND, CLICK)

Path = tuple[str, ...]  # "{ch}" in a path stands for the event's channel
# "{ch}" stands for the event's channel. First match wins.
MSISDN_PATHS: tuple[Path, ...] = (
    ("channelData", "{ch}", "phoneNumber"),
    ("details", "additionalInfo", "to"),
    ("details", "channelStatus", "{ch}", "details", "to"),
    ("details", "channelStatus", "{ch}", "details", "data", "to"),
    ("details", "channelStatus", "{ch}", "details", "data", "phoneNumber"),
    ("details", "channelStatus", "{ch}", "details", "data", "recipient"),
    ("details", "channelStatus", "recipient"),
    ("details", "channelStatus", "data", "senderPhoneNumber"),
)
SENDER_PATHS: tuple[Path, ...] = (
    ("channelData", "{ch}", "agentId"),
    ("channelData", "{ch}", "fromPhoneNumber"),
)
# Where a channel's own status time sits, in the keyed entry or the raw receipt.
STATUS_TIME_KEYS = ("updatedOn", "statustimeutc", "publishTime", "timestamp")


class EventSchema(BaseSchema):
    event_id = LooseString(data_key="eventId", load_default=None)
    account_id = LooseString(data_key="accountId", load_default=None)
    api_space_id = LooseString(data_key="apiSpaceId", load_default=None)
    name = fields.String(required=True, validate=validate.OneOf(NAMES))
    payload = fields.Dict(required=True)
    revision = fields.Raw(load_default=None)
    timestamp = UTCDateTime(load_default=None)


class DetailsSchema(BaseSchema):
    channel = fields.String(load_default=None)
    additional_info = fields.Dict(data_key="additionalInfo", load_default=None)
    channel_status = fields.Dict(data_key="channelStatus", load_default=None)
    reason = LooseString(load_default=None)


class ReceiptPayloadSchema(BaseSchema):
    id = LooseString(required=True, validate=validate.Length(min=1))
    details = fields.Nested(DetailsSchema, load_default=None)
    channel_data = fields.Dict(data_key="channelData", load_default=None)
    updated_on = UTCDateTime(data_key="updatedOn", load_default=None)
    metadata = fields.Raw(load_default=None)
    conversation_id = LooseString(data_key="conversationId", load_default=None)


class InboundPayloadSchema(BaseSchema):
    id = LooseString(load_default=None)
    channel = fields.String(required=True, validate=validate.Length(min=1))
    from_ = fields.Dict(data_key="from", load_default=None)
    to = fields.Dict(load_default=None)
    body = fields.String(load_default=None)
    message_parts = fields.List(fields.Dict(), data_key="messageParts", load_default=None)
    channel_data = fields.Dict(data_key="channelData", load_default=None)
    received_on = UTCDateTime(data_key="receivedOn", load_default=None)
    correlation = fields.Dict(load_default=None)


class ClickPayloadSchema(BaseSchema):
    id = LooseString(load_default=None)
    message_id = LooseString(data_key="messageId", load_default=None)
    channel = fields.String(load_default=None)
    url = LooseString(load_default=None)
    clicked_on = UTCDateTime(data_key="clickedOn", load_default=None)
    updated_on = UTCDateTime(data_key="updatedOn", load_default=None)


_EVENT, _RECEIPT, _INBOUND, _CLICK = instances(
    EventSchema, ReceiptPayloadSchema, InboundPayloadSchema, ClickPayloadSchema)


# --- small, total helpers over untrusted JSON -------------------------------------------


def _at(paths: tuple[Path, ...], channel: str) -> tuple[Path, ...]:
    """``paths`` with "{ch}" replaced by the event's channel."""
    return tuple(tuple(channel if key == "{ch}" else key for key in path) for path in paths)


# Read only for the phone channels: each one's paths made once, not per callback.
_SENDER_AT = {ch: _at(SENDER_PATHS, ch) for ch in PHONE_CHANNELS}
_MSISDN_AT = {ch: _at(MSISDN_PATHS, ch) for ch in PHONE_CHANNELS}


def _require_time(value: datetime | None, name: str) -> datetime:
    if value is None:
        raise ParseError(f"{SOURCE} {name}: no event time (payload time fields and timestamp)")
    return value


def _envelope_data(ev: dict[str, Any]) -> dict[str, Any]:
    keys = ("account_id", "api_space_id", "revision")
    return {k: ev[k] for k in keys if ev[k] is not None}


def _event(ev: dict[str, Any], type_: EventType, **fields: Any) -> list[NormalisedEvent]:
    """The one event of envelope ``ev``; ``fields`` are the rest of its NormalisedEvent
    fields. Whatever its kind, the envelope's ``name`` is the provider status and its
    ``eventId`` the provider event id."""
    return [NormalisedEvent(type=type_.value, source=SOURCE, provider_status=ev["name"],
                            provider_event_id=ev["event_id"], **fields)]


# --- receipts ----------------------------------------------------------------------------


def _receipt_channel(details: dict[str, Any], payload: dict[str, Any]) -> str:
    if details.get("channel"):
        return details["channel"]
    for container in (details.get("channel_status"), payload.get("channelData")):
        if isinstance(container, dict):
            for channel in CHANNELS:
                if isinstance(container.get(channel), dict):
                    return channel
    return UNKNOWN_CHANNEL


def _status_entry(channel_status: dict[str, Any], channel: str) -> dict[str, Any]:
    """The channel's status object: its keyed entry, else the raw receipt itself."""
    entry = channel_status.get(channel)
    return entry if isinstance(entry, dict) else channel_status


def _status_time(entry: dict[str, Any]) -> datetime | None:
    return first(*(lenient_time(entry.get(key)) for key in STATUS_TIME_KEYS))


def _failure_reason(details: dict[str, Any], entry: dict[str, Any]) -> str | None:
    # The general reason first; else the channel's own (email keeps it in "description").
    return (
        details.get("reason")
        or _text(dig(entry, ("details", "reason")))
        or _text(entry.get("description"))
        or _text(entry.get("reason"))
    )


def _validation_failures(channel_details: Any) -> tuple[str | None, str | None]:
    found = dig(channel_details, ("data", "validationFailures"))
    found = [f for f in found if isinstance(f, dict)] if isinstance(found, list) else []
    reasons = [t for t in (_text(f.get("details")) for f in found) if t]
    codes = [t for t in (_text(f.get("failureCode")) for f in found) if t]
    return "; ".join(reasons) or None, ",".join(codes) or None


def _failure(details: dict[str, Any], entry: dict[str, Any]) -> tuple[str | None, str | None]:
    """(failure_reason, failure_code): the most specific the event gives."""
    channel_details = entry.get("details")
    reason, code = _validation_failures(channel_details)
    reason = (reason or _text(dig(channel_details, ("reason",)))
              or _text(entry.get("description")) or _text(entry.get("reason"))
              or details.get("reason"))
    code = code or _text(entry.get("code")) or _text(dig(channel_details, ("data", "statusid")))
    return failure(reason, code)


def _receipt_data(
    ev: dict[str, Any], p: dict[str, Any], details: dict[str, Any], entry: dict[str, Any]
) -> dict[str, Any]:
    data = _envelope_data(ev)
    data["details"] = details.get("channel_status") or {}
    if details.get("additional_info"):
        data["additional_info"] = details["additional_info"]
    if _text(entry.get("status")):
        data["channel_status"] = entry["status"]
    if p["metadata"] is not None:
        data["metadata"] = p["metadata"]
    if p["conversation_id"]:
        data["conversation_id"] = p["conversation_id"]
    if ev["name"] == "message.failed":
        data["reason"] = _failure_reason(details, entry)
    return data


def _parse_receipt(ev: dict[str, Any], doc: Any) -> list[NormalisedEvent]:
    raw = ev["payload"]
    p = load(_RECEIPT, raw, f"{SOURCE} {ev['name']} payload")
    details = p["details"] or {}
    channel = _receipt_channel(details, raw)
    entry = _status_entry(details.get("channel_status") or {}, channel)
    phone = channel in PHONE_CHANNELS
    status = RECEIPT_STATUS[ev["name"]]
    occurred = first(p["updated_on"], _status_time(entry), ev["timestamp"])
    reason, code = _failure(details, entry) if status in FAILURE_STATUSES else (None, None)
    return _event(
        ev, STATUS_EVENT_TYPE[status], channel=channel,
        occurred_at=_require_time(occurred, ev["name"]),
        dedupe_key=dedupe_key(ev["event_id"], p["id"], ev["name"], doc), message_id=p["id"],
        sender=first_text(raw, _SENDER_AT[channel]) if phone else None,
        msisdn=first_text(raw, _MSISDN_AT[channel]) if phone else None,
        status=status, data=_receipt_data(ev, p, details, entry),
        failure_reason=reason, failure_code=code,
    )


# --- inbound -----------------------------------------------------------------------------


def _parts(p: dict[str, Any]) -> list[dict[str, Any]]:
    parts = list(p["message_parts"] or [])
    app_parts = dig(p["channel_data"], ("parts",))
    if isinstance(app_parts, list):
        parts += [part for part in app_parts if isinstance(part, dict)]
    return parts


def _is_text_part(part: dict[str, Any]) -> bool:
    kind = part.get("type")
    return isinstance(kind, str) and kind.startswith("text/")


def _inbound_text(p: dict[str, Any], parts: list[dict[str, Any]]) -> str | None:
    if p["body"] is not None:
        return p["body"]
    texts = [
        part["data"]
        for part in parts
        if isinstance(part.get("data"), str) and _is_text_part(part)
    ]
    if texts:
        return "\n".join(texts)
    fb_text = dig(p["channel_data"], ("body", "message", "text"))
    return fb_text if isinstance(fb_text, str) else None


def _media_item(url: Any, kind: Any, filename: Any) -> dict[str, Any] | None:
    if not isinstance(url, str) or not url:
        return None
    return {
        "url": url,
        "type": kind if isinstance(kind, str) else None,
        "caption": None,
        "filename": filename if isinstance(filename, str) else None,
    }


def _inbound_media(p: dict[str, Any], parts: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    items = [_media_item(part.get("url"), part.get("type"), part.get("name")) for part in parts]
    attachments = dig(p["channel_data"], ("body", "message", "attachments"))
    if isinstance(attachments, list):
        items += [
            _media_item(dig(a, ("payload", "url")), a.get("type"), None)
            for a in attachments
            if isinstance(a, dict)
        ]
    media = [item for item in items if item is not None]
    return media or None


def _inbound_sender(p: dict[str, Any]) -> str | None:
    return (
        _text(dig(p["to"], ("phoneNumber",)))
        or _text(dig(p["to"], ("agentId",)))
        or _text(dig(p["channel_data"], ("pageId",)))
    )


def _inbound_data(ev: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    parts = _parts(p)
    data = _envelope_data(ev)
    data.update(inbound_data(text=_inbound_text(p, parts), media=_inbound_media(p, parts),
                             user=p["from_"]))
    if p["to"]:
        data["to"] = p["to"]
    correlated = _text(dig(p["correlation"], ("messageId",)))
    if correlated:
        data["correlation_message_id"] = correlated
    return data


def _parse_inbound(ev: dict[str, Any], doc: Any) -> list[NormalisedEvent]:
    p = load(_INBOUND, ev["payload"], f"{SOURCE} {INBOUND} payload")
    channel = p["channel"]
    received = lenient_time(dig(p["channel_data"], ("receivedOn",)))
    occurred = first(p["received_on"], received, ev["timestamp"])
    phone = channel in PHONE_CHANNELS
    return _event(
        ev, EventType.MESSAGE_INBOUND, channel=channel,
        occurred_at=_require_time(occurred, INBOUND),
        dedupe_key=dedupe_key(ev["event_id"], p["id"], INBOUND, doc), message_id=p["id"],
        sender=_inbound_sender(p) if phone else None,
        msisdn=_text(dig(p["from_"], ("phoneNumber",))) if phone else None,
        data=_inbound_data(ev, p),
    )


# --- interaction.click -------------------------------------------------------------------


def _parse_click(ev: dict[str, Any], doc: Any) -> list[NormalisedEvent]:
    raw = ev["payload"]
    p = load(_CLICK, raw, f"{SOURCE} {CLICK} payload")
    channel = p["channel"] or _text(dig(raw, ("details", "channel"))) or UNKNOWN_CHANNEL
    message_id = p["message_id"] or p["id"]
    occurred = first(p["clicked_on"], p["updated_on"], ev["timestamp"])
    phone = channel in PHONE_CHANNELS
    data = _envelope_data(ev)
    data.update(url=p["url"], payload=raw)
    return _event(
        ev, EventType.INTERACTION_CLICK, channel=channel,
        occurred_at=_require_time(occurred, CLICK),
        # One message can be clicked many times: never dedupe clicks on the message id.
        dedupe_key=dedupe_key(ev["event_id"], None, CLICK, doc), message_id=message_id,
        sender=first_text(raw, _SENDER_AT[channel]) if phone else None,
        msisdn=first_text(raw, _MSISDN_AT[channel]) if phone else None,
        data=data,
    )


def matches(doc: Any, event: str | None) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("name"), str) and doc["name"] in NAMES


def parse(doc: Any, event: str | None) -> list[NormalisedEvent]:
    ev = load(_EVENT, doc, f"{SOURCE} event")
    if ev["name"] == INBOUND:
        return _parse_inbound(ev, doc)
    if ev["name"] == CLICK:
        return _parse_click(ev, doc)
    return _parse_receipt(ev, doc)


FORMATS = [Format(
    source=SOURCE, name="comapi-message-event", matches=matches, parse=parse,
    needs='"name" one of message.sent|delivered|read|expired|failed|inbound, interaction.click',
)]
