"""Time partitions of the append-only tables (migration 010): made ahead, dropped whole.

Each parent is range-partitioned on one time column and has a DEFAULT partition
for rows outside the partitions made so far. Partitions are ``interval`` whole
UTC days long (HOOKLINE_PARTITION_INTERVAL), aligned to the epoch, and named by
their first day (``events_p20261203``).

* ``ensure`` makes the partitions from a little behind now (or from ``since``) to
  ``ahead`` days ahead. Rows already in the default partition for a new partition's
  range move into it in the same transaction.
* ``drop_expired`` drops every partition that ends at or before the cutoff: one
  catalogue change instead of a delete per row. An outbox partition that still
  has deliveries to send to an enabled endpoint is kept until they settle.
* Retention (shared.db.retention) deletes the default partitions' old rows in
  batches: they hold only the stragglers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import psycopg
import psycopg.errors
from psycopg import sql

from shared.db import locks
from shared.retry import run_with_retries

log = logging.getLogger(__name__)

# (parent, partition column). Order: what is dropped first goes first.
TABLES: tuple[tuple[str, str], ...] = (
    ("delivery_attempts", "attempted_at"),
    ("deliveries", "occurred_at"),
    ("inbound_messages", "occurred_at"),
    ("message_status_history", "occurred_at"),
    ("events", "occurred_at"),
    ("event_keys", "bucket"),
)
COLUMN = dict(TABLES)
# The outbox is a queue: vacuum it after 2 % of its rows changed (migration 005).
# Storage parameters are per partition, not inherited from the parent.
_OPTIONS = {"deliveries": "autovacuum_vacuum_scale_factor = 0.02"}
DEFAULT_INTERVAL_DAYS = 1
DEFAULT_AHEAD_DAYS = 3
# Partitions are made from this far behind now: a provider's timestamp is a little
# behind the clock, and a partition made for yesterday is still filled today.
BEHIND_DAYS = 2
# Making and dropping a partition each need a lock that the drains' and claims' own
# locks hold off; while such a request waits, every new query on the table queues
# behind it. So: a short wait, tried again a few times, then left to the next run.
LOCK_TIMEOUT = "200ms"
LOCK_TRIES = 10
LOCK_PAUSE_SECONDS = 0.5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True, slots=True)
class Partition:
    name: str
    lower: datetime
    upper: datetime


def start_of(t: datetime, interval_days: int) -> datetime:
    """The first instant of the interval-aligned partition that holds ``t``."""
    days = (t.astimezone(UTC) - _EPOCH).days
    return _EPOCH + timedelta(days=days - days % interval_days)


def name_for(parent: str, lower: datetime) -> str:
    return f"{parent}_p{lower:%Y%m%d}"


def partitions(conn: psycopg.Connection, parent: str) -> list[Partition]:
    """The range partitions of ``parent`` (not its default), oldest first."""
    rows = conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
        (parent,)).fetchall()
    out = []
    for name, bound in rows:
        match = _BOUND.search(bound or "")
        if match:
            out.append(Partition(name, datetime.fromisoformat(match.group(1)),
                                 datetime.fromisoformat(match.group(2))))
    return sorted(out, key=lambda p: p.lower)


def wanted(now: datetime, interval_days: int, ahead_days: int,
           since: datetime | None = None) -> list[tuple[datetime, datetime]]:
    """The ranges that should exist: from BEHIND_DAYS behind now (or ``since``, if
    earlier) to ``ahead_days`` ahead."""
    step = timedelta(days=interval_days)
    behind = now - timedelta(days=BEHIND_DAYS)
    lower = start_of(min(behind, since) if since else behind, interval_days)
    end = now + timedelta(days=ahead_days)
    out = []
    while lower <= end:
        out.append((lower, lower + step))
        lower += step
    return out


def ensure(conn: psycopg.Connection, now: datetime | None = None,
           interval_days: int = DEFAULT_INTERVAL_DAYS,
           ahead_days: int = DEFAULT_AHEAD_DAYS, since: datetime | None = None) -> list[str]:
    """Make the partitions that should exist (autocommit connection); the names made.
    ``since`` reaches further back (the conversion's rows, from the retention cutoff).
    A range that overlaps an existing partition (the interval was changed) is left to
    the partitions already there and the default."""
    now = now or datetime.now(UTC)
    # One at a time (migrate, the scheduler's purge, `hookline partitions`): two would
    # both see a range missing and the second CREATE TABLE would fail.
    with locks.held(conn, locks.PARTITIONS):
        made = _ensure(conn, now, interval_days, ahead_days, since)
    if made:
        log.info("made partitions %s", made, extra={"partitions": made})
    return made


def _ensure(conn: psycopg.Connection, now: datetime, interval_days: int, ahead_days: int,
            since: datetime | None) -> list[str]:
    made = []
    for parent, column in TABLES:
        have = partitions(conn, parent)
        for lower, upper in wanted(now, interval_days, ahead_days, since):
            if any(p.lower < upper and lower < p.upper for p in have):
                continue
            name = name_for(parent, lower)
            if not with_lock_retries(partial(_create, conn, parent, column, name, lower, upper),
                           "made", name):
                continue
            made.append(name)
            have.append(Partition(name, lower, upper))
    return made


def with_lock_retries(step: Callable[[], object], what: str, name: str) -> bool:
    """Run ``step`` (one transaction under LOCK_TIMEOUT) until it gets its locks; False
    when it never did (logged: ``name`` not ``what``)."""
    try:
        run_with_retries(step, _lock_busy, [LOCK_PAUSE_SECONDS] * (LOCK_TRIES - 1))
    except psycopg.errors.LockNotAvailable:
        log.warning("%s not %s: its lock was busy %s times; the next run tries again",
                    name, what, LOCK_TRIES, extra={"partition": name})
        return False
    return True


def _lock_busy(exc: Exception) -> bool:
    return isinstance(exc, psycopg.errors.LockNotAvailable)


def _create(conn: psycopg.Connection, parent: str, column: str, name: str,
            lower: datetime, upper: datetime) -> None:
    """Made apart and then attached: ATTACH PARTITION takes only a SHARE UPDATE
    EXCLUSIVE lock on the parent (CREATE ... PARTITION OF takes an exclusive one, which
    would stop every drain and claim). The default partition is locked first, so no
    row for the range lands in it between the move and the attach."""
    default = f"{parent}_default"
    options = _OPTIONS.get(parent)
    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
            sql.Identifier(default)))
        conn.execute(sql.SQL(
            "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)" +
            (f" WITH ({options})" if options else "")).format(
            sql.Identifier(name), sql.Identifier(parent)))
        conn.execute(sql.SQL(
            "WITH moved AS (DELETE FROM {d} WHERE {c} >= %(lo)s AND {c} < %(hi)s RETURNING *) "
            "INSERT INTO {p} SELECT * FROM moved").format(
            d=sql.Identifier(default), c=sql.Identifier(column), p=sql.Identifier(name)),
            {"lo": lower, "hi": upper})
        conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})")
                     .format(sql.Identifier(parent), sql.Identifier(name),
                             sql.Literal(lower), sql.Literal(upper)))


# A deliveries partition with work left for an enabled endpoint is not dropped.
_UNSETTLED = """
SELECT EXISTS (SELECT 1 FROM {} d JOIN endpoints e ON e.id = d.endpoint_id AND e.enabled
               WHERE d.status IN ('pending', 'failed'))
"""


@dataclass
class Dropped:
    partitions: list[str]
    rows: int      # the planner's count of the rows they held (reltuples)
    kept: list[str]  # kept for deliveries still to send, or events received late


# Whether any event of a range was received after the cutoff: its rows in every table
# of that range must stay. One probe of the received_at index in the (pruned)
# partitions of the range.
_RECEIVED_LATE = """
SELECT EXISTS (SELECT 1 FROM events WHERE occurred_at >= %s AND occurred_at < %s
               AND received_at >= %s)
"""


def received_late(conn: psycopg.Connection, parent: str, part: Partition, cutoff: datetime,
                  key_days: int = 0) -> bool:
    """True if ``part`` holds rows of an event received at or after ``cutoff``. A key
    bucket holds the keys of events stamped up to ``key_days`` days before it."""
    if parent == "delivery_attempts":
        return False  # stamped by hookline's own clock when it made them
    lower = part.lower - timedelta(days=key_days) if parent == "event_keys" else part.lower
    return conn.execute(_RECEIVED_LATE, (lower, part.upper, cutoff)).fetchone()[0]


def drop_expired(conn: psycopg.Connection, cutoff: datetime, key_days: int = 0) -> Dropped:
    """Drop the partitions that end at or before ``cutoff`` (autocommit connection),
    except those holding an event received after it (retention follows receipt)."""
    out = Dropped([], 0, [])
    for parent, _column in TABLES:
        for part in partitions(conn, parent):
            if part.upper > cutoff:
                break
            if received_late(conn, parent, part, cutoff, key_days):
                out.kept.append(part.name)
                continue
            rows = _drop(conn, part.name, unsettled_check=parent == "deliveries")
            if rows == _KEPT:
                out.kept.append(part.name)
                continue
            if rows is not None:
                out.partitions.append(part.name)
                out.rows += rows
    return out


_KEPT = -1


def _drop(conn: psycopg.Connection, name: str, unsettled_check: bool = False) -> int | None:
    """Drop one partition; its row estimate, None if its lock stayed busy, _KEPT if
    ``unsettled_check`` found deliveries still to send in it. DROP of a partition takes
    an exclusive lock on the parent for a moment. The check runs under that lock, in the
    dropping transaction: a requeue between a check and a drop would otherwise be
    dropped pending."""
    rows = conn.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class "
                        "WHERE oid = %s::regclass", (name,)).fetchone()[0]
    kept = False

    def drop() -> None:
        nonlocal kept
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(LOCK_TIMEOUT)))
            ident = sql.Identifier(name)
            if unsettled_check:
                # The parent, as the DROP would lock it anyway: locked in the order every
                # writer takes (parent, then partition), so no deadlock.
                conn.execute("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
                kept = conn.execute(sql.SQL(_UNSETTLED).format(ident)).fetchone()[0]
                if kept:
                    return
            conn.execute(sql.SQL("DROP TABLE {}").format(ident))

    if not with_lock_retries(drop, "dropped", name):
        return None
    if kept:
        return _KEPT
    log.info("dropped partition %s", name, extra={"partition": name, "rows": rows})
    return int(rows)


ANALYZE_EVERY = timedelta(hours=1)


def analyze_parents(conn: psycopg.Connection, every: timedelta = ANALYZE_EVERY) -> list[str]:
    """ANALYZE each partitioned parent not analysed for ``every``; the ones analysed.
    Autovacuum analyses the partitions but never a partitioned parent, and without its
    statistics a query that joins the parent to itself (the held followers' release,
    migration 008 over a backlog) plans a nested loop over every row: 78 s against
    0.7 s analysed, at 10,000 pending deliveries."""
    done = []
    for parent, _column in TABLES:
        last = conn.execute("SELECT last_analyze FROM pg_stat_all_tables WHERE relid = "
                            "%s::regclass", (parent,)).fetchone()
        if last is None or last[0] is None or datetime.now(UTC) - last[0] >= every:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(parent)))
            done.append(parent)
    return done
