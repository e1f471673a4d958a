"""The /v1 query API (bearer HOOKLINE_API_TOKEN, an operator key or a tenant's api key).

Every view asks :func:`tenant` whose data it may show: None for the operator, else the
tenant's id, which each DAO call takes as its scope (docs/tenants.md). A request
without a principal fails (500) rather than falling back to the operator's view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from flask import Blueprint, Response, abort, current_app, g, jsonify, request

from ingest import openapi, problems
from ingest.auth import operator_only, require_api_token, tenant
from shared.db import dead_letters, messages
from shared.db.paging import Page
from shared.replay import AlreadyReplayed, replay
from shared.runtime import Runtime

bp = Blueprint("api", __name__, url_prefix="/v1")
bp.before_request(require_api_token)


def rt() -> Runtime:
    return current_app.extensions["hookline.runtime"]()


# After authentication (a caller without the token learns nothing about the input), and
# before the views: they read only what the route's schemas loaded.
bp.before_request(openapi.validate_request)


# One page of a list: (connection, ?limit= and ?after=) -> rows in the list's order.
PageQuery = Callable[[psycopg.Connection, Page], list[dict[str, Any]]]


def args() -> dict[str, Any]:
    """The query parameters, loaded by the route's registered schema (ingest.openapi)."""
    return g.query


def body() -> dict[str, Any]:
    """The JSON body, loaded by the route's registered schema (ingest.openapi)."""
    return g.body


def newest_first(id_key: str, query: PageQuery) -> Response:
    """A page of rows and ``next_after`` (the last row's ``id_key``, an opaque cursor)
    when it is full. The storage layer names the same cursor ``before``: in a newest-first
    list, the rows after it are the older ones."""
    limit, after = args()["limit"], args().get("after")
    with rt().pool.connection() as conn:
        items = query(conn, Page(limit, after))
    return jsonify(items=items, next_after=cursor(items, id_key, limit))


def cursor(items: list[dict[str, Any]], key: str, limit: int) -> str | None:
    """The ``next_after`` of a page: its last row's key, or None on the last page."""
    return str(items[-1][key]) if len(items) == limit else None


@bp.get("/messages/<message_id>")
def get_message(message_id: str) -> Response:
    with rt().pool.connection() as conn:
        rows = messages.get(conn, message_id, args().get("source"), tenant())
    if not rows:
        abort(404, f"no message {message_id!r}")
    if len(rows) > 1:
        return problems.response(409, "several sources share this message id; pass ?source=",
                                 sources=[r["source"] for r in rows])
    row = rows[0]
    row["events"] = [
        {"status": e["status"], "provider_status": e["provider_status"],
         "reason": e["reason"], "code": e["code"],
         "occurred_at": e["occurred_at"], "event_id": e["provider_event_id"],
         "type": e["type"]}
        for e in row["events"]
    ]
    return jsonify(row)


def _letter_json(d: dict) -> dict:
    d = dict(d)
    d["body"] = bytes(d["body"]).decode("utf-8", errors="replace")
    return d


@bp.get("/dead-letters")
def list_dead_letters() -> Response:
    operator_only()
    def letters(conn: psycopg.Connection, page: Page) -> list[dict[str, Any]]:
        q = args()
        rows = dead_letters.list_recent(conn, page, source=q.get("source"),
                                        reason=q.get("reason"), since=q.get("since"),
                                        until=q.get("until"))
        return [_letter_json(r) for r in rows]

    return newest_first("id", letters)


@bp.post("/dead-letters/<int:letter_id>/replay")
def replay_dead_letter(letter_id: int) -> Response:
    """Put the raw body back through the pipeline; a request body replaces it (a fix).
    A letter replayed already is 409 unless ?force=true."""
    operator_only()
    body = request.get_data() or None
    try:
        ingest_id = replay(rt(), letter_id, body, force=args().get("force", False))
    except AlreadyReplayed as exc:
        return problems.response(409, f"{exc}; pass ?force=true to replay it again",
                                 replay_ingest_id=exc.replay_ingest_id)
    if ingest_id is None:
        abort(404, f"no dead letter {letter_id}")
    resp = jsonify(id=ingest_id, replay_of=letter_id)
    resp.status_code = 202
    return resp
