"""Claiming due deliveries for the senders.

``claim`` takes due deliveries with ``FOR UPDATE SKIP LOCKED``, honouring each
endpoint's concurrency cap, breaker and ordering, and leases them by moving
``next_attempt_at`` to the end of the lease: a sender that dies lets them fall
due again (at-least-once).

A claim plans only the outbox partitions that hold work. Nothing in it names a time,
so without bounds each of its five mentions of the outbox planned every partition
kept (26M instructions a claim at 34 daily partitions, more than running it:
docs/benchmarks.md). The range partitions that held no pending or failed delivery
when this process last looked (``Skipped``) are left out by literal bounds, which
the planner prunes with before it plans; the statement's guard (migration 013), in
the claim's own snapshot, says whether one has gained such a delivery since (an
old-stamped callback, a replay); then nothing is claimed, the process looks again
and the claim is taken afresh, so it never misses what it would have seen.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from shared.db import locks, partitions
from shared.db.outbox.ordering import SENDABLE, SENDABLE_WITHIN
from shared.db.outbox.session import ASYNC_COMMIT, NO_BITMAP
from shared.signing import active_secrets


@dataclass(slots=True)
class Claimed:
    id: str
    endpoint_id: str
    url: str
    body: bytes
    secrets: list[str]
    token: uuid.UUID
    traceparent: str | None = None
    # The row's partition key: the record and a release find the row in its one
    # partition with it (attempts.py), instead of probing every partition by id.
    occurred_at: datetime | None = None


_ENDPOINT_OPEN = "e.enabled AND (e.paused_until IS NULL OR e.paused_until <= now())"

_CLAIM = f"""
WITH guard AS (
    -- Work in a range this claim leaves out: claim nothing, look again (module doc).
    SELECT outbox_unsettled_within(%(los)s::timestamptz[], %(his)s::timestamptz[]) AS hit
), e AS (
    SELECT e.id, e.url, e.secret, e.previous_secret, e.previous_secret_expires_at, e.ordered,
           -- A tripped breaker lets one probe through at a time.
           (CASE WHEN e.consecutive_failures >= %(threshold)s THEN 1
                 -- Slow answers: claimed a round ahead only (workers.fanout).
                 WHEN e.id = ANY(%(slow)s::text[]) THEN %(slow_cap)s
                 ELSE %(cap)s END)
           -- In flight, counted up to the cap: more leaves nothing free either.
           - (SELECT count(*) FROM (
                  SELECT FROM deliveries f
                  WHERE f.endpoint_id = e.id AND f.claim_token IS NOT NULL {{f}}
                    AND f.next_attempt_at > now()
                  LIMIT %(cap)s) f) AS free
    FROM endpoints e
    WHERE {_ENDPOINT_OPEN} AND NOT (SELECT hit FROM guard)
),
picked AS (
    SELECT e.id AS endpoint_id, e.url, e.secret, e.previous_secret,
           e.previous_secret_expires_at, d.id, d.occurred_at,
           row_number() OVER (PARTITION BY e.id ORDER BY d.next_attempt_at) AS turn
    FROM e CROSS JOIN LATERAL (
        SELECT d.id, d.occurred_at, d.next_attempt_at FROM deliveries d
        WHERE {{sendable}} {{d}}
        ORDER BY d.next_attempt_at
        LIMIT GREATEST(e.free, 0)
        FOR UPDATE OF d SKIP LOCKED
    ) d
    -- Round-robin across endpoints when the sender has fewer slots than work.
    ORDER BY turn
    LIMIT %(limit)s
), claimed AS (
    UPDATE deliveries d
    SET claim_token = %(token)s, next_attempt_at = now() + make_interval(secs => %(lease)s)
    -- With its partition key: each row is one partition's probe, not one per partition.
    FROM picked WHERE d.id = picked.id AND d.occurred_at = picked.occurred_at {{d}}
    RETURNING d.id, d.endpoint_id, picked.url, d.payload::text, picked.secret,
              picked.previous_secret, picked.previous_secret_expires_at, now(), d.occurred_at,
              d.traceparent
)
-- One row at least: the guard's answer travels with the claims.
SELECT c.*, g.hit FROM guard g LEFT JOIN claimed c ON true
"""
# Left out of claims, per alias: each block of partitions without work, as bounds the
# planner can prune with (a partition inside one cannot hold a row that passes).
_OUTSIDE = "AND ({a}.occurred_at < {lo} OR {a}.occurred_at >= {hi})"
# Which range partitions of the outbox hold pending or failed deliveries: each probe
# names its partition (the partial index deliveries_due, empty when settled).
_HOLDS_WORK = "SELECT {n} WHERE EXISTS (SELECT 1 FROM {t} WHERE status IN ('pending', 'failed'))"
# Settled partitions join the left-out ones when the process looks again, at the
# latest this long after the last look.
LOOK_SECONDS = 30.0
# At most this many blocks are left out (the largest; the rest are planned): the
# statement stays under psycopg's 4 KB limit for the queries it parses once and keeps
# (psycopg._queries.MAX_CACHED_STATEMENT_LENGTH); longer, it parsed it again each claim.
_BLOCKS = 2
# A guard that keeps finding work (a burst of replays into old partitions) gives way
# to a claim over every partition.
_LOOKS = 3


@dataclass(frozen=True, slots=True)
class Skipped:
    """Blocks of range partitions, [los[i], his[i]), that claims leave out."""

    los: tuple[datetime, ...] = ()
    his: tuple[datetime, ...] = ()
    at: float = float("-inf")  # time.monotonic() of the look
    statement: str = ""

    def __post_init__(self) -> None:
        def bounds(alias: str) -> str:
            return " ".join(_OUTSIDE.format(a=alias, lo=_literal(lo), hi=_literal(hi))
                            for lo, hi in zip(self.los, self.his, strict=True))
        text = _CLAIM.format(d=bounds("d"), f=bounds("f"),
                             sendable=SENDABLE_WITHIN.format(p=bounds("p"), f=bounds("f")))
        # Without its comments and runs of blanks: short enough for psycopg to keep.
        text = " ".join(re.sub(r"--[^\n]*", "", text).split())
        object.__setattr__(self, "statement", text)


_NOTHING = Skipped()
_skipped = _NOTHING  # this process's last look (claims run in one thread a process)


def _literal(t: datetime) -> str:
    return f"'{t.astimezone(UTC):%Y-%m-%d %H:%M:%S}+00'::timestamptz"


def look(conn: psycopg.Connection) -> Skipped:
    """The outbox's range partitions without pending or failed deliveries, merged into
    blocks of adjacent ones (its DEFAULT partition is never left out)."""
    parts = partitions.partitions(conn, "deliveries")
    busy: set[int] = set()
    if parts:
        probes = sql.SQL(" UNION ALL ").join(
            sql.SQL(_HOLDS_WORK).format(n=sql.Literal(n), t=sql.Identifier(p.name))
            for n, p in enumerate(parts))
        busy = {row[0] for row in conn.execute(probes).fetchall()}
    blocks: list[list[partitions.Partition]] = []
    for n, p in enumerate(parts):
        if n in busy:
            continue
        if blocks and blocks[-1][-1].upper == p.lower:
            blocks[-1].append(p)
        else:
            blocks.append([p])
    kept = sorted(sorted(blocks, key=len, reverse=True)[:_BLOCKS], key=lambda b: b[0].lower)
    return Skipped(tuple(b[0].lower for b in kept), tuple(b[-1].upper for b in kept),
                   time.monotonic())


# Serialises claims across every sender process (shared.db.locks.CLAIM). Claims are
# one short statement, so the wait is milliseconds.
_START = f"SELECT {ASYNC_COMMIT}, {NO_BITMAP}, pg_advisory_xact_lock(%s, %s)"


@dataclass(frozen=True, slots=True)
class ClaimRules:
    cap: int                # concurrent attempts per endpoint
    breaker_failures: int   # consecutive failures after which only one probe goes
    lease: float            # seconds a claim holds before it falls due again


def claim(conn: psycopg.Connection, limit: int, rules: ClaimRules,
          slow: Sequence[str] = (), slow_cap: int = 0) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries (commits); the endpoints in ``slow``
    have at most ``slow_cap`` in flight instead of the rules' cap."""
    global _skipped
    token = uuid.uuid4()
    params = dict(threshold=rules.breaker_failures, cap=rules.cap, limit=limit, token=token,
                  lease=float(rules.lease), slow=list(slow), slow_cap=slow_cap)
    with conn.transaction():
        conn.execute(_START, (locks.CLAIM.key, locks.CLAIM.second))
        for tries in range(_LOOKS + 1):
            if tries == _LOOKS:
                _skipped = _NOTHING  # every partition: the guard has nothing to say
            elif tries or time.monotonic() - _skipped.at >= LOOK_SECONDS:
                _skipped = look(conn)
            skipped = _skipped
            rows = conn.execute(skipped.statement, dict(
                params, los=list(skipped.los), his=list(skipped.his))).fetchall()
            if not rows[0][-1]:
                break
    return [
        Claimed(id=id_, endpoint_id=endpoint_id, url=url, body=body.encode(),
                secrets=active_secrets(secret, previous, previous_expires, now), token=token,
                occurred_at=occurred_at, traceparent=traceparent)
        for (id_, endpoint_id, url, body, secret, previous, previous_expires, now, occurred_at,
             traceparent, _hit) in rows if id_ is not None
    ]


def due_exists(conn: psycopg.Connection) -> bool:
    """Whether any delivery to a sendable endpoint is due (the tick's cheap check)."""
    return conn.execute(f"""
        SELECT EXISTS (SELECT 1 FROM endpoints e WHERE {_ENDPOINT_OPEN}
            AND EXISTS (SELECT 1 FROM deliveries d WHERE {SENDABLE}))
    """).fetchone()[0]
