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
from functools import cache
from importlib import metadata
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from werkzeug.routing import Rule

from ingest import problems
from shared.model import STATUS_ORDER
from shared.timeutil import parse_timestamp

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
# OpenAPI 3.1 ``webhooks``: what hookline POSTs to customer endpoints, by event type.
_WEBHOOKS: dict[str, dict[str, Any]] = {}


def register(method: str, rule: str, summary: str, **details: Any) -> None:
    """Describe one route: ``rule`` exactly as given to Flask, e.g.
    ``register("GET", "/v1/endpoints/<endpoint_id>", "One endpoint", response=EndpointSchema)``.
    ``details`` are the fields of Operation (response, status, query, body, errors, ...)."""
    _OPERATIONS[(method.upper(), rule)] = Operation(summary, **details)


def register_webhook(name: str, summary: str, schema: dict[str, Any]) -> None:
    """Describe one webhook (a fan-out event type) by the JSON Schema of its body."""
    _WEBHOOKS[name] = {"post": {
        "summary": summary, "operationId": f"webhook.{name}", "tags": ["webhooks"],
        "security": [],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {"2XX": {"description": "Received (any 2xx); anything else is retried"}},
    }}


# --- validating requests with the same schemas ---------------------------------------------

def validate_request() -> None:
    """before_request of every /v1 blueprint, after authentication: the path, query and
    JSON body checked against the route's registered schemas (those the document shows)
    and stored loaded as ``g.query`` and ``g.body``. Nothing PostgreSQL cannot store (a
    NUL, a lone surrogate, an integer beyond bigint) goes further, on any route."""
    rule = request.url_rule
    if rule is None:
        return
    method = "GET" if request.method == "HEAD" else request.method
    op = _OPERATIONS.get((method, rule.rule))
    _storable("path", request.view_args or {})
    for name, values in request.args.lists():  # named as sent, not as name[0]
        if problems.unstorable([name, *values]) is not None:
            raise problems.unstorable_input("query", name)
    g.query = _loaded(op.query if op else None, request.args.to_dict(), "query")
    if op is not None and isinstance(op.body, Schema | type) and op.body_content_type == \
            "application/json":
        g.body = problems.load(_instance(op.body), request.get_json(silent=True), "body")


def _storable(location: str, value: Any) -> None:
    bad = problems.unstorable(value)
    if bad is not None:
        raise problems.unstorable_input(location, bad)


@cache  # one instance per schema: building one per request costs more than the load
def _instance(schema: type[Schema] | Schema) -> Schema:
    return schema() if isinstance(schema, type) else schema


def _loaded(schema: SchemaType | None, args: dict[str, str], location: str) -> dict[str, Any]:
    if schema is None or isinstance(schema, dict):
        return args
    # Unknown query parameters are ignored (a proxy or a client library may add its own).
    try:
        return _instance(schema).load(args, unknown=EXCLUDE)
    except ValidationError as exc:
        raise problems.from_validation(exc, location) from None


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


def _problem(code: int) -> dict[str, Any]:
    schema = problems.ConflictProblemSchema if code == 409 else problems.ProblemSchema
    return {"description": _REASONS.get(code, "Error"),
            "content": {problems.MEDIA_TYPE: {"schema": schema}}}


def _success(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"description": op.summary}
    if op.status != 204:  # 204 No Content has no body to describe
        out["content"] = _json(op.response)
    return out


def _operation(op: Operation, params: list[dict[str, Any]], endpoint: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": op.summary, "operationId": endpoint,
        "tags": [op.tag or endpoint.split(".")[0]],
        "parameters": [*params, *([{"in": "query", "schema": op.query}] if op.query else [])],
        "responses": {str(op.status): _success(op)},
    }
    if op.description:
        out["description"] = op.description
    if op.body is not None:
        content = (_json(op.body) if op.body_content_type == "application/json"
                   else {op.body_content_type: {"schema": op.body}})
        out["requestBody"] = {"required": op.body_required, "content": content}
    # Any input at all can be refused (a NUL byte reaches no query); every route can fail.
    errors = {*op.errors, 500} | ({400} if params or op.query or op.body is not None else set())
    if op.public:
        out["security"] = []
    else:
        errors.add(401)
    for code in sorted(errors):
        out["responses"][str(code)] = _problem(code)
    return out


_REASONS = {400: "Invalid input: `errors` names each bad parameter or field",
            401: "Missing or wrong API token",
            403: "Operator only: a tenant's key may not do this", 404: "Not found",
            409: "Conflict",
            413: "Body too large", 422: "Invalid input", 500: "Server error"}


def build(app: Flask) -> dict[str, Any]:
    """The document for every /v1 route of ``app``."""
    spec = APISpec(
        title="hookline", version=_version(), openapi_version="3.1.0",
        plugins=[MarshmallowPlugin()],
        info={"description": "The hookline query and administration API. Every route needs "
                             "`Authorization: Bearer` with HOOKLINE_API_TOKEN, an operator key or "
                             "a tenant's api key (which sees that tenant's data only) unless "
                             "marked otherwise."},
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
    doc = spec.to_dict()
    doc["webhooks"] = dict(sorted(_WEBHOOKS.items()))
    return doc


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


# --- fields every list shares --------------------------------------------------------------

MAX_PAGE = 500
DEFAULT_PAGE = 100


class Limit(fields.Int):
    """?limit=: rows per page, clamped to 1..500 (a client asking for more gets 500)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        return max(1, min(MAX_PAGE, super()._deserialize(value, attr, data, **kwargs)))


def limit_field() -> fields.Int:
    return Limit(load_default=DEFAULT_PAGE, metadata={
        "default": DEFAULT_PAGE, "description": f"Rows per page, clamped to 1..{MAX_PAGE}"})


class Cursor(fields.Str):
    """?after=: the opaque ``next_after`` of the previous page (every list pages so).
    A list keyed by a number loads it as that number."""

    def __init__(self, numeric: bool = True, **kwargs: Any) -> None:
        self.numeric = numeric
        meta: dict[str, Any] = {
            "description": "Keyset paging: pass the previous page's next_after (opaque) for "
                           "the rows after it in the list's order",
            "minLength": 1, "maxLength": 200}
        if numeric:
            meta["pattern"] = "^[0-9]{1,18}$"
        super().__init__(metadata=meta, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not 1 <= len(text) <= 200:
            raise ValidationError("not a cursor this list gave (pass next_after as is)")
        if not self.numeric:
            return text
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            raise ValidationError("not a cursor this list gave (pass next_after as is)")
        return int(text)


def next_after() -> fields.Str:
    return fields.Str(allow_none=True, required=True, metadata={
        "description": "Pass as ?after= for the next page; null on the last page"})


class StrictBool(fields.Bool):
    """true or false, nothing that merely looks like one ("yes", 1)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("must be true or false")
        return value


class Timestamp(fields.DateTime):
    """ISO-8601 with Z or an offset (none: UTC), or epoch seconds / milliseconds."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return parse_timestamp(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


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
    tenant_id = fields.Str(allow_none=True, metadata={
        "description": "The tenant whose callback key brought it; its replay keeps it"})


class DeadLetterPageSchema(Schema):
    items = fields.List(fields.Nested(DeadLetterSchema), required=True)
    next_after = next_after()


class DeadLetterQuerySchema(Schema):
    source = fields.Str()
    reason = fields.Str(metadata={"description": "A case-insensitive part of the reason"})
    since = Timestamp(metadata={"description": "received_at >= since"})
    until = Timestamp(metadata={"description": "received_at < until"})
    limit = limit_field()
    after = Cursor()


class ReplayQuerySchema(Schema):
    force = fields.Bool(metadata={"description": "Replay a letter replayed already"})


class ReplayAcceptedSchema(Schema):
    id = fields.Str(required=True, metadata={"description": "The new ingest id"})
    replay_of = fields.Int(required=True)


register("GET", "/v1/messages/<message_id>", "A message's status and status history",
         response=MessageSchema, query=MessageQuerySchema, errors=(404, 409), tag="messages")
register("GET", "/v1/dead-letters", "Dead letters, newest first, keyset-paged",
         response=DeadLetterPageSchema, query=DeadLetterQuerySchema, tag="dead-letters",
         errors=(403,),
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
