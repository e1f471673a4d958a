"""Newest-first keyset pages, with optional filters, for the list endpoints.

Every filter is written ``(%(name)s::type IS NULL OR ...)``: a None parameter turns it off,
so one fixed SQL text serves every combination of filters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row


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


def newest_first(table: str, columns: str, key: str, *filters: str) -> str:
    """SELECT ``columns`` newest first by the bigint ``key``: below ``%(before)s`` when
    given (keyset paging, stable under inserts), at most ``%(limit)s`` rows."""
    conditions = "".join(f"\n      AND {f}" for f in filters)
    return f"""
    SELECT {columns} FROM {table}
    WHERE (%(before)s::bigint IS NULL OR {key} < %(before)s){conditions}
    ORDER BY {key} DESC LIMIT %(limit)s
    """


def fetch_page(
    conn: psycopg.Connection, sql: str, page: Page, /, **filters: Any
) -> list[dict[str, Any]]:
    """Run a :func:`newest_first` query; ``filters`` are its parameters by name."""
    params = {"before": page.before, **filters, "limit": page.limit}
    return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()
