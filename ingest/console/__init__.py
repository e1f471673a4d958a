"""The operator console: server-rendered pages under /console on the ingest app.

Every read and action goes through the same data layer (shared.db) and the same
functions the /v1 handlers call (ingest.endpoints_api, ingest.consent_api,
shared.replay), so the console has no rules of its own and no SQL.
HOOKLINE_CONSOLE=0 leaves the blueprint out: /console is then a 404.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask

from ingest.console import (  # noqa: F401  (their routes register on bp)
    auth,
    portal,
    views_consent,
    views_dead_letters,
    views_endpoints,
    views_messages,
    views_overview,
)
from ingest.console.blueprint import bp, tenant_choices, tenant_console
from shared import config


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
    auth.configure(app, settings_)
    app.add_template_filter(_when, "when")
    app.add_template_filter(_ago, "ago")
    app.jinja_env.globals.update(tenant_console=tenant_console, tenant_choices=tenant_choices)
    app.register_blueprint(bp)
