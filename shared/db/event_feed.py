"""Reading back normalised events (GET /v1/events)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

# The raw body is left out: it is large, and the ingest id traces back to it.
_COLUMNS = "id, type, source, channel, message_id, sender, msisdn, status, provider_status, " \
    "provider_event_id, dedupe_key, occurred_at, received_at, ingest_id, data"


def list_page(
    conn: psycopg.Connection,
    limit: int,
    before_id: int | None = None,
    type_: str | None = None,
    source: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Newest first by id, keyset-paged; ``since`` bounds received_at."""
    sql = f"""
    SELECT {_COLUMNS} FROM events
    WHERE (%(before)s::bigint IS NULL OR id < %(before)s)
      AND (%(type)s::text IS NULL OR type = %(type)s)
      AND (%(source)s::text IS NULL OR source = %(source)s)
      AND (%(since)s::timestamptz IS NULL OR received_at >= %(since)s)
    ORDER BY id DESC LIMIT %(limit)s
    """
    params = dict(before=before_id, type=type_, source=source, since=since, limit=limit)
    return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()
