"""The schemas of the fan-out routes (ingest.endpoints_api): they validate the requests
(through ingest.openapi, and the console's calls) and describe them in the document."""

from __future__ import annotations

from typing import Any

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ingest.openapi import Cursor, StrictBool, Timestamp, limit_field, next_after, register
from shared import netguard
from shared.db.endpoints import FILTER_KEYS
from shared.db.outbox.admin import STATUSES
from shared.model import EVENT_TYPES

MAX_DESCRIPTION = 1000


class OneOrMany(fields.Field):
    """A non-empty string, or a non-empty list of them (loaded as a list), each one of
    ``choices`` when given."""

    def __init__(self, choices: tuple[str, ...] | None = None, **kwargs: Any) -> None:
        self.choices = choices
        item: dict[str, Any] = {"type": "string", "minLength": 1}
        if choices:
            item["enum"] = list(choices)
        meta = kwargs.pop("metadata", {})
        super().__init__(metadata={
            "oneOf": [item, {"type": "array", "items": item, "minItems": 1}], **meta},
            **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(
                isinstance(v, str) and v for v in values):
            raise ValidationError("must be a non-empty string or a non-empty list of them")
        if self.choices and not set(values) <= set(self.choices):
            raise ValidationError(f"must be among {', '.join(self.choices)}")
        return values


class EndpointFilter(fields.Dict):
    """{source|channel|sender: a string or a list}; null (or a null key) filters nothing."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=fields.Str(validate=validate.OneOf(FILTER_KEYS)),
                         values=OneOrMany(allow_none=True), allow_none=True, metadata={
                             "description": "Only events whose source / channel / sender / "
                                            "tenant is one of these (a string is a list of "
                                            "one); tenant on an operator's endpoint only"},
                         **kwargs)

    def deserialize(self, value: Any, attr: str | None = None, data: Any = None,
                    **kwargs: Any) -> Any:
        loaded = super().deserialize(value, attr, data, **kwargs)
        return {k: v for k, v in (loaded or {}).items() if v is not None}


class EventTypes(fields.List):
    """Event type names (duplicates dropped), or ["*"]."""

    def __init__(self, **kwargs: Any) -> None:
        known = [*sorted(EVENT_TYPES), "*"]
        super().__init__(fields.Str(validate=validate.OneOf(
                             known, error="unknown event type {input}; known: {choices}")),
                         validate=validate.Length(min=1, error='must be a non-empty list of '
                                                  'event type names, or ["*"]'), metadata={
                             "description": 'Normalised event type names, or ["*"] for all'},
                         **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        return list(dict.fromkeys(super()._deserialize(value, attr, data, **kwargs)))


class SafeURL(fields.Str):
    """http(s); private and loopback addresses refused unless the settings allow them."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        allow = current_app.config["HOOKLINE_SETTINGS"].allow_private_endpoints
        try:
            return netguard.check_url(text, allow)
        except netguard.UnsafeURL as exc:
            raise ValidationError(f"refused: {exc}") from None


_FILTER = EndpointFilter()
_EVENT_TYPES = fields.List(fields.Str(), metadata={
    "description": 'Normalised event type names, or ["*"] for all'})


class EndpointHealthSchema(Schema):
    consecutive_failures = fields.Int(required=True)
    failing_since = fields.DateTime(allow_none=True, required=True)
    paused_until = fields.DateTime(allow_none=True, required=True, metadata={
        "description": "Circuit breaker or Retry-After pause: nothing is sent before this"})
    last_success_at = fields.DateTime(allow_none=True, required=True)
    last_failure_at = fields.DateTime(allow_none=True, required=True)


class EndpointSchema(Schema):
    id = fields.Str(required=True)
    url = fields.Str(required=True)
    description = fields.Str(allow_none=True, required=True)
    event_types = _EVENT_TYPES
    filter = _FILTER
    ordered = fields.Bool(required=True, metadata={
        "description": "Events of one message arrive in occurred_at order"})
    enabled = fields.Bool(required=True)
    disabled_reason = fields.Str(allow_none=True, required=True, metadata={
        "description": "Why it was disabled: the API, a 410 Gone, or failing for days"})
    disabled_at = fields.DateTime(allow_none=True, required=True)
    previous_secret_signs_until = fields.DateTime(allow_none=True, required=True, metadata={
        "description": "After a rotation, the old secret signs beside the new one until then"})
    health = fields.Nested(EndpointHealthSchema, required=True)
    tenant_id = fields.Str(allow_none=True, required=True, metadata={
        "description": "The tenant whose key made it (it hears that tenant's events only); "
                       "null: the operator's"})
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class EndpointWithSecretSchema(EndpointSchema):
    secret = fields.Str(required=True, metadata={
        "description": "whsec_...: shown only here, keep it (Standard Webhooks)"})


class EndpointPageSchema(Schema):
    items = fields.List(fields.Nested(EndpointSchema), required=True)
    next_after = next_after()


class EndpointQuerySchema(Schema):
    limit = limit_field()
    after = Cursor(numeric=False)


def _description() -> fields.Str:
    return fields.Str(allow_none=True, validate=validate.Length(max=MAX_DESCRIPTION))


class EndpointPatchSchema(Schema):
    url = SafeURL(metadata={"description": "http or https; private addresses refused unless "
                                          "allowed"})
    event_types = EventTypes()
    filter = EndpointFilter()
    description = _description()
    ordered = StrictBool(metadata={
        "description": "Events of one message arrive in occurred_at order"})
    enabled = StrictBool(metadata={"description": "true also clears the failure history"})


class EndpointCreateSchema(EndpointPatchSchema):
    class Meta:
        exclude = ("enabled",)

    url = SafeURL(required=True, metadata={
        "description": "http or https; private addresses refused unless allowed"})
    event_types = EventTypes(required=True)


class DeliverySchema(Schema):
    id = fields.Str(required=True, metadata={"description": "The webhook-id"})
    endpoint_id = fields.Str(required=True)
    event_id = fields.Int(required=True)
    type = fields.Str(required=True)
    status = fields.Str(required=True, validate=validate.OneOf(STATUSES), metadata={
        "description": "failed: the last attempt failed and another is scheduled"})
    attempts = fields.Int(required=True)
    next_attempt_at = fields.DateTime(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    last_attempt_at = fields.DateTime(allow_none=True, required=True)
    last_status_code = fields.Int(allow_none=True, required=True)
    last_error = fields.Str(allow_none=True, required=True)
    requeued_at = fields.DateTime(allow_none=True, required=True)
    in_flight = fields.Bool(required=True)


class AttemptSchema(Schema):
    attempted_at = fields.DateTime(required=True)
    duration_ms = fields.Int(required=True)
    status_code = fields.Int(allow_none=True, required=True)
    response_body = fields.Str(allow_none=True, required=True,
                               metadata={"description": "The first 4 KB"})
    error = fields.Str(allow_none=True, required=True)


class DeliveryDetailSchema(DeliverySchema):
    payload = fields.Dict(required=True, metadata={"description": "The body sent"})
    attempt_history = fields.List(fields.Nested(AttemptSchema), required=True)


class DeliveryPageSchema(Schema):
    items = fields.List(fields.Nested(DeliverySchema), required=True)
    next_after = next_after()


class DeliveryQuerySchema(Schema):
    status = fields.Str(validate=validate.OneOf(STATUSES))
    limit = limit_field()
    after = Cursor()


class RetryAcceptedSchema(Schema):
    id = fields.Str(required=True)
    status = fields.Str(required=True)


class EndpointReplayBodySchema(Schema):
    since = Timestamp(required=True, metadata={"description": "created_at >= since"})
    until = Timestamp(allow_none=True, metadata={
        "description": "created_at < until (default now)"})
    status = OneOrMany(STATUSES, allow_none=True, metadata={
        "description": "A status or a list (default: succeeded, failed and dead)"})

    @validates_schema
    def _window(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("until") is not None and data["until"] <= data["since"]:
            raise ValidationError("must be after since", "until")


class EndpointReplayAcceptedSchema(Schema):
    queued = fields.Int(required=True)
    endpoint_enabled = fields.Bool(required=True, metadata={
        "description": "false: queued, but nothing goes until the endpoint is enabled"})


_EP = "/v1/endpoints/<endpoint_id>"
register("POST", "/v1/endpoints", "Create an endpoint (the answer holds its secret)",
         status=201, body=EndpointCreateSchema, response=EndpointWithSecretSchema,
         tag="endpoints")
register("GET", "/v1/endpoints", "Endpoints, oldest first, keyset-paged",
         query=EndpointQuerySchema, response=EndpointPageSchema, tag="endpoints")
register("GET", _EP, "One endpoint", response=EndpointSchema, errors=(404,), tag="endpoints")
register("PATCH", _EP, "Change an endpoint", body=EndpointPatchSchema, response=EndpointSchema,
         errors=(400, 404), tag="endpoints")
register("DELETE", _EP, "Delete an endpoint and its deliveries", status=204, errors=(404,),
         tag="endpoints")
register("POST", f"{_EP}/rotate-secret",
         "A new secret; the old one keeps signing beside it for 24 h",
         response=EndpointWithSecretSchema, errors=(404,), tag="endpoints")
register("GET", f"{_EP}/deliveries", "The endpoint's deliveries, newest first, keyset-paged",
         query=DeliveryQuerySchema, response=DeliveryPageSchema, errors=(404,),
         tag="deliveries")
register("POST", f"{_EP}/replay", "Queue again the deliveries created in a time window",
         status=202, body=EndpointReplayBodySchema, response=EndpointReplayAcceptedSchema,
         errors=(400, 404), tag="deliveries")
register("GET", "/v1/deliveries/<delivery_id>", "One delivery with its body and attempts",
         response=DeliveryDetailSchema, errors=(404,), tag="deliveries")
register("POST", "/v1/deliveries/<delivery_id>/retry", "Send one delivery again now",
         status=202, response=RetryAcceptedSchema, errors=(404, 409), tag="deliveries")
