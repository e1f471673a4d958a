"""Received events: the deduplicating insert every effect hangs off."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from shared.model import NormalisedEvent

# One statement per batch: the rows travel as arrays and are unnested server-side,
# in key order so concurrent batches take unique-index locks in one order.
_INSERT = """
INSERT INTO events (source, dedupe_key, type, channel, message_id, sender, msisdn, status,
                    provider_status, provider_event_id, occurred_at, ingest_id, data, raw,
                    received_at)
SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                     %b::text[], %b::text[], %b::text[], %b::text[], %b::timestamptz[],
                     %b::text[], %b::jsonb[], %b::jsonb[], %b::timestamptz[])
ORDER BY 1, 2
ON CONFLICT (source, dedupe_key) DO NOTHING
RETURNING id, source, dedupe_key
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
    """Insert events; returns only those that were new (duplicates have no effect)."""
    unique: dict[tuple[str, str], Incoming] = {}
    for item in incoming:
        # A key twice in one batch: the first one counts, as it would across batches.
        unique.setdefault((item.event.source, item.event.dedupe_key), item)
    if not unique:
        return []
    columns = [list(col) for col in zip(*(_row(i) for i in unique.values()), strict=True)]
    cur.execute(_INSERT, columns)
    stored = [Stored(row[0], unique[(row[1], row[2])].event) for row in cur.fetchall()]
    stored.sort(key=lambda s: s.id)
    return stored


def _row(i: Incoming) -> tuple:
    e = i.event
    return (
        e.source, e.dedupe_key, e.type, e.channel, e.message_id, e.sender, e.msisdn,
        e.status, e.provider_status, e.provider_event_id, e.occurred_at, e.ingest_id,
        Jsonb(e.data), Jsonb(i.raw), i.received_at,
    )
