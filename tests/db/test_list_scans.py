"""The list pages read a bounded number of rows whatever the table's size.

The tables hold 60,000 rows each (tests/db/scan_support.py); each filter's page is read
through the real data-layer function and the SQL it ran EXPLAINed: the rows its plan
read must stay near the page size, not grow with the table. Before, ?until= on dead
letters walked every newer row and ?sender= on subscriptions read and sorted every
all-senders row (docs/console.md, "Performance"). A time-filtered page is exact
however far out of time order rows were inserted: paging through it yields every
matching row once, newest by receipt time first.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest

from shared.db import dead_letters, event_feed, subscriptions
from shared.db.migrate import migrate
from shared.db.paging import Page, Party
from tests.db.scan_support import LIMIT, Recording, cases, explain_last, fill, minutes, out_of_order
from tests.helpers import with_database

ROWS = 60_000
# The page and what its plan reads around it (both halves of a sender page, the rows
# a filter skips near the page, a cursor row).
BOUND = 250


def _database(database_url: str, rows: int, *prepare) -> Iterator[str]:
    name = f"hookline_scans_{secrets.token_hex(4)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(database_url, name)
    migrate(url)
    fill(url, rows)
    for step in prepare:
        step(url, rows)
    yield url
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def url(database_url: str) -> Iterator[str]:
    yield from _database(database_url, ROWS)


@pytest.fixture
def conn(url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(url, cursor_factory=Recording) as conn:
        yield conn


@pytest.mark.parametrize("case", cases(ROWS), ids=lambda c: c.label)
def test_a_page_reads_a_bounded_number_of_rows(conn, case):
    assert len(case.page(conn)) <= LIMIT
    assert explain_last(conn).rows < BOUND + case.extra


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


LATE_ROWS = 10_000


@pytest.fixture(scope="module")
def late(database_url: str) -> Iterator[psycopg.Connection]:
    for url in _database(database_url, LATE_ROWS, out_of_order):
        with psycopg.connect(url) as conn:
            yield conn


def _walk(read, limit: int = 97) -> list[int]:
    """Every page of a list, each after the last row of the one before."""
    ids: list[int] = []
    while True:
        rows = read(Page(limit, ids[-1] if ids else None))
        ids += [r["id"] for r in rows]
        if len(rows) < limit:
            return ids


def _exactly(got: list[int], want: list[int]) -> None:
    assert sorted(got) == sorted(want)  # every matching row, each once
    assert got == want  # newest by receipt time first, ties by id


def _expected(conn: psycopg.Connection, table: str, where: str, params: dict) -> list[int]:
    sql = f"SELECT id FROM {table} WHERE {where} ORDER BY received_at DESC, id DESC"
    return [r[0] for r in conn.execute(sql, params)]


N = LATE_ROWS
TIME_PAGES = [  # (label, since, until): each bound has out-of-order rows far beyond it
    ("until", None, minutes(N - 1000)),
    ("since", minutes(N - 2000), None),
    ("since+until", minutes(N - 2000), minutes(N + 500)),
    ("since+until around the late rows", minutes(N - 6500), minutes(N - 3500)),
]


@pytest.mark.parametrize("since,until", [p[1:] for p in TIME_PAGES],
                         ids=[p[0] for p in TIME_PAGES])
def test_time_filtered_dead_letter_pages_hold_every_row_out_of_order_or_not(late, since,
                                                                           until):
    where = " AND ".join(["true"] + ["received_at >= %(since)s"] * bool(since)
                         + ["received_at < %(until)s"] * bool(until))
    params = {"since": since, "until": until}
    moved = late.execute("SELECT count(*) FROM dead_letters WHERE (ingest_id LIKE 'late%%' "
                         f"OR id BETWEEN 2001 AND 4000) AND {where}", params).fetchone()[0]
    assert moved >= 1000  # the range holds rows inserted far from their time
    want = _expected(late, "dead_letters", where, params)
    _exactly(_walk(lambda p: dead_letters.list_recent(late, p, since=since, until=until)), want)


def test_time_filtered_dead_letters_with_a_source_are_exact(late):
    since, until = minutes(N - 6500), minutes(N - 1000)
    want = _expected(late, "dead_letters", "source = 'late' AND received_at >= %(s)s "
                     "AND received_at < %(u)s", {"s": since, "u": until})
    assert len(want) > 1000
    _exactly(_walk(lambda p: dead_letters.list_recent(late, p, source="late", since=since,
                                                      until=until)), want)


def test_an_event_feed_since_page_holds_every_row_out_of_order_or_not(late):
    since = minutes(N - 2000)
    want = _expected(late, "events", "received_at >= %(s)s", {"s": since})
    assert sum(1 for i in want if 2000 < i <= 4000) == 2000  # the early-inserted block
    _exactly(_walk(lambda p: event_feed.list_page(late, p, since=since)), want)
    rare = [i for i in want if i % 1000 == 0]
    _exactly(_walk(lambda p: event_feed.list_page(late, p, type_="message.failed",
                                                  since=since), limit=3), rare)
