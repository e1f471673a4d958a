"""The operator console: server-rendered pages under /console on the ingest app.

Every read and action goes through the same data layer (shared.db) and the same
functions the /v1 handlers call (ingest.endpoints_api, ingest.consent_api,
shared.replay), so the console has no rules of its own and no SQL.
HOOKLINE_CONSOLE=0 leaves the blueprint out: /console is then a 404.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Blueprint, Flask, current_app, g, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from shared import config
from shared.db import tenants
from shared.runtime import Runtime

PREFIX = "/console"

bp = Blueprint("console", __name__, url_prefix=PREFIX, template_folder="templates",
               static_folder="static", static_url_path="/static")

# Scripts and styles come from /console/static only: no inline script, nothing
# from elsewhere. uPlot sizes its canvas through the CSSOM, which CSP allows.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")


def rt() -> Runtime:
    return current_app.extensions["hookline.runtime"]()


def settings() -> config.Settings:
    return current_app.config["HOOKLINE_SETTINGS"]


def scope() -> str | None:
    """Whose rows a page shows: a tenant's console its own tenant's, whatever the URL says;
    the operator's everything, or one tenant's with ?tenant=."""
    who = g.principal
    if not who.operator:
        return who.tenant_id
    return request.args.get("tenant") or None


def tenant_choices() -> dict[str, str]:
    """The operator's tenant filter: every tenant's name by id."""
    with rt().pool.connection() as conn:
        return tenants.names(conn)


def tenant_console() -> str | None:
    """The tenant of a tenant's console; None in the operator's (templates ask)."""
    who = g.get("principal")
    return None if who is None or who.operator else who.tenant_id


@bp.after_request
def _headers(resp: ResponseReturnValue) -> ResponseReturnValue:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    if request.endpoint != "console.static":
        resp.headers["Cache-Control"] = "no-store"
    return resp


def _when(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ago(value: datetime | None) -> str:
    if value is None:
        return "-"
    seconds = (datetime.now(UTC) - value).total_seconds()
    if seconds < 0:
        return f"in {timedelta(seconds=round(-seconds))}"
    return f"{timedelta(seconds=round(seconds))} ago"


def install(app: Flask, settings_: config.Settings) -> None:
    """Register the console on ``app`` unless HOOKLINE_CONSOLE=0."""
    if not settings_.console_enabled:
        return
    from ingest.console import (  # noqa: F401  (their routes register on bp)
        auth,
        portal,
        views_consent,
        views_dead_letters,
        views_endpoints,
        views_messages,
        views_overview,
    )

    auth.configure(app, settings_)
    app.add_template_filter(_when, "when")
    app.add_template_filter(_ago, "ago")
    app.jinja_env.globals.update(tenant_console=tenant_console, tenant_choices=tenant_choices)
    app.register_blueprint(bp)


@bp.errorhandler(HTTPException)
def _error(exc: HTTPException) -> tuple[str, int]:
    return render_template("console/error.html", code=exc.code, name=exc.name,
                           description=exc.description), exc.code or 500
