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


@dataclass(frozen=True)
class Page:
    """Which page of a newest-first list: at most ``limit`` rows, those after (older
    than, in the page's order) the row whose key is ``before`` when it is given."""

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


def optional(filters: Mapping[str, str], types: Mapping[str, str]) -> list[str]:
    """``filters`` (conditions by parameter name) in one fixed SQL text, each turned off
    by a None parameter (``types`` names each parameter's SQL type): for the queries
    that are not pages, where one plan serves every combination."""
    return [f"(%({name})s::{types[name]} IS NULL OR {cond})" for name, cond in filters.items()]


Query = Callable[[frozenset[str]], str]

# The filters on a list's time column. A page with one walks that column's index
# newest first (ties by key) rather than the key index: ids only roughly follow
# receipt time (a retried lease, a shard drained late), so no id bound is exact.
TIME_FILTERS = frozenset({"since", "until"})


def is_(column: str) -> str:
    """The filter ``column = %(column)s``."""
    return f"{column} = %({column})s"


def time_range(column: str) -> dict[str, str]:
    """The ``since`` (at or after) and ``until`` (before) filters on ``column``."""
    return {"since": f"{column} >= %(since)s", "until": f"{column} < %(until)s"}


def _below(table: str, order: tuple[str, ...]) -> str:
    # Keyset paging: the row ?before= names is the cursor, in the page's order. A
    # cursor row that is gone (retention) matches nothing, so that page is empty.
    if len(order) == 1:
        return f"{order[0]} < %(before)s"
    time, key = order
    return f"({time}, {key}) < (SELECT {time}, {key} FROM {table} WHERE {key} = %(before)s)"


def newest_first(table: str, columns: str, key: str, filters: Mapping[str, str],
                 time: str | None = None) -> Query:
    """The SQL of a page for the set filters: SELECT ``columns`` newest first by the bigint
    ``key`` (or, with a :data:`TIME_FILTERS` filter set, by ``time`` then ``key``), after
    the row ``%(before)s`` names when given (keyset paging, stable under inserts), at
    most ``%(limit)s`` rows. ``filters`` are conditions by parameter name."""
    known = dict(filters)

    @cache
    def sql(names: frozenset[str]) -> str:
        order = (time, key) if time and names & TIME_FILTERS else (key,)
        conditions = [_below(table, order)] if "before" in names else []
        conditions += [f"({c})" for name, c in known.items() if name in names]
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        by = ", ".join(f"{c} DESC" for c in order)
        return f"SELECT {columns} FROM {table} {where} ORDER BY {by} LIMIT %(limit)s"

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
