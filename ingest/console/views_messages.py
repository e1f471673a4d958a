"""Message lookup: status, per-status times, history, and the deliveries it caused."""

from __future__ import annotations

from typing import Any

from flask import render_template

from ingest.console.blueprint import bp, rt, scope
from ingest.console.forms import text
from shared.db import messages
from shared.db.outbox import admin
from shared.model import STATUS_ORDER


def lookup(message_id: str, source: str | None) -> list[dict[str, Any]]:
    tenant = scope()
    with rt().pool.connection() as conn:
        rows = messages.get(conn, message_id, source, tenant)
        for row in rows:
            row["deliveries"] = admin.for_events(conn, [e["id"] for e in row["events"]],
                                                 tenant_id=tenant)
    return rows


@bp.get("/messages")
def message() -> str:
    message_id, source = text("message_id"), text("source")
    rows = lookup(message_id, source) if message_id else []
    return render_template("console/message.html", message_id=message_id, source=source,
                           rows=rows, statuses=STATUS_ORDER)
