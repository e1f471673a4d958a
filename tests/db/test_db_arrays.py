"""shared.db.arrays against real PostgreSQL: each encoder's bytes must read back
as the values given, exactly as psycopg's own list encoding does."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from shared.db import arrays

CASES: list[tuple[str, Callable[[Any], arrays.Array], list[Any]]] = [
    ("text", arrays.text, ["a", "", None, "é中😀", "x" * 5000, "it's \"quoted\", {braces}"]),
    ("timestamptz", arrays.timestamptz, [
        datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before PostgreSQL's epoch
        None,
        datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(1970, 1, 1, tzinfo=UTC),
    ]),
    ("jsonb", arrays.jsonb, [{"a": 1, "b": [1, 2.5, None, True]}, None, "text", 0, [],
                             {"nested": {"é": "中"}}, None]),
    ("bigint", arrays.bigint, [0, -1, 2**63 - 1, -(2**63), None]),
    ("int", arrays.integer, [0, -1, 2**31 - 1, -(2**31), None]),
    ("smallint", arrays.smallint, [0, -1, 2**15 - 1, -(2**15), None]),
    ("boolean", arrays.boolean, [True, False, None, True]),
    ("float8", arrays.float8, [0.0, -1.5, 1e300, 2.5e-300, None, 3.0]),
    ("uuid", arrays.uuid, [uuid.UUID(int=0), uuid.uuid4(), None, uuid.UUID(int=2**128 - 1)]),
]


@pytest.fixture
def conn(database_url: str):
    with psycopg.connect(database_url) as c:
        c.execute("SET TIME ZONE 'UTC'")
        yield c


@pytest.mark.parametrize(("sql_type", "encode", "values"), CASES, ids=[c[0] for c in CASES])
def test_an_encoded_array_reads_back_as_the_values_and_as_psycopgs_own(
    conn: psycopg.Connection, sql_type: str, encode: Callable, values: list[Any]
) -> None:
    ours = conn.execute(f"SELECT %b::{sql_type}[]", [encode(values)]).fetchone()[0]
    plain = [Jsonb(v) if v is not None else None for v in values] if sql_type == "jsonb" else values
    theirs = conn.execute(f"SELECT %b::{sql_type}[]", [plain]).fetchone()[0]
    assert ours == values
    assert ours == theirs


@pytest.mark.parametrize(("sql_type", "encode", "values"), CASES, ids=[c[0] for c in CASES])
def test_unnest_of_encoded_arrays_gives_rows_in_order(
    conn: psycopg.Connection, sql_type: str, encode: Callable, values: list[Any]
) -> None:
    rows = conn.execute(f"SELECT v FROM unnest(%b::{sql_type}[]) WITH ORDINALITY AS r(v, n) "
                        "ORDER BY n", [encode(values)]).fetchall()
    assert [r[0] for r in rows] == values


@pytest.mark.parametrize(("sql_type", "encode", "values"), CASES, ids=[c[0] for c in CASES])
def test_an_empty_array_is_empty_not_null(
    conn: psycopg.Connection, sql_type: str, encode: Callable, values: list[Any]
) -> None:
    assert conn.execute(f"SELECT %b::{sql_type}[]", [encode([])]).fetchone()[0] == []


def test_a_naive_datetime_is_refused_not_taken_for_utc() -> None:
    with pytest.raises(TypeError):
        arrays.timestamptz([datetime(2026, 11, 30, 12, 0)])  # noqa: DTZ001 (the point)


def test_a_value_out_of_the_columns_range_is_refused() -> None:
    import struct

    with pytest.raises(struct.error):
        arrays.smallint([2**15])


def test_postgresql_refuses_a_nul_in_text_as_it_does_from_psycopg(
    conn: psycopg.Connection,
) -> None:
    with pytest.raises(psycopg.DataError):
        conn.execute("SELECT %b::text[]", [arrays.text(["a\x00b"])])


def test_text_reads_back_from_a_database_that_is_not_utf8(database_url: str) -> None:
    """The encoder sends UTF-8; hookline's connections say so (shared.db.pool), so a
    LATIN1 database stores 'é', not the two characters of its UTF-8 bytes."""
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    from shared.db.pool import make_pool

    name = f"hookline_latin1_{secrets.token_hex(3)}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' "
                      "LC_CTYPE 'C' TEMPLATE template0")
    try:
        pool = make_pool(urlunsplit(urlsplit(database_url)._replace(path=f"/{name}")))
        with pool.connection() as conn:
            got = conn.execute("SELECT v FROM unnest(%b::text[]) AS r(v)",
                               [arrays.text(["é", "Ø"])]).fetchall()
        pool.close()
        assert [r[0] for r in got] == ["é", "Ø"]
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
