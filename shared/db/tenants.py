"""Tenants (the customers one hookline serves) and the senders each owns.

A (source, sender) pair has one owner: events carrying it without a callback key
belong to that tenant (shared.db.events). Taking a pair another tenant owns is a
:class:`SenderTaken`, raised from the primary key's conflict, so two concurrent
creations cannot both win.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg.rows import dict_row

_COLUMNS = "id, name, created_at, updated_at"

_SENDERS_OF = """
SELECT tenant_id, source, sender, channel FROM tenant_senders
WHERE tenant_id = ANY (%s) ORDER BY source, sender
"""


class SenderTaken(Exception):
    """A sender another tenant owns (or one named twice)."""

    def __init__(self, source: str, sender: str) -> None:
        super().__init__(f"sender {sender!r} of {source!r} belongs to another tenant")
        self.source, self.sender = source, sender


class TenantInUse(Exception):
    """The tenant still owns endpoints: delete them first."""


def new_id() -> str:
    """'tn_' + milliseconds (hex) + random: ids sort by creation time, for paging."""
    return f"tn_{int(time.time() * 1000):012x}{os.urandom(5).hex()}"


def _put_senders(cur: psycopg.Cursor, tenant_id: str, senders: Sequence[dict]) -> None:
    for s in senders:
        try:
            with cur.connection.transaction():
                cur.execute(
                    "INSERT INTO tenant_senders (source, sender, tenant_id, channel) "
                    "VALUES (%s, %s, %s, %s)",
                    (s["source"], s["sender"], tenant_id, s.get("channel")))
        except psycopg.errors.UniqueViolation:
            raise SenderTaken(s["source"], s["sender"]) from None


def _with_senders(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {r["id"]: {**r, "senders": []} for r in rows}
    cur = conn.cursor(row_factory=dict_row)
    for s in cur.execute(_SENDERS_OF, (list(by_id),)).fetchall():
        by_id[s.pop("tenant_id")]["senders"].append(s)
    return list(by_id.values())


def create(conn: psycopg.Connection, name: str, senders: Sequence[dict]) -> dict[str, Any]:
    """One transaction: the tenant and its senders, or nothing (SenderTaken)."""
    with conn.transaction():
        cur = conn.cursor(row_factory=dict_row)
        row = cur.execute(f"INSERT INTO tenants (id, name) VALUES (%s, %s) RETURNING {_COLUMNS}",
                          (new_id(), name)).fetchone()
        _put_senders(cur, row["id"], senders)
    return _with_senders(conn, [row])[0]


def get(conn: psycopg.Connection, tenant_id: str) -> dict[str, Any] | None:
    cur = conn.cursor(row_factory=dict_row)
    row = cur.execute(f"SELECT {_COLUMNS} FROM tenants WHERE id = %s", (tenant_id,)).fetchone()
    return _with_senders(conn, [row])[0] if row else None


def list_page(conn: psycopg.Connection, limit: int, after: str | None = None
              ) -> list[dict[str, Any]]:
    """Oldest first; ``after`` (an id) pages."""
    cur = conn.cursor(row_factory=dict_row)
    rows = cur.execute(
        f"SELECT {_COLUMNS} FROM tenants WHERE %(after)s::text IS NULL OR id > %(after)s "
        "ORDER BY id LIMIT %(limit)s", {"after": after, "limit": limit}).fetchall()
    return _with_senders(conn, rows)


def update(conn: psycopg.Connection, tenant_id: str, name: str | None = None,
           senders: Sequence[dict] | None = None) -> dict[str, Any] | None:
    """A new name and/or the whole list of senders (replacing the old one)."""
    with conn.transaction():
        cur = conn.cursor()
        found = cur.execute(
            "UPDATE tenants SET name = coalesce(%s, name), updated_at = now() WHERE id = %s "
            "RETURNING id", (name, tenant_id)).fetchone()
        if found is None:
            return None
        if senders is not None:
            cur.execute("DELETE FROM tenant_senders WHERE tenant_id = %s", (tenant_id,))
            _put_senders(cur, tenant_id, senders)
    return get(conn, tenant_id)


def delete(conn: psycopg.Connection, tenant_id: str) -> bool:
    """Its keys and senders go with it; its events stay, visible to the operator only."""
    try:
        with conn.transaction():
            cur = conn.execute("DELETE FROM tenants WHERE id = %s", (tenant_id,))
    except psycopg.errors.ForeignKeyViolation:
        raise TenantInUse(f"tenant {tenant_id} still has endpoints; delete them first") \
            from None
    return cur.rowcount == 1


def names(conn: psycopg.Connection) -> dict[str, str]:
    """Every tenant's name by id (the console's tenant filter)."""
    return dict(conn.execute("SELECT id, name FROM tenants ORDER BY name, id").fetchall())
