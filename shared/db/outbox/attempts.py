"""Recording what the senders' attempts did.

``record`` stores the attempts and moves each delivery on (succeeded, failed with
its next attempt on the schedule, or dead) -- only if the recorder still holds the
claim. ``release`` gives back claims that will not be sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import psycopg

from shared.db import arrays, endpoints
from shared.db.outbox import ordering
from shared.db.outbox.claims import Claimed
from shared.db.outbox.session import ASYNC_COMMIT


@dataclass(slots=True)
class Result:
    """One attempt's outcome, as the sender saw it."""

    delivery_id: str
    endpoint_id: str
    token: uuid.UUID
    attempted_at: datetime
    duration_ms: int
    ok: bool
    status_code: int | None = None
    response_body: str | None = None  # the first 4 KB
    error: str | None = None
    retry_after: float | None = None  # seconds (already bounded), from 429 / 503
    gone: bool = False                # 410: the endpoint is to be disabled
    occurred_at: datetime | None = None  # the claim's (Claimed.occurred_at)


def unrecordable(r: Result, exc: Exception) -> Result:
    """``r`` without what the receiver sent, for a result PostgreSQL refused."""
    return replace(r, response_body=None, retry_after=None,
                   error=f"the attempt's outcome could not be stored: {type(exc).__name__}")


# A batch whose every result carries its delivery's occurred_at (the partition key)
# finds each row in its own partition: ``{within}`` limits the partitions to those of
# the batch's times, which the planner prunes to before it plans (a lookup by id
# alone plans and probes every partition kept, 40 with daily partitions), and the
# join on occurred_at makes each probe one partition's. Without them (results built
# by hand), by id alone.
_WITHIN = "AND d.occurred_at = r.occurred_at AND d.occurred_at = ANY(%(times)b::timestamptz[])"

_ATTEMPTS = """
INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code,
                               response_body, error)
SELECT r.id, r.at, r.ms, r.code, r.body, r.error
FROM unnest(%(ids)b::text[], %(at)b::timestamptz[], %(ms)b::int[], %(codes)b::int[],
            %(bodies)b::text[], %(errors)b::text[], %(occurred)b::timestamptz[])
     AS r(id, at, ms, code, body, error, occurred_at)
-- The endpoint (and its deliveries) may have been deleted meanwhile.
WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.id = r.id {within})
"""

_LAST_STEP = "d.round_attempts >= cardinality(%(schedule)b::float8[])"

_ADVANCE = f"""
UPDATE deliveries d SET
    attempts = d.attempts + 1,
    round_attempts = d.round_attempts + 1,
    last_attempt_at = r.at,
    last_status_code = r.code,
    last_error = r.error,
    claim_token = NULL,
    status = CASE WHEN r.ok THEN 'succeeded' WHEN {_LAST_STEP} THEN 'dead' ELSE 'failed' END,
    -- The schedule with +-20%% jitter; Retry-After only ever makes the wait longer.
    next_attempt_at = CASE WHEN r.ok OR {_LAST_STEP} THEN NULL
        ELSE now() + make_interval(secs => GREATEST(r.retry_after,
            (%(schedule)b::float8[])[d.round_attempts + 1] * (0.8 + 0.4 * random())))
        END
FROM unnest(%(ids)b::text[], %(tokens)b::uuid[], %(at)b::timestamptz[], %(ok)b::bool[],
            %(codes)b::int[], %(errors)b::text[], %(retry_after)b::float8[],
            %(occurred)b::timestamptz[])
     AS r(id, token, at, ok, code, error, retry_after, occurred_at)
-- Only while this attempt still holds the claim: a lease that ran out (and
-- was claimed again) or a manual retry has moved the delivery on already.
WHERE d.id = r.id AND d.claim_token = r.token {{within}}
RETURNING d.id, d.status, d.endpoint_id, d.message_key
"""
_PRUNED = (_ATTEMPTS.format(within=_WITHIN), _ADVANCE.format(within=_WITHIN))
_BY_ID = (_ATTEMPTS.format(within=""), _ADVANCE.format(within=""))
# Never prepared: psycopg prepares a statement after its fifth run, and PostgreSQL may
# then keep a generic plan, which cannot prune at plan time (the times are parameters)
# and names every partition kept; planned with the batch's times, each plan names the
# batch's partitions only.
_PREPARE = False
# Its first statement takes the order locks (ordering.LOCK_ORDERED).
_RECORD_START = f"""
SELECT {ASYNC_COMMIT}, {ordering.LOCK_ORDERED}
"""


def health(results: Sequence[Result]) -> list[endpoints.Health]:
    """Per endpoint, what this batch (in completion order) says about it."""
    out: dict[str, endpoints.Health] = {}
    for r in results:
        h = out.setdefault(r.endpoint_id, endpoints.Health(r.endpoint_id))
        if r.ok:
            h.succeeded, h.last_success_at = True, r.attempted_at
            h.trailing_failures, h.first_failure_at, h.pause_seconds = 0, None, None
            continue
        h.trailing_failures += 1
        h.first_failure_at = h.first_failure_at or r.attempted_at
        h.last_failure_at = r.attempted_at
        h.gone = h.gone or r.gone
        h.pause_seconds = r.retry_after
    return sorted(out.values(), key=lambda h: h.endpoint_id)


@dataclass(slots=True)
class Recorded:
    statuses: dict[str, str]  # delivery id -> new status (absent: the claim was stale)
    disabled: dict[str, str]  # endpoint id -> why it was disabled just now
    stopped: set[str]         # endpoints paused, disabled or deleted: send nothing more to them now


def record(conn: psycopg.Connection, results: Sequence[Result], schedule: Sequence[float],
           rules: endpoints.HealthRules) -> Recorded:
    """Store a batch of attempts and their effects in one transaction."""
    ordered = sorted(results, key=lambda r: r.delivery_id)  # one lock order for all
    times = [r.occurred_at for r in ordered]
    statements, occurred = _by_partition(times)
    attempts = dict(ids=arrays.text([r.delivery_id for r in ordered]),
                    at=arrays.timestamptz([r.attempted_at for r in ordered]),
                    ms=arrays.integer([r.duration_ms for r in ordered]),
                    codes=arrays.integer([r.status_code for r in ordered]),
                    bodies=arrays.text([r.response_body for r in ordered]),
                    errors=arrays.text([r.error for r in ordered]), **occurred)
    advance = dict(
        schedule=arrays.float8(list(schedule)), ids=attempts["ids"],
        tokens=arrays.uuid([r.token for r in ordered]), at=attempts["at"],
        ok=arrays.boolean([r.ok for r in ordered]), codes=attempts["codes"],
        errors=attempts["errors"],
        retry_after=arrays.float8([r.retry_after for r in ordered]), **occurred,
    )
    disabled: dict[str, str] = {}
    stopped: set[str] = set()
    with conn.transaction():
        cur = conn.cursor()
        ordered_eps = set(cur.execute(
            _RECORD_START, (sorted({r.endpoint_id for r in results}),)).fetchone()[1] or ())
        cur.execute(statements[0], attempts, prepare=_PREPARE)
        advanced = [ordering.Advanced(*row)
                    for row in cur.execute(statements[1], advance, prepare=_PREPARE)]
        statuses = {a.id: a.status for a in advanced}
        ordering.release_settled(cur, advanced, ordered_eps)
        for h in health(results):
            row = endpoints.apply_health(cur, h, rules)
            if row is None:  # deleted while its deliveries were queued
                stopped.add(h.endpoint_id)
                continue
            just_disabled, reason, halted = row
            if just_disabled:
                disabled[h.endpoint_id] = reason
            if halted:
                stopped.add(h.endpoint_id)
    return Recorded(statuses, disabled, stopped)


def _by_partition(times: list[datetime | None]
                  ) -> tuple[tuple[str, str], dict[str, object]]:
    """The record's statements for these occurred_at values, and their parameters."""
    pruned = bool(times) and all(t is not None for t in times)
    occurred = dict(occurred=arrays.timestamptz(times),
                    times=arrays.timestamptz(sorted(set(times))) if pruned else None)  # type: ignore[type-var]
    return (_PRUNED if pruned else _BY_ID), occurred


_RELEASE = """
UPDATE deliveries d SET claim_token = NULL, next_attempt_at = now()
FROM unnest(%(ids)b::text[], %(tokens)b::uuid[], %(occurred)b::timestamptz[])
     AS r(id, token, occurred_at)
WHERE d.id = r.id AND d.claim_token = r.token {within}
"""
_RELEASES = {True: _RELEASE.format(within=_WITHIN), False: _RELEASE.format(within="")}


def release(conn: psycopg.Connection, claimed: Sequence[Claimed]) -> int:
    """Give back claims that will not be sent (their endpoint was paused or
    disabled meanwhile): due again at once, for whoever may send them."""
    if not claimed:
        return 0
    statements, occurred = _by_partition([c.occurred_at for c in claimed])
    with conn.transaction():
        return conn.execute(_RELEASES[statements is _PRUNED], dict(
            ids=arrays.text([c.id for c in claimed]),
            tokens=arrays.uuid([c.token for c in claimed]), **occurred),
            prepare=_PREPARE).rowcount
