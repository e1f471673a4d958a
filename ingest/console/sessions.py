"""Console sessions kept in Redis: the cookie holds only a random session id (and the
CSRF token), so signing out ends the session everywhere, a copied cookie included.

A session is a hash under ``hookline:console:session:<id>`` with the user, the sign-in
time and a fingerprint of the credential it was opened with; it expires SESSION_HOURS
after sign-in however busy it is.
"""

from __future__ import annotations

import logging
import secrets

import redis

log = logging.getLogger(__name__)

KEY = "hookline:console:session:"


def open_session(client: redis.Redis, user: str, since: int, cred: str, hours: int) -> str:
    sid = secrets.token_urlsafe(32)
    pipe = client.pipeline()
    pipe.hset(KEY + sid, mapping={"user": user, "since": since, "cred": cred})
    pipe.expire(KEY + sid, hours * 3600)
    pipe.execute()
    return sid


def lookup(client: redis.Redis, sid: object) -> dict[str, str] | None:
    """The session's fields; None when it ended, expired, or Redis cannot say (the
    console then asks to sign in again rather than trust a cookie alone)."""
    if not isinstance(sid, str) or not sid:
        return None
    try:
        raw = client.hgetall(KEY + sid)
    except redis.RedisError as exc:
        log.warning("console sessions unavailable: %s", exc, extra={"error": repr(exc)})
        return None
    return {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes)
            else v for k, v in raw.items()} or None


def renew_cred(client: redis.Redis, sid: str, cred: str) -> None:
    """The session's credential fingerprint, made again under the newest key. Best
    effort: left as it was, the session still holds until its key leaves the ring."""
    try:
        client.hset(KEY + sid, "cred", cred)
    except redis.RedisError as exc:
        log.warning("console session not renewed: %s", exc, extra={"error": repr(exc)})


def end(client: redis.Redis, sid: object) -> None:
    if isinstance(sid, str) and sid:
        client.delete(KEY + sid)
