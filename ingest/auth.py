"""Token checks for callbacks and the /v1 API: constant-time comparison, and the
API blueprints' shared bearer-token guard."""

from __future__ import annotations

import hmac

from flask import Request, Response, current_app, request

from ingest import problems


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


def require_api_token() -> Response | None:
    """A /v1 blueprint's before_request: 401 unless the bearer token matches."""
    expected = current_app.config["HOOKLINE_SETTINGS"].api_token
    presented = presented_token(request, allow_query=False)
    # No configured token means the API is closed, not open.
    if expected is None or not token_ok(expected, presented):
        return problems.response(401, "missing or wrong API token",
                                 headers={"WWW-Authenticate": "Bearer"})
    return None
