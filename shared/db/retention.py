"""Retention: what is older than HOOKLINE_RETENTION_DAYS goes.

* The partitioned tables (migration 010: events, their keys, status history,
  inbound, deliveries, attempts) lose whole partitions: each one that ends at or
  before the cutoff is dropped (shared.db.partitions), one catalogue change where a
  delete would write and vacuum every row. An outbox partition with deliveries still
  to send to an enabled endpoint is kept until they settle (disabled endpoints send
  nothing, so theirs do not hold it). A partition is dropped only once every event of
  its range was received before the cutoff: retention follows receipt time, not the
  provider's clock, so a callback stamped last month and received today keeps its
  dedupe keys and history for HOOKLINE_RETENTION_DAYS from today (its partition, with
  the rest of its day, waits that long).
  Deduplication lives in event_keys, partitioned the same way: a duplicate of an
  event whose partition is gone is applied again, so deduplication holds exactly as
  long as events are kept: at least HOOKLINE_RETENTION_DAYS after receipt.
* Their default partitions (rows whose time had no partition, e.g. a provider clock
  years off) and, while an installation converts, the legacy tables lose old rows
  by batched deletes: each batch is one short DELETE in its own transaction, so the
  purge never holds many locks or a long snapshot while workers apply batches. A row
  goes when its time and its event's receipt are both before the cutoff.
* dead letters that were replayed before the cutoff. A dead letter never
  replayed is the only copy of a callback that was answered 202, so retention
  never deletes it; replay it (or fix the cause and replay it) instead.
* messages (one summary row per message) and consent records are kept: they are
  small, and a late receipt for an old message must still rank against its
  earlier statuses.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import psycopg
import psycopg.errors

from shared.db import events, locks, partitions
from shared.db.outbox import ordering
from shared.db.stats import table_exists

log = logging.getLogger(__name__)

BATCH = 5000


_DEAD_LETTERS = """
DELETE FROM dead_letters WHERE id IN (
    SELECT id FROM dead_letters WHERE replayed_at < %(cutoff)s LIMIT %(limit)s)
"""

# Legacy events (before migration 010): their history, deliveries and attempts go
# with them by ON DELETE CASCADE. One with a delivery still to send to an enabled
# endpoint is kept until that settles.
_LEGACY_EVENTS = """
DELETE FROM events_legacy WHERE id IN (
    SELECT e.id FROM events_legacy e WHERE e.received_at < %(cutoff)s
      AND NOT EXISTS (SELECT 1 FROM deliveries_legacy d JOIN endpoints en
                      ON en.id = d.endpoint_id AND en.enabled
                      WHERE d.event_id = e.id AND d.status IN ('pending', 'failed'))
    ORDER BY e.received_at LIMIT %(limit)s)
"""

_DEFAULT = "DELETE FROM {table} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {table} " \
    "WHERE {column} < %(cutoff)s {keep} LIMIT %(limit)s))"
# A default partition holds what its provider stamped outside the partitions made:
# often a callback stamped long ago and received just now (an old dead letter
# replayed, a provider's backlog, a wrong clock). Its row goes by its receipt: kept
# while its event was received after the cutoff, so its dedupe key and history last
# HOOKLINE_RETENTION_DAYS from receipt like everyone else's. Keys from before
# migration 011 have no received_at and go by their bucket.
_RECEIVED = {
    "events": "AND received_at < %(cutoff)s",
    "event_keys": "AND (received_at IS NULL OR received_at < %(cutoff)s)",
}
_EVENT_RECEIVED = """AND NOT EXISTS (SELECT 1 FROM events e
    WHERE e.id = {table}.event_id AND e.received_at >= %(cutoff)s)"""
_KEEP_UNSENT = """AND NOT (status IN ('pending', 'failed') AND EXISTS (
    SELECT 1 FROM endpoints en WHERE en.id = endpoint_id AND en.enabled))"""


def _deletes(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(what, DELETE statement) for each table purged row by row, in order."""
    out = [("dead_letters", _DEAD_LETTERS)]
    if table_exists(conn, "events_legacy"):
        out.append(("events_legacy", _LEGACY_EVENTS))
    # Events first: a purge whose budget runs out has done the largest table.
    for parent, column in sorted(partitions.TABLES, key=lambda t: t[0] != "events"):
        table = f"{parent}_default"
        keep = _KEEP_UNSENT if parent == "deliveries" else ""
        if parent in _RECEIVED:
            keep += " " + _RECEIVED[parent]
        elif parent != "delivery_attempts":  # attempts go by hookline's own clock
            keep += " " + _EVENT_RECEIVED.format(table=table)
        out.append((table, _DEFAULT.format(table=table, column=column, keep=keep)))
    return out


@dataclass
class Purged:
    deleted: dict[str, int] = field(default_factory=dict)  # rows, per table deleted from
    dropped: list[str] = field(default_factory=list)       # partitions dropped
    dropped_rows: int = 0                                  # their rows (planner estimate)
    kept: list[str] = field(default_factory=list)          # expired, kept for unsent deliveries
    finished: bool = True  # False: the time budget ran out with rows left to delete
    skipped: bool = False  # another purge holds the lock
    released: int = 0      # held deliveries let go whose head retention removed


def purge(conn: psycopg.Connection, cutoff: datetime, batch: int = BATCH,
          budget_seconds: float = 120.0) -> Purged:
    """Drop and delete what is older than ``cutoff`` on an autocommit connection."""
    if not conn.autocommit:
        raise ValueError("purge needs an autocommit connection: one transaction per batch")
    with locks.held(conn, locks.RETENTION, wait="try") as took:
        if not took:  # one purge at a time
            return Purged(skipped=True)
        deadline = time.monotonic() + budget_seconds
        out = Purged()
        drop = partitions.drop_expired(conn, cutoff, key_days=events.DEDUPE_DAYS)
        out.dropped, out.dropped_rows, out.kept = drop.partitions, drop.rows, drop.kept
        for table, sql in _deletes(conn):
            n, done = _batches(conn, table, sql, cutoff, batch, deadline)
            out.deleted[table] = n
            if not done:
                out.finished = False
                break
        if table_exists(conn, "endpoints"):
            # A disabled ordered endpoint's unsent head may have gone: what it held goes.
            out.released = ordering.release_stranded(conn)
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
