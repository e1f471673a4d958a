"""Console sign-in, its session cookie and CSRF tokens.

Sign in with HOOKLINE_API_TOKEN (no user name) or a HOOKLINE_CONSOLE_USERS name and
password: the operator's console. Or with a key (no user name): an operator key, or a
tenant's api key, which opens a console holding that tenant's data only; or through a
tenant's portal link (ingest.console.portal). A key's session checks the key on every
request, so revoking it ends the session at once. The session lives in Redis
(ingest.console.sessions): Flask's signed cookie, signed with a key derived from
HOOKLINE_CONSOLE_SESSION_KEY, else from HOOKLINE_SECRET_KEYS, else from HOOKLINE_API_TOKEN
(never a constant; see session_keys), holds only its id and the CSRF token, never an
endpoint secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from datetime import timedelta
from functools import cache

import redis
from flask import (
    Flask,
    Request,
    Response,
    abort,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from werkzeug.security import check_password_hash, generate_password_hash

from ingest.console import sessions
from ingest.console.blueprint import PREFIX, bp, rt, settings
from shared import config
from shared.db import keys

log = logging.getLogger(__name__)

SESSION_HOURS = 12
MAX_FAILURES = 10          # failed sign-ins per address ...
FAILURE_WINDOW = 300       # ... within this many seconds, then 429 until it passes
_FAILURES_KEY = "hookline:console:login-failures:"
_OPEN = {"console.login", "console.static", "console.portal"}
KEY_USER = "key:"        # + key id: signed in with an operator key or a tenant's api key
PORTAL_USER = "portal:"  # + tenant id: opened through a portal link
# What a tenant's console may open; anything else (dead letters, the overview's panel,
# a page added later) is the operator's until it is listed here, scoped.
TENANT_PAGES = _OPEN | {
    "console.logout", "console.overview", "console.message", "console.consent",
    "console.suppression_csv", "console.endpoint_list", "console.endpoint_new",
    "console.endpoint_create", "console.endpoint", "console.endpoint_edit",
    "console.endpoint_update", "console.endpoint_toggle", "console.endpoint_rotate",
    "console.endpoint_replay", "console.delivery", "console.delivery_retry"}
API_TOKEN_USER = config.CONSOLE_TOKEN_USER


def session_keys(s: config.Settings) -> list[bytes]:
    """The session-signing keys, the signing one first: HOOKLINE_CONSOLE_SESSION_KEY's
    alone when set; else one derived from each key of HOOKLINE_SECRET_KEYS (HMAC of a
    fixed label), so rotating that ring signs nobody out: a cookie of the older key
    still verifies and the next answer signs it with the newest; else one from
    HOOKLINE_API_TOKEN. With none of them nobody can sign in, and a random key serves."""
    if s.console_session_key:
        return [_derived(s.console_session_key)]
    bases = list(s.secret_keys) or ([s.api_token] if s.api_token else [])
    return [_derived(b) for b in bases] or [secrets.token_bytes(32)]


def _derived(base: str) -> bytes:
    return hmac.new(base.encode(), b"hookline console session v1", hashlib.sha256).digest()


def session_key(s: config.Settings) -> bytes:
    return session_keys(s)[0]


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Sessions for /console only (callbacks and /v1 open none: no cookie work on
    the hot path). The cookie is always Secure unless HOOKLINE_CONSOLE_SECURE_COOKIE=false
    (`hookline dev`, on plain http): then only when the request came over HTTPS, as seen
    through HOOKLINE_TRUSTED_PROXY_HOPS' X-Forwarded-Proto."""

    def open_session(self, app: Flask, request: Request):  # type: ignore[override]
        if not request.path.startswith(PREFIX):
            return None
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        return settings().console_secure_cookie or request.is_secure


def configure(app: Flask, s: config.Settings) -> None:
    keys = session_keys(s)
    app.secret_key = keys[0]
    app.config["SECRET_KEY_FALLBACKS"] = keys[1:]  # verified, never signed with
    app.session_interface = ConsoleSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME="hookline_console", SESSION_COOKIE_PATH=PREFIX,
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
    )
    app.jinja_env.globals["csrf_token"] = csrf_token


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _csrf_ok() -> bool:
    expected = session.get("csrf")
    presented = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def _credential(s: config.Settings, user: str) -> str | None:
    """What ``user`` signs in with now (the token, or the password's hash)."""
    if user == API_TOKEN_USER:
        return s.api_token
    return s.console_users.get(user)


def _fingerprints(s: config.Settings, user: str) -> list[str]:
    # Kept with the session instead of the credential itself; one per session key, the
    # current one first, so a rotated ring keeps the session (signed_in).
    credential = _credential(s, user)
    if credential is None:
        return []
    return [hmac.new(key, credential.encode(), hashlib.sha256).hexdigest()
            for key in session_keys(s)]


def _fingerprint(s: config.Settings, user: str) -> str | None:
    return next(iter(_fingerprints(s, user)), None)


def signed_in() -> keys.Principal | None:
    """Who is signed in. The cookie names a session Redis still holds (sign-out deletes
    it), opened with the credential its user is still configured with, less than
    SESSION_HOURS ago: each request re-signs the cookie, so its own age is an idle time,
    and a removed user, a changed password or a rotated token must end the sessions
    opened with them. A key's session holds while the key is live (checked each
    request); a portal's until its link's end (kept as its credential) or its tenant's deletion."""
    held = sessions.lookup(rt().redis, session.get("sid"))
    if held is None or held.get("user") != session.get("user"):
        return None
    user, since = held["user"], int(held.get("since") or 0)
    if time.time() - since > SESSION_HOURS * 3600:
        return None
    if user.startswith(KEY_USER):
        with rt().pool.connection() as conn:
            return keys.live(conn, user.removeprefix(KEY_USER))
    if user.startswith(PORTAL_USER):
        until = held.get("cred") or ""
        if not until.isdigit() or time.time() >= int(until):
            return None
        tenant_id = user.removeprefix(PORTAL_USER)
        # A deleted tenant's session ends with it, as its keys' sessions do.
        with rt().pool.connection() as conn:
            if conn.execute("SELECT 1 FROM tenants WHERE id = %s", (tenant_id,)).fetchone() \
                    is None:
                return None
        return keys.Principal(None, tenant_id, "portal")
    presented = held.get("cred")
    if not isinstance(presented, str):
        return None
    expected = _fingerprints(settings(), user)
    if not any(hmac.compare_digest(e.encode(), presented.encode()) for e in expected):
        return None
    if presented != expected[0]:
        # Made under an older ring key: renewed, so the session outlives that key.
        sessions.renew_cred(rt().redis, session.get("sid"), expected[0])
    return keys.OPERATOR_TOKEN


def start_session(user: str, cred: str) -> None:
    """A new session (and CSRF token) for ``user``, replacing this browser's."""
    sessions.end(rt().redis, session.get("sid"))
    session.clear()
    session.permanent = True
    session["user"] = user  # shown on pages; the session in Redis decides
    session["sid"] = sessions.open_session(rt().redis, user, int(time.time()), cred,
                                           SESSION_HOURS)


@bp.before_request
def _guard() -> Response | None:
    if request.method not in ("GET", "HEAD", "OPTIONS") and not _csrf_ok():
        abort(403, "missing or wrong CSRF token: reload the page and try again")
    who = signed_in()
    if who is None and "user" in session:
        session.pop("user")  # stale: no page may show it as signed in
    if who is not None:
        g.principal = who  # ingest.auth.tenant() scopes every read and action by it
        if not who.operator and request.endpoint not in TENANT_PAGES:
            abort(403, "this page is the operator's")
    if request.endpoint in _OPEN or who is not None:
        return None
    if request.headers.get("HX-Request"):
        return Response("sign in again", status=401)  # a partial: no redirect to swap in
    return redirect(url_for("console.login", next=request.full_path.rstrip("?")))


@cache
def _dummy_hash() -> str:
    # Checked for unknown users, so a wrong name costs the same time as a wrong password.
    return generate_password_hash(secrets.token_hex(16))


def check_key(password: str) -> str | None:
    """The session user of a live operator or tenant api key, or None."""
    if not password.startswith(keys.PREFIX):
        return None
    with rt().pool.connection() as conn:
        who = keys.authenticate(conn, password)
    return None if who is None else KEY_USER + str(who.key_id)


def check_login(s: config.Settings, username: str, password: str) -> str | None:
    """The signed-in name, or None."""
    if username:
        hashed = s.console_users.get(username)
        ok = check_password_hash(hashed or _dummy_hash(), password)
        return username if hashed is not None and ok else None
    if s.api_token is not None and hmac.compare_digest(s.api_token.encode(), password.encode()):
        return API_TOKEN_USER
    return None


def _failures(add: int) -> int:
    """Add ``add`` to the sign-ins from this address counted in the window (Redis, shared
    by every process) and return the count; 0 when Redis cannot say, so an outage does
    not lock operators out. Every attempt is counted before its password is checked
    (a success takes its count back): reading the count first let a burst of
    concurrent guesses all pass before any of them was counted."""
    key = _FAILURES_KEY + (request.remote_addr or "?")
    try:
        pipe = rt().redis.pipeline()
        pipe.set(key, 0, ex=FAILURE_WINDOW, nx=True)  # the window starts at the first attempt
        pipe.incrby(key, add)
        return int(pipe.execute()[1])
    except redis.RedisError as exc:
        log.warning("console sign-in limit unavailable: %s", exc, extra={"error": repr(exc)})
        return 0


def _safe_next(target: str | None) -> str:
    # Only a path inside the console: never an open redirect.
    if target and target.startswith(PREFIX + "/") and not target.startswith("//"):
        return target
    return url_for("console.overview")


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    s = settings()
    can_sign_in = bool(s.api_token or s.console_users)
    if request.method == "GET":
        return render_template("console/login.html", can_sign_in=can_sign_in,
                               next=request.args.get("next", ""))
    if _failures(1) > MAX_FAILURES:
        return render_template("console/login.html", can_sign_in=can_sign_in,
                               error="too many failed sign-ins; wait a few minutes"), 429
    username, password = request.form.get("username", "").strip(), \
        request.form.get("password", "")
    user = check_login(s, username, password) or (None if username else check_key(password))
    if user is None:
        log.warning("console sign-in refused", extra={"remote_addr": request.remote_addr})
        return render_template("console/login.html", can_sign_in=can_sign_in,
                               error="wrong name, password or token",
                               next=request.form.get("next", "")), 401
    _failures(-1)
    start_session(user, "" if user.startswith(KEY_USER) else _fingerprint(s, user) or "")
    log.info("console sign-in by %s", user, extra={"user": user})
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> Response:
    # Ended on the server: a copy of the cookie taken before is worth nothing now.
    sessions.end(rt().redis, session.get("sid"))
    session.clear()
    return redirect(url_for("console.login"))
