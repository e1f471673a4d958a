"""Applies one batch of parsed callbacks in one transaction.

Order matters: the deduplicating event insert decides what is new, and only new
events have effects, so a batch applied twice changes nothing the second time.
"""

from __future__ import annotations

import psycopg

from shared.db import dead_letters, events, messages
from shared.db.dead_letters import DeadLetter
from shared.db.events import Incoming, Stored


def apply_batch(
    conn: psycopg.Connection, incoming: list[Incoming], letters: list[DeadLetter]
) -> list[Stored]:
    """Apply inside the caller's transaction; returns the events that were new."""
    with conn.cursor() as cur:
        stored = events.insert_new(cur, incoming)
        messages.apply_statuses(cur, stored)
        dead_letters.insert(cur, letters)
    return stored
