"""JSON for API answers: orjson, ISO-8601 UTC datetimes, bytes as text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from flask.json.provider import JSONProvider


def _default(value: Any) -> Any:
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, dict):
        return {k: _utc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_utc(v) for v in value]
    return value


class OrjsonProvider(JSONProvider):
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(_utc(obj), default=_default).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return orjson.loads(s)
