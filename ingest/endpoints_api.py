"""The /v1 fan-out API: endpoints, their deliveries, retry and replay (bearer token).

An endpoint's secret is in exactly two answers: the one that creates the
endpoint and the one that rotates its secret. Nothing else returns or logs it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, request

from ingest import api, endpoints_openapi  # noqa: F401  (registers the route docs)
from shared import netguard, secretbox, signing
from shared.db import deliveries, endpoints
from shared.model import EVENT_TYPES
from shared.timeutil import parse_timestamp

log = logging.getLogger(__name__)

bp = Blueprint("endpoints", __name__, url_prefix="/v1")
bp.before_request(api._authenticate)

MAX_DESCRIPTION = 1000
CREATE_FIELDS = {"url", "event_types", "filter", "description", "ordered"}
PATCH_FIELDS = {"url", "event_types", "filter", "description", "ordered", "enabled"}
REPLAY_STATUSES = ("succeeded", "failed", "dead")


def _body(allowed: set[str]) -> dict[str, Any]:
    doc = request.get_json(silent=True)
    if not isinstance(doc, dict):
        abort(400, "the body must be a JSON object")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        abort(400, f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return doc


def _url(value: Any) -> str:
    try:
        return netguard.check_url(value, current_app.config["HOOKLINE_SETTINGS"]
                                  .allow_private_endpoints)
    except netguard.UnsafeURL as exc:
        abort(400, f"url refused: {exc}")


def _event_types(value: Any) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        abort(400, 'event_types must be a non-empty list of event type names, or ["*"]')
    unknown = sorted(set(value) - EVENT_TYPES - {"*"})
    if unknown:
        abort(400, f"unknown event type(s): {', '.join(unknown)}; "
                   f"known: {', '.join(sorted(EVENT_TYPES))} or *")
    return list(dict.fromkeys(value))


def _filter(value: Any) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        abort(400, "filter must be an object with source, channel and/or sender")
    unknown = sorted(set(value) - set(endpoints.FILTER_KEYS))
    if unknown:
        abort(400, f"unknown filter key(s): {', '.join(unknown)}; "
                   f"allowed: {', '.join(endpoints.FILTER_KEYS)}")
    out: dict[str, list[str]] = {}
    for key, raw in value.items():
        values = [raw] if isinstance(raw, str) else raw
        if raw is None:
            continue
        if not isinstance(values, list) or not values or not all(
                isinstance(v, str) and v for v in values):
            abort(400, f"filter.{key} must be a string or a non-empty list of strings")
        out[key] = values
    return out


def _bool(doc: dict, name: str) -> bool:
    if not isinstance(doc[name], bool):
        abort(400, f"{name} must be true or false")
    return doc[name]


def _description(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_DESCRIPTION):
        abort(400, f"description must be a string of at most {MAX_DESCRIPTION} characters")
    return value


def _changes(doc: dict) -> dict[str, Any]:
    """Validated values of the fields present in a create or PATCH body."""
    out: dict[str, Any] = {}
    if "event_types" in doc:
        out["event_types"] = _event_types(doc["event_types"])
    if "filter" in doc:
        out["filter"] = _filter(doc["filter"])
    if "description" in doc:
        out["description"] = _description(doc["description"])
    for name in ("ordered", "enabled"):
        if name in doc:
            out[name] = _bool(doc, name)
    if "url" in doc:  # last: it may resolve the host
        out["url"] = _url(doc["url"])
    return out


def endpoint_json(row: dict[str, Any]) -> dict[str, Any]:
    rotation_ends = row["previous_secret_expires_at"]
    if rotation_ends is not None and rotation_ends <= datetime.now(UTC):
        rotation_ends = None
    return {
        "id": row["id"], "url": row["url"], "description": row["description"],
        "event_types": row["event_types"],
        "filter": {k: row[f"filter_{k}"] for k in endpoints.FILTER_KEYS if row[f"filter_{k}"]},
        "ordered": row["ordered"], "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"], "disabled_at": row["disabled_at"],
        "previous_secret_signs_until": rotation_ends,
        "health": {k: row[k] for k in ("consecutive_failures", "failing_since", "paused_until",
                                       "last_success_at", "last_failure_at")},
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }


def _found(row: dict | None, what: str, ident: str) -> dict:
    if row is None:
        abort(404, f"no {what} {ident!r}")
    return row


def create(doc: dict[str, Any]) -> dict[str, Any]:
    """Validate a create body and store the endpoint; the answer holds its secret
    (the only one that does, with rotate). The console creates through this too."""
    for required in ("url", "event_types"):
        if required not in doc:
            abort(400, f"{required} is required")
    c = _changes(doc)
    secret = signing.new_secret()
    with api.rt().pool.connection() as conn:
        row = endpoints.create(conn, url=c["url"], event_types=c["event_types"],
                               secret=_box().seal(secret),
                               filters=c.get("filter"), description=c.get("description"),
                               ordered=c.get("ordered", False))
    log.info("endpoint %s created", row["id"], extra={"endpoint_id": row["id"]})
    return {**endpoint_json(row), "secret": secret}


@bp.post("/endpoints")
def create_endpoint() -> tuple[Response, int]:
    """Create an endpoint; the answer holds its secret (the only one that does, with rotate)."""
    return jsonify(create(_body(CREATE_FIELDS))), 201


@bp.get("/endpoints")
def list_endpoints() -> Response:
    """Endpoints, oldest first, keyset-paged with ?after=."""
    limit = api.page_limit()
    with api.rt().pool.connection() as conn:
        rows = endpoints.list_page(conn, limit, after=request.args.get("after"))
    items = [endpoint_json(r) for r in rows]
    return jsonify(items=items, next_after=items[-1]["id"] if len(items) == limit else None)


@bp.get("/endpoints/<endpoint_id>")
def get_endpoint(endpoint_id: str) -> Response:
    """One endpoint, with its health (breaker, pause, disabled and why)."""
    with api.rt().pool.connection() as conn:
        row = _found(endpoints.get(conn, endpoint_id), "endpoint", endpoint_id)
    return jsonify(endpoint_json(row))


@bp.patch("/endpoints/<endpoint_id>")
def patch_endpoint(endpoint_id: str) -> Response:
    """Change url, event_types, filter, description, ordered or enabled."""
    return jsonify(endpoint_json(update(endpoint_id, _body(PATCH_FIELDS))))


def update(endpoint_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Validate a PATCH body and apply it; the endpoint's row (404 when there is none)."""
    changes = _changes(doc)
    with api.rt().pool.connection() as conn:
        row = _found(endpoints.update(conn, endpoint_id, changes), "endpoint", endpoint_id)
        if changes.get("ordered") is False:
            deliveries.unhold(conn, endpoint_id)  # what waited for its turn goes now
    return row


@bp.delete("/endpoints/<endpoint_id>")
def delete_endpoint(endpoint_id: str) -> tuple[str, int]:
    """Delete an endpoint and its deliveries."""
    with api.rt().pool.connection() as conn:
        if not endpoints.delete(conn, endpoint_id):
            abort(404, f"no endpoint {endpoint_id!r}")
    return "", 204


def _box() -> secretbox.SecretBox:
    return secretbox.box(api.rt().settings.secret_keys)


@bp.post("/endpoints/<endpoint_id>/rotate-secret")
def rotate_secret(endpoint_id: str) -> Response:
    """A new secret; the old one keeps signing beside it for 24 h."""
    return jsonify(rotate(endpoint_id))


def rotate(endpoint_id: str) -> dict[str, Any]:
    """Rotate the endpoint's secret; the answer holds the new one."""
    secret = signing.new_secret()
    with api.rt().pool.connection() as conn:
        row = _found(endpoints.rotate_secret(conn, endpoint_id, _box().seal(secret)), "endpoint",
                     endpoint_id)
    log.info("endpoint %s secret rotated", endpoint_id, extra={"endpoint_id": endpoint_id})
    return {**endpoint_json(row), "secret": secret}


def delivery_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("seq", "attempts_made")}
    if "attempts_made" in row:
        out["attempt_history"] = row["attempts_made"]
    return out


def _status_arg() -> str | None:
    status = request.args.get("status")
    if status is not None and status not in deliveries.STATUSES:
        abort(400, f"status must be one of {', '.join(deliveries.STATUSES)}")
    return status


@bp.get("/endpoints/<endpoint_id>/deliveries")
def list_deliveries(endpoint_id: str) -> Response:
    """The endpoint's deliveries, newest first (?status=, ?limit=, ?before=)."""
    limit, status, before = api.page_limit(), _status_arg(), api.arg_int("before")
    with api.rt().pool.connection() as conn:
        _found(endpoints.get(conn, endpoint_id), "endpoint", endpoint_id)
        rows = deliveries.list_for_endpoint(conn, endpoint_id, limit, status, before)
    nxt = rows[-1]["seq"] if len(rows) == limit else None
    return jsonify(items=[delivery_json(r) for r in rows], next_before=nxt)


@bp.get("/deliveries/<delivery_id>")
def get_delivery(delivery_id: str) -> Response:
    """One delivery with its body and every attempt."""
    with api.rt().pool.connection() as conn:
        row = _found(deliveries.get(conn, delivery_id), "delivery", delivery_id)
    return jsonify(delivery_json(row))


def _kick() -> None:
    """Send requeued deliveries now rather than at the next fan-out tick."""
    kick = current_app.extensions.get("hookline.kick_fanout")
    if kick is None:
        return  # an app built without the Celery side: the next fan-out tick sends them
    try:
        kick()
    except Exception as exc:
        log.warning("could not kick fan-out: %s", exc, extra={"error": repr(exc)})


@bp.post("/deliveries/<delivery_id>/retry")
def retry_delivery(delivery_id: str) -> tuple[Response, int]:
    """Send one delivery again now (a fresh retry schedule; same webhook-id)."""
    retry(delivery_id)
    return jsonify(id=delivery_id, status="pending"), 202


def retry(delivery_id: str) -> None:
    """Queue one delivery now (404 when there is none, 409 while it is being sent)."""
    with api.rt().pool.connection() as conn:
        outcome = deliveries.retry(conn, delivery_id)
    if outcome is None:
        abort(404, f"no delivery {delivery_id!r}")
    if outcome == "in_flight":
        abort(409, "the delivery is being sent right now; try again when it has an outcome")
    _kick()


def _replay_statuses(value: Any) -> list[str]:
    if value is None:
        return list(REPLAY_STATUSES)
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not set(values) <= set(deliveries.STATUSES):
        abort(400, f"status must be one or a list of {', '.join(deliveries.STATUSES)}")
    return values


def _time(doc: dict, name: str) -> datetime | None:
    if doc.get(name) is None:
        return None
    try:
        return parse_timestamp(doc[name])
    except ValueError as exc:
        abort(400, f"{name}: {exc}")


@bp.post("/endpoints/<endpoint_id>/replay")
def replay(endpoint_id: str) -> tuple[Response, int]:
    """Queue again the deliveries created in [since, until) (default: up to now)."""
    return jsonify(replay_window(endpoint_id, _body({"since", "until", "status"}))), 202


def replay_window(endpoint_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Validate a replay body and queue the window: ``queued`` and ``endpoint_enabled``."""
    since = _time(doc, "since")
    if since is None:
        abort(400, "since is required (ISO-8601)")
    until = _time(doc, "until") or datetime.now(UTC)
    if until <= since:
        abort(400, "until must be after since")
    statuses = _replay_statuses(doc.get("status"))
    with api.rt().pool.connection() as conn:
        row = _found(endpoints.get(conn, endpoint_id), "endpoint", endpoint_id)
        queued = deliveries.replay(conn, endpoint_id, since, until, statuses)
    log.info("replay of endpoint %s queued %d deliveries", endpoint_id, queued,
             extra={"endpoint_id": endpoint_id, "queued": queued})
    if queued:
        _kick()
    return {"queued": queued, "endpoint_enabled": row["enabled"]}
