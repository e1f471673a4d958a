"""Portal links: a signed, expiring URL that opens one tenant's console without a key
(what Svix and Convoy sell as their customer portal).

The link carries the tenant and its expiry, signed (itsdangerous) with the console's
session key, so it cannot be forged or stretched; the session it opens ends when the
link expires (ingest.console.auth), and a deleted tenant's link opens nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from flask import abort, redirect, url_for
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.wrappers import Response

from ingest.console.auth import PORTAL_USER, session_keys, start_session
from ingest.console.blueprint import bp, rt, settings
from shared import config
from shared.db import tenants

DEFAULT_SECONDS = 3600
MAX_SECONDS = 7 * 24 * 3600
_SALT = "hookline portal link v1"


def _signer(s: config.Settings) -> URLSafeSerializer:
    # itsdangerous signs with the last key and accepts any: a link outlives a rotation
    # of the ring, as a console cookie does.
    return URLSafeSerializer(list(reversed(session_keys(s))), salt=_SALT)


def link_token(s: config.Settings, tenant_id: str, seconds: int) -> tuple[str, datetime]:
    """The token of a link to ``tenant_id``'s console valid for ``seconds``, and when it ends."""
    expires = int(time.time()) + seconds
    return _signer(s).dumps({"t": tenant_id, "e": expires}), datetime.fromtimestamp(expires, UTC)


@bp.get("/portal/<token>")
def portal(token: str) -> Response:
    try:
        doc = _signer(settings()).loads(token)
        tenant_id, expires = str(doc["t"]), int(doc["e"])
    except (BadSignature, KeyError, TypeError, ValueError):
        abort(403, "this portal link is not valid")
    if time.time() >= expires:
        abort(403, "this portal link has expired: ask for a new one")
    with rt().pool.connection() as conn:
        if tenants.get(conn, tenant_id) is None:
            abort(403, "this portal link is not valid")
    start_session(PORTAL_USER + tenant_id, str(expires))
    return redirect(url_for("console.endpoint_list"))
