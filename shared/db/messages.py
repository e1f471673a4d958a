"""Per-message delivery status, enforced in SQL so arrival order never matters.

The upsert keeps the highest-ranked status and, for each status, its earliest
occurred_at. Two workers applying events for one message at once serialise on
the row lock of the upsert; neither can lose the other's update.
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg.rows

from shared.db import arrays
from shared.db.events import Stored
from shared.model import STATUS_ORDER, STATUS_RANK

_AT = [f"{s}_at" for s in STATUS_ORDER]

# One statement per batch. Receipts of one message within the batch are folded
# by GROUP BY with the same rules the conflict clause applies across batches, so
# the rules live in SQL only; groups go in key order (no deadlocks).
_UPSERT = f"""
INSERT INTO messages AS m (source, message_id, channel, sender, msisdn, status, status_rank,
                           {", ".join(_AT)}, last_event_at)
SELECT source, message_id, min(channel), min(sender), min(msisdn),
       (array_agg(status ORDER BY rank DESC))[1], max(rank),
       {", ".join(f"min(occurred_at) FILTER (WHERE status = '{st}')" for st in STATUS_ORDER)},
       max(occurred_at)
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::smallint[], %b::timestamptz[])
     AS r(source, message_id, channel, sender, msisdn, status, rank, occurred_at)
GROUP BY source, message_id
ORDER BY source, message_id
ON CONFLICT (source, message_id) DO UPDATE SET
    status = CASE WHEN EXCLUDED.status_rank > m.status_rank
                  THEN EXCLUDED.status ELSE m.status END,
    status_rank = GREATEST(m.status_rank, EXCLUDED.status_rank),
    {", ".join(f"{c} = LEAST(m.{c}, EXCLUDED.{c})" for c in _AT)},
    -- LEAST ignores NULLs and picks the same value whatever the order of arrival.
    channel = LEAST(m.channel, EXCLUDED.channel),
    sender = LEAST(m.sender, EXCLUDED.sender),
    msisdn = LEAST(m.msisdn, EXCLUDED.msisdn),
    last_event_at = GREATEST(m.last_event_at, EXCLUDED.last_event_at)
"""

_HISTORY = """
INSERT INTO message_status_history (event_id, source, message_id, status, provider_status,
                                    occurred_at)
SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[],
                     %b::timestamptz[])
"""


def apply_statuses(cur: psycopg.Cursor, stored: list[Stored]) -> None:
    receipts = [s.event for s in stored if s.event.status is not None and s.event.message_id]
    if not receipts:
        return
    # Columns both statements send are encoded once.
    source = arrays.text([e.source for e in receipts])
    message_id = arrays.text([e.message_id for e in receipts])
    status = arrays.text([e.status for e in receipts])
    occurred_at = arrays.timestamptz([e.occurred_at for e in receipts])
    cur.execute(_UPSERT, [
        source, message_id, arrays.text([e.channel for e in receipts]),
        arrays.text([e.sender for e in receipts]), arrays.text([e.msisdn for e in receipts]),
        status, arrays.smallint([STATUS_RANK[e.status] for e in receipts]), occurred_at,
    ])
    ids = [s.id for s in stored if s.event.status is not None and s.event.message_id]
    cur.execute(_HISTORY, [
        arrays.bigint(ids), source, message_id, status,
        arrays.text([e.provider_status for e in receipts]), occurred_at,
    ])


_GET = f"""
SELECT source, message_id, channel, sender, msisdn, status, {", ".join(_AT)}, last_event_at
FROM messages WHERE message_id = %s AND (%s::text IS NULL OR source = %s)
ORDER BY source
"""

_HISTORY_OF = """
SELECT h.status, h.provider_status, h.occurred_at, e.provider_event_id, e.type, e.id
FROM message_status_history h JOIN events e ON e.id = h.event_id
WHERE h.source = %s AND h.message_id = %s
ORDER BY h.occurred_at, h.id
"""


def get(conn: psycopg.Connection, message_id: str, source: str | None) -> list[dict[str, Any]]:
    """The message (one per source sharing the id), each with its status history."""
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    rows = cur.execute(_GET, (message_id, source, source)).fetchall()
    for row in rows:
        row["events"] = cur.execute(_HISTORY_OF, (row["source"], message_id)).fetchall()
    return rows
