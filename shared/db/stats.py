"""Read-only figures for `hookline status` and the worker's /metrics.

Fan-out's tables (endpoints, deliveries) may not exist in every deployment's
schema yet; each figure that needs one returns None when it is missing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from shared.db import partitions


def table_exists(conn: psycopg.Connection, name: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


_FAILING = """
SELECT count(*) FROM endpoints
WHERE enabled AND (failing_since IS NOT NULL OR consecutive_failures > 0)
"""


def endpoints_failing(conn: psycopg.Connection) -> int:
    """Enabled endpoints whose last delivery attempts failed (0 without fan-out)."""
    if not table_exists(conn, "endpoints"):
        return 0
    return conn.execute(_FAILING).fetchone()[0]


def scrape_connection(database_url: str) -> psycopg.Connection:
    """A short-lived connection of its own for a metrics scrape (seconds apart, and in a
    process that forks, so it keeps no connection open), its statements bounded."""
    return psycopg.connect(database_url, autocommit=True, connect_timeout=3,
                           options="-c statement_timeout=3000")


def endpoints_failing_now(database_url: str) -> int:
    """endpoints_failing on a scrape_connection."""
    with scrape_connection(database_url) as conn:
        return endpoints_failing(conn)


def storage_now(database_url: str) -> tuple[float, float]:
    """(seconds until the first table runs out of partitions made ahead, rows estimated
    in the default partitions), on a scrape_connection."""
    with scrape_connection(database_url) as conn:
        now = datetime.now(UTC)
        ahead = min(((p[-1].upper - now).total_seconds() if (p := partitions.partitions(
            conn, parent)) else 0.0) for parent, _ in partitions.TABLES)
        default_rows = conn.execute(
            "SELECT coalesce(sum(greatest(reltuples, 0)), 0) FROM pg_class "
            "WHERE relname = ANY (%s)",
            ([f"{parent}_default" for parent, _ in partitions.TABLES],)).fetchone()[0]
    return ahead, float(default_rows)


# Held deliveries of ordered endpoints: the oldest one's age, and how many messages
# have a held delivery first in line (nothing ahead of it to settle and let it go:
# it would wait for ever; shared.db.outbox.ordering.release_stranded lets such ones go).
_HELD = """
WITH firsts AS (
    SELECT DISTINCT ON (d.endpoint_id, d.message_key) d.next_attempt_at IS NULL AS held
    FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id AND e.ordered AND e.enabled
    WHERE d.status IN ('pending', 'failed') AND d.message_key IS NOT NULL
    ORDER BY d.endpoint_id, d.message_key, d.occurred_at, d.rank, d.seq
)
SELECT coalesce(extract(epoch FROM now() - (
           SELECT min(d.created_at) FROM deliveries d
           JOIN endpoints e ON e.id = d.endpoint_id AND e.enabled
           WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at IS NULL)), 0),
       (SELECT count(*) FROM firsts WHERE held)
"""


def held_deliveries(conn: psycopg.Connection) -> tuple[float, int]:
    """(seconds the oldest held delivery of an enabled endpoint has waited, messages
    whose first delivery in line is held); (0, 0) without fan-out."""
    if not table_exists(conn, "deliveries"):
        return 0.0, 0
    age, stranded = conn.execute(_HELD).fetchone()
    return float(age), int(stranded)


def held_deliveries_now(database_url: str) -> tuple[float, int]:
    """held_deliveries on a scrape_connection."""
    with scrape_connection(database_url) as conn:
        return held_deliveries(conn)


_DEAD_LETTERS = """
SELECT source, count(*) AS unreplayed, min(received_at) AS oldest
FROM dead_letters WHERE replayed_at IS NULL
GROUP BY source ORDER BY source
"""


def dead_letter_summary(conn: psycopg.Connection) -> dict[str, Any]:
    rows = conn.cursor(row_factory=dict_row).execute(_DEAD_LETTERS).fetchall()
    return {
        "unreplayed": sum(r["unreplayed"] for r in rows),
        "oldest": min((r["oldest"] for r in rows), default=None),
        "by_source": {r["source"]: r["unreplayed"] for r in rows},
    }


# Per endpoint, through the (endpoint_id, status, seq) index: no scan of every delivery.
_ENDPOINTS = """
SELECT e.id, e.url, e.enabled, e.consecutive_failures, e.failing_since, e.last_success_at,
       e.disabled_reason,
       (SELECT count(*) FROM deliveries d
         WHERE d.endpoint_id = e.id AND d.status IN ('pending', 'failed')) AS pending,
       (SELECT count(*) FROM deliveries d
         WHERE d.endpoint_id = e.id AND d.status = 'dead') AS dead
FROM endpoints e ORDER BY e.created_at, e.id
"""


def endpoint_health(conn: psycopg.Connection) -> list[dict[str, Any]] | None:
    """Every endpoint with its health and pending / dead delivery counts; None without
    fan-out's tables."""
    if not (table_exists(conn, "endpoints") and table_exists(conn, "deliveries")):
        return None
    return conn.cursor(row_factory=dict_row).execute(_ENDPOINTS).fetchall()


# --- the console's overview ----------------------------------------------------------

# Rows per minute, from the first id at each minute's start: one short index range per
# minute (and one probe for max(id)) whatever the volume, where a count(*) over the
# hour would read every row of it. A batch numbers its rows in key order, not arrival
# order, so the first id is the least of the next BOUNDARY_ROWS rows (a default
# batch); a row near a minute's edge may be counted in the minute beside it.
BOUNDARY_ROWS = 500
_SERIES = {"events": ("events", "received_at"), "dead_letters": ("dead_letters", "created_at")}
_FIRST_IDS = """
SELECT b.t, (SELECT min(id) FROM (SELECT id FROM {table} WHERE {column} >= b.t
                                  ORDER BY {column} LIMIT %(rows)s) f)
FROM generate_series(date_trunc('minute', now()) - make_interval(mins => %(minutes)s - 1),
                     date_trunc('minute', now()), interval '1 minute') AS b(t)
ORDER BY b.t
"""


def per_minute(conn: psycopg.Connection, series: str, minutes: int = 60
               ) -> list[tuple[Any, int]]:
    """(minute start, rows in that minute) for the last ``minutes`` minutes, oldest first;
    ``series`` is ``events`` (by receipt time) or ``dead_letters``."""
    table, column = _SERIES[series]
    firsts = conn.execute(_FIRST_IDS.format(table=table, column=column),
                          {"minutes": minutes, "rows": BOUNDARY_ROWS}).fetchall()
    top = conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0]
    out = []
    for i, (minute, first) in enumerate(firsts):
        nxt = next((f for _, f in firsts[i + 1:] if f is not None), top)
        out.append((minute, 0 if first is None else max(0, nxt - first)))
    return out


def failing_endpoints(conn: psycopg.Connection, limit: int = 50) -> list[dict[str, Any]]:
    """Enabled endpoints whose last attempts failed, longest failing first (the
    endpoints table is one row per customer endpoint: small)."""
    if not table_exists(conn, "endpoints"):
        return []
    return conn.cursor(row_factory=dict_row).execute(
        "SELECT id, url, consecutive_failures, failing_since, paused_until, last_failure_at, "
        "last_success_at FROM endpoints "
        "WHERE enabled AND (failing_since IS NOT NULL OR consecutive_failures > 0) "
        "ORDER BY failing_since NULLS LAST, id LIMIT %s", (limit,)).fetchall()


# --- the fan-out backlog (worker /metrics) -----------------------------------------------

# One pass over the outbox's partial index of unsettled deliveries (deliveries_due:
# status pending or failed), index-only once vacuumed: it reads the backlog, never
# the settled history. Held deliveries (ordered endpoints, next_attempt_at NULL)
# are never due; one in flight has its lease end as next_attempt_at, so it is due
# again only once its sender died.
_BACKLOG = """
SELECT count(*) FILTER (WHERE next_attempt_at IS NOT NULL),
       count(*) FILTER (WHERE next_attempt_at IS NULL),
       coalesce(extract(epoch FROM now() - min(next_attempt_at)
                        FILTER (WHERE next_attempt_at <= now())), 0)
FROM deliveries WHERE status IN ('pending', 'failed')
"""


def fanout_backlog(conn: psycopg.Connection) -> tuple[int, int, float] | None:
    """(pending, held, seconds the oldest due delivery has waited); None without
    fan-out's tables."""
    if not table_exists(conn, "deliveries"):
        return None
    pending, held, age = conn.execute(_BACKLOG).fetchone()
    return int(pending), int(held), float(age)


def fanout_backlog_now(database_url: str) -> tuple[int, int, float] | None:
    """fanout_backlog on a scrape_connection."""
    with scrape_connection(database_url) as conn:
        return fanout_backlog(conn)
