"""OpenAPI descriptions (and, through ingest.openapi, the validation) of the consent,
inbound and event routes (ingest.consent_api)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from ingest.openapi import Cursor, Timestamp, limit_field, next_after, register
from shared.consent import OPTED_IN, OPTED_OUT
from shared.model import EVENT_TYPES


def _str(**meta: Any) -> fields.Str:
    return fields.Str(required=True, allow_none=True, metadata=meta)


def _time(**meta: Any) -> fields.DateTime:
    return fields.DateTime(required=True, allow_none=True, metadata=meta)


def _id() -> fields.Int:
    return fields.Int(required=True, allow_none=True)


_JSON = fields.Raw(required=True, allow_none=True)


class SubscriptionSchema(Schema):
    id = fields.Int(required=True)
    channel = fields.Str(required=True)
    sender = fields.Str(required=True, metadata={"description": "'*': every sender"})
    msisdn = fields.Str(required=True)
    category = _str(description="Set on category records only")
    status = fields.Str(required=True, validate=validate.OneOf((OPTED_IN, OPTED_OUT)))
    scope = fields.Str(required=True)
    changed_at = fields.DateTime(required=True)
    event_id = _id()
    source = _str()
    tenant_id = _str(description="The tenant that received it; null: none")


class ConsentHistorySchema(Schema):
    id = fields.Int(required=True)
    event_id = _id()
    source = _str()
    event_type = _str()
    provider_event_id = _str()
    sender = _str()
    category = _str()
    scope = _str()
    status = _str()
    occurred_at = _time()
    keyword = _str(description="The keyword text that changed consent, if one did")
    transition = fields.Bool(required=True, allow_none=True)
    recorded_at = _time()


class DecisionSchema(Schema):
    channel = fields.Str(required=True)
    sender = fields.Str(required=True)
    msisdn = fields.Str(required=True)
    status = fields.Str(required=True, validate=validate.OneOf((OPTED_IN, OPTED_OUT, "unknown")),
                        metadata={"description": "This sender's own subscription"})
    may_send = fields.Bool(required=True)
    blocked_by = fields.List(fields.Str(validate=validate.OneOf(("sender", "all"))),
                             required=True, metadata={"description": "The opt-out that decides"})
    changed_at = _time()
    subscription = fields.Nested(SubscriptionSchema, required=True, allow_none=True)
    all_senders = fields.Nested(SubscriptionSchema, required=True, allow_none=True)
    categories = fields.List(fields.Nested(SubscriptionSchema), required=True)
    history = fields.List(fields.Nested(ConsentHistorySchema), required=True)


class _PartyQuery(Schema):
    channel = fields.Str()
    sender = fields.Str(metadata={"description": "Also matches the all-senders rows"})
    msisdn = fields.Str()
    limit = limit_field()
    after = Cursor()


class SubscriptionQuerySchema(_PartyQuery):
    status = fields.Str(validate=validate.OneOf((OPTED_IN, OPTED_OUT)),
                        metadata={"description": "opted_out: the suppression list"})


class SubscriptionPageSchema(Schema):
    items = fields.List(fields.Nested(SubscriptionSchema), required=True)
    next_after = next_after()


class InboundSchema(Schema):
    event_id = fields.Int(required=True)
    source = fields.Str(required=True)
    channel = _str()
    sender = _str()
    msisdn = _str()
    message_id = _str()
    occurred_at = fields.DateTime(required=True)
    text = _str()
    response = _JSON
    location = _JSON
    media = _JSON
    carrier_id = _str()
    data = _JSON


class InboundQuerySchema(_PartyQuery):
    source = fields.Str()


class InboundPageSchema(Schema):
    items = fields.List(fields.Nested(InboundSchema), required=True)
    next_after = next_after()


class EventSchema(Schema):
    id = fields.Int(required=True)
    type = fields.Str(required=True)
    source = fields.Str(required=True)
    channel = _str()
    message_id = _str()
    sender = _str()
    msisdn = _str()
    status = _str()
    provider_status = _str()
    provider_event_id = _str()
    dedupe_key = fields.Str(required=True)
    occurred_at = fields.DateTime(required=True)
    received_at = fields.DateTime(required=True)
    ingest_id = _str()
    data = _JSON
    tenant_id = _str(description="The tenant it belongs to; null: none (operator only)")


class EventQuerySchema(Schema):
    type = fields.Str(validate=validate.OneOf(sorted(EVENT_TYPES)))
    source = fields.Str()
    since = Timestamp(metadata={"description": "received_at >= since"})
    limit = limit_field()
    after = Cursor()


class EventPageSchema(Schema):
    items = fields.List(fields.Nested(EventSchema), required=True)
    next_after = next_after()


register("GET", "/v1/subscriptions/<channel>/<sender>/<msisdn>",
         "Whether sender may message msisdn on channel, and the consent behind it",
         response=DecisionSchema, tag="consent")
register("GET", "/v1/subscriptions", "Subscriptions, newest first, keyset-paged",
         query=SubscriptionQuerySchema, response=SubscriptionPageSchema, tag="consent",
         description="With status=opted_out, the suppression list.")
register("GET", "/v1/inbound", "Inbound messages, newest first, keyset-paged",
         query=InboundQuerySchema, response=InboundPageSchema, tag="inbound")
register("GET", "/v1/events", "Normalised events, newest first, keyset-paged",
         query=EventQuerySchema, response=EventPageSchema, tag="events",
         description="With since, newest first by received_at (ties by id).")
