"""Per-message delivery status, enforced in SQL so arrival order never matters.

The upsert keeps the highest-ranked status and, for each status, its earliest
occurred_at. Two workers applying events for one message at once serialise on
the row lock of the upsert; neither can lose the other's update.

The failure reason and code belong to the status that wins: a failing receipt that
wins sets them, a higher-ranked one (a delivered after a failed) clears them, since
the message is no longer failed; the history keeps every receipt's own. Two failing
receipts of the winning status: the one with a reason or code, then the smaller
(reason, code), so again the order of arrival does not matter.
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg.rows

from shared.db import arrays
from shared.db.events import Stored
from shared.model import STATUS_ORDER, STATUS_RANK, NormalisedEvent

_AT = [f"{s}_at" for s in STATUS_ORDER]

# Which of a message's receipts of one rank gives the failure fields, first: one
# that has any, then by text. The batch's GROUP BY and the conflict clause both
# order by it (as a sort key, and as a row comparison of the same values).
_FAILURE_KEY = "({t}failure_reason IS NULL AND {t}failure_code IS NULL), " \
               "COALESCE({t}failure_reason, ''), COALESCE({t}failure_code, '')"
_TAKES_FAILURE = f"""(EXCLUDED.status_rank > m.status_rank
        OR EXCLUDED.status_rank = m.status_rank
           AND ({_FAILURE_KEY.format(t="EXCLUDED.")}) < ({_FAILURE_KEY.format(t="m.")}))"""

# Whose receipts count for a message (docs/tenants.md). A receipt a tenant's callback key
# brought counts only if its sender is nobody's or that tenant's, and the message is
# nobody's yet or that tenant's; within a batch, of two tenants' receipts of a new message
# the smaller tenant's count. So one tenant's key cannot move, read (through the history)
# or claim another tenant's message by naming its id. A receipt of no tenant (the source's
# own token) still counts for any message. Each check is one index probe, made only for
# a receipt that has a tenant; a batch with none skips them (_UPSERT_UNTENANTED).
_ROWS = """
r AS (
    SELECT * FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[],
                         %b::text[], %b::text[], %b::smallint[], %b::timestamptz[],
                         %b::text[], %b::text[], %b::text[], %b::text[])
        AS r(event_id, source, message_id, channel, sender, msisdn, status, rank,
             occurred_at, failure_reason, failure_code, tenant_id, provider_status)
)"""
_MINE = _ROWS + """, ok AS (
    SELECT r.* FROM r
    LEFT JOIN tenant_senders ts ON r.tenant_id IS NOT NULL
        AND ts.source = r.source AND ts.sender = r.sender
    LEFT JOIN messages x ON r.tenant_id IS NOT NULL
        AND x.source = r.source AND x.message_id = r.message_id
    WHERE r.tenant_id IS NULL OR (coalesce(ts.tenant_id, r.tenant_id) = r.tenant_id
                                  AND coalesce(x.tenant_id, r.tenant_id) = r.tenant_id)
), firsts AS (
    SELECT ok.*, min(tenant_id) OVER (PARTITION BY source, message_id) AS first_tenant
    FROM ok
), mine AS (
    SELECT * FROM firsts WHERE tenant_id IS NULL OR tenant_id = first_tenant
)"""

# One statement per batch. Receipts of one message within the batch are folded
# by GROUP BY with the same rules the conflict clause applies across batches, so
# the rules live in SQL only; groups go in key order (no deadlocks). The same
# statement writes the status history of the receipts that counted (for a message the
# upsert did write: not for another tenant's made meanwhile by a concurrent batch).
_UPSERT_TEMPLATE = f"""
WITH {{mine}}, up AS (
INSERT INTO messages AS m (source, message_id, channel, sender, msisdn, status, status_rank,
                           {", ".join(_AT)}, last_event_at, failure_reason, failure_code,
                           tenant_id)
SELECT source, message_id, min(channel), min(sender), min(msisdn),
       (array_agg(status ORDER BY rank DESC))[1], max(rank),
       {", ".join(f"min(occurred_at) FILTER (WHERE status = '{st}')" for st in STATUS_ORDER)},
       max(occurred_at),
       (array_agg(failure_reason ORDER BY rank DESC, {_FAILURE_KEY.format(t="")}))[1],
       (array_agg(failure_code ORDER BY rank DESC, {_FAILURE_KEY.format(t="")}))[1],
       min(tenant_id)
FROM mine
GROUP BY source, message_id
ORDER BY source, message_id
ON CONFLICT (source, message_id) DO UPDATE SET
    status = CASE WHEN EXCLUDED.status_rank > m.status_rank
                  THEN EXCLUDED.status ELSE m.status END,
    failure_reason = CASE WHEN {_TAKES_FAILURE}
                          THEN EXCLUDED.failure_reason ELSE m.failure_reason END,
    failure_code = CASE WHEN {_TAKES_FAILURE}
                        THEN EXCLUDED.failure_code ELSE m.failure_code END,
    status_rank = GREATEST(m.status_rank, EXCLUDED.status_rank),
    {", ".join(f"{c} = LEAST(m.{c}, EXCLUDED.{c})" for c in _AT)},
    -- LEAST ignores NULLs and picks the same value whatever the order of arrival.
    channel = LEAST(m.channel, EXCLUDED.channel),
    sender = LEAST(m.sender, EXCLUDED.sender),
    msisdn = LEAST(m.msisdn, EXCLUDED.msisdn),
    last_event_at = GREATEST(m.last_event_at, EXCLUDED.last_event_at),
    -- The first attributed event names the message's tenant; a later receipt without
    -- a sender or key takes it from here (shared.db.events).
    tenant_id = coalesce(m.tenant_id, EXCLUDED.tenant_id)
-- Another tenant's message made meanwhile by a concurrent batch: left as it is.
WHERE m.tenant_id IS NULL OR EXCLUDED.tenant_id IS NULL OR m.tenant_id = EXCLUDED.tenant_id
RETURNING source, message_id
)
INSERT INTO message_status_history (event_id, source, message_id, status, provider_status,
                                    occurred_at, reason, code)
SELECT event_id, source, message_id, status, provider_status, occurred_at, failure_reason,
       failure_code
FROM mine WHERE (source, message_id) IN (SELECT source, message_id FROM up)
ORDER BY event_id
"""
_UPSERT = _UPSERT_TEMPLATE.format(mine=_MINE)
_UPSERT_UNTENANTED = _UPSERT_TEMPLATE.format(mine=_ROWS + ", mine AS (SELECT * FROM r)")


_ALIASES = """
INSERT INTO message_aliases (source, alias, message_id)
SELECT DISTINCT ON (source, alias) * FROM unnest(%b::text[], %b::text[], %b::text[])
    AS a(source, alias, message_id)
ORDER BY source, alias
ON CONFLICT (source, alias) DO NOTHING
"""


def _insert_aliases(cur: psycopg.Cursor, receipts: list[NormalisedEvent]) -> None:
    """The other ids a message is known by (``data["message_id_aliases"]``)."""
    found = [(e.source, alias, e.message_id) for e in receipts
             for alias in e.data.get("message_id_aliases") or ()
             if isinstance(alias, str) and alias != e.message_id]
    if found:
        source, alias, message_id = zip(*found, strict=True)
        cur.execute(_ALIASES, [arrays.text(list(source)), arrays.text(list(alias)),
                               arrays.text(list(message_id))])


def apply_statuses(cur: psycopg.Cursor, stored: list[Stored]) -> None:
    mine = [s for s in stored if s.event.status is not None and s.event.message_id]
    receipts = [s.event for s in mine]
    if not receipts:
        return
    _insert_aliases(cur, receipts)
    tenanted = any(s.tenant_id is not None for s in mine)
    cur.execute(_UPSERT if tenanted else _UPSERT_UNTENANTED, [
        arrays.bigint([s.id for s in mine]),
        arrays.text([e.source for e in receipts]), arrays.text([e.message_id for e in receipts]),
        arrays.text([e.channel for e in receipts]), arrays.text([e.sender for e in receipts]),
        arrays.text([e.msisdn for e in receipts]), arrays.text([e.status for e in receipts]),
        arrays.smallint([STATUS_RANK[e.status] for e in receipts]),
        arrays.timestamptz([e.occurred_at for e in receipts]),
        arrays.text([e.failure_reason for e in receipts]),
        arrays.text([e.failure_code for e in receipts]),
        arrays.text([s.tenant_id for s in mine]),
        arrays.text([e.provider_status for e in receipts]),
    ])


_GET = f"""
SELECT source, message_id, channel, sender, msisdn, status, failure_reason, failure_code,
       {", ".join(_AT)}, last_event_at
FROM messages
WHERE (%(source)s::text IS NULL OR source = %(source)s)
  -- An array, not an OR, so the lookup stays on the primary key's index.
  AND message_id = ANY(ARRAY(SELECT %(id)s::text UNION
                             SELECT message_id FROM message_aliases WHERE alias = %(id)s))
  AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
ORDER BY source
"""

_HISTORY_OF = """
SELECT h.status, h.provider_status, h.reason, h.code, h.occurred_at, e.provider_event_id,
       e.type, e.id
FROM message_status_history h
-- The same occurred_at: the event's partition, and both go when it is dropped.
JOIN events e ON e.id = h.event_id AND e.occurred_at = h.occurred_at
WHERE h.source = %s AND h.message_id = %s
ORDER BY h.occurred_at, h.id
"""


def get(conn: psycopg.Connection, message_id: str, source: str | None,
        tenant_id: str | None = None) -> list[dict[str, Any]]:
    """The message (one per source sharing the id, or known by it as an alias), each with
    its status history; with ``tenant_id``, only that tenant's."""
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    rows = cur.execute(_GET, {"id": message_id, "source": source, "tenant": tenant_id}
                       ).fetchall()
    for row in rows:
        row["events"] = cur.execute(_HISTORY_OF, (row["source"], row["message_id"])).fetchall()
    return rows
