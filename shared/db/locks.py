"""Every PostgreSQL advisory lock hookline takes, by name.

The numbers are the ones each process has always used: a rolling deploy runs old
and new processes side by side, and a lock only excludes a process that takes the
same key. PostgreSQL keeps the one-key (bigint) and the two-key (int4, int4) forms
apart, so a key is unique within its form (tests/test_layers.py checks it): the
claim shares its class number with the migrations' key, and the order locks with
retention's, and neither pair ever excluded the other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

import psycopg


class Form(Enum):
    ONE_KEY = "bigint"       # pg_advisory_lock(key)
    TWO_KEYS = "int4, int4"  # pg_advisory_xact_lock(key, second): key is the class


@dataclass(frozen=True, slots=True)
class Lock:
    name: str
    key: int
    form: Form = Form.ONE_KEY
    # The two-key form's second key; None: one per endpoint (hashtext of its id).
    second: int | None = None


# Session locks: one process at a time does each of these.
MIGRATE = Lock("migrate", 0x686F6F6B)
PARTITIONS = Lock("partitions", 0x686F6F70)  # making partitions
RETENTION = Lock("retention", 0x686F6F6C)    # the purge
CONVERT = Lock("convert", 0x686F6F63)        # moving rows from before migration 010
# Transaction locks of the outbox. Claims are serialised across every sender process:
# each claim then sees the claims committed before it, so per-endpoint caps hold exactly.
CLAIM = Lock("claim", 0x686F6F6B, Form.TWO_KEYS, 0xFA)
# What may let an ordered endpoint's held delivery go, one endpoint at a time
# (shared.db.outbox.ordering).
ORDER = Lock("order", 0x686F6F6C, Form.TWO_KEYS)

ALL = (MIGRATE, PARTITIONS, RETENTION, CONVERT, CLAIM, ORDER)


@contextmanager
def held(conn: psycopg.Connection, lock: Lock, wait: str = "block",
         poll_seconds: float = 0.2) -> Iterator[bool]:
    """Hold a session lock (autocommit connection) for the ``with`` block; yields
    whether it was taken. ``wait``: "block" waits in pg_advisory_lock; "try" takes it
    only if free (yields False, and the block should do nothing, if not); "poll" tries
    every ``poll_seconds`` until it is free, so no statement waits holding a snapshot."""
    if lock.form is not Form.ONE_KEY:
        raise ValueError(f"{lock.name} is a transaction lock")
    if wait == "block":
        conn.execute("SELECT pg_advisory_lock(%s)", (lock.key,))
    elif wait == "try":
        if not _try(conn, lock):
            yield False
            return
    elif wait == "poll":
        while not _try(conn, lock):
            time.sleep(poll_seconds)
    else:
        raise ValueError(f"wait must be block, try or poll, not {wait!r}")
    try:
        yield True
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (lock.key,))


def _try(conn: psycopg.Connection, lock: Lock) -> bool:
    return conn.execute("SELECT pg_try_advisory_lock(%s)", (lock.key,)).fetchone()[0]
