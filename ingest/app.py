"""The ingest WSGI application: callbacks, the /v1 API, health and metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from ingest import (
    api,
    callbacks,
    consent_api,
    console,
    endpoints_api,
    event_types,
    metrics,
    openapi,
    problems,
    tenants_api,
)
from ingest.jsonio import OrjsonProvider
from ingest.tenant_keys import CallbackKeys
from shared import config, runtime, tracing

log = logging.getLogger(__name__)


def create_app(
    settings: config.Settings | None = None,
    rt: runtime.Runtime | None = None,
    send_drain: Callable[[], object] | None = None,
    kick_fanout: Callable[[], object] | None = None,
) -> Flask:
    """Build the app. Tests pass their own runtime (e.g. fakeredis) and drain sender;
    hookline.app passes the Celery ones (ingest does not import workers)."""
    if send_drain is None:
        raise TypeError("create_app() needs send_drain (hookline.app.create_app wires Celery's)")
    settings = settings or (rt.settings if rt else config.load())
    app = Flask("hookline")
    app.json = OrjsonProvider(app)
    app.config["HOOKLINE_SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = None  # enforced by callbacks with a clear 413
    if settings.api_token is None:
        log.warning("HOOKLINE_API_TOKEN is not set: the /v1 API answers 401 to everyone")

    get_rt = (lambda: rt) if rt is not None else runtime.get
    app.extensions["hookline.runtime"] = get_rt
    app.extensions["hookline.redis"] = lambda: get_rt().redis
    app.extensions["hookline.pusher"] = lambda: get_rt().pusher
    app.extensions["hookline.send_drain"] = send_drain
    if kick_fanout is not None:
        app.extensions["hookline.kick_fanout"] = kick_fanout
    app.extensions["hookline.callback_keys"] = CallbackKeys(lambda: get_rt().pool)
    metrics.install(app)
    tracing.configure("hookline-ingest")  # before the callback view binds whether it is on

    callbacks.install(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(consent_api.bp)  # subscriptions, inbound, events
    app.register_blueprint(endpoints_api.bp)  # fan-out: endpoints, deliveries, replay
    app.register_blueprint(tenants_api.bp)  # tenants and keys (operator only)
    app.register_blueprint(event_types.bp)  # the webhook catalogue
    app.register_blueprint(openapi.bp)  # outside api.bp: served without the token
    console.install(app, settings)  # /console, unless HOOKLINE_CONSOLE=0
    app.add_url_rule("/healthz", "healthz", lambda: jsonify(status="ok"))
    # What the callback path needs (Redis): the k8s readiness probe, so a PostgreSQL
    # outage leaves every pod in the Service, answering callbacks 202.
    app.add_url_rule("/readyz", "readyz", lambda: _ready(get_rt(), postgresql=False))
    # Everything ingest serves (/v1 and the console read PostgreSQL): for operators.
    app.add_url_rule("/readyz/full", "readyz_full", lambda: _ready(get_rt(), postgresql=True))
    app.register_error_handler(HTTPException, _http_error)
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app


def _ready(rt: runtime.Runtime, postgresql: bool) -> Response:
    checks: dict[str, str] = {}
    started = time.perf_counter()
    try:
        rt.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"error: {exc}"
    if postgresql:
        checks["postgresql"] = _postgresql(rt)
    ok = all(v == "ok" for v in checks.values())
    resp = jsonify(status="ok" if ok else "unavailable", checks=checks,
                   seconds=round(time.perf_counter() - started, 4))
    resp.status_code = 200 if ok else 503
    return resp


def _postgresql(rt: runtime.Runtime) -> str:
    try:
        with rt.pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"error: {exc}"
    return "ok"


def _http_error(exc: HTTPException) -> Response:
    """/v1 answers every error as problem details (an unhandled error arrives here as a
    500); callbacks and the rest keep their plain {"error": ...}."""
    if request.path.startswith(openapi.PREFIX):
        return problems.from_http(exc)
    resp = jsonify(error=exc.description or exc.name)
    resp.status_code = exc.code or 500
    return resp
