"""The console's blueprint and what every page shares: its headers, its error page,
the runtime and the settings. Apart from the package so the views import it
without importing the package that imports them."""

from __future__ import annotations

from flask import Blueprint, current_app, g, render_template, request
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


@bp.errorhandler(HTTPException)
def _error(exc: HTTPException) -> tuple[str, int]:
    return render_template("console/error.html", code=exc.code, name=exc.name,
                           description=exc.description), exc.code or 500
