"""RFC 9457 problem details for every /v1 error, and the guard on what may reach PostgreSQL.

A problem is ``application/problem+json``: ``type`` (a stable URN a client can branch
on), ``title``, ``status``, ``detail`` and ``errors`` -- one entry per bad input, each
naming where it was (``in``: path, query or body) and which field (``name``, dotted
for nested body fields). ``errors`` is empty when no single input is to blame.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
from flask import Response
from marshmallow import INCLUDE, Schema, ValidationError, fields
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.http import HTTP_STATUS_CODES

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:hookline:problem:"
# The problem type of each status the API answers with.
TYPES = {400: "invalid-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
         405: "method-not-allowed", 409: "conflict", 413: "too-large",
         415: "unsupported-media-type", 422: "unprocessable", 500: "internal-error"}
# PostgreSQL text cannot hold NUL, nor UTF-8 cannot encode a lone surrogate.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_BIGINT = range(-(2**63), 2**63)


def problem_type(status: int) -> str:
    return TYPE_PREFIX + TYPES.get(status, "error")


class ProblemErrorSchema(Schema):
    """One bad input."""

    name = fields.Str(required=True, metadata={
        "description": "The parameter or field (dotted inside a body, empty for the whole "
                       "body)"})
    # ``in`` is a Python keyword: the field is declared under another attribute name.
    in_ = fields.Str(required=True, data_key="in", metadata={
        "enum": ["path", "query", "body", "header"]})
    detail = fields.Str(required=True)


class ProblemSchema(Schema):
    """RFC 9457 problem details."""

    class Meta:
        unknown = INCLUDE  # extension members (RFC 9457 section 3.2)

    type = fields.Str(required=True, metadata={
        "description": "urn:hookline:problem:<kind>; stable, branch on it",
        "enum": [problem_type(s) for s in sorted(TYPES)]})
    title = fields.Str(required=True)
    status = fields.Int(required=True)
    detail = fields.Str(required=True)
    errors = fields.List(fields.Nested(ProblemErrorSchema), required=True)


class ConflictProblemSchema(ProblemSchema):
    sources = fields.List(fields.Str(), metadata={
        "description": "GET /v1/messages: the sources sharing the message id; pass one "
                       "as ?source="})
    replay_ingest_id = fields.Str(metadata={
        "description": "POST /v1/dead-letters/{id}/replay: the ingest id of the replay "
                       "made already; pass ?force=true to replay it again"})


class Invalid(BadRequest):
    """A 400 naming each bad input. Raised where the input is checked (the request
    hook, or the console's calls into the same rules); its description is the
    human-readable summary the console shows."""

    def __init__(self, errors: list[dict[str, str]], detail: str | None = None) -> None:
        self.errors = errors
        super().__init__(detail or "; ".join(
            f"{e['name'] or e['in']}: {e['detail']}" for e in errors))


def invalid(location: str, name: str, detail: str) -> Invalid:
    return Invalid([{"in": location, "name": name, "detail": detail}])


def _flatten(messages: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """marshmallow's nested messages -> (dotted name, message)."""
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = prefix if key == "_schema" else f"{prefix}.{key}" if prefix else str(key)
            yield from _flatten(value, name)
    elif isinstance(messages, list | tuple):
        for m in messages:
            yield from _flatten(m, prefix)
    else:
        yield prefix, str(messages)


def from_validation(exc: ValidationError, location: str) -> Invalid:
    return Invalid([{"in": location, "name": name, "detail": message}
                    for name, message in _flatten(exc.messages)])


def load(schema: Schema, data: Any, location: str) -> dict[str, Any]:
    """``data`` loaded by ``schema``, or an Invalid naming every bad field (or the first
    value PostgreSQL could not store)."""
    if location == "body" and not isinstance(data, dict):
        raise invalid("body", "", "the body must be a JSON object")
    bad = unstorable(data)
    if bad is not None:
        raise unstorable_input(location, bad)
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise from_validation(exc, location) from None


def unstorable_input(location: str, name: str) -> Invalid:
    # The name itself may hold the NUL: shown escaped, so the answer is storable too.
    return invalid(location, name.replace("\x00", "\\0"),
                   "holds a NUL byte, a lone surrogate or an integer out of range: it cannot "
                   "be stored")


def unstorable(value: Any, name: str = "") -> str | None:
    """The dotted name of the first string in ``value`` PostgreSQL cannot store (a NUL,
    a lone surrogate), or of an integer beyond bigint; None when all is storable."""
    if isinstance(value, str):
        return name if _UNSTORABLE.search(value) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if value in _BIGINT else name
    if isinstance(value, Mapping):
        return _first(((k, f"{name}.{k}" if name else str(k)) for k in value), value, name)
    if isinstance(value, list | tuple):
        return next((bad for i, v in enumerate(value)
                     if (bad := unstorable(v, f"{name}[{i}]")) is not None), None)
    return None


def _first(keys: Iterable[tuple[Any, str]], value: Mapping, name: str) -> str | None:
    for key, path in keys:
        if isinstance(key, str) and _UNSTORABLE.search(key):
            return path
        bad = unstorable(value[key], path)
        if bad is not None:
            return bad
    return None


def response(status: int, detail: str, errors: list[dict[str, str]] | None = None,
             headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    doc = {"type": problem_type(status), "title": HTTP_STATUS_CODES.get(status, "Error"),
           "status": status, "detail": detail, "errors": errors or [], **extra}
    resp = Response(orjson.dumps(doc), status=status, mimetype=MEDIA_TYPE)
    resp.headers.update(headers or {})
    return resp


def from_http(exc: HTTPException) -> Response:
    """Any HTTP error (aborts, routing's 404 and 405, the 500 of an unhandled error)."""
    status = exc.code or 500
    detail = exc.description or exc.name
    if status >= 500:
        detail = "the server failed to answer; the error is logged"  # no internals leak
    extra = getattr(exc, "extra", None) or {}
    resp = response(status, detail, getattr(exc, "errors", None), **extra)
    original = exc.get_response()
    for header in ("Allow", "WWW-Authenticate", "Retry-After"):
        if header in original.headers:
            resp.headers[header] = original.headers[header]
    return resp
