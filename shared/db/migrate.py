"""Applies the plain SQL files in ``migrations/`` in order, each once.

Safe to run from several processes at once: an advisory lock serialises them.
A file runs in one transaction, unless its first line is ``-- hookline: no
transaction``: then its statements (each ending with ``;`` at the end of a line;
no such ``;`` inside comments, strings or function bodies) run one by one, so
``CREATE INDEX CONCURRENTLY`` can build an index on a busy table without
blocking its writers. Such a file must be safe to run again from the top, since
an interrupted run is not recorded.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from importlib import resources

import psycopg

from shared import config
from shared.db import locks, partitions
from shared.db.stats import table_exists

log = logging.getLogger(__name__)

LOCK_POLL_SECONDS = 0.2
NO_TRANSACTION = "-- hookline: no transaction"
_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)

_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


# Names the newest migration. A branch that adds one changes this line, so two branches
# that each add one conflict here in git instead of merging two 011_*.sql files
# (tests/db/test_migration_head.py keeps it true).
HEAD_FILE = ".head"


def head() -> str:
    """The newest migration's version, as HEAD_FILE names it."""
    return (resources.files("shared.db") / "migrations" / HEAD_FILE).read_text().strip()


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("shared.db") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text()) for name in names]


def statements(sql: str) -> list[str]:
    """The statements of a no-transaction file, without their comments-only pieces."""
    pieces = (p.strip() for p in _STATEMENT_END.split(sql))
    return [p for p in pieces
            if any(line.strip() and not line.strip().startswith("--")
                   for line in p.splitlines())]


def _ensure_partitions(conn: psycopg.Connection, env: Mapping[str, str]) -> None:
    """The partitions due now; with rows still to convert (shared.db.convert), back to
    the retention cutoff too. Made here, before the new workers start, rather than by the
    conversion while they run (it makes them only if these are missing, e.g. a longer
    retention set for the scheduler): a partition attached for a time a batch is writing
    to makes that batch fail and go again (workers.pipeline._lost_race), and a conversion
    making a month of them at once made the drains fail one after another."""
    since = None
    if table_exists(conn, "events_legacy"):
        days = config.load_retention_days(env)
        since = datetime.now(UTC) - timedelta(days=days)
    partitions.ensure(conn, interval_days=config.partition_interval(env), since=since)


def pending(database_url: str) -> list[str]:
    """The versions this code ships that the database has not applied yet."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        done = set()
        if table_exists(conn, "schema_migrations"):
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    return [version for version, _ in migration_files() if version not in done]


def migrate(database_url: str, env: Mapping[str, str] | None = None,
            until: str | None = None) -> list[str]:
    """Apply pending migrations (up to and including ``until``, default all), then make
    the time partitions that should exist (HOOKLINE_PARTITION_INTERVAL in ``env``,
    default os.environ); returns the versions applied now."""
    applied_now: list[str] = []
    # Polled, not waited for inside pg_advisory_lock: a waiting statement holds a
    # snapshot, which CREATE INDEX CONCURRENTLY in the holder's migration waits
    # out, and PostgreSQL breaks the deadlock by failing one of them.
    with (psycopg.connect(database_url, autocommit=True) as conn,
          locks.held(conn, locks.MIGRATE, wait="poll", poll_seconds=LOCK_POLL_SECONDS)):
        conn.execute(_TABLE)
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        for version, sql in migration_files():
            if version in done or (until is not None and version > until):
                continue
            if sql.startswith(NO_TRANSACTION):
                for statement in statements(sql):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)",
                             (version,))
            else:
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (version,)
                    )
            log.info("applied migration %s", version, extra={"version": version})
            applied_now.append(version)
        # Before any worker writes: else the first rows would all go to the defaults.
        if table_exists(conn, "events_default"):
            _ensure_partitions(conn, os.environ if env is None else env)
    return applied_now
