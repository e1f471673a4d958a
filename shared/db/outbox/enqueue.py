"""Writing the outbox, inside the apply transaction.

One row per (event, endpoint, notification type), so an applied event cannot miss
its deliveries and a re-applied one cannot make a second set (unique constraint).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import psycopg

from shared.db import arrays, endpoints
from shared.db.outbox import ordering
from shared.db.outbox.ordering import HELD_OR_NOW, HELD_PAIRS
from shared.notifications import Notification, message_key, payload, rank

_ENQUEUE = f"""
WITH ins AS (
    INSERT INTO deliveries (endpoint_id, event_id, type, payload, message_key, occurred_at,
                            rank, next_attempt_at, traceparent)
    SELECT e.id, n.event_id, n.type, n.payload::jsonb, n.message_key, n.occurred_at, n.rank,
           {HELD_OR_NOW.format(key="n.message_key")}, %b::text
    FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                %b::text[], %b::timestamptz[], %b::smallint[], %b::text[])
         AS n(event_id, type, payload, source, channel, sender, message_key, occurred_at, rank,
              tenant_id)
    JOIN endpoints e ON e.enabled
        -- A tenant's endpoint hears its own tenant's events only; the operator's, every
        -- tenant's (and those of none) or the tenants of its filter (docs/tenants.md).
        AND (e.tenant_id = n.tenant_id
             OR e.tenant_id IS NULL
                AND (e.filter_tenant IS NULL OR n.tenant_id = ANY (e.filter_tenant)))
        AND ('*' = ANY (e.event_types) OR n.type = ANY (e.event_types))
        AND (e.filter_source IS NULL OR n.source = ANY (e.filter_source))
        AND (e.filter_channel IS NULL OR n.channel = ANY (e.filter_channel))
        AND (e.filter_sender IS NULL OR n.sender = ANY (e.filter_sender))
    ORDER BY n.event_id, e.id
    ON CONFLICT (event_id, endpoint_id, type, occurred_at) DO NOTHING
    RETURNING endpoint_id, message_key, next_attempt_at
)""" + HELD_PAIRS.format(cte="ins")


def enqueue(cur: psycopg.Cursor, notes: Sequence[Notification],
            traceparent: str | None = None) -> int:
    """Write the outbox rows for these notifications; returns how many were new.
    ``traceparent``: the trace context their attempts continue (shared.tracing)."""
    if not notes or not endpoints.any_enabled(cur):
        return 0
    events = [n.event for n in notes]
    return ordering.release_held(cur, ordering.Written(*cur.execute(_ENQUEUE, [
        traceparent,
        arrays.bigint([n.event_id for n in notes]), arrays.text([n.type for n in notes]),
        arrays.text([orjson.dumps(payload(n)).decode() for n in notes]),
        arrays.text([e.source for e in events]), arrays.text([e.channel for e in events]),
        arrays.text([e.sender for e in events]), arrays.text([message_key(n) for n in notes]),
        arrays.timestamptz([e.occurred_at for e in events]),
        arrays.smallint([rank(n) for n in notes]),
        arrays.text([n.tenant_id for n in notes]),
    ]).fetchone()), lock=True)
