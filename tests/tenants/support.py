"""Builders the tenant tests share: two tenants with a sender each, keys, envelopes."""

from __future__ import annotations

import time
from dataclasses import dataclass

from shared import inbox
from shared.db import keys, tenants
from shared.envelope import Envelope, new_id
from shared.runtime import Runtime

# tests.helpers.receipt() sends as "mmx_traffic"; tenant B owns another agent.
SENDER_A = "mmx_traffic"
SENDER_B = "agent_b"


@dataclass
class Tenant:
    id: str
    api_key: str
    callback_key: str


def make_tenant(rt: Runtime, name: str, sender: str, source: str = "kaleyra-rcs") -> Tenant:
    with rt.pool.connection() as conn:
        t = tenants.create(conn, name, [{"source": source, "sender": sender}])
        api = keys.create(conn, t["id"], f"{name} api", "api")["key"]
        cb = keys.create(conn, t["id"], f"{name} callbacks", "callback")["key"]
    return Tenant(t["id"], api, cb)


def two_tenants(rt: Runtime) -> tuple[Tenant, Tenant]:
    return make_tenant(rt, "Acme", SENDER_A), make_tenant(rt, "Bravo", SENDER_B)


def enqueue_as(rt: Runtime, body: bytes, tenant_id: str | None, source: str = "kaleyra-rcs",
               event: str | None = None) -> str:
    """What ingest queues for a callback that came with ``tenant_id``'s callback key."""
    env = Envelope(id=new_id(), source=source, event=event, received_at=time.time(), body=body,
                   tenant_id=tenant_id)
    inbox.push(rt.redis, env.encode())
    return env.id


def one(rt: Runtime, sql: str, *params: object) -> object:
    with rt.pool.connection() as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
