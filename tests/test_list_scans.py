"""The list pages read a bounded number of rows whatever the table's size.

The tables hold 60,000 rows each (tests/scan_support.py); each filter's page is read
through the real data-layer function and the SQL it ran EXPLAINed: the rows its plan
read must stay near the page size, not grow with the table. Before, ?until= on dead
letters walked every newer row and ?sender= on subscriptions read and sorted every
all-senders row (docs/console.md, "Performance").
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest

from shared.db import dead_letters, subscriptions
from shared.db.migrate import migrate
from shared.db.paging import TIME_WINDOW, Page, Party
from tests.conftest import _with_database
from tests.scan_support import LIMIT, Recording, cases, explain_last, fill, minutes

ROWS = 60_000
# The page, plus what the time bounds read (paging.TIME_WINDOW, twice at most).
BOUND = 2 * TIME_WINDOW + 200


@pytest.fixture(scope="module")
def url(database_url: str) -> Iterator[str]:
    name = f"hookline_scans_{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(database_url, name)
    migrate(url)
    fill(url, ROWS)
    yield url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def conn(url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(url, cursor_factory=Recording) as conn:
        yield conn


@pytest.mark.parametrize("case", cases(ROWS), ids=lambda c: c.label)
def test_a_page_reads_a_bounded_number_of_rows(conn, case):
    assert len(case.page(conn)) <= LIMIT
    assert explain_last(conn).rows < BOUND


MONTH_BACK = minutes(ROWS - 30 * 24 * 60)


def test_the_dead_letters_until_page_is_the_newest_rows_before_it(conn):
    rows = dead_letters.list_recent(conn, Page(3), until=MONTH_BACK)
    first = ROWS - 30 * 24 * 60 - 1
    assert [r["ingest_id"] for r in rows] == [f"i{first - k}" for k in range(3)]
    more = dead_letters.list_recent(conn, Page(2, rows[-1]["id"]), until=MONTH_BACK)
    assert [r["ingest_id"] for r in more] == [f"i{first - 3}", f"i{first - 4}"]
    assert dead_letters.list_recent(conn, Page(5), until=minutes(0)) == []
    assert len(dead_letters.list_recent(conn, Page(100), since=minutes(ROWS - 9))) == 10


def test_a_sender_page_is_its_rows_and_the_all_senders_rows_newest_first(conn):
    rows = subscriptions.list_page(conn, Page(LIMIT), Party(sender="rare"))
    ids = [r["id"] for r in rows]
    assert ids == sorted(ids, reverse=True) and len(ids) == LIMIT
    assert {r["sender"] for r in rows} == {"*"}  # 'rare' is old: the page is all '*'
    older = subscriptions.list_page(conn, Page(LIMIT, 30_000), Party(sender="rare"))
    assert {r["sender"] for r in older} == {"*", "rare"}
    star = subscriptions.list_page(conn, Page(LIMIT), Party(sender="*"))
    assert len({r["id"] for r in star}) == LIMIT  # not each row twice
