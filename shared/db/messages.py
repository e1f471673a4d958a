"""Per-message delivery status, enforced in SQL so arrival order never matters.

The upsert keeps the highest-ranked status and, for each status, its earliest
occurred_at. Two workers applying events for one message at once serialise on
the row lock of the upsert; neither can lose the other's update.
"""

from __future__ import annotations

from typing import Any

import psycopg

from shared.db.events import Stored
from shared.model import STATUS_ORDER, STATUS_RANK

_AT = [f"{s}_at" for s in STATUS_ORDER]

_UPSERT = f"""
INSERT INTO messages AS m (source, message_id, channel, sender, msisdn, status, status_rank,
                           {", ".join(_AT)}, last_event_at)
VALUES (%(source)s, %(message_id)s, %(channel)s, %(sender)s, %(msisdn)s, %(status)s, %(rank)s,
        {", ".join(f"%({c})s" for c in _AT)}, %(occurred_at)s)
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
VALUES (%s, %s, %s, %s, %s, %s)
"""


def _params(s: Stored) -> dict[str, Any]:
    e = s.event
    p: dict[str, Any] = dict.fromkeys(_AT)
    p[f"{e.status}_at"] = e.occurred_at
    p.update(
        source=e.source, message_id=e.message_id, channel=e.channel, sender=e.sender,
        msisdn=e.msisdn, status=e.status, rank=STATUS_RANK[e.status],
        occurred_at=e.occurred_at,
    )
    return p


def apply_statuses(cur: psycopg.Cursor, stored: list[Stored]) -> None:
    receipts = [s for s in stored if s.event.status is not None and s.event.message_id]
    if not receipts:
        return
    # One lock order for every batch: no deadlocks between concurrent drains.
    receipts.sort(key=lambda s: (s.event.source, s.event.message_id, s.id))
    cur.executemany(_UPSERT, [_params(s) for s in receipts])
    cur.executemany(
        _HISTORY,
        [
            (s.id, s.event.source, s.event.message_id, s.event.status,
             s.event.provider_status, s.event.occurred_at)
            for s in receipts
        ],
    )


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
