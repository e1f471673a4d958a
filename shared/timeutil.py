"""Timezone-aware UTC time helpers: providers send several timestamp dialects."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def parse_timestamp(value: str | int | float) -> datetime:
    """Parse ISO-8601 (with Z or offset), 'YYYY-MM-DD HH:MM:SS' (taken as UTC)
    or epoch seconds / milliseconds into an aware UTC datetime.

    Raises ValueError with a readable message on anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        try:
            seconds = value / 1000 if value > 1e11 else value
            return from_epoch(seconds)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"timestamp out of range: {value!r}") from exc
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a timestamp: {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from exc
    if parsed.tzinfo is None:
        # Provider docs that omit the offset (Kaleyra.io 'YYYY-MM-DD HH:MM:SS') mean UTC.
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-01:00
        raise ValueError(f"timestamp out of range: {value!r}") from exc
