"""Overview: the inbox (what `hookline status` reads), the last hour's rates, and the
endpoints failing now; the panel refreshes itself (htmx polling)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import redis
from flask import redirect, render_template, url_for
from werkzeug.wrappers import Response

from ingest.console.blueprint import bp, rt, settings, tenant_console
from shared import inbox
from shared.db import stats

log = logging.getLogger(__name__)

MINUTES = 60


def _inbox() -> dict[str, Any]:
    try:
        d = inbox.depths(rt().redis, settings().lease_seconds, settings().inbox_shards)
    except redis.RedisError as exc:
        return {"error": str(exc)}
    return {"queued": d.inbox, "retry": d.retry, "leases": d.leases,
            "oldest_lease_age": round(d.oldest_lease_age, 1)}


def panel_data() -> dict[str, Any]:
    with rt().pool.connection() as conn:
        events = stats.per_minute(conn, "events", MINUTES)
        letters = stats.per_minute(conn, "dead_letters", MINUTES)
        failing = stats.failing_endpoints(conn)
    series = {
        "t": [int(m.timestamp()) for m, _ in events],
        # Events applied per second (by receipt time) and dead letters as an hourly rate.
        "per_second": [round(n / 60, 2) for _, n in events],
        "dead_per_hour": [n * 60 for _, n in letters],
    }
    return {"inbox": _inbox(), "series": series, "at": datetime.now(UTC), "failing": failing,
            "events_hour": sum(n for _, n in events),
            "dead_hour": sum(n for _, n in letters)}


@bp.get("/")
def overview() -> str | Response:
    # The inbox, the rates and the failing endpoints are everyone's: a tenant starts at
    # its endpoints.
    if tenant_console():
        return redirect(url_for("console.endpoint_list"))
    return render_template("console/overview.html", **panel_data())


@bp.get("/overview/panel")
def overview_panel() -> str:
    return render_template("console/_overview_panel.html", **panel_data())
