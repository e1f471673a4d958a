"""The webhook catalogue: each fan-out event type and the JSON Schema of its body.

The body is what shared.notifications ``payload()`` builds (Standard Webhooks:
``type``, ``timestamp``, ``data``), ``data`` being the normalised event
(shared.model.NormalisedEvent) plus its ``event_id``. GET /v1/event-types lists
them, and the OpenAPI document's ``webhooks`` section holds the same schemas.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from marshmallow import Schema, fields

from ingest import openapi
from ingest.auth import require_api_token
from shared.consent import OPTED_IN, TRANSITION_TYPE
from shared.model import EVENT_TYPES, STATUS_EVENT_TYPE, Consent, ConsentScope, EventType

SUMMARIES: dict[str, str] = {
    EventType.MESSAGE_SENT: "A message was sent (a sent receipt)",
    EventType.MESSAGE_DELIVERED: "A message reached the handset",
    EventType.MESSAGE_READ: "A message was read",
    EventType.MESSAGE_FAILED: "A message failed; data.failure_reason and failure_code say why",
    EventType.MESSAGE_EXPIRED: "A message expired undelivered",
    EventType.MESSAGE_DELETED: "A message was revoked or deleted",
    EventType.MESSAGE_UNKNOWN: "A receipt whose provider status hookline cannot map "
                               "(data.provider_status holds it)",
    EventType.MESSAGE_INBOUND: "A user wrote in (text, response, location or media in data.data)",
    EventType.MESSAGE_COMPOSING: "A user is typing",
    EventType.INTERACTION_CLICK: "A user clicked a link or button",
    EventType.SUBSCRIPTION_OPTED_IN: "A user's consent changed to opted in (data is the event "
                                     "that changed it)",
    EventType.SUBSCRIPTION_OPTED_OUT: "A user's consent changed to opted out (data is the "
                                      "event that changed it)",
    EventType.CALL_COMPLETED: "A call ended",
    EventType.CONTACT_UPDATED: "A contact's details changed",
}


def _text(nullable: bool = True, **extra: Any) -> dict[str, Any]:
    return {"type": ["string", "null"] if nullable else "string", **extra}


def _data_schema() -> dict[str, Any]:
    props: dict[str, Any] = {
        "event_id": {"type": "integer", "description": "hookline's id of the event"},
        "type": _text(False, enum=sorted(EVENT_TYPES),
                      description="The event's own type (a consent change: the event "
                                  "that caused it)"),
        "source": _text(False, description="The provider integration, e.g. kaleyra-rcs"),
        "channel": _text(False),
        "occurred_at": _text(False, format="date-time"),
        "dedupe_key": _text(False),
        "message_id": _text(),
        "sender": _text(),
        "msisdn": _text(),
        "status": _text(description="The delivery status a receipt reports"),
        "provider_status": _text(description="As the provider sent it"),
        "provider_event_id": _text(),
        "failure_reason": _text(description="Why a failed or expired message failed"),
        "failure_code": _text(),
        "consent": {"enum": [*(c.value for c in Consent), None]},
        "consent_scope": _text(False, enum=[s.value for s in ConsentScope]),
        "data": {"type": "object", "description": "Provider-specific details"},
        "ingest_id": _text(False, description="The callback it came from"),
    }
    return {"type": "object", "required": sorted(props), "properties": props,
            "additionalProperties": False}


# A consent change's event says which way (a SUBSCRIBE, a STOP keyword text, ...).
_CONSENT_OF = {t: (Consent.OPT_IN if status == OPTED_IN else Consent.OPT_OUT).value
               for status, t in TRANSITION_TYPE.items()}


def schema_of(event_type: str) -> dict[str, Any]:
    """The JSON Schema (2020-12, self-contained) of one event type's webhook body."""
    data = _data_schema()
    props = data["properties"]
    status = next((s for s, t in STATUS_EVENT_TYPE.items() if t == event_type), None)
    consent = _CONSENT_OF.get(event_type)
    if consent is not None:
        props["consent"] = {"const": consent}
    else:
        props["type"] = {"const": event_type}
    if status is not None:
        props["status"] = {"const": status}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": event_type, "description": SUMMARIES.get(event_type, event_type),
        "type": "object", "required": ["type", "timestamp", "data"],
        "additionalProperties": False,
        "properties": {
            "type": {"const": event_type},
            "timestamp": {"type": "string", "format": "date-time",
                          "description": "When it happened (data.occurred_at)"},
            "data": data,
        },
    }


def catalogue() -> list[dict[str, Any]]:
    return [{"type": t, "description": SUMMARIES.get(t, t), "schema": schema_of(t)}
            for t in sorted(EVENT_TYPES)]


bp = Blueprint("event_types", __name__, url_prefix="/v1")
bp.before_request(require_api_token)
bp.before_request(openapi.validate_request)


@bp.get("/event-types")
def list_event_types() -> Response:
    """Every webhook event type with the JSON Schema of its body."""
    return jsonify(items=catalogue())


class EventTypeSchema(Schema):
    type = fields.Str(required=True)
    description = fields.Str(required=True)
    schema = fields.Dict(required=True, metadata={"description": "JSON Schema 2020-12 of the "
                                                                 "webhook body"})


class EventTypeListSchema(Schema):
    items = fields.List(fields.Nested(EventTypeSchema), required=True)


openapi.register("GET", "/v1/event-types", "Every webhook event type and its body's JSON Schema",
                 response=EventTypeListSchema, tag="webhooks",
                 description="The whole catalogue in one answer (not paged). The same schemas "
                             "are in this document's `webhooks`.")
for _type in sorted(EVENT_TYPES):
    openapi.register_webhook(_type, SUMMARIES.get(_type, _type), schema_of(_type))
