"""The OpenAPI document of /v1, built from marshmallow schemas, at GET /v1/openapi.json.

Each blueprint describes its routes with one ``register()`` call per route and
method (see the bottom of this module for the /v1 routes of ingest.api). The
document is built by walking the app's URL map, so a /v1 route nobody
registered still appears (summarised from its view's docstring) and cannot be
missed.

The document itself needs no token: it holds no data, an operator or a client
generator can fetch it as is, and every route it lists still demands the
bearer token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, jsonify
from marshmallow import Schema, fields, validate
from werkzeug.routing import Rule

from shared.model import STATUS_ORDER

PREFIX = "/v1/"
DOCUMENT_RULE = "/v1/openapi.json"
IGNORED_METHODS = {"HEAD", "OPTIONS"}
# A marshmallow schema, or a plain JSON schema for what marshmallow cannot describe.
SchemaType = type[Schema] | Schema | dict[str, Any]


@dataclass(frozen=True)
class Operation:
    summary: str
    response: SchemaType | None = None
    status: int = 200
    query: SchemaType | None = None
    body: SchemaType | None = None
    body_content_type: str = "application/json"
    body_required: bool = True
    errors: tuple[int, ...] = ()
    tag: str | None = None
    description: str | None = None
    public: bool = False  # no bearer token needed


_OPERATIONS: dict[tuple[str, str], Operation] = {}


def register(method: str, rule: str, summary: str, **details: Any) -> None:
    """Describe one route: ``rule`` exactly as given to Flask, e.g.
    ``register("GET", "/v1/endpoints/<endpoint_id>", "One endpoint", response=EndpointSchema)``.
    ``details`` are the fields of Operation (response, status, query, body, errors, ...)."""
    _OPERATIONS[(method.upper(), rule)] = Operation(summary, **details)


class ErrorSchema(Schema):
    error = fields.Str(required=True, metadata={"description": "What went wrong"})


# --- building the document ---------------------------------------------------------------

_CONVERTER_TYPES = {"int": {"type": "integer"}, "float": {"type": "number"},
                    "uuid": {"type": "string", "format": "uuid"}}
_VARIABLE = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def _path(rule: Rule) -> tuple[str, list[dict[str, Any]]]:
    """'/v1/x/<int:id>' -> ('/v1/x/{id}', [its path parameter])."""
    params = [
        {"in": "path", "name": name, "required": True,
         "schema": _CONVERTER_TYPES.get(converter or "", {"type": "string"})}
        for converter, name in _VARIABLE.findall(rule.rule)
    ]
    return _VARIABLE.sub(lambda m: "{" + m.group(2) + "}", rule.rule), params


def _fallback(app: Flask, rule: Rule) -> Operation:
    view = app.view_functions.get(rule.endpoint)
    doc = (view.__doc__ or "").strip().splitlines() if view else []
    return Operation(doc[0] if doc else rule.endpoint, description="Not described in detail yet.")


def _json(schema: SchemaType | None) -> dict[str, Any]:
    return {"application/json": {"schema": schema or {"type": "object"}}}


def _operation(op: Operation, params: list[dict[str, Any]], endpoint: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": op.summary, "operationId": endpoint,
        "tags": [op.tag or endpoint.split(".")[0]],
        "parameters": [*params, *([{"in": "query", "schema": op.query}] if op.query else [])],
        "responses": {str(op.status): {"description": op.summary,
                                       "content": _json(op.response)}},
    }
    if op.description:
        out["description"] = op.description
    if op.body is not None:
        content = (_json(op.body) if op.body_content_type == "application/json"
                   else {op.body_content_type: {"schema": op.body}})
        out["requestBody"] = {"required": op.body_required, "content": content}
    errors = set(op.errors) | ({400} if op.query else set())
    if op.public:
        out["security"] = []
    else:
        errors.add(401)
    for code in sorted(errors):
        out["responses"][str(code)] = {"description": _REASONS.get(code, "Error"),
                                       "content": _json(ErrorSchema)}
    return out


_REASONS = {400: "Bad request", 401: "Missing or wrong API token", 404: "Not found",
            409: "Ambiguous", 413: "Body too large", 422: "Invalid input"}


def build(app: Flask) -> dict[str, Any]:
    """The document for every /v1 route of ``app``."""
    spec = APISpec(
        title="hookline", version=_version(), openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={"description": "The hookline query and administration API. Every route needs "
                             "`Authorization: Bearer $HOOKLINE_API_TOKEN` unless marked "
                             "otherwise."},
        security=[{"bearerAuth": []}],
    )
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(PREFIX):
            continue
        path, params = _path(rule)
        for method in sorted((rule.methods or set()) - IGNORED_METHODS):
            op = _OPERATIONS.get((method, rule.rule)) or _fallback(app, rule)
            paths.setdefault(path, {})[method.lower()] = _operation(op, params, rule.endpoint)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def unmatched(app: Flask) -> list[tuple[str, str]]:
    """Registrations that name no route of ``app`` (a typo in a rule)."""
    routes = {(m, r.rule) for r in app.url_map.iter_rules() for m in (r.methods or ())}
    return sorted(key for key in _OPERATIONS if key not in routes)


def _version() -> str:
    try:
        return metadata.version("hookline")
    except metadata.PackageNotFoundError:
        return "0"


bp = Blueprint("openapi", __name__)


@bp.get(DOCUMENT_RULE)
def openapi_document() -> Response:
    """The OpenAPI document of /v1."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    doc = app.extensions.get("hookline.openapi")
    if doc is None:
        # The URL map is fixed once the app serves requests: build it once.
        doc = app.extensions["hookline.openapi"] = build(app)
    return jsonify(doc)


# --- the /v1 routes of ingest.api ----------------------------------------------------------


class MessageEventSchema(Schema):
    status = fields.Str(required=True, validate=validate.OneOf(STATUS_ORDER))
    provider_status = fields.Str(allow_none=True, metadata={"description": "As sent"})
    reason = fields.Str(allow_none=True, metadata={
        "description": "Why this receipt failed, in the provider's words (failed and "
                       "expired receipts that give one; null otherwise)"})
    code = fields.Str(allow_none=True, metadata={
        "description": "The provider's failure code, where it gives one (e.g. an SMPP err, "
                       "a Comapi failureCode or statusid, an RCS error code)"})
    occurred_at = fields.DateTime(required=True)
    event_id = fields.Str(allow_none=True, metadata={"description": "The provider's event id"})
    type = fields.Str(required=True, metadata={"description": "Normalised event type"})


MessageSchema = Schema.from_dict(
    {
        "source": fields.Str(required=True),
        "message_id": fields.Str(required=True),
        "channel": fields.Str(required=True),
        "sender": fields.Str(allow_none=True),
        "msisdn": fields.Str(allow_none=True),
        "status": fields.Str(required=True, validate=validate.OneOf(STATUS_ORDER),
                             metadata={"description": "The highest-ranked status seen"}),
        "failure_reason": fields.Str(allow_none=True, metadata={
            "description": "While the status is failed or expired: why, in the provider's "
                           "words, from the receipt that set it (null when it gave none, and "
                           "once a higher-ranked status such as delivered arrives)"}),
        "failure_code": fields.Str(allow_none=True, metadata={
            "description": "The provider's code for that failure, where it gives one"}),
        **{f"{s}_at": fields.DateTime(allow_none=True, metadata={
            "description": f"Earliest time the message was {s}"}) for s in STATUS_ORDER},
        "last_event_at": fields.DateTime(required=True),
        "events": fields.List(fields.Nested(MessageEventSchema), required=True,
                              metadata={"description": "Status history, oldest first"}),
    },
    name="MessageSchema",
)


class MessageQuerySchema(Schema):
    source = fields.Str(metadata={"description": "Pick one source when several share the id"})


class DeadLetterSchema(Schema):
    id = fields.Int(required=True)
    ingest_id = fields.Str(required=True)
    source = fields.Str(required=True)
    event = fields.Str(allow_none=True, metadata={"description": "The event named in the URL"})
    reason = fields.Str(required=True)
    body = fields.Str(required=True, metadata={"description": "The raw body (invalid UTF-8 "
                                                              "replaced)"})
    headers = fields.Dict(keys=fields.Str(), values=fields.Str(), required=True)
    remote_addr = fields.Str(allow_none=True)
    attempts = fields.Int(required=True)
    received_at = fields.DateTime(required=True)
    created_at = fields.DateTime(required=True)
    replayed_at = fields.DateTime(allow_none=True)
    replay_ingest_id = fields.Str(allow_none=True)


class DeadLetterPageSchema(Schema):
    items = fields.List(fields.Nested(DeadLetterSchema), required=True)
    next_before = fields.Int(allow_none=True, required=True,
                             metadata={"description": "Pass as ?before= for the next page"})


class DeadLetterQuerySchema(Schema):
    source = fields.Str()
    reason = fields.Str(metadata={"description": "A case-insensitive part of the reason"})
    since = fields.DateTime(metadata={"description": "received_at >= since"})
    until = fields.DateTime(metadata={"description": "received_at < until"})
    limit = fields.Int(validate=validate.Range(1, 500), metadata={"default": 100})
    before = fields.Int(metadata={"description": "Keyset paging: the rows after this id's row "
                                  "in the page's order (next_before of the previous page)"})


class ReplayQuerySchema(Schema):
    force = fields.Bool(metadata={"description": "Replay a letter replayed already"})


class ReplayAcceptedSchema(Schema):
    id = fields.Str(required=True, metadata={"description": "The new ingest id"})
    replay_of = fields.Int(required=True)


register("GET", "/v1/messages/<message_id>", "A message's status and status history",
         response=MessageSchema, query=MessageQuerySchema, errors=(404, 409), tag="messages")
register("GET", "/v1/dead-letters", "Dead letters, newest first, keyset-paged",
         response=DeadLetterPageSchema, query=DeadLetterQuerySchema, tag="dead-letters",
         description="Newest first by id; with since or until, newest first by received_at "
                     "(ties by id), so a letter inserted late still shows in its time range.")
register("POST", "/v1/dead-letters/<int:letter_id>/replay",
         "Put a dead letter back through the pipeline", status=202,
         response=ReplayAcceptedSchema, errors=(404, 409), tag="dead-letters",
         query=ReplayQuerySchema,
         body={"type": "string", "format": "binary"}, body_content_type="*/*",
         body_required=False,
         description="An empty body replays the stored one; a body replaces it (a fixed copy)."
                     " A letter replayed already is 409 unless force=true.")
register("GET", DOCUMENT_RULE, "This document", public=True, tag="meta",
         response={"type": "object"})
