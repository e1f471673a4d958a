"""Ordered endpoints: how a delivery is held, and what lets it go.

A delivery of an ordered endpoint that has a message key is written held
(next_attempt_at NULL: never due) and only the first of its message is let go
(release_first); each one that settles lets the next go. A claim then never
walks the followers, however many there are.

What may let a held delivery go is serialised per endpoint: writing held ones
(enqueue, retry, replay), settling one (record), ending the ordering (PATCH) and
moving one from before migration 010 (shared.db.convert). Each takes the lock
before the statement that lets the first of a message go, so that statement sees
what the others committed: else a delivery written held while its predecessor
settled could be seen by neither, and wait for ever. The lock is held to the end
of the transaction; its class key differs from the claim's (shared.db.locks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import psycopg

from shared.db import arrays, locks

# An ordered endpoint's delivery with a message key is written held (never due), and
# the statement that writes it returns how many it wrote and the (endpoint, message)
# pairs it held (HELD_PAIRS, read as Written), for release_held.
HELD_OR_NOW = "CASE WHEN e.ordered AND {key} IS NOT NULL THEN NULL ELSE now() END"
HELD_PAIRS = """
SELECT (SELECT count(*) FROM {cte}), array_agg(h.endpoint_id), array_agg(h.message_key)
FROM (SELECT DISTINCT endpoint_id, message_key FROM {cte} WHERE next_attempt_at IS NULL) h
"""


class Written(NamedTuple):
    """A HELD_PAIRS row."""

    rows: int  # how many the statement wrote
    endpoint_ids: list[str] | None
    message_keys: list[str] | None


def release_held(cur: psycopg.Cursor, written: Written, lock: bool = False) -> int:
    """After a statement ending in HELD_PAIRS: let the first of each held message go
    (taking the order locks first when the caller has not); how many it wrote."""
    if written.endpoint_ids:
        if lock:
            lock_endpoints(cur, written.endpoint_ids)
        release_first(cur, written.endpoint_ids, written.message_keys)
    return written.rows


_LOCK_ORDER = """
SELECT count(pg_advisory_xact_lock(%s, s.k))
FROM (SELECT DISTINCT hashtext(id) AS k FROM unnest(%b::text[]) AS id ORDER BY 1) s
"""


def lock_endpoints(cur: psycopg.Cursor, endpoint_ids: Sequence[str]) -> None:
    """Take the order locks of these endpoints, to the end of the transaction."""
    cur.execute(_LOCK_ORDER, (locks.ORDER.key, arrays.text(endpoint_ids)))


# Before anything else in a record (a column of its first statement): the order
# locks of the batch's ordered endpoints (%s: the batch's endpoint ids), taken before
# its rows are (a replay holding an endpoint's lock waits for those rows); the
# ordered ones' ids.
LOCK_ORDERED = f"""(SELECT array_agg(s.id) FROM (
    SELECT e.id, pg_advisory_xact_lock({locks.ORDER.key}, e.k) FROM (
        SELECT id, hashtext(id) AS k FROM endpoints
        WHERE id = ANY(%s::text[]) AND ordered ORDER BY 2) e) s)"""


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


def release_first(cur: psycopg.Cursor, endpoint_ids: Sequence[str],
                  message_keys: Sequence[str]) -> int:
    """Let the first pending delivery of each (endpoint, message) go if it is held
    (every held one, for an endpoint no longer ordered); hold the endpoints' order
    locks first (lock_endpoints)."""
    # Binary arrays (shared.db.arrays): psycopg dumps a list element by element in Python.
    return cur.execute(_RELEASE_FIRST, dict(eps=arrays.text(endpoint_ids),
                                            keys=arrays.text(message_keys))).rowcount


class Advanced(NamedTuple):
    """A delivery a record moved on, with its new status."""

    id: str
    status: str
    endpoint_id: str
    message_key: str | None


def release_settled(cur: psycopg.Cursor, advanced: Iterable[Advanced],
                    ordered: set[str]) -> None:
    """A settled delivery lets the next of its message go. ``ordered``: the ordered
    endpoints whose locks the record holds (LOCK_ORDERED)."""
    done = [(a.endpoint_id, a.message_key) for a in advanced
            if a.status in ("succeeded", "dead") and a.message_key is not None
            and a.endpoint_id in ordered]
    if done:
        release_first(cur, [ep for ep, _ in done], [key for _, key in done])


# Held deliveries' (endpoint, message) pairs, of one endpoint or all: the input of
# release_stranded.
_HELD_KEYS = """
SELECT array_agg(h.endpoint_id), array_agg(h.message_key) FROM (
    SELECT DISTINCT d.endpoint_id, d.message_key
    FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id AND e.ordered
    WHERE d.status IN ('pending', 'failed') AND d.next_attempt_at IS NULL
      AND d.message_key IS NOT NULL AND (%(ep)s::text IS NULL OR d.endpoint_id = %(ep)s)
) h
"""


def release_stranded(conn: psycopg.Connection, endpoint_id: str | None = None) -> int:
    """Let go each held delivery that is now the first of its message: its head went
    without settling (retention dropped a disabled endpoint's unsent head, ...). Run on
    re-enabling an endpoint and after every purge; how many it let go."""
    with conn.transaction():
        cur = conn.cursor()
        eps, keys = cur.execute(_HELD_KEYS, {"ep": endpoint_id}).fetchone()
        if not eps:
            return 0
        lock_endpoints(cur, eps)
        return release_first(cur, eps, keys)


def unhold(conn: psycopg.Connection, endpoint_id: str) -> int:
    """Let every held delivery of an endpoint go (it is no longer ordered); call it in
    the transaction that changed the endpoint."""
    with conn.transaction():
        cur = conn.cursor()
        lock_endpoints(cur, [endpoint_id])
        return cur.execute("""
            UPDATE deliveries SET next_attempt_at = now()
            WHERE endpoint_id = %s AND status IN ('pending', 'failed') AND next_attempt_at IS NULL
        """, (endpoint_id,)).rowcount


# A delivery of endpoint ``e`` that may be sent now (a held one is never due).
# Ordered endpoints: nothing of a message goes while an earlier event of it to the
# same endpoint is still pending or being retried, nor while another of its events
# is in flight (one that arrived late may order before the one being sent). Two
# probes, each an index range: the message's earlier pending ones
# (deliveries_order_rank, empty for the first), and the endpoint's in flight
# (deliveries_in_flight, at most the claim cap).
SENDABLE_WITHIN = """
    d.endpoint_id = e.id AND d.status IN ('pending', 'failed') AND d.next_attempt_at <= now()
    AND (NOT e.ordered OR d.message_key IS NULL OR (NOT EXISTS (
        SELECT 1 FROM deliveries p
        WHERE p.endpoint_id = d.endpoint_id AND p.message_key = d.message_key
          AND p.status IN ('pending', 'failed') {p}
          AND (p.occurred_at, p.rank, p.seq) < (d.occurred_at, d.rank, d.seq))
    AND NOT EXISTS (
        SELECT 1 FROM deliveries f
        WHERE f.endpoint_id = d.endpoint_id AND f.claim_token IS NOT NULL {f}
          AND f.next_attempt_at > now() AND f.message_key = d.message_key)))
"""
# ``{p}`` and ``{f}``: more conditions on those two (claims' partition bounds).
SENDABLE = SENDABLE_WITHIN.format(p="", f="")
