"""Connection pools. One per process, opened after fork (Celery prefork, granian workers)."""

from __future__ import annotations

import orjson
import psycopg
from psycopg.types.json import set_json_dumps
from psycopg_pool import ConnectionPool

# jsonb parameters (event data, raw bodies) are encoded with orjson: several times
# faster than the stdlib encoder on the drain's hot path.
set_json_dumps(orjson.dumps)


def _configure(conn: psycopg.Connection) -> None:
    # Every timestamp leaves PostgreSQL as UTC, whatever the server's TimeZone.
    conn.execute("SET TIME ZONE 'UTC'")
    # shared.db.arrays sends text as UTF-8 whatever the database's encoding; the
    # server converts (and refuses what its encoding cannot hold).
    conn.execute("SET client_encoding TO 'UTF8'")
    # JIT compiles a plan whose cost estimate is high, e.g. a claim over a grown
    # outbox: 28 ms of compiling for a statement that runs in a few. hookline's
    # statements are all short and batched; none gains from it (docs/benchmarks.md).
    conn.execute("SET jit = off")
    conn.commit()


def make_pool(database_url: str, size: int = 4, timeout: float = 10.0) -> ConnectionPool:
    return ConnectionPool(
        database_url,
        min_size=1,
        max_size=max(1, size),
        timeout=timeout,
        configure=_configure,
        # A connection killed under us (PostgreSQL restart) is noticed on checkout.
        check=ConnectionPool.check_connection,
        # psycopg_pool retries a lost server with exponential back-off (1, 2, 4 ... s)
        # for reconnect_timeout; with the default 5 minutes, a pool that lost
        # PostgreSQL for 30 s may not try again until half a minute after it is back.
        # Giving up sooner makes the next request start a fresh attempt at once;
        # drains pause between requests anyway (shared.inbox.back_off).
        reconnect_timeout=5,
        open=True,
        name="hookline",
    )
