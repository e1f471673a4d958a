"""Received events: the deduplicating insert every effect hangs off."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import psycopg.errors
from psycopg.rows import dict_row

from shared.db import arrays, legacy
from shared.model import NormalisedEvent

# Deduplication across time partitions (migration 010): each event claims its key in
# the UTC day bucket of its occurred_at and the DEDUPE_DAYS buckets after it. Two
# callbacks with one key whose times are at most DEDUPE_DAYS days apart share a
# bucket; the event_keys primary key makes the later insert of that bucket wait for
# the first transaction and then conflict, so exactly one of them is new: an event is
# new only if it claimed every one of its buckets. A retry carries the provider's
# same time, so it is a duplicate however late it arrives.
DEDUPE_DAYS = 1

# One statement per batch: the rows travel as arrays and are unnested server-side,
# in key order so concurrent batches take unique-index locks in one order.
_INSERT = """
WITH u AS (
    SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                         %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
                         %b::timestamptz[], %b::text[], %b::jsonb[], %b::jsonb[],
                         %b::timestamptz[], %b::text[])
        AS u(source, dedupe_key, type, channel, message_id, sender, msisdn, status,
             provider_status, provider_event_id, occurred_at, ingest_id, data, raw,
             received_at, key_tenant)
), claimed AS (
    INSERT INTO event_keys (source, dedupe_key, bucket, received_at)
    SELECT u.source, u.dedupe_key,
           date_trunc('day', u.occurred_at, 'UTC') + make_interval(days => g), u.received_at
    FROM u CROSS JOIN generate_series(0, %s) AS g
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING
    RETURNING source, dedupe_key
), new AS (
    SELECT source, dedupe_key FROM claimed GROUP BY 1, 2 HAVING count(*) = %s
)
INSERT INTO events (source, dedupe_key, type, channel, message_id, sender, msisdn, status,
                    provider_status, provider_event_id, occurred_at, ingest_id, data, raw,
                    received_at, tenant_id)
SELECT u.source, u.dedupe_key, u.type, u.channel, u.message_id, u.sender, u.msisdn, u.status,
       u.provider_status, u.provider_event_id, u.occurred_at, u.ingest_id, u.data, u.raw,
       u.received_at, {tenant}
FROM u JOIN new USING (source, dedupe_key) {attribution} {legacy}
ORDER BY 1, 2
RETURNING id, source, dedupe_key, tenant_id
"""
# Attribution (docs/tenants.md), in this same statement: the tenant whose callback key
# brought the event (ingest puts it in the envelope), else the owner of its (source,
# sender), else, for a receipt without a sender, its message's tenant (from earlier
# events), else none. Two index probes per event at most, and only the second when
# there is no sender.
_TENANT = "coalesce(u.key_tenant, ts.tenant_id, m.tenant_id)"
_ATTRIBUTION = """
LEFT JOIN tenant_senders ts ON ts.source = u.source AND ts.sender = u.sender
LEFT JOIN messages m ON u.sender IS NULL AND u.key_tenant IS NULL
    AND m.source = u.source AND m.message_id = u.message_id"""
# While an installation converts (shared.db.convert), an event not yet moved across is
# still a duplicate. The legacy table only shrinks, and a batch moves an event's keys
# into event_keys in the transaction that deletes it there, so every key is in one of
# the two whenever a statement looks.
_NOT_LEGACY = """WHERE NOT EXISTS (SELECT 1 FROM events_legacy l
                 WHERE l.source = u.source AND l.dedupe_key = u.dedupe_key)"""
_PLAIN = _INSERT.format(legacy="", tenant=_TENANT, attribution=_ATTRIBUTION)
_CONVERTING = _INSERT.format(legacy=_NOT_LEGACY, tenant=_TENANT, attribution=_ATTRIBUTION)


@dataclass(slots=True)
class Incoming:
    event: NormalisedEvent
    raw: Any
    received_at: datetime
    tenant_id: str | None = None  # the tenant of the callback key that brought it


@dataclass(slots=True)
class Stored:
    id: int
    event: NormalisedEvent
    tenant_id: str | None = None  # attributed by the insert


@dataclass(slots=True)
class Rows:
    """A batch's events ready for the insert: deduplicated within the batch, the
    columns encoded. Building it is CPU only, so the read-ahead thread does it
    while the drain's thread waits for PostgreSQL (workers.ahead)."""

    unique: dict[tuple[str, str], Incoming]
    columns: list[arrays.Array]


def rows(incoming: list[Incoming]) -> Rows:
    unique: dict[tuple[str, str], Incoming] = {}
    for item in incoming:
        # A key twice in one batch: the first one counts, as it would across batches.
        unique.setdefault((item.event.source, item.event.dedupe_key), item)
    return Rows(unique, _columns(list(unique.values())) if unique else [])


def insert_new(cur: psycopg.Cursor, batch: Rows) -> list[Stored]:
    """Insert events; returns only those that were new (duplicates have no effect)."""
    if not batch.unique:
        return []
    params = [*batch.columns, DEDUPE_DAYS, DEDUPE_DAYS + 1]
    if not legacy.legacy_present(cur):
        cur.execute(_PLAIN, params)
    else:
        try:
            # A savepoint (only while converting): the conversion drops the legacy
            # tables when it ends, and this process may not know it yet.
            with cur.connection.transaction():
                cur.execute(_CONVERTING, params)
        except psycopg.errors.UndefinedTable:
            legacy.forget()
            cur.execute(_PLAIN, params)
    stored = [Stored(row[0], batch.unique[(row[1], row[2])].event, row[3])
              for row in cur.fetchall()]
    stored.sort(key=lambda s: s.id)
    return stored


def _columns(rows: list[Incoming]) -> list[arrays.Array]:
    ev = [i.event for i in rows]
    return [
        arrays.text([e.source for e in ev]), arrays.text([e.dedupe_key for e in ev]),
        arrays.text([e.type for e in ev]), arrays.text([e.channel for e in ev]),
        arrays.text([e.message_id for e in ev]), arrays.text([e.sender for e in ev]),
        arrays.text([e.msisdn for e in ev]), arrays.text([e.status for e in ev]),
        arrays.text([e.provider_status for e in ev]),
        arrays.text([e.provider_event_id for e in ev]),
        arrays.timestamptz([e.occurred_at for e in ev]), arrays.text([e.ingest_id for e in ev]),
        arrays.jsonb([e.data for e in ev]), arrays.jsonb([i.raw for i in rows]),
        arrays.timestamptz([i.received_at for i in rows]),
        arrays.text([i.tenant_id for i in rows]),
    ]


def by_ingest_id(conn: psycopg.Connection, ingest_id: str, limit: int = 50
                 ) -> list[dict[str, Any]]:
    """The events one callback (e.g. a replay) was applied as (events_ingest_id index)."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        "SELECT id, source, type, message_id, status, occurred_at, processed_at FROM events "
        "WHERE ingest_id = %s ORDER BY id LIMIT %s", (ingest_id, limit)).fetchall()
