"""Dead letters: callbacks that cannot be applied, kept byte for byte with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from shared.db import paging
from shared.db.paging import Page, fetch_page, newest_first


@dataclass(slots=True)
class DeadLetter:
    ingest_id: str
    source: str
    event: str | None
    reason: str
    body: bytes
    headers: dict[str, str]
    remote_addr: str | None
    received_at: datetime
    attempts: int = 1
    tenant_id: str | None = None  # of the callback key that brought it (its replay keeps it)


# Never for a callback that was applied: a batch that outlived its lease may have
# committed while its envelope went round the retry list, and "applied and
# dead-lettered" would be two answers to one 202 (a replay would apply it again).
_INSERT = """
INSERT INTO dead_letters (ingest_id, source, event, reason, body, headers, remote_addr,
                          attempts, received_at, tenant_id)
SELECT %(id)s::text, %(source)s::text, %(event)s::text, %(reason)s::text, %(body)s::bytea,
       %(headers)s::jsonb, %(addr)s::text, %(attempts)s::integer, %(received)s::timestamptz,
       %(tenant)s::text
WHERE NOT EXISTS (SELECT 1 FROM events WHERE ingest_id = %(id)s::text)
ON CONFLICT (ingest_id) DO NOTHING
"""


def _text(value: str | None) -> str | None:
    # PostgreSQL's text and jsonb refuse U+0000. A dead letter is the last place a
    # callback can go, so nothing in it may make its insert fail; the body is bytea.
    return value.replace("\x00", "\\0") if value and "\x00" in value else value


def insert(cur: psycopg.Cursor, letters: list[DeadLetter]) -> None:
    if not letters:
        return
    cur.executemany(
        _INSERT,
        [
            {"id": _text(d.ingest_id), "source": _text(d.source), "event": _text(d.event),
             "reason": _text(d.reason), "body": d.body,
             "headers": Jsonb({_text(k): _text(v) for k, v in d.headers.items()}),
             "addr": _text(d.remote_addr), "attempts": d.attempts, "received": d.received_at,
             "tenant": d.tenant_id}
            # Arrival order, so ids (and 'newest first') follow the inbox order.
            for d in letters
        ],
    )


_COLUMNS = "id, ingest_id, source, event, reason, body, headers, remote_addr, attempts, " \
    "received_at, created_at, replayed_at, replay_ingest_id, tenant_id"
# The list's filters and `hookline replay`'s: a replay selects what the list shows.
_CONDITIONS = {
    "source": paging.is_("source"),
    "reason": "reason ILIKE '%%' || %(reason)s || '%%'",
    **paging.time_range("received_at"),
}
_FILTERS = paging.optional(_CONDITIONS, {"source": "text", "reason": "text",
                                         "since": "timestamptz", "until": "timestamptz"})
_RECENT = newest_first("dead_letters", _COLUMNS, "id", _CONDITIONS, time="received_at")


def list_recent(conn: psycopg.Connection, page: Page, source: str | None = None,
                reason: str | None = None, since: datetime | None = None,
                until: datetime | None = None) -> list[dict[str, Any]]:
    """Newest first, keyset-paged (stable under inserts): by id, or with ``since`` or
    ``until`` by received_at then id."""
    return fetch_page(conn, _RECENT, page, source=source, reason=reason, since=since,
                      until=until)


def get(conn: psycopg.Connection, letter_id: int) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = %s",
                       (letter_id,)).fetchone()


def mark_replayed(conn: psycopg.Connection, letter_id: int, replay_ingest_id: str,
                  again: bool = True) -> bool:
    """Record a replay; with ``again`` False only of a letter not replayed yet. The row
    stays locked until the caller commits: a second replay of the same letter waits,
    then finds it replayed. False if nothing was marked."""
    return conn.execute(
        "UPDATE dead_letters SET replayed_at = now(), replay_ingest_id = %s "
        "WHERE id = %s AND (replayed_at IS NULL OR %s) RETURNING id",
        (replay_ingest_id, letter_id, again),
    ).fetchone() is not None


def count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL").fetchone()[0]


# `hookline replay`: unreplayed letters matching the filters, oldest first, keyset-paged.
_UNREPLAYED = " AND ".join(("replayed_at IS NULL", *_FILTERS))


def count_unreplayed(
    conn: psycopg.Connection, source: str | None = None, reason: str | None = None,
    since: datetime | None = None, until: datetime | None = None,
) -> int:
    params = dict(source=source, reason=reason, since=since, until=until)
    return conn.execute(f"SELECT count(*) FROM dead_letters WHERE {_UNREPLAYED}",
                        params).fetchone()[0]


def max_id(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT coalesce(max(id), 0) FROM dead_letters").fetchone()[0]


def unreplayed_ids(
    conn: psycopg.Connection, after_id: int, up_to_id: int, limit: int,
    source: str | None = None, reason: str | None = None,
    since: datetime | None = None, until: datetime | None = None,
) -> list[int]:
    params = dict(source=source, reason=reason, since=since, until=until, after=after_id,
                  upto=up_to_id, limit=limit)
    sql = f"""
    SELECT id FROM dead_letters
    WHERE id > %(after)s AND id <= %(upto)s AND {_UNREPLAYED}
    ORDER BY id LIMIT %(limit)s
    """
    return [r[0] for r in conn.execute(sql, params)]


def by_ingest_id(conn: psycopg.Connection, ingest_id: str) -> dict[str, Any] | None:
    """The dead letter a callback (e.g. a replay) became, if it became one."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute("SELECT id, reason, created_at FROM dead_letters WHERE ingest_id = %s",
                       (ingest_id,)).fetchone()
