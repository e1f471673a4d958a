"""Claiming due deliveries for the senders.

``claim`` takes due deliveries with ``FOR UPDATE SKIP LOCKED``, honouring each
endpoint's concurrency cap, breaker and ordering, and leases them by moving
``next_attempt_at`` to the end of the lease: a sender that dies lets them fall
due again (at-least-once).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from shared.db import locks
from shared.db.outbox.ordering import SENDABLE
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
        WHERE {SENDABLE}
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
    token = uuid.uuid4()
    params = dict(threshold=rules.breaker_failures, cap=rules.cap, limit=limit, token=token,
                  lease=float(rules.lease), slow=list(slow), slow_cap=slow_cap)
    with conn.transaction():
        conn.execute(_START, (locks.CLAIM.key, locks.CLAIM.second))
        rows = conn.execute(_CLAIM, params).fetchall()
    return [
        Claimed(id=id_, endpoint_id=endpoint_id, url=url, body=body.encode(),
                secrets=active_secrets(secret, previous, previous_expires, now), token=token,
                traceparent=traceparent)
        for (id_, endpoint_id, url, body, secret, previous, previous_expires, now,
             traceparent) in rows
    ]


def due_exists(conn: psycopg.Connection) -> bool:
    """Whether any delivery to a sendable endpoint is due (the tick's cheap check)."""
    return conn.execute(f"""
        SELECT EXISTS (SELECT 1 FROM endpoints e WHERE {_ENDPOINT_OPEN}
            AND EXISTS (SELECT 1 FROM deliveries d WHERE {SENDABLE}))
    """).fetchone()[0]
