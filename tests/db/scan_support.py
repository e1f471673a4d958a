"""Big list tables and the pages read from them, for tests/db/test_list_scans.py and
deploy/bench/list_scans.py: generate_series fills (ids rising with time, as ingest
writes them), each filter's page through the real data-layer function, and what the
plan of the SQL it ran read (EXPLAIN ANALYZE, BUFFERS)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from shared.db import dead_letters, event_feed, inbound, subscriptions
from shared.db.outbox import admin
from shared.db.paging import Page, Party

LIMIT = 50
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # row i arrived at T0 + i minutes

# {n}: rows per table. Dead letters: two reasons; 'rare', the source of every 1000th
# letter of the older half. Subscriptions: every 100th is an all-senders row; 'rare'
# has every 1000th of the older half. Events: every 1000th failed, and the 500th after
# each 1000th of the older half came from 'rare', as an inbound message from sender
# 'rare'; every event has a delivery to ep_a, dead for each 1000th of the older half.
FILL = {
    "dead_letters": """
        INSERT INTO dead_letters (ingest_id, source, reason, body, received_at)
        SELECT 'i' || i, CASE WHEN i %% 1000 = 0 AND i < {n} / 2 THEN 'rare' ELSE 'big' END,
               CASE WHEN i %% 2 = 0 THEN 'unknown event' ELSE 'bad signature' END, '',
               %(t0)s + i * interval '1 minute'
        FROM generate_series(1, {n}) i ORDER BY i""",
    "subscriptions": """
        INSERT INTO subscriptions (channel, sender, msisdn, status, scope, changed_at,
                                   event_id, source, event_key)
        SELECT CASE WHEN i %% 3 = 0 THEN 'rcs' ELSE 'sms' END,
               CASE WHEN i %% 100 = 0 THEN '*' WHEN i %% 1000 = 1 AND i < {n} / 2
                    THEN 'rare' ELSE 'big' END,
               '+44' || i, CASE WHEN i %% 4 = 0 THEN 'opted_out' ELSE 'opted_in' END,
               CASE WHEN i %% 100 = 0 THEN 'all' ELSE 'sender' END,
               %(t0)s + i * interval '1 minute', i, 'kaleyra', 'k ' || i
        FROM generate_series(1, {n}) i ORDER BY i""",
    "events": """
        INSERT INTO events (type, source, channel, dedupe_key, ingest_id, occurred_at,
                            received_at)
        SELECT CASE WHEN i %% 1000 = 0 THEN 'message.failed' ELSE 'message.delivered' END,
               CASE WHEN i %% 1000 = 500 AND i < {n} / 2 THEN 'rare' ELSE 'kaleyra' END,
               'sms', 'd' || i, 'i' || i, %(t0)s + i * interval '1 minute',
               %(t0)s + i * interval '1 minute'
        FROM generate_series(1, {n}) i ORDER BY i""",
    "inbound_messages": """
        INSERT INTO inbound_messages (event_id, source, channel, sender, msisdn, occurred_at)
        SELECT id, source, CASE WHEN id %% 3 = 0 THEN 'rcs' ELSE 'sms' END,
               CASE WHEN source = 'rare' THEN 'rare' ELSE 'big' END, '+44' || id, occurred_at
        FROM events ORDER BY id""",
    "endpoints": """
        INSERT INTO endpoints (id, url, event_types, secret)
        VALUES ('ep_a', 'https://example.test/hook', ARRAY['*'], 'not-a-secret')""",
    "deliveries": """
        INSERT INTO deliveries (endpoint_id, event_id, type, payload, occurred_at, status)
        SELECT 'ep_a', id, type, '{{}}', occurred_at,
               CASE WHEN id %% 1000 = 0 AND id < {n} / 2 THEN 'dead' ELSE 'succeeded' END
        FROM events ORDER BY id""",
}


def fill(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table, sql in FILL.items():
            conn.execute(sql.format(n=n), {"t0": T0})
            conn.execute(f"VACUUM ANALYZE {table}")


# Rows far out of time order ({n} rows already in): 2,000 dead letters inserted last
# from source 'late' with receipt times 6,000 minutes older than the last rows (a
# backlog drained late), and in dead letters and events the rows 2001-4000 received
# 7,000 minutes after their id neighbours (inserted early, e.g. a lease long held).
OUT_OF_ORDER = (
    """INSERT INTO dead_letters (ingest_id, source, reason, body, received_at)
       SELECT 'late' || k, 'late', 'unknown event', '',
              %(t0)s + ({n} - 6000 + k) * interval '1 minute' + interval '30 seconds'
       FROM generate_series(0, 1999) k ORDER BY k""",
    """UPDATE dead_letters SET received_at = received_at + interval '7000 minutes'
       WHERE id > 2000 AND id <= 4000""",
    """UPDATE events SET received_at = received_at + interval '7000 minutes'
       WHERE id > 2000 AND id <= 4000""",
)


def out_of_order(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for sql in OUT_OF_ORDER:
            conn.execute(sql.format(n=n), {"t0": T0})
        conn.execute("VACUUM ANALYZE dead_letters, events")


def minutes(i: int) -> datetime:
    return T0 + timedelta(minutes=i)


@dataclass(frozen=True)
class Case:
    label: str
    page: Callable[[psycopg.Connection], list[dict[str, Any]]]
    # Rows the plan may read beyond the page's, when no index serves the filters
    # together (docs/console.md, "Known limits").
    extra: int = 0


def cases(n: int) -> list[Case]:
    """A page with each filter and combination the lists take."""
    month_back = minutes(n - 30 * 24 * 60)
    old_half = minutes(n // 2 - 5_000)

    def letters(label: str, before: int | None = None, **f: Any) -> Case:
        return Case(f"dead letters {label}",
                    lambda c: dead_letters.list_recent(c, Page(LIMIT, before), **f))

    def subs(label: str, status: str | None = None, **party: str) -> Case:
        return Case(f"subscriptions {label}",
                    lambda c: subscriptions.list_page(c, Page(LIMIT), Party(**party), status))

    def events(label: str, before: int | None = None, extra: int = 0, **f: Any) -> Case:
        return Case(f"events {label}",
                    lambda c: event_feed.list_page(c, Page(LIMIT, before), **f), extra)

    def messages(label: str, source: str | None = None, **party: str) -> Case:
        return Case(f"inbound {label}",
                    lambda c: inbound.list_page(c, Page(LIMIT), Party(**party), source))

    def sent(label: str, **f: Any) -> Case:
        return Case(f"deliveries of an endpoint {label}",
                    lambda c: admin.list_for_endpoint(c, "ep_a", LIMIT, **f))

    return [
        letters("until a month back", until=month_back),
        letters("until near the oldest", until=minutes(100)),
        letters("since the last 10 rows", since=minutes(n - 10)),
        letters("since+until", since=month_back, until=minutes(n - 20_000)),
        letters("until, a page further", n // 4, until=month_back),
        letters("since, a page further", n - 100, since=month_back),
        letters("source rare", source="rare"),
        letters("source rare+until", source="rare", until=month_back),
        letters("source rare+since (none)", source="rare", since=minutes(n - 10)),
        letters("source rare+since", source="rare", since=old_half),
        letters("reason+until", reason="unknown", until=month_back),
        letters("reason+since", reason="signature", since=minutes(n - 10)),
        subs("sender rare", sender="rare"),
        subs("sender rare opted_out", "opted_out", sender="rare"),
        subs("sender *", sender="*"),
        subs("sender * opted_out", "opted_out", sender="*"),
        subs("channel+sender rare", channel="rcs", sender="rare"),
        subs("sender big opted_out", "opted_out", sender="big"),
        events("since the last 10 rows", since=minutes(n - 10)),
        events("since a month back, a page further", n - 100, since=month_back),
        # The source's rows (events have no source index the time order can use).
        events("source rare+since", source="rare", since=old_half, extra=n // 2000),
        events("type rare", type_="message.failed"),
        # The type's rows and the index entries since (a BitmapAnd), or the type's rows.
        events("type rare+since", type_="message.failed", since=minutes(n - 5_000),
               extra=n // 1000 + 5_000),
        events("source rare", source="rare"),
        messages("sender rare", sender="rare"),
        messages("channel+sender rare", channel="rcs", sender="rare"),
        messages("source rare", source="rare"),
        messages("msisdn", msisdn="+44500"),
        sent("status dead", status="dead"),
        sent("status dead, older page", status="dead", before=n // 4),
    ]


class Recording(psycopg.Cursor):
    """Keeps the last statement run through any such cursor, to EXPLAIN it after."""

    last: tuple[Any, Any] = ("", None)

    def execute(self, query, params=None, **kwargs):
        Recording.last = (query, params)
        return super().execute(query, params, **kwargs)


@dataclass(frozen=True)
class Plan:
    ms: float
    rows: int  # what the scans produced or threw away, over all their loops
    buffers: int  # shared blocks hit or read


def _rows(node: dict) -> int:
    own = 0
    if "Scan" in node["Node Type"]:
        own = (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
               + node.get("Rows Removed by Index Recheck", 0)) * node["Actual Loops"]
    return own + sum(_rows(child) for child in node.get("Plans", []))


def explain_last(conn: psycopg.Connection) -> Plan:
    """The plan of the last statement a :class:`Recording` cursor ran, run again."""
    sql, params = Recording.last
    with conn.cursor() as cur:
        out = cur.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}",
                          params).fetchone()[0][0]
    plan = out["Plan"]
    return Plan(out["Execution Time"], _rows(plan),
                plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0))
