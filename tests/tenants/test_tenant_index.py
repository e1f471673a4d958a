"""Tenant pages of the partitioned tables have an index on each partition made after
migration 014 (it is made ON ONLY the parent, so every partition attached later gets one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from shared.db import partitions


def _indexed(conn: psycopg.Connection, table: str) -> dict[str, bool]:
    """Each partition of ``table``: whether it has an index on (tenant_id, ...)."""
    rows = conn.execute("""
        SELECT c.relname, EXISTS (SELECT 1 FROM pg_indexes x WHERE x.tablename = c.relname
                                  AND x.indexdef LIKE '%%(tenant_id,%%')
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = %s::regclass""", (table,)).fetchall()
    return dict(rows)


def test_partitions_made_later_have_the_tenant_index(rt):
    later = datetime.now(UTC) + timedelta(days=400)
    with psycopg.connect(rt.settings.database_url, autocommit=True) as conn:
        made = partitions.ensure(conn, now=later, ahead_days=0)
        assert made
        try:
            for table in ("events", "inbound_messages"):
                found = _indexed(conn, table)
                new = [name for name in made if name in found]
                assert new, (table, made)
                assert all(found[name] for name in new), found
                assert found[f"{table}_default"]
        finally:  # the session's database is shared: leave no partition a year ahead
            for name in made:
                conn.execute(f'DROP TABLE IF EXISTS "{name}"')
