"""Helpers over untrusted callback JSON that more than one provider module uses.

``base`` holds the machinery every format module builds on (Format, the schema
base, the load loop); this module holds the small readers the parsers had each
written their own copy of: the Kaleyra carrier envelope test, the inbound
message's data skeleton, the first text or time among candidate fields, and the
location schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from marshmallow import fields, validate

from shared.providers.base import BaseSchema, optional_text
from shared.timeutil import parse_timestamp

FORM = "application/x-www-form-urlencoded"
# A key, or a path of keys into nested objects.
Path = str | tuple[str, ...]
# The members every inbound message's data has, so a reader of data never guesses.
INBOUND_KEYS: tuple[str, ...] = ("text", "response", "location", "media", "carrier_id", "user")


def is_form(content_type: str | None) -> bool:
    """A body that is a urlencoded field set: a form POST, or a GET's query string."""
    if not content_type or "form" not in content_type:  # JSON, on the drain's hot path
        return False
    return content_type.split(";", 1)[0].strip().lower() == FORM


def form_fields(body: bytes) -> dict[str, str]:
    """A urlencoded body as a flat field set; a repeated field keeps its last value.
    Raises ValueError on bytes that are not UTF-8 once decoded."""
    return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                          encoding="utf-8", errors="strict"))


def is_envelope(doc: Any) -> bool:
    """Kaleyra's carrier envelope ``{code, message, data, error}`` with the event in
    ``data``. The receipt and MO modules share this one rule, so a body is never
    claimed as an envelope by one and as a flat event by the other."""
    return isinstance(doc, dict) and "code" in doc and isinstance(doc.get("data"), dict)


def unwrap(doc: Any) -> Any:
    """The event an envelope carries, else the body itself."""
    return doc["data"] if is_envelope(doc) else doc


def inbound_data(**values: Any) -> dict[str, Any]:
    """An inbound message's data: every INBOUND_KEYS member (None unless given), then
    the rest of ``values``."""
    data = dict.fromkeys(INBOUND_KEYS)
    data.update(values)
    return data


def dig(obj: Any, path: Path) -> Any:
    """The value at ``path``, or None when any step is missing or not an object."""
    for key in (path,) if isinstance(path, str) else path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def first_text(obj: Any, paths: Iterable[Path]) -> str | None:
    """The first non-empty id or number (optional_text) among ``paths``."""
    for path in paths:
        found = optional_text(dig(obj, path))
        if found:
            return found
    return None


def lenient_time(value: Any) -> datetime | None:
    """Best-effort parse of a secondary time field: a missing or bad one is None,
    never fatal."""
    if value is None or value == "":
        return None
    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError):
        return None


def first_time(obj: Any, paths: Iterable[Path]) -> datetime | None:
    """The first parseable time among ``paths``."""
    for path in paths:
        found = lenient_time(dig(obj, path))
        if found is not None:
            return found
    return None


def first(*values: Any) -> Any:
    """The first value that is not None."""
    for value in values:  # a loop, not next() over a generator: it runs per callback
        if value is not None:
            return value
    return None


class LocationSchema(BaseSchema):
    latitude = fields.Float(required=True, validate=validate.Range(-90, 90))
    longitude = fields.Float(required=True, validate=validate.Range(-180, 180))
