"""Received events: the deduplicating insert every effect hangs off."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.model import NormalisedEvent

_INSERT = """
INSERT INTO events (source, dedupe_key, type, channel, message_id, sender, msisdn, status,
                    provider_status, provider_event_id, occurred_at, ingest_id, data, raw,
                    received_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (source, dedupe_key) DO NOTHING
RETURNING id
"""


@dataclass(slots=True)
class Incoming:
    event: NormalisedEvent
    raw: Any
    received_at: datetime


@dataclass(slots=True)
class Stored:
    id: int
    event: NormalisedEvent


def insert_new(cur: psycopg.Cursor, incoming: list[Incoming]) -> list[Stored]:
    """Insert events; returns only those that were new (duplicates have no effect).

    Sorted by key so concurrent batches take unique-index locks in one order
    and cannot deadlock on each other.
    """
    ordered = sorted(incoming, key=lambda i: (i.event.source, i.event.dedupe_key))
    params = [_row(i) for i in ordered]
    if not params:
        return []
    cur.executemany(_INSERT, params, returning=True)
    stored: list[Stored] = []
    for item in ordered:
        row = cur.fetchone()
        if row is not None:
            stored.append(Stored(row[0], item.event))
        cur.nextset()
    return stored


def _row(i: Incoming) -> tuple:
    e = i.event
    return (
        e.source, e.dedupe_key, e.type, e.channel, e.message_id, e.sender, e.msisdn,
        e.status, e.provider_status, e.provider_event_id, e.occurred_at, e.ingest_id,
        Jsonb(e.data), Jsonb(i.raw), i.received_at,
    )
