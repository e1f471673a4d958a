"""Moves an installation's rows from before migration 010 into the partitioned tables.

Migration 010 renames the old tables to ``*_legacy`` and creates the partitioned
ones in one short transaction, so new callbacks are applied at once. This module
then moves the old rows across, a batch of events at a time, while the pipeline
runs: each batch copies the events (and their keys into event_keys), their status
history, inbound rows, deliveries and the deliveries' attempts, then deletes the
events from the legacy tables (their foreign keys cascade to the rest), all in one
transaction. Events with deliveries still to send go first: until moved, nothing
claims them. When the legacy tables are empty they are dropped.

The scheduler's maintenance task runs it with a time budget
(``hookline partitions --convert`` runs it to the end).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg
import psycopg.errors

from shared.db import legacy, locks, partitions
from shared.db.outbox import ordering
from shared.db.stats import table_exists

log = logging.getLogger(__name__)

# Small: a new callback that duplicates an event of the batch waits for the batch's
# commit on that event's key (5,000 made such waits seconds long).
BATCH = 1000
# Children of an event, in the order they are copied.
_CHILDREN = ("message_status_history", "inbound_messages", "deliveries")
_LEGACY = ("delivery_attempts_legacy", "deliveries_legacy", "inbound_messages_legacy",
           "message_status_history_legacy", "events_legacy")

# Unsent deliveries first, a message at a time: every unsent delivery of a message
# moves in one batch, so an ordered endpoint's held followers never end up in the other
# table from the one that would let them go.
_PICK_UNSENT = """
WITH m AS (
    SELECT DISTINCT message_key FROM deliveries_legacy
    WHERE status IN ('pending', 'failed') AND message_key IS NOT NULL LIMIT %(n)s
)
SELECT DISTINCT d.event_id FROM deliveries_legacy d JOIN m USING (message_key)
WHERE d.status IN ('pending', 'failed')
UNION
(SELECT event_id FROM deliveries_legacy
 WHERE status IN ('pending', 'failed') AND message_key IS NULL LIMIT %(n)s)
"""
# The moved messages' held deliveries: the first pending of each is let go if its
# predecessor settled before the move (shared.db.outbox.ordering's own release).
_MOVED_HELD = """
SELECT array_agg(endpoint_id), array_agg(message_key) FROM (
    SELECT DISTINCT endpoint_id, message_key FROM deliveries
    WHERE event_id = ANY (%s) AND status IN ('pending', 'failed')
      AND next_attempt_at IS NULL AND message_key IS NOT NULL) h
"""
_PICK = "SELECT id FROM events_legacy ORDER BY id DESC LIMIT %s"
_KEYS = """
INSERT INTO event_keys (source, dedupe_key, bucket)
SELECT e.source, e.dedupe_key, date_trunc('day', e.occurred_at, 'UTC') + make_interval(days => g)
FROM events_legacy e CROSS JOIN generate_series(0, %s) AS g
WHERE e.id = ANY (%s)
ORDER BY 1, 2, 3
ON CONFLICT DO NOTHING
"""


@dataclass
class Moved:
    events: int = 0
    finished: bool = False  # the legacy tables are gone (or never were)
    skipped: bool = False   # another conversion holds the lock


def _columns(conn: psycopg.Connection, table: str) -> str:
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", (table,)).fetchall()
    return ", ".join(f'"{r[0]}"' for r in rows)


def _move(conn: psycopg.Connection, ids: list[int], dedupe_days: int,
          columns: dict[str, str]) -> None:
    """``columns``: each partitioned table's column list (_columns), read once a step."""
    with conn.transaction():
        cols = columns["events"]
        conn.execute(f"INSERT INTO events ({cols}) SELECT {cols} FROM events_legacy "
                     "WHERE id = ANY (%s)", (ids,))
        for table in _CHILDREN:
            cols = columns[table]
            conn.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {table}_legacy "
                         "WHERE event_id = ANY (%s)", (ids,))
        cols = columns["delivery_attempts"]
        conn.execute(
            f"INSERT INTO delivery_attempts ({cols}) SELECT {cols} FROM delivery_attempts_legacy "
            "WHERE delivery_id IN (SELECT id FROM deliveries_legacy WHERE event_id = ANY (%s))",
            (ids,))
        eps, keys = conn.execute(_MOVED_HELD, (ids,)).fetchone()
        if eps:
            cur = conn.cursor()
            ordering.lock_endpoints(cur, eps)
            ordering.release_first(cur, eps, keys)
        # The keys last, just before the delete: from here to the commit a new duplicate
        # of one of these events waits on its key.
        conn.execute(_KEYS, (dedupe_days, ids))
        conn.execute("DELETE FROM events_legacy WHERE id = ANY (%s)", (ids,))


def _drop(conn: psycopg.Connection) -> bool:
    """Drop the (empty) legacy tables; False if their locks stayed busy. Every drain's
    insert reads events_legacy while it exists, so the drop waits for them."""

    def drop() -> None:
        with conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{partitions.LOCK_TIMEOUT}'")
            conn.execute("DROP TABLE IF EXISTS " + ", ".join(_LEGACY))

    if not partitions.with_lock_retries(drop, "dropped", "events_legacy"):
        return False
    legacy.forget()
    log.info("conversion finished: legacy tables dropped")
    return True


def step(conn: psycopg.Connection, since: datetime, interval_days: int, dedupe_days: int,
         budget_seconds: float = 60.0, batch: int = BATCH) -> Moved:
    """Move legacy rows for up to ``budget_seconds`` (autocommit connection). ``since``
    is the retention cutoff: partitions are made back to it first, so the moved rows land
    in partitions, not in the defaults (older ones go to the defaults and retention)."""
    out = Moved()
    if not table_exists(conn, "events_legacy"):
        out.finished = True
        return out
    # One at a time: two would pick the same events, and the second's copy would fail.
    with locks.held(conn, locks.CONVERT, wait="try") as took:
        if not took:
            out.skipped = True
            return out
        _run(conn, out, since, interval_days, dedupe_days, budget_seconds, batch)
    log.info("converted %s legacy events", out.events,
             extra={"events": out.events, "finished": out.finished})
    return out


def _run(conn: psycopg.Connection, out: Moved, since: datetime, interval_days: int,
         dedupe_days: int, budget_seconds: float, batch: int) -> None:
    partitions.ensure(conn, interval_days=interval_days, since=since)
    columns = {t: _columns(conn, t) for t in ("events", *_CHILDREN, "delivery_attempts")}
    deadline = time.monotonic() + budget_seconds
    while True:  # at least one batch a step, however small the budget
        ids = [r[0] for r in conn.execute(_PICK_UNSENT, {"n": batch})]
        if not ids:
            ids = [r[0] for r in conn.execute(_PICK, (batch,))]
        if not ids:
            out.finished = _drop(conn)
            return
        _move(conn, ids, dedupe_days, columns)
        out.events += len(ids)
        if time.monotonic() >= deadline:
            return


def remaining(conn: psycopg.Connection) -> int | None:
    """Legacy events still to move; None when there is nothing to convert."""
    if not table_exists(conn, "events_legacy"):
        return None
    return conn.execute("SELECT count(*) FROM events_legacy").fetchone()[0]
