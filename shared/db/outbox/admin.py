"""The outbox as the API and the console see it: listing, reading, queueing again."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from shared.db.outbox import ordering
from shared.db.outbox.ordering import HELD_OR_NOW, HELD_PAIRS

STATUSES = ("pending", "succeeded", "failed", "dead")

_IN_FLIGHT = "(claim_token IS NOT NULL AND next_attempt_at > now())"
_COLUMNS = (
    "id, seq, endpoint_id, event_id, type, status, attempts, next_attempt_at, created_at, "
    f"last_attempt_at, last_status_code, last_error, requeued_at, {_IN_FLIGHT} AS in_flight"
)


def list_for_endpoint(
    conn: psycopg.Connection, endpoint_id: str, limit: int, status: str | None = None,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first; ``before`` (a seq) pages, stable under inserts."""
    sql = f"""
    SELECT {_COLUMNS} FROM deliveries
    WHERE endpoint_id = %(ep)s
      AND (%(status)s::text IS NULL OR status = %(status)s)
      AND (%(before)s::bigint IS NULL OR seq < %(before)s)
    ORDER BY seq DESC LIMIT %(limit)s
    """
    params = dict(ep=endpoint_id, status=status, before=before, limit=limit)
    return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()


# A tenant sees the deliveries of its own endpoints only (tenant None: the operator, all).
_MINE = """(%(tenant)s::text IS NULL OR endpoint_id IN
    (SELECT id FROM endpoints WHERE tenant_id = %(tenant)s))"""


def get(conn: psycopg.Connection, delivery_id: str, tenant_id: str | None = None
        ) -> dict[str, Any] | None:
    """One delivery with its body and every attempt, oldest first; with ``tenant_id``,
    only one to that tenant's endpoints."""
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(f"SELECT {_COLUMNS}, payload FROM deliveries WHERE id = %(id)s "
                      f"AND {_MINE}", {"id": delivery_id, "tenant": tenant_id}).fetchone()
    if row is not None:
        row["attempts_made"] = cur.execute("""
            SELECT attempted_at, duration_ms, status_code, response_body, error
            FROM delivery_attempts WHERE delivery_id = %s ORDER BY id
        """, (delivery_id,)).fetchall()
    return row


@dataclass(frozen=True, slots=True)
class One:
    """One delivery."""

    delivery_id: str


@dataclass(frozen=True, slots=True)
class Window:
    """An endpoint's deliveries created in [since, until) with one of these statuses."""

    endpoint_id: str
    since: datetime
    until: datetime
    statuses: Sequence[str]


Selector = One | Window

# A requeued delivery starts the retry schedule afresh; its attempt history stays.
# An ordered endpoint's is requeued held, then the first of each message goes.
_REQUEUE = f"""
WITH q AS (
    UPDATE deliveries d SET status = 'pending', round_attempts = 0, claim_token = NULL,
        requeued_at = now(),
        next_attempt_at = {HELD_OR_NOW.format(key="d.message_key")}
    FROM endpoints e
    WHERE e.id = d.endpoint_id AND {{where}}
      AND NOT (d.claim_token IS NOT NULL AND d.next_attempt_at > now())
    RETURNING d.endpoint_id, d.message_key, d.next_attempt_at
)""" + HELD_PAIRS.format(cte="q")
_REQUEUE_ONE = _REQUEUE.format(where="d.id = %s")
_REQUEUE_WINDOW = _REQUEUE.format(
    where="d.endpoint_id = %s AND d.created_at >= %s AND d.created_at < %s "
          "AND d.status = ANY(%s)")


def requeue(conn: psycopg.Connection, endpoint_id: str, selected: Selector) -> int:
    """Queue the selected deliveries of this endpoint again, but none in flight;
    how many."""
    if isinstance(selected, One):
        sql, params = _REQUEUE_ONE, (selected.delivery_id,)
    else:
        sql, params = _REQUEUE_WINDOW, (selected.endpoint_id, selected.since,
                                        selected.until, list(selected.statuses))
    with conn.transaction():
        cur = conn.cursor()
        ordering.lock_endpoints(cur, [endpoint_id])
        return ordering.release_held(cur, ordering.Written(*cur.execute(sql, params).fetchone()))


def retry(conn: psycopg.Connection, delivery_id: str, tenant_id: str | None = None
          ) -> str | None:
    """Queue one delivery now: 'queued', 'in_flight' (being sent, left alone) or None
    (none, or with ``tenant_id`` none of that tenant's)."""
    row = conn.execute(f"SELECT endpoint_id FROM deliveries WHERE id = %(id)s AND {_MINE}",
                       {"id": delivery_id, "tenant": tenant_id}).fetchone()
    if row is None:
        return None
    (endpoint_id,) = row
    if requeue(conn, endpoint_id, One(delivery_id)):
        return "queued"
    exists = conn.execute("SELECT 1 FROM deliveries WHERE id = %s", (delivery_id,)).fetchone()
    return "in_flight" if exists else None


def replay(
    conn: psycopg.Connection, endpoint_id: str, since: datetime, until: datetime,
    statuses: Sequence[str],
) -> int:
    """Queue again the endpoint's deliveries created in [since, until) with these statuses."""
    return requeue(conn, endpoint_id, Window(endpoint_id, since, until, statuses))


def for_events(conn: psycopg.Connection, event_ids: Sequence[int], limit: int = 200,
               tenant_id: str | None = None) -> list[dict[str, Any]]:
    """The deliveries these events caused (the deliveries_once index leads with event_id),
    each with its attempts, oldest first; with ``tenant_id``, to its endpoints only."""
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE event_id = ANY(%(ids)s) "
                       f"AND {_MINE} ORDER BY seq LIMIT %(limit)s",
                       {"ids": list(event_ids), "limit": limit, "tenant": tenant_id}).fetchall()
    attempts: dict[str, list] = {r["id"]: [] for r in rows}
    if rows:
        for a in cur.execute("""
            SELECT delivery_id, attempted_at, duration_ms, status_code, response_body, error
            FROM delivery_attempts WHERE delivery_id = ANY(%s) ORDER BY delivery_id, id
        """, (list(attempts),)):
            attempts[a.pop("delivery_id")].append(a)
    for r in rows:
        r["attempts_made"] = attempts[r["id"]]
    return rows


# Each endpoint's last deliveries, through (endpoint_id, seq): bounded per endpoint.
_RECENT = """
SELECT e.id, count(d.*) FILTER (WHERE d.status = 'succeeded') AS succeeded,
       count(d.*) FILTER (WHERE d.status IN ('failed', 'dead')) AS failed,
       (array_agg(d.last_error ORDER BY d.seq DESC)
            FILTER (WHERE d.last_error IS NOT NULL))[1] AS last_error
FROM unnest(%s::text[]) AS e(id)
LEFT JOIN LATERAL (
    SELECT status, last_error, seq FROM deliveries
    WHERE endpoint_id = e.id ORDER BY seq DESC LIMIT %s
) d ON true
GROUP BY e.id
"""


def recent_outcomes(conn: psycopg.Connection, endpoint_ids: Sequence[str], window: int = 100
                    ) -> dict[str, dict[str, Any]]:
    """Per endpoint, of its last ``window`` deliveries: how many succeeded, how many
    failed or died, and the newest error among them."""
    if not endpoint_ids:
        return {}
    rows = conn.cursor(row_factory=dict_row).execute(
        _RECENT, (list(endpoint_ids), window)).fetchall()
    return {r.pop("id"): r for r in rows}
