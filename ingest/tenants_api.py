"""/v1/tenants and /v1/keys: the customers, their senders and keys (operator only).

A key's secret is in one answer only, the one that makes it; it is stored hashed
(shared.db.keys). Revoking is immediate for /v1 (every request looks the key up) and
within ingest.tenant_keys.SNAPSHOT_SECONDS for callbacks.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, url_for

from ingest import api, auth, openapi, problems, tenants_openapi  # noqa: F401  (registers the route docs)
from ingest.console import portal
from shared.db import keys, tenants

log = logging.getLogger(__name__)

bp = Blueprint("tenants", __name__, url_prefix="/v1")
bp.before_request(auth.require_api_token)
bp.before_request(auth.operator_only)
bp.before_request(openapi.validate_request)


def _conflict(exc: Exception) -> Response:
    return problems.response(409, str(exc))


@bp.post("/tenants")
def create_tenant() -> tuple[Response, int] | Response:
    """Create a tenant with the senders it owns."""
    doc = api.body()
    with api.rt().pool.connection() as conn:
        try:
            row = tenants.create(conn, doc["name"], doc["senders"])
        except tenants.SenderTaken as exc:
            return _conflict(exc)
    log.info("tenant %s created", row["id"], extra={"tenant_id": row["id"]})
    return jsonify(row), 201


@bp.get("/tenants")
def list_tenants() -> Response:
    """Tenants, oldest first."""
    limit, after = api.args()["limit"], api.args().get("after")
    with api.rt().pool.connection() as conn:
        rows = tenants.list_page(conn, limit, after)
    return jsonify(items=rows, next_after=api.cursor(rows, "id", limit))


def _tenant(conn: Any, tenant_id: str) -> dict[str, Any]:
    row = tenants.get(conn, tenant_id)
    if row is None:
        abort(404, f"no tenant {tenant_id!r}")
    return row


@bp.get("/tenants/<tenant_id>")
def get_tenant(tenant_id: str) -> Response:
    """One tenant and its senders."""
    with api.rt().pool.connection() as conn:
        return jsonify(_tenant(conn, tenant_id))


@bp.patch("/tenants/<tenant_id>")
def patch_tenant(tenant_id: str) -> Response:
    """A new name and/or the whole list of senders."""
    doc = api.body()
    with api.rt().pool.connection() as conn:
        try:
            row = tenants.update(conn, tenant_id, doc.get("name"), doc.get("senders"))
        except tenants.SenderTaken as exc:
            return _conflict(exc)
    if row is None:
        abort(404, f"no tenant {tenant_id!r}")
    return jsonify(row)


@bp.delete("/tenants/<tenant_id>")
def delete_tenant(tenant_id: str) -> tuple[str, int] | Response:
    """Delete a tenant with its keys and senders."""
    with api.rt().pool.connection() as conn:
        try:
            found = tenants.delete(conn, tenant_id)
        except tenants.TenantInUse as exc:
            return _conflict(exc)
    if not found:
        abort(404, f"no tenant {tenant_id!r}")
    _callback_keys_changed()
    return "", 204


@bp.post("/tenants/<tenant_id>/keys")
def create_tenant_key(tenant_id: str) -> tuple[Response, int]:
    """A new api or callback key for the tenant; its secret is in this answer only."""
    doc = api.body()
    with api.rt().pool.connection() as conn:
        _tenant(conn, tenant_id)
        row = keys.create(conn, tenant_id, doc["name"], doc["kind"])
    _callback_keys_changed()
    return jsonify(row), 201


@bp.get("/tenants/<tenant_id>/keys")
def list_tenant_keys(tenant_id: str) -> Response:
    """The tenant's keys (revoked ones too), without secrets."""
    with api.rt().pool.connection() as conn:
        _tenant(conn, tenant_id)
        return jsonify(items=keys.list_for(conn, tenant_id))


@bp.delete("/tenants/<tenant_id>/keys/<key_id>")
def revoke_tenant_key(tenant_id: str, key_id: str) -> tuple[str, int]:
    """Revoke at once."""
    return _revoke(tenant_id, key_id)


@bp.post("/tenants/<tenant_id>/portal-links")
def create_portal_link(tenant_id: str) -> tuple[Response, int]:
    """A signed link that opens the tenant's console without a key, until it expires."""
    settings = current_app.config["HOOKLINE_SETTINGS"]
    if not settings.console_enabled:
        abort(404, "the console is off (HOOKLINE_CONSOLE=0)")
    with api.rt().pool.connection() as conn:
        _tenant(conn, tenant_id)
    token, expires_at = portal.link_token(settings, tenant_id, api.body()["expires_in"])
    log.info("portal link for tenant %s", tenant_id, extra={"tenant_id": tenant_id})
    return jsonify(url=url_for("console.portal", token=token, _external=True),
                   expires_at=expires_at), 201


@bp.post("/keys")
def create_operator_key() -> tuple[Response, int]:
    """A new operator key; its secret is in this answer only."""
    with api.rt().pool.connection() as conn:
        row = keys.create(conn, None, api.body()["name"], "operator")
    return jsonify(row), 201


@bp.get("/keys")
def list_operator_keys() -> Response:
    """The operator keys (revoked ones too), without secrets."""
    with api.rt().pool.connection() as conn:
        return jsonify(items=keys.list_for(conn, None))


@bp.delete("/keys/<key_id>")
def revoke_operator_key(key_id: str) -> tuple[str, int]:
    """Revoke at once (HOOKLINE_API_TOKEN itself goes by unsetting it)."""
    return _revoke(None, key_id)


def _revoke(tenant_id: str | None, key_id: str) -> tuple[str, int]:
    with api.rt().pool.connection() as conn:
        if not keys.revoke(conn, tenant_id, key_id):
            abort(404, f"no key {key_id!r}")
    log.info("key %s revoked", key_id, extra={"key_id": key_id, "tenant_id": tenant_id})
    _callback_keys_changed()
    return "", 204


def _callback_keys_changed() -> None:
    # This process sees the change at once; the others within their snapshot's age.
    current_app.extensions["hookline.callback_keys"].forget()
