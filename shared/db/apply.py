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
from shared.consent import notifies_as_itself
from shared.db import dead_letters, deliveries, events, inbound, messages, subscriptions
from shared.db.dead_letters import DeadLetter
from shared.db.events import Rows, Stored
from shared.model import NormalisedEvent


@dataclass(slots=True)
class Notification:
    """One thing customer endpoints may be told: an applied event, or a consent
    transition it caused (then ``type`` differs from ``event.type``)."""

    event_id: int
    type: str
    event: NormalisedEvent


def plain_notifications(stored: list[Stored]) -> list[Notification]:
    """Every new event notifies as itself, except SUBSCRIBE / UNSUBSCRIBE-like events:
    those notify only through the transitions they cause (see the consent step). A
    keyword text notifies as message.inbound and, if it changed consent, again
    as its transition."""
    return [Notification(s.id, s.event.type, s.event) for s in stored
            if notifies_as_itself(s.event)]


@dataclass(slots=True)
class Applied:
    stored: list[Stored]               # the events that were new
    notifications: list[Notification]  # what fan-out delivers


def apply_batch(conn: psycopg.Connection, rows: Rows, letters: list[DeadLetter]) -> Applied:
    """Apply inside the caller's transaction; ``rows`` is events.rows(incoming)."""
    with conn.cursor() as cur:
        stored = events.insert_new(cur, rows)
        messages.apply_statuses(cur, stored)
        inbound.insert(cur, stored)
        notes = plain_notifications(stored)
        notes += [Notification(t.event_id, t.type, t.event)
                  for t in subscriptions.apply_consent(cur, stored)]
        # The outbox: last, so it sees every notification. A delivery keeps the batch's
        # trace context (None when tracing is off): its attempts are that span's children.
        deliveries.enqueue(cur, notes, tracing.current_traceparent())
        dead_letters.insert(cur, letters)
    return Applied(stored, notes)
