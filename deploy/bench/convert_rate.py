"""Converting an installation from before migration 010 with the pipeline running: how
long the renaming transaction holds its locks, how fast ``shared.db.convert.step`` moves
legacy rows into the partitioned tables (events/s, seconds per million events, WAL
written), and what it costs a process applying new callbacks meanwhile.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        python deploy/bench/convert_rate.py [--events 1000000] [--batch 1000] [--no-children]
                                            [--baseline-seconds 10] [--timeout 0]

1. A database at migration 009 is loaded by set-based SQL, in chunks: ``--events``
   events spread over the last 20 days, each with one status history row and (unless
   ``--no-children``) one delivery with one attempt, 1 % of the deliveries pending;
   then VACUUM ANALYZE.
2. ``migrate(url)`` applies 010 (renames to ``*_legacy``, partitioned tables made) and
   makes the partitions; a probe on another connection reads ``events`` in a loop
   meanwhile, and its longest wait is how long the ACCESS EXCLUSIVE locks kept it out.
3. Another process (its own connection) applies batches of 500 callbacks through the
   real path (``events.rows`` + ``apply.apply_batch`` in a transaction): new events now,
   and 10 % duplicates of legacy events (their dedupe key and occurred_at). Its
   events/s is measured for ``--baseline-seconds`` before the conversion, during it,
   and for 5 s after it; what its backend waits on during it is sampled
   (pg_stat_activity: Lock:transactionid is a wait for a conversion batch's transaction,
   which holds the keys of the events it moves until it commits).
4. ``convert.step`` runs to the end (``--batch`` events per batch), a progress line
   every ~10 %. ``--timeout`` bounds it (0: 600 s + 2 ms per event); past it the script
   stops with exit status 1.
5. Checks: no duplicate was applied, every legacy row arrived (counts per table equal
   to what was loaded plus what was applied), the legacy tables are gone. Then one
   ``partitions.ensure`` a few days ahead is timed: each ATTACH PARTITION scans the
   default partition, which holds the moved rows older than the partitions made.

WAL is the server's (pg_current_wal_lsn), so anything else it runs meanwhile counts.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing as mp
import queue
import random
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import psycopg.errors
from common import services

from shared.db import apply, convert, events, legacy, partitions
from shared.db.migrate import migrate
from shared.model import NormalisedEvent

PRE_010 = "009_list_indexes"
TABLES = ("events", "message_status_history", "inbound_messages", "deliveries",
          "delivery_attempts")
SPAN = timedelta(days=20)
CHUNK = 50_000          # events per loading statement
PENDING_EVERY = 100     # 1 % of the deliveries pending
APPLY_BATCH = 500
DUPES_PER_BATCH = 50    # of APPLY_BATCH: duplicates of legacy events
SAMPLE = 20_000         # legacy events the duplicates are drawn from
STEP_BUDGET = 1.0       # seconds per convert.step call
# Retention's cutoff at the default 30 days: step() makes partitions back to it first.
CUTOFF = datetime.now(UTC) - timedelta(days=30)
AFTER_SECONDS = 5.0
PROBE_PAUSE = 0.001     # between the probe's reads
APPLIER_NAME = "convert_rate-applier"
WAIT_SAMPLE = 0.1       # seconds between looks at what the applier's backend waits on
SOURCE = "kaleyra-rcs"
ENDPOINT = "ep_bench"

_ENDPOINT = """
INSERT INTO endpoints (id, url, event_types, secret)
VALUES (%s, 'http://127.0.0.1:9/hook', '{*}', 'whsec_bench')
"""
# One chunk: events lo..hi-1 (i = 1 is the oldest, hi - 1 the newest of the chunk), their
# history, and (children) a delivery and its attempt each.
_LOAD = """
WITH ev AS (
    INSERT INTO events (source, dedupe_key, type, channel, message_id, sender, msisdn, status,
                        provider_status, occurred_at, ingest_id, raw, received_at)
    SELECT %(source)s, 'e:leg-' || i, 'message.sent', 'rcs', 'leg-' || i, 'hookline-demo',
           '+4477009' || lpad((i %% 100000)::text, 5, '0'), 'sent', 'SENT', t.at,
           'ing-leg-' || i,
           jsonb_build_object('eventId', 'leg-' || i, 'messageId', 'leg-' || i,
                              'status', 'SENT', 'sentAt', t.at, 'channel', 'rcs',
                              'sender', 'hookline-demo'),
           t.at + interval '1 second'
    FROM generate_series(%(lo)s, %(hi)s - 1) AS i,
         LATERAL (SELECT %(t0)s::timestamptz
                         - make_interval(secs => (%(n)s - i) * %(step)s) AS at) t
    RETURNING id, source, type, channel, sender, message_id, status, provider_status,
              occurred_at
), h AS (
    INSERT INTO message_status_history (event_id, source, message_id, status, provider_status,
                                        occurred_at)
    SELECT id, source, message_id, status, provider_status, occurred_at FROM ev
), d AS (
    INSERT INTO deliveries (endpoint_id, event_id, type, payload, message_key, occurred_at,
                            status, attempts, round_attempts, next_attempt_at, created_at,
                            last_attempt_at, last_status_code)
    SELECT %(endpoint)s, id, type,
           jsonb_build_object('type', type, 'timestamp', occurred_at, 'data',
                              jsonb_build_object('source', source, 'message_id', message_id,
                                                 'status', provider_status, 'channel', channel,
                                                 'sender', sender)),
           source || ':' || message_id, occurred_at,
           CASE WHEN id %% %(every)s = 0 THEN 'pending' ELSE 'succeeded' END, 1,
           CASE WHEN id %% %(every)s = 0 THEN 0 ELSE 1 END,
           CASE WHEN id %% %(every)s = 0 THEN now() END,
           occurred_at + interval '1 second', occurred_at + interval '2 seconds',
           CASE WHEN id %% %(every)s = 0 THEN 503 ELSE 200 END
    FROM ev WHERE %(children)s
    RETURNING id, occurred_at, last_status_code
)
INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code)
SELECT id, occurred_at + interval '2 seconds', 12, last_status_code FROM d
"""
_SIZE = """
SELECT CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)
                  FROM pg_partition_tree(c.oid) t)
            ELSE pg_total_relation_size(c.oid) END::bigint
FROM pg_class c WHERE c.oid = %s::regclass
"""
_WAL = "SELECT pg_current_wal_lsn()"
_WAL_SINCE = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint"


# --- loading -------------------------------------------------------------------------------

@dataclass
class Loaded:
    events: int
    children: bool
    seconds: float
    vacuum_seconds: float
    counts: dict[str, int]
    size_mb: float


def pre_010(url: str) -> None:
    """services() migrates to the latest version: start again from an empty schema."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    migrate(url, until=PRE_010)
    legacy.forget()


def load(url: str, n: int, children: bool) -> Loaded:
    started = time.perf_counter()
    t0 = datetime.now(UTC) - timedelta(minutes=1)
    step = SPAN.total_seconds() / max(n, 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_ENDPOINT, (ENDPOINT,))
        mark = 0.1
        for lo in range(1, n + 1, CHUNK):
            hi = min(lo + CHUNK, n + 1)
            conn.execute(_LOAD, dict(source=SOURCE, lo=lo, hi=hi, t0=t0, n=n, step=step,
                                     endpoint=ENDPOINT, every=PENDING_EVERY,
                                     children=children))
            if hi - 1 >= mark * n or hi > n:
                _progress("load", hi - 1, n, started)
                mark = (hi - 1) / n + 0.1
        loaded = time.perf_counter() - started
        print("  VACUUM ANALYZE", flush=True)
        started = time.perf_counter()
        for table in TABLES:
            conn.execute(f"VACUUM ANALYZE {table}")
        vacuumed = time.perf_counter() - started
    return Loaded(n, children, loaded, vacuumed, counts(url), size_mb(url, ""))


def counts(url: str, suffix: str = "") -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}{suffix}").fetchone()[0]
                for t in TABLES}


def size_mb(url: str, suffix: str, keys: bool = False) -> float:
    """Tables, indexes and TOAST (of every partition, for a partitioned parent), with
    event_keys when ``keys``."""
    with psycopg.connect(url) as conn:
        total = 0
        for table in TABLES + (("event_keys",) if keys else ()):
            total += conn.execute(_SIZE, (table + suffix,)).fetchone()[0]
    return total / 2**20


def _progress(what: str, done: int, total: int, started: float, extra: str = "") -> None:
    took = time.perf_counter() - started
    rate = done / took if took > 0 else 0.0
    print(f"  {what}: {done:>11,d} / {total:,d} ({100 * done / max(total, 1):5.1f} %) "
          f"{took:8.1f} s  {rate:9,.0f} events/s{extra}", flush=True)


# --- migration 010 -------------------------------------------------------------------------

@dataclass
class Migrated:
    seconds: float
    transaction_ms: float  # from the call to 010's commit: the locks are held within it
    applied: list[str]
    probe_max_ms: float
    probes: int
    legacy_counts: dict[str, int]


class Probe(threading.Thread):
    """Reads ``events`` in a loop on its own connection: the longest read is the longest
    the migration's locks kept a reader (and so any writer) out."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.running = True
        self.longest = 0.0
        self.count = 0

    def run(self) -> None:
        while self.running:
            started = time.perf_counter()
            self.conn.execute("SELECT 1 FROM events LIMIT 1").fetchall()
            self.longest = max(self.longest, time.perf_counter() - started)
            self.count += 1
            time.sleep(PROBE_PAUSE)

    def stop(self) -> None:
        self.running = False
        self.join()
        self.conn.close()


class Stamps(logging.Handler):
    """When shared.db.migrate logged each version applied (just after its commit)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        version = getattr(record, "version", None)
        if version:
            self.at[version] = time.perf_counter()


@contextlib.contextmanager
def stamped(logger: logging.Logger) -> Iterator[Stamps]:
    stamps = Stamps()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(stamps)
    try:
        yield stamps
    finally:
        logger.removeHandler(stamps)
        logger.setLevel(level)


def migrate_010(url: str) -> Migrated:
    probe = Probe(url)
    probe.start()
    time.sleep(0.2)
    with stamped(logging.getLogger("shared.db.migrate")) as stamps:
        started = time.perf_counter()
        applied = migrate(url)
        took = time.perf_counter() - started
    time.sleep(0.2)
    probe.stop()
    if applied != ["010_partitions"]:
        raise SystemExit(f"migrate applied {applied}, not 010_partitions alone")
    committed = stamps.at.get("010_partitions", started + took) - started
    return Migrated(took, committed * 1000, applied, probe.longest * 1000, probe.count,
                    counts(url, "_legacy"))


# --- the applying process ------------------------------------------------------------------

BASELINE, DURING, AFTER, STOP = range(4)
PHASES = {BASELINE: "before", DURING: "during", AFTER: "after"}


@dataclass
class PhaseStats:
    batches: int = 0
    events: int = 0       # sent
    new: int = 0          # applied as new
    dupes_sent: int = 0
    dupes_applied: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def p95_ms(self) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def _event(message_id: str, dedupe_key: str, at: datetime, k: int) -> events.Incoming:
    ev = NormalisedEvent(type="message.sent", source=SOURCE, channel="rcs", occurred_at=at,
                         dedupe_key=dedupe_key, message_id=message_id, sender="hookline-demo",
                         msisdn="+447700900123", status="sent", provider_status="SENT",
                         ingest_id=f"ing-bench-{k}")
    raw = {"eventId": dedupe_key.removeprefix("e:"), "messageId": message_id,
           "status": "SENT", "sentAt": at.isoformat()}
    return events.Incoming(ev, raw, datetime.now(UTC))


def _batch(k0: int, sample: list[tuple[str, str, datetime]], rng: random.Random
           ) -> list[events.Incoming]:
    now = datetime.now(UTC)
    out = [_event(m, d, at, k0 + j) for j, (m, d, at) in
           enumerate(rng.sample(sample, min(DUPES_PER_BATCH, len(sample))))]
    out += [_event(f"new-{k}", f"e:new-{k}", now, k)
            for k in range(k0 + len(out), k0 + APPLY_BATCH)]
    rng.shuffle(out)
    return out


def _apply_once(conn: psycopg.Connection, batch: list[events.Incoming]) -> apply.Applied:
    """One transaction, as the drain applies a batch, and tried again as the drain does
    (workers.pipeline._lost_race) when a row went to a default partition just as the
    partition for its time was attached."""
    for attempt in (1, 2, 3):
        try:
            with conn.transaction():
                return apply.apply_batch(conn, events.rows(batch), [])
        except psycopg.errors.CheckViolation as exc:
            if attempt == 3 or "violates partition constraint" not in str(exc):
                raise
    raise AssertionError("unreachable")


def applier(url: str, sample: list[tuple[str, str, datetime]], phase: Any, ready: Any,
            out: Any) -> None:
    """The separate process: applies batches until told to stop; puts its PhaseStats."""
    try:
        stats = {p: PhaseStats() for p in PHASES}
        rng = random.Random(7)
        k = 0
        with psycopg.connect(url, autocommit=True, options="-c jit=off",
                             application_name=APPLIER_NAME) as conn:
            ready.set()
            while (now := phase.value) != STOP:
                batch = _batch(k, sample, rng)
                k += APPLY_BATCH
                started = time.perf_counter()
                got = _apply_once(conn, batch)
                _count(stats[now], batch, got, time.perf_counter() - started)
        out.put(("ok", {p: asdict(s) for p, s in stats.items()}))
    except BaseException:  # the parent reports it
        out.put(("error", traceback.format_exc()))


def _count(s: PhaseStats, batch: list[events.Incoming], got: apply.Applied, took: float) -> None:
    dupes = sum(1 for i in batch if i.event.dedupe_key.startswith("e:leg-"))
    s.batches += 1
    s.events += len(batch)
    s.dupes_sent += dupes
    s.new += len(got.stored)
    s.dupes_applied += sum(1 for x in got.stored if x.event.dedupe_key.startswith("e:leg-"))
    s.seconds += took
    s.latencies.append(took)


def legacy_sample(url: str, n: int) -> list[tuple[str, str, datetime]]:
    ids = random.Random(3).sample(range(1, n + 1), min(n, SAMPLE))
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT message_id, dedupe_key, occurred_at FROM events_legacy "
                            "WHERE id = ANY (%s)", (ids,)).fetchall()


class Applier:
    """The applying process and the phase it counts its batches in."""

    def __init__(self, url: str, sample: list[tuple[str, str, datetime]]) -> None:
        ctx = mp.get_context("spawn")
        self.phase = ctx.Value("i", BASELINE)
        ready = ctx.Event()
        self.out: Any = ctx.Queue()
        self.proc = ctx.Process(target=applier, args=(url, sample, self.phase, ready, self.out),
                                daemon=True)
        self.proc.start()
        if not ready.wait(60):
            self.proc.kill()
            raise SystemExit("the applying process did not start")

    def set(self, phase: int) -> None:
        self.phase.value = phase
        if not self.proc.is_alive():
            raise SystemExit(f"the applying process died: {self._result(1)}")

    def finish(self) -> dict[int, PhaseStats]:
        self.phase.value = STOP
        result = self._result(120)
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
        if isinstance(result, str):
            raise SystemExit(f"the applying process failed:\n{result}")
        return result

    def _result(self, timeout: float) -> dict[int, PhaseStats] | str:
        try:
            status, value = self.out.get(timeout=timeout)
        except queue.Empty:
            return "no answer"
        if status != "ok":
            return str(value)
        return {p: PhaseStats(**s) for p, s in value.items()}


class Waits(threading.Thread):
    """What the applier's backend waits on (pg_stat_activity), sampled: lock waits there
    are waits for the conversion's transactions."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.conn = psycopg.connect(url, autocommit=True)
        self.running = True
        self.seen: dict[str, int] = {}

    def run(self) -> None:
        while self.running:
            row = self.conn.execute(
                "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                "WHERE application_name = %s", (APPLIER_NAME,)).fetchone()
            if row:
                state, kind, event = row
                key = f"{kind}:{event}" if kind else ("idle" if state != "active" else "cpu")
                self.seen[key] = self.seen.get(key, 0) + 1
            time.sleep(WAIT_SAMPLE)

    def stop(self) -> dict[str, int]:
        self.running = False
        self.join()
        self.conn.close()
        return self.seen


# --- the conversion ------------------------------------------------------------------------

@dataclass
class Converted:
    events: int
    seconds: float
    wal_bytes: int
    finished: bool
    steps: int
    slowest_step: float
    applier_waits: dict[str, int] = field(default_factory=dict)


def run_conversion(url: str, total: int, batch: int, timeout: float) -> Converted:
    out = Converted(0, 0.0, 0, False, 0, 0.0)
    with psycopg.connect(url, autocommit=True) as conn:
        lsn = conn.execute(_WAL).fetchone()[0]
        started = time.perf_counter()
        mark, last_t, last_n = 0.1, started, 0
        while time.perf_counter() - started < timeout:
            t = time.perf_counter()
            try:
                moved = convert.step(conn, CUTOFF, 1, events.DEDUPE_DAYS,
                                     budget_seconds=STEP_BUDGET, batch=batch)
            except psycopg.errors.LockNotAvailable:  # dropping the legacy tables: again
                print("  convert: lock timeout dropping the legacy tables; again", flush=True)
                continue
            out.slowest_step = max(out.slowest_step, time.perf_counter() - t)
            out.steps += 1
            out.events += moved.events
            if moved.finished or out.events >= mark * total:
                now = time.perf_counter()
                recent = (out.events - last_n) / (now - last_t) if now > last_t else 0.0
                wal = conn.execute(_WAL_SINCE, (lsn,)).fetchone()[0]
                _progress("convert", out.events, total, started,
                          f"  (last stretch {recent:8,.0f}/s, WAL {wal / 2**20:8.1f} MB)")
                mark, last_t, last_n = out.events / max(total, 1) + 0.1, now, out.events
            if moved.finished:
                out.finished = True
                break
        out.seconds = time.perf_counter() - started
        out.wal_bytes = conn.execute(_WAL_SINCE, (lsn,)).fetchone()[0]
    return out


def wal_lsn(url: str) -> str:
    with psycopg.connect(url) as conn:
        return str(conn.execute(_WAL).fetchone()[0])


def wal_since(url: str, lsn: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute(_WAL_SINCE, (lsn,)).fetchone()[0])


# --- checks and the partitions made after it -----------------------------------------------

def check(url: str, loaded: Loaded, stats: dict[int, PhaseStats]) -> list[str]:
    """What did not hold (nothing: the conversion lost and duplicated nothing)."""
    new = sum(s.new for s in stats.values())
    fresh = sum(s.events - s.dupes_sent for s in stats.values())
    want = {t: loaded.counts[t] + (new if t in ("events", "message_status_history",
                                                 "deliveries") else 0) for t in TABLES}
    got = counts(url)
    wrong = [f"{t}: {got[t]:,d} rows, want {want[t]:,d}" for t in TABLES if got[t] != want[t]]
    applied_dupes = sum(s.dupes_applied for s in stats.values())
    if applied_dupes:
        wrong.append(f"{applied_dupes} duplicates of legacy events were applied")
    if new != fresh:
        wrong.append(f"{new:,d} events applied as new, {fresh:,d} new ones sent")
    with psycopg.connect(url) as conn:
        one = conn.execute
        if one("SELECT to_regclass('events_legacy')").fetchone()[0] is not None:
            wrong.append("events_legacy still exists")
        legacy = one("SELECT count(*) FROM events WHERE dedupe_key LIKE 'e:leg-%'").fetchone()[0]
        if legacy != loaded.events:
            wrong.append(f"{legacy:,d} legacy events in events, want {loaded.events:,d}")
        twice = one("SELECT count(*) FROM (SELECT 1 FROM events GROUP BY source, dedupe_key "
                    "HAVING count(*) > 1) s").fetchone()[0]
        if twice:
            wrong.append(f"{twice:,d} dedupe keys stored twice")
        pending = one("SELECT count(*) FROM deliveries WHERE status = 'pending' "
                      "AND event_id <= %s", (loaded.events,)).fetchone()[0]
        want_pending = loaded.events // PENDING_EVERY if loaded.children else 0
        if pending != want_pending:
            wrong.append(f"{pending:,d} legacy deliveries pending, want {want_pending:,d}")
    return wrong


def in_defaults(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}_default").fetchone()[0]
                for t in TABLES}


def ensure_ahead(url: str) -> tuple[float, int, float]:
    """partitions.ensure as the scheduler runs it a few days on: seconds, partitions made,
    the longest a reader of events waited meanwhile (ms). Each ATTACH scans its parent's
    default partition, holding ACCESS EXCLUSIVE on it."""
    later = datetime.now(UTC) + timedelta(days=partitions.DEFAULT_AHEAD_DAYS + 1)
    probe = Probe(url)
    probe.start()
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        made = partitions.ensure(conn, now=later)
        took = time.perf_counter() - started
    probe.stop()
    return took, len(made), probe.longest * 1000


# --- the run -------------------------------------------------------------------------------

@contextlib.contextmanager
def section(title: str) -> Iterator[None]:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {title}", flush=True)
    yield


def run(args: argparse.Namespace) -> int:
    timeout = args.timeout or 600 + 0.002 * args.events
    with services() as env:
        url = env["DATABASE_URL"]
        with section(f"loading {args.events:,d} legacy events (children: {args.children})"):
            pre_010(url)
            loaded = load(url, args.events, args.children)
        with section("migration 010"):
            migrated = migrate_010(url)
        if migrated.legacy_counts != loaded.counts:
            raise SystemExit(f"legacy tables hold {migrated.legacy_counts}, "
                             f"loaded {loaded.counts}")
        legacy_mb = size_mb(url, "_legacy")
        worker = Applier(url, legacy_sample(url, args.events))
        with section(f"applying callbacks: {args.baseline_seconds:.0f} s before converting"):
            lsn = wal_lsn(url)
            time.sleep(args.baseline_seconds)
            baseline_wal = wal_since(url, lsn)
        with section(f"converting (batch {args.batch:,d}, timeout {timeout:.0f} s)"):
            worker.set(DURING)
            waits = Waits(url)
            waits.start()
            converted = run_conversion(url, args.events, args.batch, timeout)
            converted.applier_waits = waits.stop()
        with section(f"applying callbacks: {AFTER_SECONDS:.0f} s after"):
            worker.set(AFTER)
            time.sleep(AFTER_SECONDS)
        stats = worker.finish()
        if not converted.finished:
            print(report(loaded, migrated, legacy_mb, converted, stats, baseline_wal, None))
            print(f"FAILED: the conversion did not finish within {timeout:.0f} s")
            return 1
        with section("checking"):
            wrong = check(url, loaded, stats)
            defaults = in_defaults(url)
            new_mb = size_mb(url, "", keys=True)
        with section("partitions.ensure a few days ahead"):
            ensured = ensure_ahead(url)
    print(report(loaded, migrated, legacy_mb, converted, stats, baseline_wal,
                 (defaults, new_mb, ensured)))
    for line in wrong:
        print(f"FAILED: {line}")
    if not wrong:
        print("checks: every legacy row moved once, no duplicate applied, legacy tables gone")
    return 1 if wrong else 0


def report(loaded: Loaded, migrated: Migrated, legacy_mb: float, conv: Converted,
           stats: dict[int, PhaseStats], baseline_wal: int,
           after: tuple[dict[str, int], float, tuple[float, int, float]] | None) -> str:
    n = loaded.events
    rate = conv.events / conv.seconds if conv.seconds else 0.0
    # The applier's share of the WAL written while converting, at its baseline bytes/batch.
    theirs = baseline_wal / max(stats[BASELINE].batches, 1) * stats[DURING].batches
    net = max(conv.wal_bytes - theirs, 0)
    rows = [
        ("load (set-based SQL)", f"{loaded.seconds:.1f} s",
         f"{n / loaded.seconds:,.0f} events/s; "
         + ", ".join(f"{t} {c:,d}" for t, c in loaded.counts.items())),
        ("VACUUM ANALYZE", f"{loaded.vacuum_seconds:.1f} s", f"{loaded.size_mb:,.0f} MB"),
        ("migrate (010 + partitions)", f"{migrated.seconds * 1000:,.0f} ms",
         f"010 committed after {migrated.transaction_ms:,.0f} ms (locks held within it); "
         f"a reader of events waited at most {migrated.probe_max_ms:,.0f} ms "
         f"({migrated.probes:,d} probes)"),
        ("convert", f"{conv.seconds:.1f} s",
         f"{conv.events:,d} events, {rate:,.0f} events/s, "
         f"{1e6 / rate if rate else float('nan'):,.0f} s per 1M events"),
        ("  WAL (server)", f"{conv.wal_bytes / 2**20:,.0f} MB",
         f"less the applier's (~{theirs / 2**20:,.0f} MB at its baseline rate): "
         f"~{net / 2**20:,.0f} MB, {net / max(conv.events, 1):,.0f} bytes/event; "
         f"legacy tables {legacy_mb:,.0f} MB"),
        ("  steps", f"{conv.steps:,d}", f"slowest {conv.slowest_step:.2f} s "
         f"(budget {STEP_BUDGET:.0f} s)"),
    ]
    seen = sum(conv.applier_waits.values()) or 1
    rows.append(("  applier's backend", f"{seen:,d} looks", ", ".join(
        f"{k} {100 * v / seen:.0f} %" for k, v in
        sorted(conv.applier_waits.items(), key=lambda kv: -kv[1])[:5])))
    for p, name in PHASES.items():
        s = stats[p]
        rows.append((f"apply {name}", f"{s.rate():,.0f} ev/s",
                     f"{s.batches:,d} batches of {APPLY_BATCH}, p95 {s.p95_ms():.0f} ms, "
                     f"{s.dupes_sent:,d} legacy duplicates sent, {s.dupes_applied} applied"))
    if after is not None:
        defaults, new_mb, (ensure_s, made, waited) = after
        rows.append(("partitioned size", f"{new_mb:,.0f} MB",
                     "tables, indexes and TOAST, with event_keys"))
        rows.append(("in default partitions", f"{defaults['events']:,d}",
                     ", ".join(f"{t} {c:,d}" for t, c in defaults.items())))
        rows.append(("ensure ahead", f"{ensure_s * 1000:,.0f} ms",
                     f"{made} partitions made (each ATTACH scans a default partition); "
                     f"a reader of events waited at most {waited:,.0f} ms"))
    width = max(len(r[0]) for r in rows)
    lines = ["", f"{'phase':{width}s}  {'figure':>13s}  detail"]
    lines += [f"{a:{width}s}  {b:>13s}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=convert.BATCH)
    p.add_argument("--children", action=argparse.BooleanOptionalAction, default=True,
                   help="a delivery and an attempt per legacy event (--no-children: none)")
    p.add_argument("--baseline-seconds", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=0.0,
                   help="seconds the conversion may take (0: 600 + 0.002 per event)")
    sys.exit(run(p.parse_args()))


if __name__ == "__main__":
    main()
