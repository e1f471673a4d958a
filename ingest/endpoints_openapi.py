"""OpenAPI descriptions of the fan-out routes (ingest.endpoints_api)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ingest.openapi import register
from shared.db.endpoints import FILTER_KEYS
from shared.db.outbox.admin import STATUSES

_FILTER = fields.Dict(keys=fields.Str(validate=validate.OneOf(FILTER_KEYS)),
                      values=fields.List(fields.Str()),
                      metadata={"description": "Only events whose source / channel / sender is "
                                               "one of these (a string is a list of one)"})
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
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class EndpointWithSecretSchema(EndpointSchema):
    secret = fields.Str(required=True, metadata={
        "description": "whsec_...: shown only here, keep it (Standard Webhooks)"})


class EndpointPageSchema(Schema):
    items = fields.List(fields.Nested(EndpointSchema), required=True)
    next_after = fields.Str(allow_none=True, required=True,
                            metadata={"description": "Pass as ?after= for the next page"})


class EndpointQuerySchema(Schema):
    limit = fields.Int(validate=validate.Range(1, 500), metadata={"default": 100})
    after = fields.Str(metadata={"description": "Keyset paging: ids after this one"})


class EndpointCreateSchema(Schema):
    url = fields.Str(required=True, metadata={
        "description": "http or https; private addresses refused unless allowed"})
    event_types = fields.List(fields.Str(), required=True)
    filter = _FILTER
    description = fields.Str(allow_none=True)
    ordered = fields.Bool()


class EndpointPatchSchema(Schema):
    url = fields.Str()
    event_types = fields.List(fields.Str())
    filter = fields.Dict(allow_none=True)
    description = fields.Str(allow_none=True)
    ordered = fields.Bool()
    enabled = fields.Bool(metadata={"description": "true also clears the failure history"})


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
    next_before = fields.Int(allow_none=True, required=True,
                             metadata={"description": "Pass as ?before= for the next page"})


class DeliveryQuerySchema(Schema):
    status = fields.Str(validate=validate.OneOf(STATUSES))
    limit = fields.Int(validate=validate.Range(1, 500), metadata={"default": 100})
    before = fields.Int()


class RetryAcceptedSchema(Schema):
    id = fields.Str(required=True)
    status = fields.Str(required=True)


class EndpointReplayBodySchema(Schema):
    since = fields.DateTime(required=True, metadata={"description": "created_at >= since"})
    until = fields.DateTime(metadata={"description": "created_at < until (default now)"})
    status = fields.Raw(metadata={"description": "A status or a list (default: succeeded, "
                                                 "failed and dead)"})


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
         tag="endpoints", response={"type": "null"})
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
