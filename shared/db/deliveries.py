"""The delivery outbox: written with the events, claimed by senders, recorded per attempt.

* ``enqueue`` runs inside the apply transaction: one row per (event, endpoint,
  notification type), so an applied event cannot miss its deliveries and a
  re-applied one cannot make a second set (unique constraint).
* ``claim`` takes due deliveries with ``FOR UPDATE SKIP LOCKED``, honouring each
  endpoint's concurrency cap, breaker and ordering, and leases them by moving
  ``next_attempt_at`` to the end of the lease: a sender that dies lets them fall
  due again (at-least-once).
* ``record`` stores the attempts and moves each delivery on (succeeded, failed
  with its next attempt on the schedule, or dead) -- only if the recorder still
  holds the claim.
* An ordered endpoint's delivery waits *held* (``next_attempt_at`` NULL, never due)
  while an earlier one of its message is pending; whatever settles or requeues one
  lets the first pending one of its message go, in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from psycopg.rows import dict_row

from shared.db import arrays, endpoints
from shared.model import STATUS_RANK, EventType

_CONSENT_TYPES = frozenset({EventType.SUBSCRIPTION_OPTED_IN.value,
                            EventType.SUBSCRIPTION_OPTED_OUT.value})

if TYPE_CHECKING:
    from shared.db.apply import Notification

STATUSES = ("pending", "succeeded", "failed", "dead")
# Serialises claims across every sender process: each claim then sees the
# claims committed before it, so per-endpoint caps hold exactly. Claims are
# one short statement, so the wait is milliseconds. The two-key form: its key
# space does not overlap the single-key locks of migrations and retention.
_CLAIM_LOCK = (0x686F6F6B, 0xFA)


# Claims and attempt records need not wait for the WAL flush: if PostgreSQL
# crashes and loses the last of them, a lost claim lets the delivery be claimed
# again and a lost record leaves its claim to expire -- either way the delivery
# is sent again, which at-least-once delivery allows (receivers dedupe on
# webhook-id). It takes the fsync off the hot path of every claim and record.
_ASYNC_COMMIT = "set_config('synchronous_commit', 'off', true)"
# Every claim and record leaves dead index entries behind (the outbox is a queue:
# each delivery is rewritten twice). A plain index scan marks those it passes as
# dead, so the next claim skips them; a bitmap scan, which the planner picks for
# the claim's in-flight count, visits each again until vacuum runs: claims grew
# from 15 to 30 ms within 45,000 deliveries (docs/benchmarks.md).
_NO_BITMAP = "set_config('enable_bitmapscan', 'off', true)"


def payload(n: Notification) -> dict[str, Any]:
    """The body customers receive (Standard Webhooks: type, timestamp, data)."""
    data = n.event.to_dict()
    data["event_id"] = n.event_id
    return {"type": n.type, "timestamp": data["occurred_at"], "data": data}


def _message_key(n: Notification) -> str | None:
    """What an ordered endpoint keeps in order: one message's events, or one
    party's consent transitions (opted out, then in again, must not swap)."""
    e = n.event
    if n.type in _CONSENT_TYPES:
        return f"consent:{e.channel}:{e.sender}:{e.msisdn}"
    return f"{e.source}:{e.message_id}" if e.message_id else None


def _rank(n: Notification) -> int:
    # A receipt's status rank, so an ordered endpoint gets equal-time receipts in
    # the order messages.status ranks them; other events (and transitions) 0.
    status = n.event.status
    return STATUS_RANK[status] if status is not None and n.type == n.event.type else 0


# A delivery of an ordered endpoint that has a message key is written held
# (next_attempt_at NULL: never due) and only the first of its message is let go
# (_RELEASE_FIRST); each one that settles lets the next go. A claim then never
# walks the followers, however many there are.
# An ordered endpoint's delivery with a message key is written held (never due), and
# the statement that writes it returns how many it wrote and the (endpoint, message)
# pairs it held, for _release_held.
_HELD_OR_NOW = "CASE WHEN e.ordered AND {key} IS NOT NULL THEN NULL ELSE now() END"
_HELD_PAIRS = """
SELECT (SELECT count(*) FROM {cte}), array_agg(h.endpoint_id), array_agg(h.message_key)
FROM (SELECT DISTINCT endpoint_id, message_key FROM {cte} WHERE next_attempt_at IS NULL) h
"""


_ENQUEUE = f"""
WITH ins AS (
    INSERT INTO deliveries (endpoint_id, event_id, type, payload, message_key, occurred_at,
                            rank, next_attempt_at, traceparent)
    SELECT e.id, n.event_id, n.type, n.payload::jsonb, n.message_key, n.occurred_at, n.rank,
           {_HELD_OR_NOW.format(key="n.message_key")}, %b::text
    FROM unnest(%b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                %b::text[], %b::timestamptz[], %b::smallint[])
         AS n(event_id, type, payload, source, channel, sender, message_key, occurred_at, rank)
    JOIN endpoints e ON e.enabled
        AND ('*' = ANY (e.event_types) OR n.type = ANY (e.event_types))
        AND (e.filter_source IS NULL OR n.source = ANY (e.filter_source))
        AND (e.filter_channel IS NULL OR n.channel = ANY (e.filter_channel))
        AND (e.filter_sender IS NULL OR n.sender = ANY (e.filter_sender))
    ORDER BY n.event_id, e.id
    ON CONFLICT (event_id, endpoint_id, type, occurred_at) DO NOTHING
    RETURNING endpoint_id, message_key, next_attempt_at
)""" + _HELD_PAIRS.format(cte="ins")


def enqueue(cur: psycopg.Cursor, notes: Sequence[Notification],
            traceparent: str | None = None) -> int:
    """Write the outbox rows for these notifications; returns how many were new.
    ``traceparent``: the trace context their attempts continue (shared.tracing)."""
    if not notes or not endpoints.any_enabled(cur):
        return 0
    events = [n.event for n in notes]
    return _release_held(cur, cur.execute(_ENQUEUE, [
        traceparent,
        arrays.bigint([n.event_id for n in notes]), arrays.text([n.type for n in notes]),
        arrays.text([orjson.dumps(payload(n)).decode() for n in notes]),
        arrays.text([e.source for e in events]), arrays.text([e.channel for e in events]),
        arrays.text([e.sender for e in events]), arrays.text([_message_key(n) for n in notes]),
        arrays.timestamptz([e.occurred_at for e in events]),
        arrays.smallint([_rank(n) for n in notes]),
    ]).fetchone(), lock=True)


def _release_held(cur: psycopg.Cursor, written: tuple[int, list | None, list | None],
                  lock: bool = False) -> int:
    """After a statement ending in _HELD_PAIRS: let the first of each held message go
    (taking the order locks first when the caller has not); how many it wrote."""
    count, held_eps, held_keys = written
    if held_eps:
        if lock:
            _lock_order(cur, held_eps)
        _release_first(cur, held_eps, held_keys)
    return count


# What may let a held delivery go is serialised per endpoint: writing held ones
# (enqueue, retry, replay), settling one (record) and ending the ordering (PATCH).
# Each takes the lock before the statement that lets the first of a message go, so
# that statement sees what the others committed: else a delivery written held
# while its predecessor settled could be seen by neither, and wait for ever. The
# lock is held to the end of the transaction; its class key differs from the claim's.
_ORDER_LOCK = 0x686F6F6C
_LOCK_ORDER = """
SELECT count(pg_advisory_xact_lock(%s, s.k))
FROM (SELECT DISTINCT hashtext(id) AS k FROM unnest(%b::text[]) AS id ORDER BY 1) s
"""


def _lock_order(cur: psycopg.Cursor, endpoint_ids: Sequence[str]) -> None:
    cur.execute(_LOCK_ORDER, (_ORDER_LOCK, arrays.text(endpoint_ids)))


# For each (endpoint, message key): an ordered endpoint's first pending delivery
# of that message goes if it was held; an endpoint no longer ordered lets all go.
# ``go`` is read once, into an array: joined to the rows it updates, the planner
# (which takes few rows for next_attempt_at IS NULL) ran it again for each held row
# of the batch, 13-17 s for a batch of 460 (docs/benchmarks.md, held followers).
_RELEASE_FIRST = """
WITH c AS (
    SELECT DISTINCT c.endpoint_id, c.message_key, e.ordered
    FROM unnest(%(eps)b::text[], %(keys)b::text[]) AS c(endpoint_id, message_key)
    JOIN endpoints e ON e.id = c.endpoint_id
), go AS (
    SELECT f.id FROM c CROSS JOIN LATERAL (
        SELECT x.id, x.next_attempt_at FROM deliveries x
        WHERE x.endpoint_id = c.endpoint_id AND x.message_key = c.message_key
          AND x.status IN ('pending', 'failed')
        ORDER BY x.occurred_at, x.rank, x.seq
        LIMIT 1) f
    WHERE c.ordered AND f.next_attempt_at IS NULL
    UNION ALL
    SELECT x.id FROM c JOIN deliveries x
        ON x.endpoint_id = c.endpoint_id AND x.message_key = c.message_key
    WHERE NOT c.ordered AND x.status IN ('pending', 'failed') AND x.next_attempt_at IS NULL
)
UPDATE deliveries d SET next_attempt_at = now()
WHERE d.id = ANY (ARRAY(SELECT id FROM go))
  AND d.status IN ('pending', 'failed') AND d.next_attempt_at IS NULL
"""


def _release_first(cur: psycopg.Cursor, endpoint_ids: Sequence[str],
                   message_keys: Sequence[str]) -> int:
    # Binary arrays (shared.db.arrays): psycopg dumps a list element by element in Python.
    return cur.execute(_RELEASE_FIRST, dict(eps=arrays.text(endpoint_ids),
                                            keys=arrays.text(message_keys))).rowcount


def unhold(conn: psycopg.Connection, endpoint_id: str) -> int:
    """Let every held delivery of an endpoint go (it is no longer ordered); call it in
    the transaction that changed the endpoint."""
    with conn.transaction():
        cur = conn.cursor()
        _lock_order(cur, [endpoint_id])
        return cur.execute("""
            UPDATE deliveries SET next_attempt_at = now()
            WHERE endpoint_id = %s AND status IN ('pending', 'failed') AND next_attempt_at IS NULL
        """, (endpoint_id,)).rowcount


@dataclass(slots=True)
class Claimed:
    id: str
    endpoint_id: str
    url: str
    body: bytes
    secrets: list[str]
    token: uuid.UUID
    traceparent: str | None = None


# A delivery of endpoint ``e`` that may be sent now (a held one is never due).
# Ordered endpoints: nothing of a message goes while an earlier event of it to the
# same endpoint is still pending or being retried, nor while another of its events
# is in flight (one that arrived late may order before the one being sent). Two
# probes, each an index range: the message's earlier pending ones
# (deliveries_order_rank, empty for the first), and the endpoint's in flight
# (deliveries_in_flight, at most the claim cap).
_SENDABLE = """
    d.endpoint_id = e.id AND d.status IN ('pending', 'failed') AND d.next_attempt_at <= now()
    AND (NOT e.ordered OR d.message_key IS NULL OR (NOT EXISTS (
        SELECT 1 FROM deliveries p
        WHERE p.endpoint_id = d.endpoint_id AND p.message_key = d.message_key
          AND p.status IN ('pending', 'failed')
          AND (p.occurred_at, p.rank, p.seq) < (d.occurred_at, d.rank, d.seq))
    AND NOT EXISTS (
        SELECT 1 FROM deliveries f
        WHERE f.endpoint_id = d.endpoint_id AND f.claim_token IS NOT NULL
          AND f.next_attempt_at > now() AND f.message_key = d.message_key)))
"""
_ENDPOINT_OPEN = "e.enabled AND (e.paused_until IS NULL OR e.paused_until <= now())"

_CLAIM = f"""
WITH e AS (
    SELECT e.id, e.url, e.secret, e.previous_secret, e.previous_secret_expires_at, e.ordered,
           -- A tripped breaker lets one probe through at a time.
           (CASE WHEN e.consecutive_failures >= %(threshold)s THEN 1
                 -- Slow answers: claimed a round ahead only (workers.fanout).
                 WHEN e.id = ANY(%(slow)s::text[]) THEN %(slow_cap)s
                 ELSE %(cap)s END)
           -- In flight, counted up to the cap: more leaves nothing free either.
           - (SELECT count(*) FROM (
                  SELECT FROM deliveries f
                  WHERE f.endpoint_id = e.id AND f.claim_token IS NOT NULL
                    AND f.next_attempt_at > now()
                  LIMIT %(cap)s) f) AS free
    FROM endpoints e
    WHERE {_ENDPOINT_OPEN}
),
picked AS (
    SELECT e.id AS endpoint_id, e.url, e.secret, e.previous_secret,
           e.previous_secret_expires_at, d.id, d.occurred_at,
           row_number() OVER (PARTITION BY e.id ORDER BY d.next_attempt_at) AS turn
    FROM e CROSS JOIN LATERAL (
        SELECT d.id, d.occurred_at, d.next_attempt_at FROM deliveries d
        WHERE {_SENDABLE}
        ORDER BY d.next_attempt_at
        LIMIT GREATEST(e.free, 0)
        FOR UPDATE OF d SKIP LOCKED
    ) d
    -- Round-robin across endpoints when the sender has fewer slots than work.
    ORDER BY turn
    LIMIT %(limit)s
)
UPDATE deliveries d
SET claim_token = %(token)s, next_attempt_at = now() + make_interval(secs => %(lease)s)
-- With its partition key: each row is one partition's probe, not one per partition.
FROM picked WHERE d.id = picked.id AND d.occurred_at = picked.occurred_at
RETURNING d.id, d.endpoint_id, picked.url, d.payload::text, picked.secret,
          picked.previous_secret, picked.previous_secret_expires_at, now(), d.traceparent
"""


@dataclass(frozen=True, slots=True)
class ClaimRules:
    cap: int                # concurrent attempts per endpoint
    breaker_failures: int   # consecutive failures after which only one probe goes
    lease: float            # seconds a claim holds before it falls due again


def claim(conn: psycopg.Connection, limit: int, rules: ClaimRules,
          slow: Sequence[str] = (), slow_cap: int = 0) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries (commits); the endpoints in ``slow``
    have at most ``slow_cap`` in flight instead of the rules' cap."""
    from shared.signing import active_secrets

    token = uuid.uuid4()
    params = dict(threshold=rules.breaker_failures, cap=rules.cap, limit=limit, token=token,
                  lease=float(rules.lease), slow=list(slow), slow_cap=slow_cap)
    with conn.transaction():
        conn.execute(f"SELECT {_ASYNC_COMMIT}, {_NO_BITMAP}, pg_advisory_xact_lock(%s, %s)",
                     _CLAIM_LOCK)
        rows = conn.execute(_CLAIM, params).fetchall()
    return [
        Claimed(id=r[0], endpoint_id=r[1], url=r[2], body=r[3].encode(),
                secrets=active_secrets(r[4], r[5], r[6], r[7]), token=token, traceparent=r[8])
        for r in rows
    ]


def due_exists(conn: psycopg.Connection) -> bool:
    """Whether any delivery to a sendable endpoint is due (the tick's cheap check)."""
    return conn.execute(f"""
        SELECT EXISTS (SELECT 1 FROM endpoints e WHERE {_ENDPOINT_OPEN}
            AND EXISTS (SELECT 1 FROM deliveries d WHERE {_SENDABLE}))
    """).fetchone()[0]


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


def unrecordable(r: Result, exc: Exception) -> Result:
    """``r`` without what the receiver sent, for a result PostgreSQL refused."""
    return replace(r, response_body=None, retry_after=None,
                   error=f"the attempt's outcome could not be stored: {type(exc).__name__}")


_ATTEMPTS = """
INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code,
                               response_body, error)
SELECT r.id, r.at, r.ms, r.code, r.body, r.error
FROM unnest(%b::text[], %b::timestamptz[], %b::int[], %b::int[], %b::text[], %b::text[])
     AS r(id, at, ms, code, body, error)
-- The endpoint (and its deliveries) may have been deleted meanwhile.
WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.id = r.id)
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
            %(codes)b::int[], %(errors)b::text[], %(retry_after)b::float8[])
     AS r(id, token, at, ok, code, error, retry_after)
-- Only while this attempt still holds the claim: a lease that ran out (and
-- was claimed again) or a manual retry has moved the delivery on already.
WHERE d.id = r.id AND d.claim_token = r.token
RETURNING d.id, d.status, d.endpoint_id, d.message_key
"""
# Before anything else in a record: the order locks of the batch's ordered
# endpoints (which this returns), taken before its rows are (a replay holding an
# endpoint's lock waits for those rows).
_RECORD_START = f"""
SELECT {_ASYNC_COMMIT}, (SELECT array_agg(s.id) FROM (
    SELECT e.id, pg_advisory_xact_lock({_ORDER_LOCK}, e.k) FROM (
        SELECT id, hashtext(id) AS k FROM endpoints
        WHERE id = ANY(%s::text[]) AND ordered ORDER BY 2) e) s)
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
    attempts = [arrays.text([r.delivery_id for r in ordered]),
                arrays.timestamptz([r.attempted_at for r in ordered]),
                arrays.integer([r.duration_ms for r in ordered]),
                arrays.integer([r.status_code for r in ordered]),
                arrays.text([r.response_body for r in ordered]),
                arrays.text([r.error for r in ordered])]
    advance = dict(
        schedule=arrays.float8(list(schedule)), ids=attempts[0],
        tokens=arrays.uuid([r.token for r in ordered]), at=attempts[1],
        ok=arrays.boolean([r.ok for r in ordered]), codes=attempts[3], errors=attempts[5],
        retry_after=arrays.float8([r.retry_after for r in ordered]),
    )
    disabled: dict[str, str] = {}
    stopped: set[str] = set()
    with conn.transaction():
        cur = conn.cursor()
        ordered_eps = set(cur.execute(
            _RECORD_START, (sorted({r.endpoint_id for r in results}),)).fetchone()[1] or ())
        cur.execute(_ATTEMPTS, attempts)
        advanced = cur.execute(_ADVANCE, advance).fetchall()
        statuses = {row[0]: row[1] for row in advanced}
        # A settled delivery lets the next of its message go.
        done = [(ep, key) for _, status, ep, key in advanced
                if status in ("succeeded", "dead") and key is not None and ep in ordered_eps]
        if done:
            _release_first(cur, [ep for ep, _ in done], [key for _, key in done])
        for h in health(results):
            row = endpoints.apply_health(cur, h, rules)
            if row is not None and row[0]:
                disabled[h.endpoint_id] = row[1]
            if row is None or row[2]:  # no row: deleted while its deliveries were queued
                stopped.add(h.endpoint_id)
    return Recorded(statuses, disabled, stopped)


def release(conn: psycopg.Connection, claimed: Sequence[Claimed]) -> int:
    """Give back claims that will not be sent (their endpoint was paused or
    disabled meanwhile): due again at once, for whoever may send them."""
    if not claimed:
        return 0
    with conn.transaction():
        return conn.execute("""
            UPDATE deliveries d SET claim_token = NULL, next_attempt_at = now()
            FROM unnest(%s::text[], %s::uuid[]) AS r(id, token)
            WHERE d.id = r.id AND d.claim_token = r.token
        """, ([c.id for c in claimed], [c.token for c in claimed])).rowcount


# --- queries for the API ---------------------------------------------------

_IN_FLIGHT = "(claim_token IS NOT NULL AND next_attempt_at > now())"
_COLUMNS = (
    "id, seq, endpoint_id, event_id, type, status, attempts, next_attempt_at, created_at, "
    f"last_attempt_at, last_status_code, last_error, requeued_at, {_IN_FLIGHT} AS in_flight"
)


def list_for_endpoint(
    conn: psycopg.Connection, endpoint_id: str, limit: int, status: str | None = None,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first; ``before`` (a seq) pages, stable under inserts."""
    sql = f"""
    SELECT {_COLUMNS} FROM deliveries
    WHERE endpoint_id = %(ep)s
      AND (%(status)s::text IS NULL OR status = %(status)s)
      AND (%(before)s::bigint IS NULL OR seq < %(before)s)
    ORDER BY seq DESC LIMIT %(limit)s
    """
    params = dict(ep=endpoint_id, status=status, before=before, limit=limit)
    return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()


def get(conn: psycopg.Connection, delivery_id: str) -> dict[str, Any] | None:
    """One delivery with its body and every attempt, oldest first."""
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(f"SELECT {_COLUMNS}, payload FROM deliveries WHERE id = %s",
                      (delivery_id,)).fetchone()
    if row is not None:
        row["attempts_made"] = cur.execute("""
            SELECT attempted_at, duration_ms, status_code, response_body, error
            FROM delivery_attempts WHERE delivery_id = %s ORDER BY id
        """, (delivery_id,)).fetchall()
    return row


# A requeued delivery starts the retry schedule afresh; its attempt history stays.
# An ordered endpoint's is requeued held, then the first of each message goes.
_REQUEUE = f"""
WITH q AS (
    UPDATE deliveries d SET status = 'pending', round_attempts = 0, claim_token = NULL,
        requeued_at = now(),
        next_attempt_at = {_HELD_OR_NOW.format(key="d.message_key")}
    FROM endpoints e
    WHERE e.id = d.endpoint_id AND {{where}}
      AND NOT (d.claim_token IS NOT NULL AND d.next_attempt_at > now())
    RETURNING d.endpoint_id, d.message_key, d.next_attempt_at
)""" + _HELD_PAIRS.format(cte="q")


def _requeue(conn: psycopg.Connection, endpoint_id: str, where: str,
             params: Sequence[Any]) -> int:
    with conn.transaction():
        cur = conn.cursor()
        _lock_order(cur, [endpoint_id])
        sql = _REQUEUE.format(where=where)
        return _release_held(cur, cur.execute(sql, params).fetchone())


def retry(conn: psycopg.Connection, delivery_id: str) -> str | None:
    """Queue one delivery now: 'queued', 'in_flight' (being sent, left alone) or None."""
    row = conn.execute("SELECT endpoint_id FROM deliveries WHERE id = %s",
                       (delivery_id,)).fetchone()
    if row is None:
        return None
    if _requeue(conn, row[0], "d.id = %s", (delivery_id,)):
        return "queued"
    exists = conn.execute("SELECT 1 FROM deliveries WHERE id = %s", (delivery_id,)).fetchone()
    return "in_flight" if exists else None


def replay(
    conn: psycopg.Connection, endpoint_id: str, since: datetime, until: datetime,
    statuses: Sequence[str],
) -> int:
    """Queue again the endpoint's deliveries created in [since, until) with these statuses."""
    return _requeue(conn, endpoint_id,
                    "d.endpoint_id = %s AND d.created_at >= %s AND d.created_at < %s "
                    "AND d.status = ANY(%s)",
                    (endpoint_id, since, until, list(statuses)))


def for_events(conn: psycopg.Connection, event_ids: Sequence[int], limit: int = 200
               ) -> list[dict[str, Any]]:
    """The deliveries these events caused (the deliveries_once index leads with event_id),
    each with its attempts, oldest first."""
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(f"SELECT {_COLUMNS} FROM deliveries WHERE event_id = ANY(%s) "
                       "ORDER BY seq LIMIT %s", (list(event_ids), limit)).fetchall()
    attempts: dict[str, list] = {r["id"]: [] for r in rows}
    if rows:
        for a in cur.execute("""
            SELECT delivery_id, attempted_at, duration_ms, status_code, response_body, error
            FROM delivery_attempts WHERE delivery_id = ANY(%s) ORDER BY delivery_id, id
        """, (list(attempts),)):
            attempts[a.pop("delivery_id")].append(a)
    for r in rows:
        r["attempts_made"] = attempts[r["id"]]
    return rows


# Each endpoint's last deliveries, through (endpoint_id, seq): bounded per endpoint.
_RECENT = """
SELECT e.id, count(d.*) FILTER (WHERE d.status = 'succeeded') AS succeeded,
       count(d.*) FILTER (WHERE d.status IN ('failed', 'dead')) AS failed,
       (array_agg(d.last_error ORDER BY d.seq DESC)
            FILTER (WHERE d.last_error IS NOT NULL))[1] AS last_error
FROM unnest(%s::text[]) AS e(id)
LEFT JOIN LATERAL (
    SELECT status, last_error, seq FROM deliveries
    WHERE endpoint_id = e.id ORDER BY seq DESC LIMIT %s
) d ON true
GROUP BY e.id
"""


def recent_outcomes(conn: psycopg.Connection, endpoint_ids: Sequence[str], window: int = 100
                    ) -> dict[str, dict[str, Any]]:
    """Per endpoint, of its last ``window`` deliveries: how many succeeded, how many
    failed or died, and the newest error among them."""
    if not endpoint_ids:
        return {}
    rows = conn.cursor(row_factory=dict_row).execute(
        _RECENT, (list(endpoint_ids), window)).fetchall()
    return {r.pop("id"): r for r in rows}
