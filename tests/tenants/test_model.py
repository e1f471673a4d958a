"""Tenants, their senders and keys (shared.db.tenants, shared.db.keys) on PostgreSQL."""

from __future__ import annotations

import pytest

from shared.db import keys, tenants


def test_a_sender_has_one_owner(rt):
    with rt.pool.connection() as conn:
        a = tenants.create(conn, "Acme", [{"source": "kaleyra-rcs", "sender": "x",
                                           "channel": "rcs"}])
        with pytest.raises(tenants.SenderTaken):
            tenants.create(conn, "Bravo", [{"source": "kaleyra-rcs", "sender": "x"}])
        # Nothing of the refused tenant is left behind.
        assert [t["name"] for t in tenants.list_page(conn, 10)] == ["Acme"]
        # The same sender name at another source is another sender.
        b = tenants.create(conn, "Bravo", [{"source": "kaleyra-io", "sender": "x"}])
        assert tenants.get(conn, a["id"])["senders"] == [
            {"source": "kaleyra-rcs", "sender": "x", "channel": "rcs"}]
        with pytest.raises(tenants.SenderTaken):
            tenants.update(conn, b["id"], senders=[{"source": "kaleyra-rcs", "sender": "x"}])
        assert tenants.get(conn, b["id"])["senders"][0]["source"] == "kaleyra-io"
        renamed = tenants.update(conn, b["id"], name="Bravo Ltd")
        assert renamed["name"] == "Bravo Ltd" and renamed["senders"]
        assert tenants.update(conn, "tn_missing", name="x") is None


def test_keys_are_stored_hashed_shown_once_and_revoked_at_once(rt):
    with rt.pool.connection() as conn:
        t = tenants.create(conn, "Acme", [])
        made = keys.create(conn, t["id"], "prod", "api")
        secret = made["key"]
        assert secret.startswith("hk_") and len(secret) > 40
        stored = conn.execute("SELECT secret_hash FROM api_keys WHERE id = %s",
                              (made["id"],)).fetchone()[0]
        assert bytes(stored) == keys.digest(secret) and secret.encode() not in bytes(stored)
        listed = keys.list_for(conn, t["id"])
        assert [k["id"] for k in listed] == [made["id"]] and "key" not in listed[0]
        assert listed[0]["last_used_at"] is None

        who = keys.authenticate(conn, secret)
        assert who == keys.Principal(made["id"], t["id"], "api") and not who.operator
        assert keys.list_for(conn, t["id"])[0]["last_used_at"] is not None
        assert keys.authenticate(conn, secret + "x") is None
        assert keys.authenticate(conn, "test-api-token") is None
        # A callback key is not an API key.
        cb = keys.create(conn, t["id"], "cb", "callback")["key"]
        assert keys.authenticate(conn, cb) is None

        assert keys.revoke(conn, t["id"], made["id"])
        assert keys.authenticate(conn, secret) is None
        assert keys.list_for(conn, t["id"])[0]["revoked_at"] is not None


def test_operator_keys_belong_to_no_tenant(rt):
    with rt.pool.connection() as conn:
        t = tenants.create(conn, "Acme", [])
        op = keys.create(conn, None, "ops", "operator")
        assert keys.authenticate(conn, op["key"]).operator
        assert [k["id"] for k in keys.list_for(conn, None)] == [op["id"]]
        assert keys.list_for(conn, t["id"]) == []
        # A tenant cannot revoke the operator's key, nor another tenant's.
        assert not keys.revoke(conn, t["id"], op["id"])
        assert keys.authenticate(conn, op["key"]) is not None


def test_deleting_a_tenant_takes_its_keys_and_senders(rt):
    with rt.pool.connection() as conn:
        t = tenants.create(conn, "Acme", [{"source": "kaleyra-rcs", "sender": "x"}])
        k = keys.create(conn, t["id"], "prod", "api")
        assert tenants.delete(conn, t["id"])
        assert keys.authenticate(conn, k["key"]) is None
        assert conn.execute("SELECT count(*) FROM tenant_senders").fetchone()[0] == 0
        assert not tenants.delete(conn, t["id"])
