"""What one claim costs with a deep outbox: median and p95 per claim of a normal
batch (``claims.claim``, limit 200, cap 64 per endpoint) with 0, 10k, 100k and
1M deliveries pending behind it, for an ordered and an unordered endpoint.

    python deploy/bench/claim_depth.py [--depths 0,10000,100000,1000000] [--claims 30]
                                       [--partition-days 35]

The backlog is written by SQL (generate_series), not by the pipeline, on one
endpoint of the kind measured:

* ordered: messages of 10 events; each message's first delivery failed and waits
  for its retry an hour ahead, its 9 followers pending behind it (an endpoint that
  was down for a while);
* unordered: every delivery pending and due.

Beside it, 4 live endpoints of the same kind with 2,000 due deliveries each (one
message each), which the claims take. After each claim its deliveries are handed
back (``attempts.release``), so every claim sees the same outbox. Followers are
written as the code before migration 008 left them (due); the migration's
(if the file exists) is then run again over the backlog, as on a live
install, and their time is reported; the outbox is analyzed first, as a live one would
be (the planner has no statistics for a partitioned parent otherwise).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from datetime import UTC, datetime, timedelta

import psycopg
from common import ROOT, services

from shared.db.outbox import attempts, claims

try:
    from shared.db import partitions
except ImportError:  # a tree from before migration 010
    partitions = None  # type: ignore[assignment]

LIVE_ENDPOINTS = 4
LIVE_ROWS = 2000
CHAIN = 10
RULES = claims.ClaimRules(cap=64, breaker_failures=5, lease=120.0)
MIGRATION = ROOT / "shared/db/migrations/008_held_followers.sql"

_ENDPOINT = """
INSERT INTO endpoints (id, url, event_types, ordered, secret)
VALUES (%s, 'http://127.0.0.1:9/hook', '{*}', %s, 'whsec_bench')
"""
_EVENT = """
INSERT INTO events (source, dedupe_key, type, channel, occurred_at, ingest_id, received_at)
VALUES ('bench', 'e1', 'message.sent', 'rcs', now(), 'i1', now()) RETURNING id
"""
# One row per i: i / CHAIN is the message, i %% CHAIN its place in it. Ordered
# backlog: the first of each message failed (retry in an hour), the rest pending.
_FILL = """
INSERT INTO deliveries (endpoint_id, event_id, type, payload, message_key, occurred_at,
                        status, attempts, round_attempts, next_attempt_at, created_at)
SELECT %(ep)s, %(event)s, 'bench.' || i, %(payload)s::jsonb,
       'bench:m' || (i / %(chain)s),
       now() - interval '1 hour' + make_interval(secs => (i %% %(chain)s)),
       CASE WHEN %(failed_heads)s AND i %% %(chain)s = 0 THEN 'failed' ELSE 'pending' END,
       CASE WHEN %(failed_heads)s AND i %% %(chain)s = 0 THEN 1 ELSE 0 END,
       CASE WHEN %(failed_heads)s AND i %% %(chain)s = 0 THEN 1 ELSE 0 END,
       CASE WHEN %(failed_heads)s AND i %% %(chain)s = 0 THEN now() + interval '1 hour'
            ELSE now() - interval '1 hour' END,
       now() - interval '1 hour'
FROM generate_series(0, %(n)s - 1) AS i
"""
PAYLOAD = ('{"type":"message.delivered","timestamp":"2026-11-30T11:59:59.120000+00:00",'
           '"data":{"source":"kaleyra-rcs","message_id":"c1a9d8e2-5b7e-4f3a-9d2c","status":'
           '"DELIVERED","msisdn":"+447700900123","sender":"hookline-demo","channel":"rcs"}}')


def _fill(conn: psycopg.Connection, ep: str, event: int, n: int, chain: int,
          failed_heads: bool) -> None:
    conn.execute(_FILL, dict(ep=ep, event=event, payload=PAYLOAD, chain=chain, n=n,
                             failed_heads=failed_heads))


def _convert(url: str) -> float | None:
    """Run migration 008 again (it is re-runnable) over the backlog; seconds, or None."""
    if not MIGRATION.exists():
        return None
    # A live install's outbox has statistics. Autovacuum never analyzes a partitioned
    # parent (migration 010), and without them the planner joins the backlog to itself
    # by a nested loop: 55 s instead of 0.7 s for 10,000 ordered rows.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE deliveries")
    started = time.perf_counter()
    with psycopg.connect(url) as conn:  # one transaction, as shared.db.migrate runs it
        conn.execute(MIGRATION.read_text())
    return time.perf_counter() - started


def _build(url: str, depth: int, ordered: bool, partition_days: int
           ) -> dict[str, float | None]:
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        if partition_days and hasattr(partitions, "ensure"):
            # As many daily partitions as a 30-day retention keeps: each claim's scans
            # and the record's updates by id visit every one of them.
            partitions.ensure(conn, since=datetime.now(UTC) - timedelta(days=partition_days))
        event = conn.execute(_EVENT).fetchone()[0]
        conn.execute(_ENDPOINT, ("ep_backlog", ordered))
        if depth:
            _fill(conn, "ep_backlog", event, depth, CHAIN if ordered else depth,
                  failed_heads=ordered)
        for k in range(LIVE_ENDPOINTS):
            conn.execute(_ENDPOINT, (f"ep_live{k}", ordered))
            _fill(conn, f"ep_live{k}", event, LIVE_ROWS, 1, failed_heads=False)
    built = time.perf_counter() - started
    converted = _convert(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE deliveries")
    return {"build_s": built, "convert_s": converted}


def _claims(url: str, n: int, warm: int = 5) -> list[float]:
    times: list[float] = []
    # As the worker's pool sets it up (shared.db.pool): no JIT.
    with psycopg.connect(url, autocommit=True, options="-c jit=off") as conn:
        for i in range(warm + n):
            started = time.perf_counter()
            got = claims.claim(conn, 200, RULES)
            took = time.perf_counter() - started
            if len(got) != 200:
                raise SystemExit(f"a claim took {len(got)} deliveries, not 200")
            attempts.release(conn, got)
            if i >= warm:
                times.append(took * 1000)
    return times


def _p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, round(0.95 * len(xs)) - 1)]


def main() -> None:
    logging.disable(logging.WARNING)
    p = argparse.ArgumentParser()
    p.add_argument("--depths", default="0,10000,100000,1000000")
    p.add_argument("--claims", type=int, default=30)
    p.add_argument("--partition-days", type=int, default=35,
                   help="make daily partitions this far back first (migration 010)")
    args = p.parse_args()
    print(f"{'endpoint':10s} {'pending':>9s} {'median ms':>10s} {'p95 ms':>8s} "
          f"{'build s':>8s} {'008 s':>7s}")
    for depth in (int(d) for d in args.depths.split(",")):
        for ordered in (True, False):
            with services() as env:
                built = _build(env["DATABASE_URL"], depth, ordered, args.partition_days)
                times = _claims(env["DATABASE_URL"], args.claims)
            conv = built["convert_s"]
            print(f"{'ordered' if ordered else 'unordered':10s} {depth:9,d} "
                  f"{statistics.median(times):10.2f} {_p95(times):8.2f} "
                  f"{built['build_s']:8.1f} {'-' if conv is None else f'{conv:.1f}':>7s}",
                  flush=True)


if __name__ == "__main__":
    main()
