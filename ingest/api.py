"""The /v1 query API (bearer HOOKLINE_API_TOKEN)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from flask import Blueprint, Response, abort, current_app, jsonify, request

from ingest.auth import presented_token, token_ok
from shared.db import dead_letters, messages
from shared.db.paging import Page
from shared.replay import AlreadyReplayed, replay
from shared.runtime import Runtime
from shared.timeutil import parse_timestamp

bp = Blueprint("api", __name__, url_prefix="/v1")
MAX_PAGE = 500


def rt() -> Runtime:
    return current_app.extensions["hookline.runtime"]()


@bp.before_request
def _authenticate() -> Response | None:
    expected = current_app.config["HOOKLINE_SETTINGS"].api_token
    presented = presented_token(request, allow_query=False)
    # No configured token means the API is closed, not open.
    if expected is None or not token_ok(expected, presented):
        resp = jsonify(error="missing or wrong API token")
        resp.status_code = 401
        resp.headers["WWW-Authenticate"] = "Bearer"
        return resp
    return None


T = TypeVar("T")
# One page of a list: (connection, ?limit= and ?before=) -> rows, newest first.
PageQuery = Callable[[psycopg.Connection, Page], list[dict[str, Any]]]


def _arg(name: str, parse: Callable[[str], T], error: str | None = None) -> T | None:
    """?name= parsed, None when it is absent. A value ``parse`` refuses is a 400 that names
    the parameter, in ``error``'s words when given, else in the parser's."""
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        abort(400, f"{name} {error}" if error else f"{name}: {exc}")


def arg_int(name: str) -> int | None:
    return _arg(name, int, "must be an integer")


def arg_time(name: str) -> datetime | None:
    return _arg(name, parse_timestamp)


def page_limit() -> int:
    limit = arg_int("limit")
    return max(1, min(MAX_PAGE, 100 if limit is None else limit))


def newest_first(id_key: str, query: PageQuery) -> Response:
    """A page of rows and ``next_before`` (the last row's ``id_key``) when it is full.

    ``query`` reads its own filters from the request, after ?limit= and ?before=: with
    several bad parameters, the 400 names the first in that order.
    """
    limit = page_limit()
    with rt().pool.connection() as conn:
        items = query(conn, Page(limit, arg_int("before")))
    nxt = items[-1][id_key] if len(items) == limit else None
    return jsonify(items=items, next_before=nxt)


@bp.get("/messages/<message_id>")
def get_message(message_id: str) -> Response:
    source = request.args.get("source")
    with rt().pool.connection() as conn:
        rows = messages.get(conn, message_id, source)
    if not rows:
        abort(404, f"no message {message_id!r}")
    if len(rows) > 1:
        resp = jsonify(error="several sources share this message id; pass ?source=",
                       sources=[r["source"] for r in rows])
        resp.status_code = 409
        return resp
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
    def letters(conn: psycopg.Connection, page: Page) -> list[dict[str, Any]]:
        rows = dead_letters.list_recent(
            conn, page, source=request.args.get("source"), reason=request.args.get("reason"),
            since=arg_time("since"), until=arg_time("until"))
        return [_letter_json(r) for r in rows]

    return newest_first("id", letters)


@bp.post("/dead-letters/<int:letter_id>/replay")
def replay_dead_letter(letter_id: int) -> Response:
    """Put the raw body back through the pipeline; a request body replaces it (a fix).
    A letter replayed already is 409 unless ?force=true."""
    body = request.get_data() or None
    force = request.args.get("force", "").lower() in ("1", "true", "yes")
    try:
        ingest_id = replay(rt(), letter_id, body, force=force)
    except AlreadyReplayed as exc:
        resp = jsonify(error=f"{exc}; pass ?force=true to replay it again",
                       replay_ingest_id=exc.replay_ingest_id)
        resp.status_code = 409
        return resp
    if ingest_id is None:
        abort(404, f"no dead letter {letter_id}")
    resp = jsonify(id=ingest_id, replay_of=letter_id)
    resp.status_code = 202
    return resp
