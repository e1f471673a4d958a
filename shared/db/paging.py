"""Newest-first keyset pages, with optional filters, for the list endpoints.

A list's filters are named conditions; a page's SQL holds only those whose parameter
is set (:func:`newest_first`). The generic ``(%(x)s IS NULL OR ...)`` form is planned
once for every combination, so the planner cannot pick the index a filter needs and
walks the key index instead: a rare filter then reads the table (docs/console.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import psycopg
from psycopg.rows import dict_row

from shared.db.stats import BOUNDARY_ROWS


@dataclass(frozen=True)
class Page:
    """Which page of a newest-first list: at most ``limit`` rows, those with a key below
    ``before`` when it is given."""

    limit: int
    before: int | None = None


@dataclass(frozen=True)
class Party:
    """The channel, sender and msisdn filters of the lists kept per party (inbound
    messages, subscriptions); None leaves one off."""

    channel: str | None = None
    sender: str | None = None
    msisdn: str | None = None

    def params(self) -> dict[str, str | None]:
        return asdict(self)


def equals(column: str) -> str:
    """Rows whose text ``column`` equals the parameter of the same name, when one is given."""
    return f"(%({column})s::text IS NULL OR {column} = %({column})s)"


# How many of the rows nearest a time bound are read to find the id bound: ids rise
# with time, but a batch numbers its rows in key order and concurrent batches
# interleave, so the row nearest the time need not hold the extreme id. A default
# batch, as the overview's per-minute counts allow for (stats.BOUNDARY_ROWS).
TIME_WINDOW = BOUNDARY_ROWS

Query = Callable[[frozenset[str]], str]


def is_(column: str) -> str:
    """The filter ``column = %(column)s``."""
    return f"{column} = %({column})s"


def until(table: str, key: str, time: str, param: str = "until") -> str:
    """Rows with ``time`` before ``%(param)s``, and a ceiling on ``key`` found through
    the index on ``time`` (ids rise with time), so the page starts there rather than
    walking every newer row."""
    return f"""{time} < %({param})s AND {key} <= (SELECT max({key}) FROM (
        SELECT {key} FROM {table} WHERE {time} < %({param})s
        ORDER BY {time} DESC LIMIT {TIME_WINDOW}) near)"""


def since(table: str, key: str, time: str, param: str = "since") -> str:
    """Rows with ``time`` at or after ``%(param)s``, and a floor on ``key`` found the
    same way, so a page that runs out of matches stops there rather than reading on
    to the oldest row."""
    return f"""{time} >= %({param})s AND {key} >= (SELECT min({key}) FROM (
        SELECT {key} FROM {table} WHERE {time} >= %({param})s
        ORDER BY {time} LIMIT {TIME_WINDOW}) near)"""


def newest_first(table: str, columns: str, key: str, filters: Mapping[str, str]) -> Query:
    """The SQL of a page for the set filters: SELECT ``columns`` newest first by the bigint
    ``key``, below ``%(before)s`` when given (keyset paging, stable under inserts), at
    most ``%(limit)s`` rows. ``filters`` are conditions by parameter name."""
    known = dict(filters)

    @cache
    def sql(names: frozenset[str]) -> str:
        conditions = [f"{key} < %(before)s"] if "before" in names else []
        conditions += [f"({c})" for name, c in known.items() if name in names]
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        return f"SELECT {columns} FROM {table} {where} ORDER BY {key} DESC LIMIT %(limit)s"

    return sql


def fetch_page(
    conn: psycopg.Connection, query: Query, page: Page, /, **filters: Any
) -> list[dict[str, Any]]:
    """Run a :func:`newest_first` query; ``filters`` are its parameters by name, None
    leaving one off."""
    sql, params = page_sql(query, page, **filters)
    return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()


def page_sql(query: Query, page: Page, /, **filters: Any) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters :func:`fetch_page` runs (the tests EXPLAIN them)."""
    params = {"before": page.before, **filters, "limit": page.limit}
    return query(frozenset(k for k, v in params.items() if v is not None)), params
