"""Applies one batch of parsed callbacks in one transaction.

Order matters: the deduplicating event insert decides what is new, and only new
events have effects, so a batch applied twice changes nothing the second time.
Each step is one DAO call; the notifications they produce are what fan-out
delivers (written to the outbox in this same transaction).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from shared import tracing
from shared.db import dead_letters, events, inbound, messages, subscriptions
from shared.db.dead_letters import DeadLetter
from shared.db.events import Rows, Stored
from shared.db.outbox.enqueue import enqueue
from shared.notifications import Notification, plain_notifications


@dataclass(frozen=True, slots=True)
class TimeBounds:
    """How long one statement of a batch may run or wait for a lock, and how long its
    transaction may sit idle, in milliseconds (workers.pipeline derives them from
    HOOKLINE_LEASE_SECONDS). Past them PostgreSQL cancels: a stall becomes an error
    the drain retries, where it used to hold the batch, and every drain behind its
    lock, for as long as the lock was held."""

    statement_ms: int
    lock_ms: int
    idle_ms: int


# SET LOCAL in one round trip: they end with the transaction, so a pooled connection
# lent to anything else (the API, fan-out) keeps the server's defaults.
_BOUND = """
SELECT set_config('statement_timeout', %s, true), set_config('lock_timeout', %s, true),
       set_config('idle_in_transaction_session_timeout', %s, true)
"""


def bound(conn: psycopg.Connection, bounds: TimeBounds) -> None:
    """Inside the caller's transaction, before its first real statement."""
    conn.execute(_BOUND, (f"{bounds.statement_ms}ms", f"{bounds.lock_ms}ms",
                          f"{bounds.idle_ms}ms"))


@dataclass(slots=True)
class Applied:
    stored: list[Stored]               # the events that were new
    notifications: list[Notification]  # what fan-out delivers
    enqueued: int = 0                  # outbox rows written (none: nothing to kick)


def apply_batch(conn: psycopg.Connection, rows: Rows, letters: list[DeadLetter]) -> Applied:
    """Apply inside the caller's transaction; ``rows`` is events.rows(incoming)."""
    with conn.cursor() as cur:
        stored = events.insert_new(cur, rows)
        messages.apply_statuses(cur, stored)
        inbound.insert(cur, stored)
        notes = plain_notifications(stored)
        notes += [Notification(t.event_id, t.type, t.event, t.tenant_id)
                  for t in subscriptions.apply_consent(cur, stored)]
        # The outbox: last, so it sees every notification. A delivery keeps the batch's
        # trace context (None when tracing is off): its attempts are that span's children.
        enqueued = enqueue(cur, notes, tracing.current_traceparent())
        dead_letters.insert(cur, letters)
    return Applied(stored, notes, enqueued)
