"""Retention: delete what is older than HOOKLINE_RETENTION_DAYS, in small batches.

Each batch is one short DELETE of at most ``batch`` rows in its own
transaction, so the purge never holds many locks or a long snapshot while
workers apply new batches.

* events, by received_at. Their status history, deliveries and delivery
  attempts go with them (ON DELETE CASCADE, each through an index). An event
  with a delivery still pending or retrying is kept until that settles, unless
  the delivery's endpoint is disabled: disabled endpoints send nothing, and
  their outbox would otherwise keep its events (and be walked by every purge)
  for ever.
  Deduplication is the unique key on events: a duplicate of a purged event is
  applied again, so deduplication holds exactly as long as events are kept.
* dead letters that were replayed before the cutoff. A dead letter never
  replayed is the only copy of a callback that was answered 202, so retention
  never deletes it; replay it (or fix the cause and replay it) instead.
* messages (one summary row per message) are kept: they are small, and a late
  receipt for an old message must still rank against its earlier statuses.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
import psycopg.errors

from shared.db.stats import table_exists

log = logging.getLogger(__name__)

BATCH = 5000
# Any constant distinct from the migrations' lock: one purge at a time.
_LOCK_ID = 0x686F6F6C


def _events_sql(conn: psycopg.Connection) -> str:
    unsettled = ""
    if table_exists(conn, "deliveries"):
        unsettled = """AND NOT EXISTS (SELECT 1 FROM deliveries d JOIN endpoints en
                       ON en.id = d.endpoint_id AND en.enabled
                       WHERE d.event_id = e.id AND d.status IN ('pending', 'failed'))"""
    return f"""
    DELETE FROM events WHERE id IN (
        SELECT e.id FROM events e WHERE e.received_at < %(cutoff)s {unsettled}
        ORDER BY e.received_at LIMIT %(limit)s)
    """


_DEAD_LETTERS = """
DELETE FROM dead_letters WHERE id IN (
    SELECT id FROM dead_letters WHERE replayed_at < %(cutoff)s LIMIT %(limit)s)
"""


@dataclass
class Purged:
    deleted: dict[str, int] = field(default_factory=dict)
    finished: bool = True  # False: the time budget ran out with rows left to delete
    skipped: bool = False  # another purge holds the lock


def purge(conn: psycopg.Connection, cutoff: datetime, batch: int = BATCH,
          budget_seconds: float = 120.0) -> Purged:
    """Delete rows older than ``cutoff`` on an autocommit connection."""
    if not conn.autocommit:
        raise ValueError("purge needs an autocommit connection: one transaction per batch")
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_ID,)).fetchone()[0]:
        return Purged(skipped=True)
    deadline = time.monotonic() + budget_seconds
    out = Purged()
    try:
        for table, sql in (("dead_letters", _DEAD_LETTERS), ("events", _events_sql(conn))):
            n, done = _batches(conn, table, sql, cutoff, batch, deadline)
            out.deleted[table] = n
            if not done:
                out.finished = False
                break
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return out


def _batches(conn: psycopg.Connection, table: str, sql: str, cutoff: datetime, batch: int,
             deadline: float) -> tuple[int, bool]:
    """(rows deleted, whether the table is done)."""
    total = 0
    while True:
        try:
            n = conn.execute(sql, {"cutoff": cutoff, "limit": batch}).rowcount
        except psycopg.errors.ForeignKeyViolation as exc:
            # A table added later references this one without ON DELETE CASCADE:
            # keep the rows rather than guess, and say which constraint.
            log.error("retention cannot delete from %s: %s", table, exc,
                      extra={"table": table})
            return total, True
        total += n
        if n < batch:
            return total, True
        if time.monotonic() >= deadline:
            return total, False
