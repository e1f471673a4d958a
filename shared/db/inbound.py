"""Inbound messages (message.inbound events), queryable by channel, sender and msisdn.

One row per new inbound event, keyed by the event id: a duplicate callback is
not a new event, so it adds no row. The content members every parser fills
(text, response, location, media, carrier_id) get columns; whatever else the
event carried stays in ``data``. Rows go with their event under retention.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared.db.events import Stored
from shared.model import EventType

CONTENT = ("text", "response", "location", "media", "carrier_id")

_INSERT = """
INSERT INTO inbound_messages (event_id, source, channel, sender, msisdn, message_id,
                              occurred_at, text, response, location, media, carrier_id, data)
SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                     %b::timestamptz[], %b::text[], %b::jsonb[], %b::jsonb[], %b::jsonb[],
                     %b::text[], %b::jsonb[])
ORDER BY 1
ON CONFLICT (event_id) DO NOTHING
"""


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def insert(cur: psycopg.Cursor, stored: list[Stored]) -> None:
    rows = [s for s in stored if s.event.type == EventType.MESSAGE_INBOUND]
    if not rows:
        return
    data = [s.event.data for s in rows]
    cur.execute(_INSERT, [
        [s.id for s in rows], [s.event.source for s in rows], [s.event.channel for s in rows],
        [s.event.sender for s in rows], [s.event.msisdn for s in rows],
        [s.event.message_id for s in rows], [s.event.occurred_at for s in rows],
        [_text(d.get("text")) for d in data], [_json(d.get("response")) for d in data],
        [_json(d.get("location")) for d in data], [_json(d.get("media")) for d in data],
        [_text(d.get("carrier_id")) for d in data],
        [Jsonb({k: v for k, v in d.items() if k not in CONTENT}) for d in data],
    ])


_COLUMNS = "event_id, source, channel, sender, msisdn, message_id, occurred_at, text, " \
    "response, location, media, carrier_id, data"


def list_page(
    conn: psycopg.Connection,
    limit: int,
    before_id: int | None = None,
    channel: str | None = None,
    sender: str | None = None,
    msisdn: str | None = None,
    source: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first (by event id), keyset-paged with ``before_id``."""
    sql = f"""
    SELECT {_COLUMNS} FROM inbound_messages
    WHERE (%(before)s::bigint IS NULL OR event_id < %(before)s)
      AND (%(channel)s::text IS NULL OR channel = %(channel)s)
      AND (%(sender)s::text IS NULL OR sender = %(sender)s)
      AND (%(msisdn)s::text IS NULL OR msisdn = %(msisdn)s)
      AND (%(source)s::text IS NULL OR source = %(source)s)
    ORDER BY event_id DESC LIMIT %(limit)s
    """
    params = dict(before=before_id, channel=channel, sender=sender, msisdn=msisdn,
                  source=source, limit=limit)
    return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()
