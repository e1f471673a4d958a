"""The /v1 fan-out API: endpoints, their deliveries, retry and replay (bearer token).

An endpoint's secret is in exactly two answers: the one that creates the
endpoint and the one that rotates its secret. Nothing else returns or logs it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify
from marshmallow import Schema

from ingest import api, auth, openapi, problems
from ingest.auth import require_api_token
from ingest.endpoints_openapi import (
    EndpointCreateSchema,
    EndpointPatchSchema,
    EndpointReplayBodySchema,
)
from shared import secretbox, signing
from shared.db import endpoints
from shared.db.outbox import admin, ordering

log = logging.getLogger(__name__)

bp = Blueprint("endpoints", __name__, url_prefix="/v1")
bp.before_request(require_api_token)
bp.before_request(openapi.validate_request)

REPLAY_STATUSES = ("succeeded", "failed", "dead")


def _loaded(schema: Schema, doc: Any) -> dict[str, Any]:
    """A body the console passes in, through the schema the API's requests go through."""
    return problems.load(schema, doc, "body")


def endpoint_json(row: dict[str, Any]) -> dict[str, Any]:
    rotation_ends = row["previous_secret_expires_at"]
    if rotation_ends is not None and rotation_ends <= datetime.now(UTC):
        rotation_ends = None
    return {
        "id": row["id"], "url": row["url"], "description": row["description"],
        "event_types": row["event_types"],
        "filter": {k: row[f"filter_{k}"] for k in endpoints.FILTER_KEYS if row[f"filter_{k}"]},
        "tenant_id": row["tenant_id"],
        "ordered": row["ordered"], "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"], "disabled_at": row["disabled_at"],
        "previous_secret_signs_until": rotation_ends,
        "health": {k: row[k] for k in ("consecutive_failures", "failing_since", "paused_until",
                                       "last_success_at", "last_failure_at")},
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }


def _own_filter(c: dict[str, Any]) -> None:
    """A tenant's endpoint hears its own tenant only: naming tenants is the operator's."""
    if (c.get("filter") or {}).get("tenant") and not auth.principal().operator:
        raise problems.invalid("body", "filter.tenant",
                               "only an operator's endpoint may name tenants")


def _found(row: dict | None, what: str, ident: str) -> dict:
    if row is None:
        abort(404, f"no {what} {ident!r}")
    return row


def create(doc: dict[str, Any]) -> dict[str, Any]:
    """Validate a create body (the console's) and store the endpoint."""
    return _create(_loaded(EndpointCreateSchema(), doc))


def _create(c: dict[str, Any]) -> dict[str, Any]:
    """Store a validated endpoint; the answer holds its secret (the only one that does,
    with rotate)."""
    _own_filter(c)
    secret = signing.new_secret()
    with api.rt().pool.connection() as conn:
        # An endpoint made with a tenant's key is that tenant's: it hears only its events.
        row = endpoints.create(conn, url=c["url"], event_types=c["event_types"],
                               secret=_box().seal(secret),
                               filters=c.get("filter"), description=c.get("description"),
                               ordered=c.get("ordered", False), tenant_id=auth.tenant())
    log.info("endpoint %s created", row["id"], extra={"endpoint_id": row["id"]})
    return {**endpoint_json(row), "secret": secret}


@bp.post("/endpoints")
def create_endpoint() -> tuple[Response, int]:
    """Create an endpoint; the answer holds its secret (the only one that does, with rotate)."""
    return jsonify(_create(api.body())), 201


@bp.get("/endpoints")
def list_endpoints() -> Response:
    """Endpoints, oldest first, keyset-paged with ?after=."""
    limit, after = api.args()["limit"], api.args().get("after")
    with api.rt().pool.connection() as conn:
        rows = endpoints.list_page(conn, limit, after=after, tenant_id=auth.tenant())
    items = [endpoint_json(r) for r in rows]
    return jsonify(items=items, next_after=api.cursor(items, "id", limit))


@bp.get("/endpoints/<endpoint_id>")
def get_endpoint(endpoint_id: str) -> Response:
    """One endpoint, with its health (breaker, pause, disabled and why)."""
    with api.rt().pool.connection() as conn:
        row = _found(endpoints.get(conn, endpoint_id, auth.tenant()), "endpoint", endpoint_id)
    return jsonify(endpoint_json(row))


@bp.patch("/endpoints/<endpoint_id>")
def patch_endpoint(endpoint_id: str) -> Response:
    """Change url, event_types, filter, description, ordered or enabled."""
    return jsonify(endpoint_json(_update(endpoint_id, api.body())))


def update(endpoint_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Validate a PATCH body (the console's) and apply it."""
    return _update(endpoint_id, _loaded(EndpointPatchSchema(), doc))


def _update(endpoint_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """Apply validated changes; the endpoint's row (404 when there is none)."""
    _own_filter(changes)
    with api.rt().pool.connection() as conn, conn.transaction():
        # Another tenant's endpoint is not found, before anything is done to it.
        _found(endpoints.get(conn, endpoint_id, auth.tenant()), "endpoint", endpoint_id)
        if changes.get("ordered") is False:
            # What waited for its turn goes now. First: the order lock before the endpoint's
            # row, the order a delivery's record takes them in (the other way deadlocked).
            ordering.unhold(conn, endpoint_id)
        elif changes.get("enabled") is True:
            # Retention may have taken its unsent heads while it was disabled. Before the
            # row's update too, for the same lock order.
            ordering.release_stranded(conn, endpoint_id)
        row = _found(endpoints.update(conn, endpoint_id, changes, auth.tenant()), "endpoint",
                     endpoint_id)
    return row


@bp.delete("/endpoints/<endpoint_id>")
def delete_endpoint(endpoint_id: str) -> tuple[str, int]:
    """Delete an endpoint and its deliveries."""
    with api.rt().pool.connection() as conn:
        if not endpoints.delete(conn, endpoint_id, auth.tenant()):
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
        row = _found(endpoints.rotate_secret(conn, endpoint_id, _box().seal(secret),
                                             auth.tenant()), "endpoint", endpoint_id)
    log.info("endpoint %s secret rotated", endpoint_id, extra={"endpoint_id": endpoint_id})
    return {**endpoint_json(row), "secret": secret}


def delivery_json(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("seq", "attempts_made")}
    if "attempts_made" in row:
        out["attempt_history"] = row["attempts_made"]
    return out


@bp.get("/endpoints/<endpoint_id>/deliveries")
def list_deliveries(endpoint_id: str) -> Response:
    """The endpoint's deliveries, newest first (?status=, ?limit=, ?after=)."""
    q = api.args()
    with api.rt().pool.connection() as conn:
        _found(endpoints.get(conn, endpoint_id, auth.tenant()), "endpoint", endpoint_id)
        # Newest first: the deliveries after the cursor are those before its seq.
        rows = admin.list_for_endpoint(conn, endpoint_id, q["limit"], q.get("status"),
                                            q.get("after"))
    return jsonify(items=[delivery_json(r) for r in rows],
                   next_after=api.cursor(rows, "seq", q["limit"]))


@bp.get("/deliveries/<delivery_id>")
def get_delivery(delivery_id: str) -> Response:
    """One delivery with its body and every attempt."""
    with api.rt().pool.connection() as conn:
        row = _found(admin.get(conn, delivery_id, auth.tenant()), "delivery", delivery_id)
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
        outcome = admin.retry(conn, delivery_id, auth.tenant())
    if outcome is None:
        abort(404, f"no delivery {delivery_id!r}")
    if outcome == "in_flight":
        abort(409, "the delivery is being sent right now; try again when it has an outcome")
    _kick()


@bp.post("/endpoints/<endpoint_id>/replay")
def replay(endpoint_id: str) -> tuple[Response, int]:
    """Queue again the deliveries created in [since, until) (default: up to now)."""
    return jsonify(_replay_window(endpoint_id, api.body())), 202


def replay_window(endpoint_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Validate a replay body (the console's) and queue the window."""
    return _replay_window(endpoint_id, _loaded(EndpointReplayBodySchema(), doc))


def _replay_window(endpoint_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Queue a validated window: ``queued`` and ``endpoint_enabled``."""
    since = doc["since"]
    until = doc.get("until") or datetime.now(UTC)
    if until <= since:  # a window ending now that starts later
        raise problems.invalid("body", "since", "must be before until (default: now)")
    statuses = doc.get("status") or list(REPLAY_STATUSES)
    with api.rt().pool.connection() as conn:
        row = _found(endpoints.get(conn, endpoint_id, auth.tenant()), "endpoint", endpoint_id)
        queued = admin.replay(conn, endpoint_id, since, until, statuses)
    log.info("replay of endpoint %s queued %d deliveries", endpoint_id, queued,
             extra={"endpoint_id": endpoint_id, "queued": queued})
    if queued:
        _kick()
    return {"queued": queued, "endpoint_enabled": row["enabled"]}
