"""What purging one expired day costs, unpartitioned (the old batched delete) and
time-partitioned (migration 010: dropping the day's partitions), and what the purge
does to a drain applying batches beside it.

    python deploy/bench/purge_day.py [--events 10000000] [--layouts old,new]
                                     [--recent-fraction 0.1] [--baseline 10]
                                     [--purge-budget 7200] [--drain-batch 500]

Each layout gets a fresh database (common.services):

* old: the schema at 009_list_indexes (no partitions), purged as the retention before
  010 ran it: ``DELETE FROM events WHERE id IN (SELECT ... ORDER BY received_at
  LIMIT 5000)`` in autocommit, one transaction per batch, the status history going
  with its events by ON DELETE CASCADE;
* new: the schema at 010 (daily partitions), purged by ``shared.db.retention.purge``.

Loaded by SQL (generate_series, in chunks of a million): ``--events`` receipts whose
occurred_at and received_at lie within one UTC day 40 days ago (past the 30-day
retention), each with one message_status_history row and, in the new layout, its
event_keys rows (the day of occurred_at and the next, as the dedupe insert writes
them); and ``--recent-fraction`` as many on a day 20 days ago, which must survive.
Then VACUUM ANALYZE and CHECKPOINT, so the purge starts from a steady state.
Autovacuum is off on the benchmark's tables, so when it wakes does not decide what
the figures see; a VACUUM after the purge is measured instead.

Beside the purge, a drain in a process of its own applies batches of receipts with
current timestamps and fresh keys through the real code path (events.rows and
apply.apply_batch in one transaction; in the old layout the pre-010 events insert,
since the current one writes event_keys). Its events/s in 1-second windows are taken
for ``--baseline`` seconds before the purge and while it runs (at least one window).

Figures: purge wall time; WAL written (the server-wide LSN difference, less the
drain's share: its events during the purge times its WAL per event when it ran alone,
for the baseline and for 5 s after the purge; +- half the difference of the two);
rows removed; size of the tables (every partition, with indexes and TOAST) before and
after; the drain's rates (median, min, p5) before and during; its longest batch
during the purge (DROP TABLE holds an exclusive lock on the parent for a moment); and
a VACUUM of the tables after the purge, with the drain stopped (the old way leaves
every deleted row to vacuum).
A purge still running after ``--purge-budget`` seconds is stopped and reported as
incomplete. Ctrl-C (or SIGTERM) stops the drain and drops the databases.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection as Pipe
from multiprocessing.synchronize import Event

import psycopg
from common import flags, percentile, services

from shared.db import apply, events, partitions, retention
from shared.model import STATUS_EVENT_TYPE, NormalisedEvent

OLD_SCHEMA = "009_list_indexes"
LAYOUTS = ("old", "new")
RETENTION_DAYS = 30  # shared.config's default
OLD_DAYS_AGO = 40
OLD_RANGE_DAYS = 5  # the partitions ensure(now=the old day) makes lie this close to it
RECENT_DAYS_AGO = 20
CHUNK = 1_000_000
SPREAD_SECONDS = 86_000  # occurred_at across the day; received_at 2 s later, same day
WARMUP_SECONDS = 3.0
AFTER_SECONDS = 5.0  # the drain alone after the purge, for its WAL per event
OLD_BATCH = 5000  # the pre-010 retention's batch
TABLES = {"old": ("events", "message_status_history"),
          "new": ("events", "message_status_history", "event_keys")}
# The column each table's rows are counted by, for the census before and after.
CENSUS_COLUMN = {"events": "occurred_at", "message_status_history": "occurred_at",
                 "event_keys": "bucket"}

# ---- the old way: shared/db/retention.py before migration 010 (HEAD~3), verbatim ----

_OLD_EVENTS = """
    DELETE FROM events WHERE id IN (
        SELECT e.id FROM events e WHERE e.received_at < %(cutoff)s AND NOT EXISTS (SELECT 1 FROM deliveries d JOIN endpoints en
                       ON en.id = d.endpoint_id AND en.enabled
                       WHERE d.event_id = e.id AND d.status IN ('pending', 'failed'))
        ORDER BY e.received_at LIMIT %(limit)s)
    """  # noqa: E501 - as the old _events_sql formatted it

_OLD_DEAD_LETTERS = """
DELETE FROM dead_letters WHERE id IN (
    SELECT id FROM dead_letters WHERE replayed_at < %(cutoff)s LIMIT %(limit)s)
"""

# ---- and the events insert before 010 (shared/db/events.py at HEAD~3), for the drain ----

_OLD_INSERT = """
INSERT INTO events (source, dedupe_key, type, channel, message_id, sender, msisdn, status,
                    provider_status, provider_event_id, occurred_at, ingest_id, data, raw,
                    received_at)
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                     %b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[],
                     %b::text[], %b::jsonb[], %b::jsonb[], %b::timestamptz[])
ORDER BY 1, 2
ON CONFLICT (source, dedupe_key) DO NOTHING
RETURNING id, source, dedupe_key
"""


def _old_insert_new(cur: psycopg.Cursor, batch: events.Rows) -> list[events.Stored]:
    if not batch.unique:
        return []
    cur.execute(_OLD_INSERT, batch.columns)
    stored = [events.Stored(r[0], batch.unique[(r[1], r[2])].event) for r in cur.fetchall()]
    stored.sort(key=lambda s: s.id)
    return stored


# ---- loading ----

# One chunk of receipts: i in [lo, hi) of a day's n, each with its history row.
_LOAD = """
WITH e AS (
    INSERT INTO events (source, dedupe_key, type, channel, message_id, sender, msisdn, status,
                        provider_status, provider_event_id, occurred_at, ingest_id, data, raw,
                        received_at, processed_at)
    SELECT 'kaleyra-rcs', 'e:' || %(tag)s || '-' || i, 'message.delivered', 'rcs',
           %(tag)s || '-m' || i, 'hookline-demo', '+4477' || lpad(i::text, 9, '0'),
           'delivered', 'DELIVERED', %(tag)s || '-p' || i, t, %(tag)s || '-i' || i,
           jsonb_build_object('kaleyra_status', 'DELIVERED', 'submitted_at', t),
           jsonb_build_object('type', 'DELIVERED', 'eventId', %(tag)s || '-p' || i,
                              'messageId', %(tag)s || '-m' || i, 'timestamp', t,
                              'msisdn', '+4477' || lpad(i::text, 9, '0'),
                              'sender', 'hookline-demo', 'channel', 'rcs',
                              'bot_id', 'hookline-demo-bot', 'status', 'DELIVERED'),
           t + interval '2 seconds', t + interval '3 seconds'
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i,
         LATERAL (SELECT %(day)s::timestamptz + make_interval(secs => i * %(step)s)) AS s(t)
    RETURNING id, source, message_id, status, provider_status, occurred_at
)
INSERT INTO message_status_history (event_id, source, message_id, status, provider_status,
                                    occurred_at, recorded_at)
SELECT id, source, message_id, status, provider_status, occurred_at,
       occurred_at + interval '3 seconds'
FROM e
"""
# Their dedupe keys (new layout): the UTC day of occurred_at and DEDUPE_DAYS after it.
_LOAD_KEYS = """
INSERT INTO event_keys (source, dedupe_key, bucket)
SELECT 'kaleyra-rcs', 'e:' || %(tag)s || '-' || i, %(day)s::timestamptz + make_interval(days => g)
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i,
     generate_series(0, %(dedupe_days)s) AS g
"""


def _midnight(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _load_day(url: str, layout: str, tag: str, day: datetime, n: int) -> None:
    """n receipts (and their history, and keys in the new layout) within ``day``."""
    started = time.perf_counter()
    params = {"tag": tag, "day": day, "step": SPREAD_SECONDS / max(n, 1),
              "dedupe_days": events.DEDUPE_DAYS}
    with psycopg.connect(url, autocommit=True) as conn:
        for lo in range(0, n, CHUNK):
            chunk = {**params, "lo": lo, "hi": min(n, lo + CHUNK)}
            with conn.transaction():
                conn.execute(_LOAD, chunk)
                if layout == "new":
                    conn.execute(_LOAD_KEYS, chunk)
            took = time.perf_counter() - started
            print(f"  {layout}: {tag} day {day:%Y-%m-%d}: {chunk['hi']:,} / {n:,} events "
                  f"({took:.1f} s, {chunk['hi'] / took:,.0f}/s)", flush=True)


def _trim(conn: psycopg.Connection, day: datetime) -> int:
    """Drop the (empty) partitions ``ensure`` made around the expired day but the day's
    own and, for event_keys, the next day's (its second keys): the purge then drops what
    a day's purge drops, not a week of empty partitions. How many are left there."""
    keep = {(parent, day) for parent, _column in partitions.TABLES}
    keep.add(("event_keys", day + timedelta(days=1)))
    kept = 0
    for parent, _column in partitions.TABLES:
        for part in partitions.partitions(conn, parent):
            if abs(part.lower - day) > timedelta(days=OLD_RANGE_DAYS):
                continue
            if (parent, part.lower) in keep:
                kept += 1
            else:
                conn.execute(f'DROP TABLE "{part.name}"')
    return kept


def _load(url: str, layout: str, n: int, recent: int, old_day: datetime,
          recent_day: datetime) -> tuple[float, float]:
    """(load seconds, VACUUM ANALYZE + CHECKPOINT seconds)."""
    started = time.perf_counter()
    if layout == "new":
        with psycopg.connect(url, autocommit=True) as conn:
            made = [*partitions.ensure(conn, now=old_day), *partitions.ensure(conn, now=recent_day)]
            kept = _trim(conn, old_day)
        print(f"  new: made {len(made)} partitions around the two days; of those around the "
              f"old day kept the {kept} its rows go to", flush=True)
    _load_day(url, layout, "old", old_day, n)
    _load_day(url, layout, "recent", recent_day, recent)
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        _no_autovacuum(conn)
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    settled = time.perf_counter() - started
    print(f"  {layout}: loaded in {loaded:.1f} s, VACUUM ANALYZE + CHECKPOINT {settled:.1f} s",
          flush=True)
    return loaded, settled


def _no_autovacuum(conn: psycopg.Connection) -> None:
    """Autovacuum off for every table (the VACUUM after the purge is measured instead):
    else when it wakes, on which table, decides what the drain and the WAL figures see."""
    tables = conn.execute("SELECT oid::regclass::text FROM pg_class WHERE relkind = 'r' "
                          "AND relnamespace = 'public'::regnamespace").fetchall()
    for (table,) in tables:
        conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false, "
                     "toast.autovacuum_enabled = false)")


# ---- measuring ----


def _lsn(conn: psycopg.Connection) -> str:
    return str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])


def _wal_since(conn: psycopg.Connection, lsn: str) -> int:
    return int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)",
                            (lsn,)).fetchone()[0])


_SIZE = """
SELECT CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)
                                      FROM pg_partition_tree(c.oid) t WHERE t.isleaf)
            ELSE pg_total_relation_size(c.oid) END
FROM pg_class c WHERE c.oid = %s::regclass
"""


def _sizes(conn: psycopg.Connection, layout: str) -> dict[str, int]:
    """Bytes of each table with its indexes and TOAST: of every leaf partition when it
    is partitioned."""
    return {t: int(conn.execute(_SIZE, (t,)).fetchone()[0]) for t in TABLES[layout]}


def _census(conn: psycopg.Connection, layout: str, days: dict[str, datetime]
            ) -> dict[tuple[str, str], int]:
    """Rows of each table on each loaded day (and the day after, where the second
    dedupe key lies): {(table, "old" | "recent"): rows}. The drain writes today only."""
    span = timedelta(days=events.DEDUPE_DAYS + 1)
    out = {}
    for table in TABLES[layout]:
        c = CENSUS_COLUMN[table]
        ranges = [f"{c} >= '{day.isoformat()}' AND {c} < '{(day + span).isoformat()}'"
                  for day in days.values()]
        counted = ", ".join(f"count(*) FILTER (WHERE {r})" for r in ranges)
        where = " OR ".join(f"({r})" for r in ranges)
        # One scan for both days (the old layout has no index to count them by).
        counts = conn.execute(f"SELECT {counted} FROM {table} WHERE {where}").fetchone()
        out.update({(table, tag): int(n) for tag, n in zip(days, counts, strict=True)})
    return out


# ---- the drain beside the purge ----


def _receipts(pid: int, start: int, n: int) -> list[events.Incoming]:
    """n receipts of fresh keys, now; three statuses per message as they come."""
    now = datetime.now(UTC)
    out = []
    for i in range(start, start + n):
        status = ("sent", "delivered", "read")[i % 3]
        event = NormalisedEvent(
            type=STATUS_EVENT_TYPE[status].value, source="kaleyra-rcs", channel="rcs",
            occurred_at=now, dedupe_key=f"e:drain-{pid}-{i}",
            message_id=f"drain-{pid}-m{i // 3}", sender="hookline-demo",
            msisdn=f"+4478{i // 3 % 10**9:09d}", status=status,
            provider_status=status.upper(), provider_event_id=f"drain-{pid}-p{i}",
            data={"kaleyra_status": status.upper()}, ingest_id=f"drain-{pid}-i{i}")
        raw = {"type": status.upper(), "eventId": event.provider_event_id,
               "messageId": event.message_id, "timestamp": now.isoformat(),
               "msisdn": event.msisdn, "sender": "hookline-demo", "channel": "rcs",
               "bot_id": "hookline-demo-bot", "status": status.upper()}
        out.append(events.Incoming(event, raw, now))
    return out


def _drain(url: str, layout: str, batch: int, ready: Event, stop: Event, send: Pipe) -> None:
    """The drain process: batches until ``stop``; then sends its (start, end, events)
    per batch, monotonic seconds (CLOCK_MONOTONIC: one clock for every process)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
    if layout == "old":
        events.insert_new = _old_insert_new  # the 009 schema has no event_keys
    samples: list[tuple[float, float, int]] = []
    pid, done = os.getpid(), 0
    with psycopg.connect(url, autocommit=True) as conn:
        # As the worker's pool sets connections up (shared.db.pool).
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SET jit = off")
        ready.set()
        while not stop.is_set():
            rows = events.rows(_receipts(pid, done, batch))  # the read-ahead's share
            started = time.monotonic()
            with conn.transaction():
                applied = apply.apply_batch(conn, rows, [])
            samples.append((started, time.monotonic(), len(applied.stored)))
            done += batch
    send.send(samples)
    send.close()


@dataclass
class Drain:
    samples: list[tuple[float, float, int]] = field(default_factory=list)


@contextmanager
def _draining(url: str, layout: str, batch: int) -> Iterator[Drain]:
    """A drain running in its own process; its samples are filled in when the block
    ends (it is stopped however the block ends)."""
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_drain, args=(url, layout, batch, ready, stop, send), daemon=True)
    proc.start()
    send.close()
    out = Drain()
    try:
        while not ready.wait(0.5):
            if not proc.is_alive():
                raise RuntimeError("the drain did not start")
        yield out
    finally:
        stop.set()
        with suppress(EOFError):  # it failed: its traceback is on stderr
            if receive.poll(120):
                out.samples = receive.recv()
        proc.join(10)
        if proc.is_alive():
            proc.terminate()
            proc.join()


def _rates(samples: list[tuple[float, float, int]], start: float, seconds: int) -> list[float]:
    """Events/s in each of ``seconds`` 1-second windows from ``start`` (a batch counts
    in the window it ended in)."""
    counts = [0] * seconds
    for _begun, ended, n in samples:
        k = math.floor(ended - start)
        if 0 <= k < seconds:
            counts[k] += n
    return [float(c) for c in counts]


def _max_latency(samples: list[tuple[float, float, int]], start: float, end: float) -> float:
    """The longest batch that overlapped [start, end], in seconds."""
    return max((e - b for b, e, _n in samples if b < end and e > start), default=float("nan"))


@dataclass
class Rates:
    median: float
    low: float
    p5: float
    windows: int

    @classmethod
    def of(cls, rates: list[float]) -> Rates:
        if not rates:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(statistics.median(rates), min(rates), percentile(rates, 0.05), len(rates))

    def __str__(self) -> str:
        return (f"median {self.median:,.0f}/s, min {self.low:,.0f}/s, p5 {self.p5:,.0f}/s "
                f"({self.windows} 1-s windows)")


# ---- purging ----


def _purge_old(conn: psycopg.Connection, cutoff: datetime, deadline: float
               ) -> tuple[int, bool]:
    """The pre-010 purge: (events deleted, whether it finished before ``deadline``)."""
    args = {"cutoff": cutoff, "limit": OLD_BATCH}
    while conn.execute(_OLD_DEAD_LETTERS, args).rowcount == OLD_BATCH:
        pass
    total, started, shown = 0, time.monotonic(), time.monotonic()
    while True:
        n = conn.execute(_OLD_EVENTS, args).rowcount
        total += n
        if n < OLD_BATCH:
            return total, True
        now = time.monotonic()
        if now >= deadline:
            return total, False
        if now - shown >= 10:
            shown = now
            print(f"  old: purge: {total:,} events deleted ({now - started:.0f} s, "
                  f"{total / (now - started):,.0f}/s)", flush=True)


def _purge_new(conn: psycopg.Connection, cutoff: datetime, budget: float
               ) -> tuple[int, bool, str]:
    """retention.purge: (rows deleted by batches, finished, what was dropped)."""
    out = retention.purge(conn, cutoff, budget_seconds=budget)
    if out.skipped:
        raise RuntimeError("another purge holds the retention lock")
    note = (f"dropped {len(out.dropped)} partitions ({out.dropped_rows:,} rows by "
            f"reltuples), kept {out.kept or 'none'}")
    return sum(out.deleted.values()), out.finished, note


@dataclass
class Result:
    layout: str
    events: int
    load_s: float = 0.0
    settle_s: float = 0.0
    purge_s: float = 0.0
    finished: bool = True
    wal_total: int = 0
    wal_drain: int = 0  # the drain's estimated share of wal_total
    wal_error: int = 0  # and how far off that estimate may be
    drained: int = 0  # events the drain applied while the purge ran
    removed: dict[str, int] = field(default_factory=dict)
    size_before: dict[str, int] = field(default_factory=dict)
    size_after: dict[str, int] = field(default_factory=dict)
    baseline: Rates = field(default_factory=lambda: Rates.of([]))
    during: Rates = field(default_factory=lambda: Rates.of([]))
    baseline_latency: float = float("nan")
    max_latency: float = float("nan")
    vacuum_s: float = 0.0
    vacuum_wal: int = 0
    problems: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def wal_purge(self) -> int:
        return max(0, self.wal_total - self.wal_drain)

    def wal(self) -> str:
        """The purge's WAL, or its bound when it is within the estimate's error."""
        if self.wal_purge <= self.wal_error:
            return f"< {_bytes(self.wal_error)} (noise)"
        return f"{_bytes(self.wal_purge)} +- {_bytes(self.wal_error)}"


def _check(res: Result, before: dict[tuple[str, str], int],
           after: dict[tuple[str, str], int], n: int, recent: int) -> None:
    """What must hold: the old day loaded whole and gone (if the purge finished), the
    recent day untouched."""
    for (table, tag), rows in before.items():
        want = (n if tag == "old" else recent) * (
            events.DEDUPE_DAYS + 1 if table == "event_keys" else 1)
        if rows != want:
            res.problems.append(f"{table} {tag}: {rows:,} rows loaded, not {want:,}")
        if tag == "recent" and after[table, tag] != rows:
            res.problems.append(f"{table} recent: {after[table, tag]:,} rows left of {rows:,}")
        if tag == "old" and res.finished and after[table, tag]:
            res.problems.append(f"{table} old: {after[table, tag]:,} rows left")
        if tag == "old":
            res.removed[table] = rows - after[table, tag]


def _purge_with_drain(res: Result, url: str, cutoff: datetime, args: argparse.Namespace) -> None:
    """Baseline drain, then the purge with the drain running; fills ``res``."""
    with psycopg.connect(url, autocommit=True) as conn, \
            _draining(url, res.layout, args.drain_batch) as drain:
        time.sleep(WARMUP_SECONDS)
        base_start, base_lsn = time.monotonic(), _lsn(conn)
        time.sleep(args.baseline)
        base_wal = _wal_since(conn, base_lsn)
        print(f"  {res.layout}: baseline done; purging", flush=True)
        res.size_before = _sizes(conn, res.layout)
        start, lsn = time.monotonic(), _lsn(conn)
        if res.layout == "old":
            _n, res.finished = _purge_old(conn, cutoff, start + args.purge_budget)
        else:
            _n, res.finished, res.note = _purge_new(conn, cutoff, args.purge_budget)
        end = time.monotonic()
        res.wal_total = _wal_since(conn, lsn)
        res.size_after = _sizes(conn, res.layout)
        # The drain goes on to the end of the last whole window, then alone a while more.
        time.sleep(max(0.0, start + max(1, math.ceil(end - start)) - time.monotonic()))
        after_start, after_lsn = time.monotonic(), _lsn(conn)
        time.sleep(AFTER_SECONDS)
        after_wal = _wal_since(conn, after_lsn)
    _drain_figures(res, drain.samples, (base_start, base_start + args.baseline), (start, end))
    _drain_wal(res, drain.samples, ((base_start, base_start + args.baseline), base_wal),
               ((after_start, after_start + AFTER_SECONDS), after_wal))


def _drain_figures(res: Result, samples: list[tuple[float, float, int]],
                   baseline: tuple[float, float], purge: tuple[float, float]) -> None:
    """The drain's rates and longest batches before and during the purge."""
    (b0, b1), (p0, p1) = baseline, purge
    res.purge_s = p1 - p0
    res.drained = sum(n for _b, e, n in samples if p0 <= e < p1)
    res.baseline = Rates.of(_rates(samples, b0, int(b1 - b0)))
    res.during = Rates.of(_rates(samples, p0, max(1, math.ceil(p1 - p0))))
    res.baseline_latency = _max_latency(samples, b0, b1)
    res.max_latency = _max_latency(samples, p0, p1)


def _drain_wal(res: Result, samples: list[tuple[float, float, int]],
               *alone: tuple[tuple[float, float], int]) -> None:
    """The drain's share of the WAL written during the purge: its events then times its
    WAL per event when it ran alone (before and after the purge; the mean, and half
    their difference as the error)."""
    per_event = []
    for (t0, t1), wal in alone:
        n = sum(k for _b, e, k in samples if t0 <= e < t1)
        per_event.append(wal / n if n else 0.0)
    res.wal_drain = round(res.drained * statistics.fmean(per_event))
    res.wal_error = round(res.drained * (max(per_event) - min(per_event)) / 2)


def _vacuum(res: Result, url: str) -> None:
    """VACUUM of the purged tables, the drain stopped: the rest of the old way's bill."""
    with psycopg.connect(url, autocommit=True) as conn:
        lsn, started = _lsn(conn), time.perf_counter()
        conn.execute(f"VACUUM {', '.join(TABLES[res.layout])}")
        res.vacuum_s = time.perf_counter() - started
        res.vacuum_wal = _wal_since(conn, lsn)


def run_layout(layout: str, args: argparse.Namespace) -> Result:
    res = Result(layout, args.events)
    recent = round(args.events * args.recent_fraction)
    now = datetime.now(UTC)
    days = {"old": _midnight(now - timedelta(days=OLD_DAYS_AGO)),
            "recent": _midnight(now - timedelta(days=RECENT_DAYS_AGO))}
    cutoff = now - timedelta(days=RETENTION_DAYS)
    print(f"{layout}: {args.events:,} events on {days['old']:%Y-%m-%d}, {recent:,} on "
          f"{days['recent']:%Y-%m-%d}, cutoff {cutoff:%Y-%m-%d %H:%M} UTC", flush=True)
    with services(until=OLD_SCHEMA if layout == "old" else None) as env:
        url = env["DATABASE_URL"]
        res.load_s, res.settle_s = _load(url, layout, args.events, recent, days["old"],
                                         days["recent"])
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            before = _census(conn, layout, days)
        print(f"  {layout}: census before {time.perf_counter() - started:.1f} s; drain "
              f"warm-up {WARMUP_SECONDS:.0f} s and baseline {args.baseline:.0f} s", flush=True)
        _purge_with_drain(res, url, cutoff, args)
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            after = _census(conn, layout, days)
        _check(res, before, after, args.events, recent)
        counted = time.perf_counter() - started
        _vacuum(res, url)
        print(f"  {layout}: purge {res.purge_s:.1f} s; census after it {counted:.1f} s, "
              f"VACUUM after it {res.vacuum_s:.1f} s", flush=True)
    return res


# ---- the report ----


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _details(r: Result) -> list[str]:
    sizes = ", ".join(f"{t} {_bytes(r.size_before[t])} -> {_bytes(r.size_after[t])}"
                      for t in r.size_before)
    out = [
        f"{r.layout}: {r.events:,} events; load {r.load_s:.1f} s, VACUUM ANALYZE + "
        f"CHECKPOINT {r.settle_s:.1f} s",
        f"  purge {r.purge_s:.2f} s{'' if r.finished else ' (INCOMPLETE: budget ran out)'}; "
        f"WAL {r.wal()} (server-wide "
        f"{_bytes(r.wal_total)}, less the drain's ~{_bytes(r.wal_drain)} for "
        f"{r.drained:,} events)",
        "  rows removed: " + ", ".join(f"{t} {n:,}" for t, n in r.removed.items()),
        f"  size just before -> just after the purge: {sizes} (the drain applied "
        f"{r.drained:,} events meanwhile)",
        f"  drain baseline: {r.baseline}; max batch {r.baseline_latency * 1000:.0f} ms",
        f"  drain during:   {r.during}; max batch {r.max_latency * 1000:.0f} ms",
        f"  VACUUM after: {r.vacuum_s:.1f} s, WAL {_bytes(r.vacuum_wal)}",
    ]
    if r.note:
        out.append(f"  {r.note}")
    out += [f"  PROBLEM: {p}" for p in r.problems] or ["  check: old day gone, recent day kept"]
    return out


def report(results: list[Result]) -> list[str]:
    out = [line for r in results for line in _details(r)]
    drain = "drain events/s baseline -> during (median)"
    out += ["", f"{'layout':6s} | {'purge time':>10s} | {'WAL written':>22s} | "
                f"{'rows removed (events)':>26s} | {drain:>42s} | {'max batch':>9s} | "
                f"{'VACUUM after':>12s}"]
    for r in results:
        drain = f"{r.baseline.median:,.0f} -> {r.during.median:,.0f}"
        purge = f"{r.purge_s:.1f} s" + ("" if r.finished else "*")
        wal = r.wal()
        removed = f"{sum(r.removed.values()):,} ({r.removed.get('events', 0):,})"
        out.append(f"{r.layout:6s} | {purge:>10s} | {wal:>22s} | "
                   f"{removed:>26s} | {drain:>42s} | "
                   f"{r.max_latency * 1000:>6.0f} ms | {r.vacuum_s:>10.1f} s")
    if any(not r.finished for r in results):
        out.append("* stopped at --purge-budget with rows left")
    return out


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # so the drain is stopped and the databases dropped


def main() -> None:
    import logging

    logging.disable(logging.INFO)  # warnings (a partition not dropped) still show
    signal.signal(signal.SIGTERM, _terminate)
    args = flags(__doc__, events=10_000_000, layouts="old,new", recent_fraction=0.1,
                 baseline=10.0, purge_budget=7200.0, drain_batch=500)
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    if not layouts or any(x not in LAYOUTS for x in layouts):
        sys.exit(f"--layouts: a comma-separated choice of {', '.join(LAYOUTS)}")
    started = time.perf_counter()
    try:
        results = [run_layout(layout, args) for layout in layouts]
    except KeyboardInterrupt:
        sys.exit("interrupted: the drain stopped, the benchmark's databases dropped")
    print("\n".join(["", *report(results), f"(all in {time.perf_counter() - started:.0f} s)"]))
    if any(r.problems for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
