"""Read-only figures for `hookline status` and the worker's /metrics.

Fan-out's tables (endpoints, deliveries) may not exist in every deployment's
schema yet; each figure that needs one returns None when it is missing.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row


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


def endpoints_failing_now(database_url: str) -> int:
    """endpoints_failing on a short-lived connection of its own (a metrics scrape:
    seconds apart, and in a process that forks, so it keeps no connection open)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=3,
                         options="-c statement_timeout=3000") as conn:
        return endpoints_failing(conn)


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
