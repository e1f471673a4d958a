"""Kaleyra.io WhatsApp API V2 callbacks on source ``kaleyra-io``: Meta's WhatsApp
Cloud API webhook ``value``, as Kaleyra forwards it.

Three shapes carry the same ``value``:

- Kaleyra's V2 wrapper ``{"meta_object": {"value": {...}, "field": "messages"},
  "extra_info": {...}}``, sometimes with a top-level ``status`` and ``message_id``;
- the older (on-premise API) shape: ``contacts[]``, ``messages[]`` / ``statuses[]``
  at the top level;
- Meta's own envelope ``{"object": "whatsapp_business_account", "entry": [{"changes":
  [{"value": ..., "field": ...}]}]}``, for a URL that receives Meta's webhook as is.

Every ``statuses[]`` entry is one receipt and every ``messages[]`` entry one
inbound message, each deduplicated on its own (Meta's ``wamid`` and the status,
or the wamid and "inbound"); a callback with several entries is several events.

Decisions:

- The message id is Meta's ``wamid`` (``statuses[].id`` / ``messages[].id``): every
  callback about a message carries it. Kaleyra's own id arrives only on some
  (the top-level ``message_id`` of a single-status callback); it is kept in
  ``data["kaleyra_message_id"]`` and listed in ``data["message_id_aliases"]``, so
  the message is found by either id.
- Statuses sent, delivered, read, failed and deleted are the model's own; Kaleyra's
  ``not-sent`` (never handed to Meta) is failed, Meta's ``played`` (a voice message)
  read; anything else is ``unknown``.
  A failed status's ``errors[0]`` gives failure_code (``code``) and failure_reason
  (``error_data.details``, else ``message``, else ``title``).
- ``extra_info``'s ``ref``, ``ref1``, ``ref2`` and ``trace_id`` go into data as
  they are named.
- sender is the business number (``metadata.display_phone_number``), msisdn the
  user's (``recipient_id`` / ``from``). occurred_at is the entry's ``timestamp``
  (epoch seconds as a string); an entry without one uses the receipt time
  (``occurred_at_estimated``).
- Message types: text; image, video, audio, document, sticker (media id, URL
  where given, mime type, caption, file name, voice); location (with name,
  address, url); contacts; button and interactive button_reply / list_reply
  (the reply in ``data["response"]``, ``text`` None: the label is the brand's);
  reaction; anything else (unsupported, system, order, ...) is kept whole under
  its type in data, with ``message_type`` saying which.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from shared.model import (
    FAILURE_STATUSES,
    STATUS_EVENT_TYPE,
    STATUS_ORDER,
    EventType,
    NormalisedEvent,
    dedupe_key,
)
from shared.providers.base import Format, ParseError, UnsupportedEvent, failure, optional_text
from shared.providers.common import dig, first_text, inbound_data, lenient_time
from shared.timeutil import utcnow

SOURCE = "kaleyra-io"
CHANNEL = "whatsapp"
INBOUND_KIND = "inbound"
STATUS_MAP: dict[str, str] = {
    **{s: s for s in STATUS_ORDER if s != "unknown"},
    "not-sent": "failed",
    "not_sent": "failed",
    "played": "read",  # a voice message played has been read
}
MEDIA_TYPES = frozenset({"image", "video", "audio", "voice", "document", "sticker"})
MEDIA_KEYS = ("id", "url", "link", "mime_type", "caption", "filename", "sha256", "voice",
              "animated")
EXTRA_INFO_KEYS = ("ref", "ref1", "ref2", "trace_id")
_VALUE_KEYS = ("messages", "statuses")


# --- shapes ------------------------------------------------------------------------------


def _is_value(doc: Any) -> bool:
    return isinstance(doc, dict) and any(isinstance(doc.get(k), list) for k in _VALUE_KEYS)


def _is_meta_webhook(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("object") == "whatsapp_business_account" \
        and isinstance(doc.get("entry"), list)


def matches(doc: Any, event: str | None) -> bool:
    # _is_value (_VALUE_KEYS) and _is_meta_webhook inlined: kaleyra-io's flat callbacks,
    # its fallback format, are each tried here first.
    if not isinstance(doc, dict):
        return False
    get = doc.get
    return (isinstance(get("meta_object"), dict) or isinstance(get("messages"), list)
            or isinstance(get("statuses"), list)
            or (get("object") == "whatsapp_business_account" and isinstance(get("entry"), list)))


def _values(doc: dict[str, Any]) -> Iterator[Any]:
    """Each Meta ``value`` the callback carries."""
    if isinstance(doc.get("meta_object"), dict):
        yield doc["meta_object"].get("value")
    elif _is_meta_webhook(doc):
        for entry in doc["entry"]:
            changes = dig(entry, "changes")
            for change in changes if isinstance(changes, list) else ():
                yield dig(change, "value")
    else:
        yield doc


# --- helpers -----------------------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    """Meta's epoch seconds as a string (or a number, or ISO-8601); None if absent or bad."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return lenient_time(value)


def _when(entry: dict[str, Any]) -> tuple[datetime, dict[str, Any]]:
    found = _time(entry.get("timestamp"))
    if found is not None:
        return found, {}
    return utcnow(), {"occurred_at_estimated": True}  # the pipeline puts the receipt time


def _common(doc: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    """The data every event of this callback shares: the refs and the business ids."""
    data: dict[str, Any] = {}
    extra = doc.get("extra_info")
    if isinstance(extra, dict):
        data.update({k: extra[k] for k in EXTRA_INFO_KEYS if extra.get(k) not in (None, "")})
    phone_number_id = first_text(value, (("metadata", "phone_number_id"),))
    if phone_number_id:
        data["phone_number_id"] = phone_number_id
    return data


def _entries(value: dict[str, Any], key: str) -> list[Any]:
    found = value.get(key)
    return found if isinstance(found, list) else []


def _need_id(entry: Any, what: str, index: int) -> str:
    wamid = optional_text(entry.get("id")) if isinstance(entry, dict) else None
    if not wamid:
        raise ParseError(f"{SOURCE} whatsapp {what}[{index}]: id: Missing data for required field.")
    return wamid


# --- statuses ----------------------------------------------------------------------------


def _error_parts(errors: Any) -> tuple[str | None, str | None]:
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, dict):
        return None, None
    reason = first_text(first, (("error_data", "details"), "message", "title"))
    return reason, optional_text(first.get("code"))


def _receipt(doc: dict[str, Any], value: dict[str, Any], entry: Any, index: int,
             kaleyra_id: str | None, sender: str | None) -> NormalisedEvent:
    wamid = _need_id(entry, "statuses", index)
    raw = optional_text(entry.get("status")) or optional_text(doc.get("status")) or ""
    status = STATUS_MAP.get(raw.lower(), "unknown")
    occurred, data = _when(entry)
    data.update(_common(doc, value), wamid=wamid)
    for key in ("conversation", "pricing", "biz_opaque_callback_data", "errors"):
        if entry.get(key) is not None:
            data[key] = entry[key]
    if kaleyra_id:
        data.update(kaleyra_message_id=kaleyra_id, message_id_aliases=[kaleyra_id])
    reason, code = (failure(*_error_parts(entry.get("errors"))) if status in FAILURE_STATUSES
                    else (None, None))
    return NormalisedEvent(
        type=STATUS_EVENT_TYPE[status].value, source=SOURCE, channel=CHANNEL,
        occurred_at=occurred, dedupe_key=dedupe_key(None, wamid, raw or "unknown", entry),
        message_id=wamid, sender=sender, msisdn=optional_text(entry.get("recipient_id")),
        status=status, provider_status=raw or None, data=data,
        failure_reason=reason, failure_code=code,
    )


# --- inbound messages --------------------------------------------------------------------


def _media(kind: str, body: Any) -> dict[str, Any]:
    body = body if isinstance(body, dict) else {}
    item = {k: body[k] for k in MEDIA_KEYS if body.get(k) is not None}
    item.setdefault("url", body.get("link"))
    item.pop("link", None)
    return {"type": kind, "caption": None, "filename": None, **item}


def _reply(kind: str, body: Any) -> dict[str, Any] | None:
    """A tapped button or list row: which one, as the brand labelled it."""
    if not isinstance(body, dict):
        return None
    if kind == "button":
        return {"type": "button", "id": optional_text(body.get("payload")),
                "title": optional_text(body.get("text")), "description": None}
    reply_type = body.get("type")
    reply = body.get(reply_type) if isinstance(reply_type, str) else None
    if not isinstance(reply, dict):
        return {"type": reply_type, "id": None, "title": None, "description": None,
                "interactive": body}
    return {"type": reply_type, "id": optional_text(reply.get("id")),
            "title": optional_text(reply.get("title")),
            "description": optional_text(reply.get("description"))}


def _content(message: dict[str, Any]) -> dict[str, Any]:
    kind = message.get("type")
    kind = kind if isinstance(kind, str) and kind else "unknown"
    body = message.get(kind)
    if kind == "text":
        return {"text": dig(body, "body") if isinstance(dig(body, "body"), str) else None}
    if kind in MEDIA_TYPES:
        return {"media": [_media(kind, body)]}
    if kind == "location" and isinstance(body, dict):
        keys = ("latitude", "longitude", "name", "address", "url")
        return {"location": {k: body.get(k) for k in keys}}
    if kind in ("button", "interactive"):
        return {"response": _reply(kind, body)}
    if kind == "reaction" and isinstance(body, dict):
        return {"reaction": {"message_id": optional_text(body.get("message_id")),
                             "emoji": body.get("emoji") or None}}
    # contacts, order, system, unsupported, and types yet to come: kept whole.
    return {kind: body} if body is not None else {}


def _profiles(value: dict[str, Any]) -> dict[str, Any]:
    return {c["wa_id"]: c for c in _entries(value, "contacts")
            if isinstance(c, dict) and isinstance(c.get("wa_id"), str)}


def _inbound(doc: dict[str, Any], value: dict[str, Any], entry: Any, index: int,
             sender: str | None, profiles: dict[str, Any]) -> NormalisedEvent:
    wamid = _need_id(entry, "messages", index)
    msisdn = optional_text(entry.get("from"))
    occurred, data = _when(entry)
    data.update(_common(doc, value))
    data.update(inbound_data(user=profiles.get(msisdn or ""), wamid=wamid,
                             message_type=entry.get("type"), **_content(entry)))
    for key in ("context", "referral", "errors"):
        if entry.get(key) is not None:
            data[key] = entry[key]
    return NormalisedEvent(
        type=EventType.MESSAGE_INBOUND.value, source=SOURCE, channel=CHANNEL,
        occurred_at=occurred, dedupe_key=dedupe_key(None, wamid, INBOUND_KIND, entry),
        message_id=wamid, sender=sender, msisdn=msisdn,
        provider_status="whatsapp:message:in", data=data,
    )


# --- the format --------------------------------------------------------------------------


def _value_events(doc: dict[str, Any], value: Any) -> list[NormalisedEvent]:
    if not isinstance(value, dict):
        raise ParseError(f"{SOURCE} whatsapp: meta_object.value: expected a JSON object, "
                         f"got {type(value).__name__}")
    sender = first_text(value, (("metadata", "display_phone_number"),))
    statuses, messages = _entries(value, "statuses"), _entries(value, "messages")
    # Kaleyra's own id names one message: only a single-status callback's is that status's.
    kaleyra_id = optional_text(doc.get("message_id")) if len(statuses) == 1 else None
    profiles = _profiles(value)
    return [
        *(_receipt(doc, value, s, i, kaleyra_id, sender) for i, s in enumerate(statuses)),
        *(_inbound(doc, value, m, i, sender, profiles) for i, m in enumerate(messages)),
    ]


def parse(doc: Any, event: str | None) -> list[NormalisedEvent]:
    events = [e for value in _values(doc) for e in _value_events(doc, value)]
    if not events:
        keys = ", ".join(sorted(map(str, doc))[:8])
        raise UnsupportedEvent(f"unsupported event type for {SOURCE}: WhatsApp callback with "
                               f"no statuses[] or messages[] entry (top-level keys: {keys})")
    return events


FORMATS = [Format(
    source=SOURCE, name="kaleyra-io-whatsapp-v2", matches=matches, parse=parse,
    needs='"meta_object", or top-level "messages"/"statuses" lists',
)]
