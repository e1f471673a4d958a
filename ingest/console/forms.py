"""Small helpers the views share: form values, pages, and /v1 errors shown as messages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from flask import abort, flash, request
from werkzeug.exceptions import HTTPException

from ingest.console.blueprint import rt
from shared.timeutil import parse_timestamp

PAGE = 50
T = TypeVar("T")


def text(name: str, source: Any = None) -> str | None:
    """A stripped form or query value; None when empty."""
    value = (source if source is not None else request.values).get(name, "")
    return value.strip() or None


def words(name: str) -> list[str]:
    """A comma-separated field as a list."""
    return [w.strip() for w in (request.values.get(name) or "").split(",") if w.strip()]


def integer(name: str) -> int | None:
    raw = text(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        flash(f"{name} must be a whole number", "error")
        return None


def moment(name: str) -> datetime | None:
    """A time field (ISO-8601 or the browser's datetime-local, taken as UTC)."""
    raw = text(name)
    if raw is None:
        return None
    try:
        return parse_timestamp(raw)
    except ValueError as exc:
        flash(f"{name}: {exc}", "error")
        return None


def attempt(action: Callable[[], T]) -> T | None:
    """Run a /v1 rule; its 4xx (bad value, not found, in flight) becomes a message."""
    try:
        return action()
    except HTTPException as exc:
        if exc.code is None or exc.code >= 500:
            raise
        flash(exc.description or exc.name, "error")
        return None


def one(read: Callable[[psycopg.Connection], T | None], what: str, ident: object) -> T:
    """The row ``read`` finds, or a 404 naming it."""
    with rt().pool.connection() as conn:
        row = read(conn)
    if row is None:
        abort(404, f"no {what} {ident!r}")
    return row
