"""Reading back normalised events (GET /v1/events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from shared.db import paging
from shared.db.paging import Page, fetch_page, newest_first

# The raw body is left out: it is large, and the ingest id traces back to it.
_COLUMNS = "id, type, source, channel, message_id, sender, msisdn, status, provider_status, " \
    "provider_event_id, dedupe_key, occurred_at, received_at, ingest_id, data, tenant_id"
_PAGE = newest_first("events", _COLUMNS, "id", {
    "type": paging.is_("type"), "source": paging.is_("source"),
    "since": paging.time_range("received_at")["since"],
    "tenant": "tenant_id = %(tenant)s",
}, time="received_at")


def list_page(conn: psycopg.Connection, page: Page, type_: str | None = None,
              source: str | None = None, since: datetime | None = None,
              tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Newest first by id, keyset-paged; with ``since`` (a bound on received_at),
    newest first by received_at then id; with ``tenant_id``, that tenant's only."""
    return fetch_page(conn, _PAGE, page, type=type_, source=source, since=since,
                      tenant=tenant_id)
