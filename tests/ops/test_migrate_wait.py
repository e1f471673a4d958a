"""`hookline migrate --wait`, the init container of new worker and scheduler pods: it
returns once every migration the image ships is applied, and applies none itself."""

from __future__ import annotations

import subprocess
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests.procs import HOOKLINE, ROOT


def _wait(env: dict[str, str], timeout: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HOOKLINE, "migrate", "--wait", "--timeout", timeout], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_wait_returns_on_a_migrated_database(base_env):
    done = _wait(base_env, "10")
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout


def test_wait_gives_up_on_an_unmigrated_database_and_applies_nothing(base_env):
    url = base_env["DATABASE_URL"]
    empty = urlunsplit(urlsplit(url)._replace(path="/hookline_wait_empty"))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS hookline_wait_empty")
        conn.execute("CREATE DATABASE hookline_wait_empty")
    try:
        done = _wait({**base_env, "DATABASE_URL": empty}, "3")
        assert done.returncode == 1 and "waiting for migrations 001" in done.stderr
        with psycopg.connect(empty) as conn:
            assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS hookline_wait_empty WITH (FORCE)")
