"""Token checks for callbacks and the /v1 API: constant-time comparison, the API
blueprints' shared bearer guard (the token or a key), and whose data a request may see
(docs/tenants.md): every view passes :func:`tenant` to the data layer as its scope."""

from __future__ import annotations

import hmac

from flask import Request, Response, abort, current_app, g, request

from ingest import problems
from shared.db import keys


def presented_token(request: Request, allow_query: bool) -> str | None:
    # Straight from the WSGI environ: the same value as request.headers gives,
    # without building the headers view on the callback hot path.
    header = request.environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if allow_query:
        return request.args.get("token")
    return None


def token_ok(expected: str | None, presented: str | None) -> bool:
    """True when no token is required, or the presented one matches exactly."""
    if expected is None:
        return True
    if presented is None:
        return False
    # compare_digest on bytes: constant time in the length of the secret, and
    # safe for non-ASCII input.
    return hmac.compare_digest(expected.encode(), presented.encode())


# The /v1 views a tenant's key may reach: each passes tenant() to the data layer. Any
# other (the operator's, or one added later and not yet scoped) is 403 to a tenant.
TENANT_VIEWS = frozenset({
    "api.get_message", "consent_api.get_subscription", "consent_api.list_subscriptions",
    "consent_api.list_inbound", "consent_api.list_events", "event_types.list_event_types",
    "endpoints.create_endpoint", "endpoints.list_endpoints", "endpoints.get_endpoint",
    "endpoints.patch_endpoint", "endpoints.delete_endpoint", "endpoints.list_deliveries",
    "endpoints.replay", "endpoints.rotate_secret", "endpoints.get_delivery",
    "endpoints.retry_delivery",
})


def require_api_token() -> Response | None:
    """A /v1 blueprint's before_request: 401 unless the bearer is HOOKLINE_API_TOKEN, an
    operator key or a tenant's api key; who it is goes to ``g.principal``."""
    expected = current_app.config["HOOKLINE_SETTINGS"].api_token
    presented = presented_token(request, allow_query=False)
    who = None
    # No configured token (nor key) means the API is closed, not open.
    if expected is not None and token_ok(expected, presented):
        who = keys.OPERATOR_TOKEN
    elif presented is not None and presented.startswith(keys.PREFIX):
        # Looked up on every request: a revoked key fails on the very next one.
        with current_app.extensions["hookline.runtime"]().pool.connection() as conn:
            who = keys.authenticate(conn, presented)
    if who is None:
        return problems.response(401, "missing or wrong API token",
                                 headers={"WWW-Authenticate": "Bearer"})
    g.principal = who
    if not who.operator and request.endpoint not in TENANT_VIEWS:
        return problems.response(403, "only an operator key may do this")
    return None


def principal() -> keys.Principal:
    """Who the request acts for (set by require_api_token and the console's sign-in).
    A request without one fails (500) rather than falling back to the operator's view."""
    return g.principal


def tenant() -> str | None:
    """The tenant whose data the request may see and change; None: the operator (all)."""
    return principal().tenant_id


def operator_only() -> None:
    """403 for a tenant's key: tenants, operator keys and dead letters are the operator's."""
    if not principal().operator:
        abort(403, "only an operator key may do this")
