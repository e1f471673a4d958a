"""Endpoints: health, deliveries and attempts; create, edit, disable, enable, rotate the
secret, retry a delivery, replay a window. Each action is the /v1 handler's own
function (ingest.endpoints_api), so the same validation and rules apply."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from flask import flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ingest import endpoints_api
from ingest.console.blueprint import bp, rt, scope, settings
from ingest.console.forms import PAGE, attempt, integer, one, text, words
from shared.db import endpoints
from shared.db.outbox import admin
from shared.model import EVENT_TYPES

HEALTH_WINDOW = 100  # the success rate is over this many latest deliveries


def breaker(ep: dict[str, Any]) -> str:
    """The circuit breaker as the sender sees it (shared.db.outbox.claims)."""
    if not ep["enabled"]:
        return "disabled"
    if ep["paused_until"] and ep["paused_until"] > datetime.now(UTC):
        return "open"
    if ep["consecutive_failures"] >= settings().breaker_failures:
        return "half-open"
    return "failing" if ep["consecutive_failures"] else "closed"


def _with_health(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with rt().pool.connection() as conn:
        recent = admin.recent_outcomes(conn, [r["id"] for r in rows], HEALTH_WINDOW)
    for r in rows:
        h = recent.get(r["id"], {})
        done = (h.get("succeeded") or 0) + (h.get("failed") or 0)
        r["success_rate"] = None if not done else round(100 * h["succeeded"] / done)
        r["last_error"] = h.get("last_error")
        r["breaker"] = breaker(r)
    return rows


@bp.get("/endpoints")
def endpoint_list() -> str:
    with rt().pool.connection() as conn:
        rows = endpoints.list_page(conn, PAGE, after=text("after"), tenant_id=scope())
    nxt = rows[-1]["id"] if len(rows) == PAGE else None
    return render_template("console/endpoints.html", rows=_with_health(rows), next_after=nxt,
                           window=HEALTH_WINDOW)


def _form_doc() -> dict[str, Any]:
    """An endpoint form as the /v1 JSON body."""
    return {
        "url": text("url") or "",
        "event_types": request.form.getlist("event_types"),
        "filter": {k: words(f"filter_{k}") for k in endpoints.FILTER_KEYS
                   if words(f"filter_{k}")},
        "description": text("description"),
        "ordered": request.form.get("ordered") == "on",
    }


def _form(ep: dict[str, Any] | None = None, status: int = 200) -> tuple[str, int]:
    return render_template("console/endpoint_form.html", ep=ep, event_types=sorted(EVENT_TYPES),
                           form=request.form if request.method == "POST" else None), status


@bp.get("/endpoints/new")
def endpoint_new() -> tuple[str, int]:
    return _form()


def _secret_page(doc: dict[str, Any], what: str) -> str:
    # Rendered straight into this answer (never a redirect: the session cookie is
    # signed, not encrypted, and must not carry it); no-store keeps it out of caches.
    return render_template("console/endpoint_secret.html", ep=doc, secret=doc["secret"],
                           what=what)


@bp.post("/endpoints")
def endpoint_create() -> str | tuple[str, int]:
    doc = attempt(lambda: endpoints_api.create(_form_doc()))
    if doc is None:
        return _form(status=400)
    return _secret_page(doc, "created")


def _endpoint(endpoint_id: str) -> dict[str, Any]:
    return one(lambda conn: endpoints.get(conn, endpoint_id, scope()), "endpoint", endpoint_id)


@bp.get("/endpoints/<endpoint_id>")
def endpoint(endpoint_id: str) -> str:
    ep = _with_health([_endpoint(endpoint_id)])[0]
    status = request.args.get("status") or None
    if status not in (None, *admin.STATUSES):
        status = None
    with rt().pool.connection() as conn:
        rows = admin.list_for_endpoint(conn, endpoint_id, PAGE, status, integer("before"))
    nxt = rows[-1]["seq"] if len(rows) == PAGE else None
    return render_template("console/endpoint.html", ep=ep, rows=rows, next_before=nxt,
                           status=status, statuses=admin.STATUSES,
                           replay_statuses=endpoints_api.REPLAY_STATUSES)


@bp.get("/endpoints/<endpoint_id>/edit")
def endpoint_edit(endpoint_id: str) -> tuple[str, int]:
    return _form(_endpoint(endpoint_id))


def _back(endpoint_id: str) -> Response:
    return redirect(url_for("console.endpoint", endpoint_id=endpoint_id))


@bp.post("/endpoints/<endpoint_id>/edit")
def endpoint_update(endpoint_id: str) -> Response | tuple[str, int]:
    doc = _form_doc()
    doc["filter"] = doc["filter"] or None  # an emptied filter matches everything again
    if attempt(lambda: endpoints_api.update(endpoint_id, doc)) is None:
        return _form(_endpoint(endpoint_id), status=400)
    flash("endpoint saved", "ok")
    return _back(endpoint_id)


@bp.post("/endpoints/<endpoint_id>/<any(enable, disable):action>")
def endpoint_toggle(endpoint_id: str, action: str) -> Response:
    if attempt(lambda: endpoints_api.update(endpoint_id, {"enabled": action == "enable"})):
        flash(f"endpoint {action}d", "ok")
    return _back(endpoint_id)


@bp.post("/endpoints/<endpoint_id>/rotate")
def endpoint_rotate(endpoint_id: str) -> str | Response:
    doc = attempt(lambda: endpoints_api.rotate(endpoint_id))
    return _back(endpoint_id) if doc is None else _secret_page(doc, "rotated")


@bp.post("/endpoints/<endpoint_id>/replay")
def endpoint_replay(endpoint_id: str) -> Response:
    doc = {"since": text("since"), "until": text("until"),
           "status": request.form.getlist("status") or None}
    out = attempt(lambda: endpoints_api.replay_window(endpoint_id, doc))
    if out is not None:
        flash(f"queued {out['queued']} deliveries again" + (
            "" if out["endpoint_enabled"] else " (the endpoint is disabled: enable it to send)"),
            "ok")
    return _back(endpoint_id)


def request_headers(row: dict[str, Any], at: datetime) -> dict[str, str]:
    """What an attempt sent (the sender's headers; the signature is not kept)."""
    return {"Content-Type": "application/json", "webhook-id": row["id"],
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": "v1,<signed with the endpoint's secret; not stored>"}


@bp.get("/deliveries/<delivery_id>")
def delivery(delivery_id: str) -> str:
    row = one(lambda conn: admin.get(conn, delivery_id, scope()), "delivery", delivery_id)
    body = orjson.dumps(row["payload"], option=orjson.OPT_INDENT_2).decode()
    for a in row["attempts_made"]:
        a["headers"] = request_headers(row, a["attempted_at"])
    return render_template("console/delivery.html", d=row, body=body)


@bp.post("/deliveries/<delivery_id>/retry")
def delivery_retry(delivery_id: str) -> Response:
    if attempt(lambda: endpoints_api.retry(delivery_id) or True):
        flash("delivery queued to send again now", "ok")
    return redirect(url_for("console.delivery", delivery_id=delivery_id))
