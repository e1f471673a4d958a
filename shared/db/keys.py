"""API, callback and operator keys: made once, kept as SHA-256, revoked at once.

A key is ``hk_`` + 43 characters of 256 random bits. With that much entropy a plain
SHA-256 is enough (nothing to brute-force, unlike a password), and the lookup is one
probe of the unique hash index. ``api`` and ``operator`` keys are checked against
PostgreSQL on every /v1 request, so a revocation holds for the very next request;
``callback`` keys are held by ingest in a short-lived snapshot (ingest.tenant_keys).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

KINDS = ("api", "callback", "operator")
PREFIX = "hk_"
# last_used_at is written at most this often per key: a read must not be a write each time.
TOUCH_EVERY_SECONDS = 60

_COLUMNS = "id, tenant_id, name, kind, created_at, last_used_at, revoked_at"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: the operator (``tenant_id`` None) or one tenant."""

    key_id: str | None  # None: HOOKLINE_API_TOKEN
    tenant_id: str | None
    kind: str

    @property
    def operator(self) -> bool:
        return self.tenant_id is None


OPERATOR_TOKEN = Principal(None, None, "operator")


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_id() -> str:
    return f"key_{int(time.time() * 1000):012x}{os.urandom(5).hex()}"


def create(conn: psycopg.Connection, tenant_id: str | None, name: str, kind: str
           ) -> dict[str, Any]:
    """A new key; the only time its secret (``key``) is returned."""
    key = PREFIX + secrets.token_urlsafe(32)
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(
        f"INSERT INTO api_keys (id, tenant_id, name, kind, secret_hash) "
        f"VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (new_id(), tenant_id, name, kind, digest(key))).fetchone()
    return {**row, "key": key}


def list_for(conn: psycopg.Connection, tenant_id: str | None) -> list[dict[str, Any]]:
    """A tenant's keys, or (None) the operator keys; never their secrets."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        f"SELECT {_COLUMNS} FROM api_keys WHERE tenant_id IS NOT DISTINCT FROM %s "
        "ORDER BY created_at, id", (tenant_id,)).fetchall()


def revoke(conn: psycopg.Connection, tenant_id: str | None, key_id: str) -> bool:
    """False when there is no such key of this tenant (or operator). Revoking twice
    keeps the first time."""
    cur = conn.execute(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) "
        "WHERE id = %s AND tenant_id IS NOT DISTINCT FROM %s", (key_id, tenant_id))
    return cur.rowcount == 1


_AUTHENTICATE = f"""
WITH k AS (
    SELECT id, tenant_id, kind, last_used_at FROM api_keys
    WHERE secret_hash = %(hash)s AND revoked_at IS NULL AND kind = ANY (%(kinds)s)
), touched AS (
    UPDATE api_keys a SET last_used_at = now() FROM k
    WHERE a.id = k.id AND (k.last_used_at IS NULL
                           OR k.last_used_at < now() - interval '{TOUCH_EVERY_SECONDS} seconds')
)
SELECT id, tenant_id, kind FROM k
"""


def authenticate(conn: psycopg.Connection, presented: str,
                 kinds: Iterable[str] = ("api", "operator")) -> Principal | None:
    """The live key ``presented`` is, among ``kinds``; None if none is."""
    if not presented.startswith(PREFIX):
        return None
    row = conn.execute(_AUTHENTICATE, {"hash": digest(presented), "kinds": list(kinds)}
                       ).fetchone()
    return Principal(row[0], row[1], row[2]) if row else None


def live_callback_keys(conn: psycopg.Connection) -> dict[bytes, tuple[str, str]]:
    """Every live callback key: hash -> (key id, tenant id)."""
    rows = conn.execute("SELECT secret_hash, id, tenant_id FROM api_keys "
                        "WHERE kind = 'callback' AND revoked_at IS NULL").fetchall()
    return {bytes(h): (key_id, tenant_id) for h, key_id, tenant_id in rows}


def touch(conn: psycopg.Connection, key_ids: Iterable[str]) -> None:
    """Record that these keys were used (ingest, for the callback keys it saw)."""
    conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = ANY (%s)",
                 (sorted(set(key_ids)),))



def live(conn: psycopg.Connection, key_id: str) -> Principal | None:
    """The live api or operator key ``key_id`` as a principal (a console session signed
    in with it checks it on every request); None when it is revoked or gone."""
    row = conn.execute("SELECT id, tenant_id, kind FROM api_keys WHERE id = %s "
                       "AND kind IN ('api', 'operator') AND revoked_at IS NULL",
                       (key_id,)).fetchone()
    return Principal(row[0], row[1], row[2]) if row else None
