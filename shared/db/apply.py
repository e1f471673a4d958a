"""Applies one batch of parsed callbacks in one transaction.

Order matters: the deduplicating event insert decides what is new, and only new
events have effects, so a batch applied twice changes nothing the second time.
Each step is one DAO call; the notifications they produce are what fan-out
delivers (written to the outbox in this same transaction).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from shared.db import dead_letters, events, inbound, messages, subscriptions
from shared.db.dead_letters import DeadLetter
from shared.db.events import Rows, Stored
from shared.db.outbox.enqueue import enqueue
from shared.notifications import Notification, plain_notifications


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
        notes += [Notification(t.event_id, t.type, t.event)
                  for t in subscriptions.apply_consent(cur, stored)]
        enqueued = enqueue(cur, notes)  # the outbox: last, so it sees every notification
        dead_letters.insert(cur, letters)
    return Applied(stored, notes, enqueued)
