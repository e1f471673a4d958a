"""POST /callbacks/<source>[/<event>]: authenticate, bound the size, queue, answer 202.

The request path does not parse JSON: a body that is not even JSON is still
queued and becomes a dead letter a person can look at.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable

import orjson
import redis
from flask import Blueprint, Response, current_app, jsonify, request

from ingest import signatures
from ingest.auth import presented_token, token_ok
from shared import queue
from shared.config import Settings, source_env_suffix
from shared.envelope import KEPT_HEADERS, Envelope, new_id
from shared.providers import SOURCES

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
bp = Blueprint("callbacks", __name__)
# Kept headers by their WSGI environ keys: read straight from the environ, a
# tenth of what asking request.headers for each costs on the hot path.
_KEPT_ENVIRON = tuple(
    (h, "CONTENT_TYPE" if h == "content-type" else "HTTP_" + h.upper().replace("-", "_"))
    for h in KEPT_HEADERS
)


def _error(status: int, message: str, **headers: str) -> Response:
    resp = jsonify(error=message)
    resp.status_code = status
    resp.headers.update(headers)
    return resp


def _allowed(settings: Settings, source: str, addr: str | None) -> bool:
    networks = settings.allowed_networks.get(source_env_suffix(source))
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _read_body(limit: int) -> bytes | None:
    """The body, or None when it is over the limit. Never reads more than limit + 1."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    body = request.stream.read(limit + 1)
    return None if len(body) > limit else body


@bp.post("/callbacks/<source>")
@bp.post("/callbacks/<source>/<event>")
def receive(source: str, event: str | None = None) -> Response:
    started = time.perf_counter()
    resp = _receive(source, event)
    current_app.extensions["hookline.observe"](source, resp.status_code, started)
    return resp


def _receive(source: str, event: str | None) -> Response:
    settings: Settings = current_app.config["HOOKLINE_SETTINGS"]
    if source not in SOURCES:
        return _error(404, f"unknown source {source!r}; known: {', '.join(sorted(SOURCES))}")
    expected = settings.callback_token_for(source)
    if not token_ok(expected, presented_token(request, allow_query=True)):
        return _error(401, "missing or wrong callback token", **{"WWW-Authenticate": "Bearer"})
    if not _allowed(settings, source, request.remote_addr):
        return _error(403, f"address {request.remote_addr} is not allowed for {source}")
    body = _read_body(settings.max_body_bytes)
    if body is None:
        return _error(413, f"body larger than {settings.max_body_bytes} bytes")
    if not body:
        return _error(400, "empty body")
    spec = settings.signature_for(source)
    if spec is not None and not signatures.verify(spec, request.headers, body):
        return _error(401, f"missing or wrong {spec.header} signature")
    environ = request.environ
    envelope = Envelope(
        id=new_id(), source=source, event=event, received_at=time.time(), body=body,
        headers={h: environ[k] for h, k in _KEPT_ENVIRON if k in environ},
        remote_addr=request.remote_addr,
    )
    return _enqueue(envelope)


def _enqueue(envelope: Envelope) -> Response:
    client: redis.Redis = current_app.extensions["hookline.redis"]()
    try:
        claimed = queue.push(client, envelope.encode())
    except redis.RedisError as exc:
        current_app.extensions["hookline.enqueue_failed"]()
        log.error("enqueue failed: %s", exc, extra={"source": envelope.source})
        return _error(503, "queue unavailable, retry later", **{"Retry-After": RETRY_AFTER_SECONDS})
    if claimed:
        _kick(client, current_app.extensions["hookline.send_drain"])
    log.debug("queued %s", envelope.id, extra={"ingest_id": envelope.id,
                                                 "source": envelope.source})
    # What jsonify() answers, made directly: the provider's generic path is a
    # measurable share of an ingest request (docs/benchmarks.md).
    return Response(orjson.dumps({"id": envelope.id}), status=202,
                    mimetype="application/json")


def _kick(client: redis.Redis, send: Callable[[], object]) -> None:
    try:
        send()
    except Exception as exc:
        # The callback is safely queued; the scheduler's tick will start a drain.
        # If Redis has just gone away the flag expires by itself: clearing it must
        # not turn the 202 this callback has earned into a 500.
        with contextlib.suppress(redis.RedisError):
            queue.clear_kick(client)
        log.warning("could not kick a drain: %s", exc)
