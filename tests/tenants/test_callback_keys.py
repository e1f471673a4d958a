"""Ingest's snapshot of callback keys (ingest.tenant_keys): no PostgreSQL per callback,
new and revoked keys counted within the snapshot's age, PostgreSQL down survived."""

from __future__ import annotations

import time

import pytest

from ingest.tenant_keys import CallbackKeys, KeysUnavailable
from shared.db import keys, tenants


class Down:
    """A pool whose database is gone."""

    def connection(self, timeout: float = 0):
        raise OSError("connection refused")


@pytest.fixture
def tenant(rt):
    with rt.pool.connection() as conn:
        return tenants.create(conn, "Acme", [])["id"]


def _key(rt, tenant_id: str, kind: str = "callback") -> dict:
    with rt.pool.connection() as conn:
        return keys.create(conn, tenant_id, "k", kind)


def test_the_snapshot_serves_between_refreshes(rt, tenant):
    first = _key(rt, tenant)
    pool = {"now": rt.pool}
    cache = CallbackKeys(lambda: pool["now"], ttl=0.3)
    assert cache.tenant_of(first["key"]) == tenant
    assert cache.tenant_of(_key(rt, tenant, "api")["key"]) is None  # not a callback key
    assert cache.tenant_of("not-a-key") is None
    later = _key(rt, tenant)
    with rt.pool.connection() as conn:
        keys.revoke(conn, tenant, first["id"])
    # Within the snapshot's age: as it was; after it, as the table says.
    assert cache.tenant_of(first["key"]) == tenant and cache.tenant_of(later["key"]) is None
    time.sleep(0.35)
    assert cache.tenant_of(first["key"]) is None and cache.tenant_of(later["key"]) == tenant
    # The keys seen are marked used at the next refresh.
    time.sleep(0.35)
    cache.tenant_of(later["key"])
    with rt.pool.connection() as conn:
        (row,) = [k for k in keys.list_for(conn, tenant) if k["id"] == later["id"]]
    assert row["last_used_at"] is not None

    # PostgreSQL gone: the snapshot held goes on serving.
    pool["now"] = Down()
    time.sleep(0.35)
    assert cache.tenant_of(later["key"]) == tenant


def test_no_snapshot_and_no_database_is_unavailable(rt, tenant):
    made = _key(rt, tenant)
    with pytest.raises(KeysUnavailable):
        CallbackKeys(lambda: Down()).tenant_of(made["key"])
