"""POST or GET /callbacks/<source>[/<event>]: authenticate, bound the size, queue, answer 202.

The request path does not parse JSON: a body that is not even JSON is still
queued and becomes a dead letter a person can look at.

A GET callback (Kaleyra's SMS delivery report push, "GET or POST") carries its
fields in the query string: the query string, without the callback token, is
kept as the body, marked as a form (FORM_FROM_QUERY), and the worker reads it as
a flat field set, as it does a POST with an ``application/x-www-form-urlencoded``
body (whose ``token`` field, if any, is dropped too). The token is never stored.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

import orjson
import redis
from flask import Flask, Request, Response, jsonify, request

from ingest import signatures
from ingest.auth import presented_token, token_ok
from ingest.tenant_keys import CallbackKeys, KeysUnavailable
from shared import inbox, tracing
from shared.config import Settings, SignatureSpec, source_env_suffix
from shared.envelope import KEPT_HEADERS, Envelope, new_id
from shared.providers import BODY_LIMITS, SOURCES

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
FORM = "application/x-www-form-urlencoded"
# The content type kept for a GET callback: a form that came in the query string.
FORM_FROM_QUERY = f"{FORM}; hookline-from=query"
TOKEN_FIELD = b"token"
# What a URL's event may be (e.g. "sms:message:status"). An unknown but plausible
# name is queued and becomes a dead letter someone can read; anything else (a NUL,
# which PostgreSQL cannot store even in a dead letter, a 10 kB path) is refused.
_EVENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")
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


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """What a source's callbacks must satisfy, resolved from the settings once."""

    token: str | None
    networks: tuple
    signature: SignatureSpec | None
    max_body: int
    verify_key: str | None = None


def policies(settings: Settings) -> dict[str, SourcePolicy]:
    return {
        source: SourcePolicy(
            token=settings.callback_token_for(source),
            networks=tuple(settings.allowed_networks.get(source_env_suffix(source)) or ()),
            signature=settings.signature_for(source),
            max_body=body_limit(settings, source),
            verify_key=settings.verify_keys.get(source_env_suffix(source)),
        )
        for source in SOURCES
    }


def open_sources(settings: Settings) -> list[str]:
    """The sources anyone who reaches ingest could post to: no token, no signature and
    no address allow-list. A forged opt-out or receipt there fans out to customers."""
    return sorted(source for source, p in policies(settings).items()
                  if p.token is None and p.signature is None and not p.networks)


def without_token(fields: bytes) -> bytes:
    """A urlencoded field set without its ``token`` fields, the rest byte for byte."""
    if TOKEN_FIELD not in fields and b"%" not in fields:  # "t%6Fken" is a token too
        return fields
    kept = [f for f in fields.split(b"&")
            if unquote_to_bytes(f.partition(b"=")[0].replace(b"+", b" ")) != TOKEN_FIELD]
    return b"&".join(kept)


# A URL-verification request is small; only such a body is looked into at ingest.
HANDSHAKE_BYTES = 4096
VERIFY_KEY_FIELDS = ("validationKey", "validation_key", "verifyToken", "verify_token",
                     "verificationKey", "key")


def handshake(verify_key: str | None, body: bytes) -> Response | None:
    """A provider verifying its webhook URL: a small JSON object with a ``challenge``
    and the validation key. 200 ``{"challenge": ...}`` (nothing is queued) when the key
    matches, 403 when it does not; None for every other body, which is never parsed."""
    if verify_key is None or len(body) > HANDSHAKE_BYTES or b"challenge" not in body:
        return None
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("challenge"), str | int):
        return None
    key = next((doc[f] for f in VERIFY_KEY_FIELDS if isinstance(doc.get(f), str)), None)
    if key is None:
        return None
    if not token_ok(verify_key, key):
        return _error(403, "wrong validation key")
    return Response(orjson.dumps({"challenge": doc["challenge"]}), status=200,
                    content_type="application/json")


def body_limit(settings: Settings, source: str) -> int:
    """HOOKLINE_MAX_BODY_BYTES_<SOURCE>, else HOOKLINE_MAX_BODY_BYTES if set, else the
    larger of its default and what the provider documents sending (a Dotdigital batch)."""
    own = settings.max_body_bytes_by_source.get(source_env_suffix(source))
    if own or settings.max_body_bytes_set:
        return own or settings.max_body_bytes
    return max(settings.max_body_bytes, BODY_LIMITS.get(source, 0))


def _allowed(networks: tuple, addr: str | None) -> bool:
    if not networks:
        return True
    try:
        ip = ipaddress.ip_address(addr or "")
    except ValueError:
        return False
    return any(ip in net for net in networks)


# The body ended before its declared length: the client went away mid-request.
SHORT = object()


def _read_body(req: Request, limit: int) -> bytes | object | None:
    """The body; None when it is over the limit, SHORT when it ended early.
    Never reads more than limit + 1 bytes."""
    environ = req.environ
    declared = environ.get("CONTENT_LENGTH")
    if declared and declared.isascii() and declared.isdigit() \
            and "HTTP_TRANSFER_ENCODING" not in environ:
        # A plain declared length (the usual callback): read exactly that from the
        # server's stream, without werkzeug's parsing and stream wrappers
        # (docs/benchmarks.md). A length of 19 digits or more is over any limit,
        # and must not reach int(), which refuses more than 4,300 of them.
        digits = declared.lstrip("0") or "0"
        if len(digits) > 18:
            return None
        length = int(digits)
        if length > limit:
            return None
        body = environ["wsgi.input"].read(length)
        return body if len(body) == length else SHORT
    length = req.content_length
    if length is not None and length > limit:
        return None
    body = req.stream.read(limit + 1)
    return None if len(body) > limit else body


class Callbacks:
    """The callback view. Everything it needs is bound when the app is built, so
    a request looks nothing up in the app's context: this is the hot path."""

    def __init__(self, app: Flask) -> None:
        settings: Settings = app.config["HOOKLINE_SETTINGS"]
        self.policies = policies(settings)
        self.redis: Callable[[], redis.Redis] = app.extensions["hookline.redis"]
        self.pusher: Callable[[], inbox.Pusher] = app.extensions["hookline.pusher"]
        self.send_drain: Callable[[], object] = app.extensions["hookline.send_drain"]
        self.observe = app.extensions["hookline.observe"]
        self.enqueue_failed = app.extensions["hookline.enqueue_failed"]
        self.keys: CallbackKeys = app.extensions["hookline.callback_keys"]
        self.traced = tracing.enabled()

    def receive(self, source: str, event: str | None = None) -> Response:
        started = time.perf_counter()
        resp = self._receive(source, event)
        self.observe(source, resp.status_code, started)
        return resp

    def _receive(self, source: str, event: str | None) -> Response:
        policy = self.policies.get(source)
        if policy is None:
            return _error(404, f"unknown source {source!r}; known: {', '.join(sorted(SOURCES))}")
        if event is not None and not _EVENT_NAME.fullmatch(event):
            return _error(400, "event must be 1 to 100 letters, digits and . _ : - "
                          "(e.g. sms:message:status)")
        # The request object itself, not the proxy: each proxy access costs a
        # lookup of the request context.
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        presented = presented_token(req, allow_query=True)
        tenant_id = None
        source_token = token_ok(policy.token, presented)
        if presented is not None and (policy.token is None or not source_token):
            # Not the source's token: a tenant's callback key, or (when the source has
            # no token) nothing that names a tenant.
            try:
                tenant_id = self.keys.tenant_of(presented)
            except KeysUnavailable:
                return _error(503, "callback keys unavailable, retry later",
                              **{"Retry-After": RETRY_AFTER_SECONDS})
        if tenant_id is None and not source_token:
            return _error(401, "missing or wrong callback token", **{"WWW-Authenticate": "Bearer"})
        environ = req.environ
        addr = environ.get("REMOTE_ADDR")  # req.remote_addr, after any ProxyFix
        if not _allowed(policy.networks, addr):
            return _error(403, f"address {addr} is not allowed for {source}")
        headers = {h: environ[k] for h, k in _KEPT_ENVIRON if k in environ}
        if environ["REQUEST_METHOD"] == "GET":
            query = environ.get("QUERY_STRING", "").encode("latin-1")
            body: bytes | object | None = without_token(query) \
                if len(query) <= policy.max_body else None
            headers["content-type"] = FORM_FROM_QUERY
        else:
            body = _read_body(req, policy.max_body)
        if body is None:
            return _error(413, f"body larger than {policy.max_body} bytes")
        if body is SHORT:
            return _error(400, "body shorter than its Content-Length")
        assert isinstance(body, bytes)
        if not body:
            return _error(400, "empty body" if environ["REQUEST_METHOD"] != "GET"
                          else "no fields in the query string")
        spec = policy.signature
        if spec is not None and not signatures.verify(spec, req.headers, body):
            return _error(401, f"missing or wrong {spec.header} signature")
        if environ.get("CONTENT_TYPE", "").startswith(FORM):
            # After the signature, which covers the body as sent.
            body = without_token(body)
            if not body:
                return _error(400, "no fields but the token")
        answered = handshake(policy.verify_key, body)
        if answered is not None:
            log.info("answered a URL verification", extra={"source": source})
            return answered
        envelope = Envelope(
            id=new_id(), source=source, event=event, received_at=time.time(), body=body,
            headers=headers, remote_addr=addr, tenant_id=tenant_id,
        )
        if self.traced:
            return self._enqueue_traced(envelope, environ)
        return self._enqueue(envelope)

    def _enqueue_traced(self, envelope: Envelope, environ: dict) -> Response:
        def enqueue(traceparent: str | None) -> Response:
            envelope.trace = traceparent
            return self._enqueue(envelope)

        return tracing.around_callback(envelope.source, environ, enqueue,
                                       lambda resp: resp.status_code)

    def _enqueue(self, envelope: Envelope) -> Response:
        client = self.redis()
        try:
            # With HOOKLINE_INBOX_WAIT_REPLICAS, a replica holds it too (else 503).
            claimed = self.pusher().push(envelope.encode())
        except redis.RedisError as exc:
            self.enqueue_failed()
            log.error("enqueue failed: %s", exc, extra={"source": envelope.source})
            return _error(503, "queue unavailable, retry later",
                          **{"Retry-After": RETRY_AFTER_SECONDS})
        if claimed:
            _kick(client, self.send_drain)
        log.debug("queued %s", envelope.id, extra={"ingest_id": envelope.id,
                                                     "source": envelope.source})
        # What jsonify() answers, made directly: the provider's generic path is a
        # measurable share of an ingest request (docs/benchmarks.md).
        return Response(orjson.dumps({"id": envelope.id}), status=202,
                        content_type="application/json")


def install(app: Flask) -> None:
    """Route the callback URLs; call after metrics.install and the runtime's extensions."""
    view = Callbacks(app).receive
    # No dot in the endpoint name: Flask reads "a.b" as blueprint "a" and looks up its
    # hooks on every request.
    methods = ["POST", "GET"]
    app.add_url_rule("/callbacks/<source>", "receive_callback", view, methods=methods)
    app.add_url_rule("/callbacks/<source>/<event>", "receive_callback", view, methods=methods)


def _kick(client: redis.Redis, send: Callable[[], object]) -> None:
    try:
        send()
    except Exception as exc:
        # The callback is safely queued; the scheduler's tick will start a drain.
        # If Redis has just gone away the flag expires by itself: clearing it must
        # not turn the 202 this callback has earned into a 500.
        with contextlib.suppress(redis.RedisError):
            inbox.clear_kick(client)
        log.warning("could not kick a drain: %s", exc)
