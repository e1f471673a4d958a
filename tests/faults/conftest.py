"""Fixtures for the fault-injection suite: servers the tests own, real processes, a ledger.

Every test here starts its own ingest, workers and scheduler against a
PostgreSQL and a Redis that belong to this package alone (faults stop them
hard), and ends by auditing the ledger: zero lost, zero duplicated.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
import redis

from shared import inbox
from tests.faults.ledger import Audit, Ledger
from tests.faults.servers import OwnedPostgres, OwnedRedis
from tests.faults.stack import Stack, wait_until
from tests.procs import CALLBACK_TOKEN

API_TOKEN = "faults-api-token"


@dataclass
class Servers:
    pg: OwnedPostgres
    redis: OwnedRedis
    database_url: str
    redis_url: str

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=True)


@pytest.fixture(scope="session")
def owned_servers() -> Iterator[Servers]:
    pg, rds = OwnedPostgres(), OwnedRedis()
    try:
        pg.init()
        pg.start()
        url = pg.create_database()
        yield Servers(pg, rds, url, rds.start())
    finally:
        rds.destroy()
        pg.destroy()


@pytest.fixture
def servers(owned_servers: Servers) -> Servers:
    """Both servers up (a failed test may have left one down) and empty."""
    s = owned_servers
    if s.pg.pid is None:
        s.pg.start()
    if s.redis.pid is None:
        s.redis.start()
    s.client().flushall()
    with s.connect() as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'schema_migrations'")]
        conn.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    return s


@pytest.fixture
def process_env(servers: Servers) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HOOKLINE_") and k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DATABASE_URL=servers.database_url, REDIS_URL=servers.redis_url,
        HOOKLINE_API_TOKEN=API_TOKEN, HOOKLINE_LOG_FORMAT="text",
        # A batch cut short by a kill is processed again after this.
        HOOKLINE_LEASE_SECONDS="5",
    )
    return env


@pytest.fixture
def stack(process_env: dict[str, str], tmp_path) -> Iterator[Stack]:
    s = Stack(process_env, tmp_path)
    yield s
    s.stop()
    # Every process had the API and callback tokens in its environment: none may log them.
    leaked = [p.log.name for p in s.procs if API_TOKEN in p.text() or CALLBACK_TOKEN in p.text()]
    assert leaked == [], f"the API token appears in {leaked}"


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


def queues_empty(client: redis.Redis) -> bool:
    pipe = client.pipeline(transaction=False)
    for key in (inbox.INBOX, inbox.RETRY):
        pipe.llen(key)
    pipe.zcard(inbox.LEASES)
    pipe.hlen(inbox.ATTEMPTS)
    return not any(pipe.execute())


def settle(servers: Servers, ledger: Ledger, stack: Stack, timeout: float = 40) -> float:
    """Wait until every accepted callback has its effect and the queues are empty;
    returns how long that took. Fails with the processes' logs."""
    started = time.monotonic()
    client = servers.client()

    def done() -> bool:
        try:
            with servers.connect() as conn:
                return ledger.outstanding(conn) == 0 and queues_empty(client)
        except (psycopg.OperationalError, redis.RedisError):
            return False

    try:
        wait_until(done, timeout, 0.25, "ledger settled")
    except TimeoutError:
        with servers.connect() as conn:
            left = ledger.outstanding(conn)
        pytest.fail(f"{left} accepted callbacks still without effect after {timeout}s; "
                    f"queues empty: {queues_empty(client)}\n{stack.logs()}")
    return time.monotonic() - started


def audit(servers: Servers, ledger: Ledger, stack: Stack) -> Audit:
    with servers.connect() as conn:
        result = ledger.audit(conn)
    assert result.clean, f"{result}\n{stack.logs()}"
    return result
