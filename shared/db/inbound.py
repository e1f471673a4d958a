"""Inbound messages (message.inbound events), queryable by channel, sender and msisdn.

One row per new inbound event, keyed by the event id: a duplicate callback is
not a new event, so it adds no row. The content members every parser fills
(text, response, location, media, carrier_id) get columns; whatever else the
event carried stays in ``data``. Rows go with their event under retention.
"""

from __future__ import annotations

from typing import Any

import psycopg

from shared.db import arrays
from shared.db.events import Stored
from shared.db.paging import Page, Party, fetch_page, is_, newest_first
from shared.model import EventType

CONTENT = ("text", "response", "location", "media", "carrier_id")

_INSERT = """
INSERT INTO inbound_messages (event_id, source, channel, sender, msisdn, message_id,
                              occurred_at, text, response, location, media, carrier_id, data,
                              tenant_id)
SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                     %b::timestamptz[], %b::text[], %b::jsonb[], %b::jsonb[], %b::jsonb[],
                     %b::text[], %b::jsonb[], %b::text[])
ORDER BY 1
ON CONFLICT (event_id, occurred_at) DO NOTHING
"""


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def insert(cur: psycopg.Cursor, stored: list[Stored]) -> None:
    rows = [s for s in stored if s.event.type == EventType.MESSAGE_INBOUND]
    if not rows:
        return
    data = [s.event.data for s in rows]
    cur.execute(_INSERT, [
        arrays.bigint([s.id for s in rows]), arrays.text([s.event.source for s in rows]),
        arrays.text([s.event.channel for s in rows]), arrays.text([s.event.sender for s in rows]),
        arrays.text([s.event.msisdn for s in rows]),
        arrays.text([s.event.message_id for s in rows]),
        arrays.timestamptz([s.event.occurred_at for s in rows]),
        # A member that is absent (None) is SQL NULL, not JSON null.
        arrays.text([_text(d.get("text")) for d in data]),
        arrays.jsonb([d.get("response") for d in data]),
        arrays.jsonb([d.get("location") for d in data]),
        arrays.jsonb([d.get("media") for d in data]),
        arrays.text([_text(d.get("carrier_id")) for d in data]),
        arrays.jsonb([{k: v for k, v in d.items() if k not in CONTENT} for d in data]),
        arrays.text([s.tenant_id for s in rows]),
    ])


_COLUMNS = "event_id, source, channel, sender, msisdn, message_id, occurred_at, text, " \
    "response, location, media, carrier_id, data"
_PAGE = newest_first("inbound_messages", _COLUMNS, "event_id",
                     {c: is_(c) for c in ("channel", "sender", "msisdn", "source")}
                     | {"tenant": "tenant_id = %(tenant)s"})


def list_page(conn: psycopg.Connection, page: Page, party: Party,
              source: str | None = None, tenant_id: str | None = None
              ) -> list[dict[str, Any]]:
    """Newest first (by event id), keyset-paged; with ``tenant_id``, that tenant's only."""
    return fetch_page(conn, _PAGE, page, **party.params(), source=source, tenant=tenant_id)
