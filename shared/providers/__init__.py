"""The provider registry: every module in this package that defines FORMATS."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from shared.model import NormalisedEvent
from shared.providers.base import Format, ParseError, UnsupportedEvent

__all__ = ["FORMATS", "SOURCES", "Format", "ParseError", "UnsupportedEvent", "parse"]


def _discover() -> list[Format]:
    found: list[Format] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "FORMATS", ()))
    return found


FORMATS: tuple[Format, ...] = tuple(_discover())
SOURCES: frozenset[str] = frozenset(f.source for f in FORMATS)
_BY_SOURCE: dict[str, tuple[Format, ...]] = {
    s: tuple(f for f in FORMATS if f.source == s) for s in SOURCES
}


def _describe(doc: Any) -> str:
    if isinstance(doc, dict):
        for key in ("type", "name", "event"):
            if isinstance(doc.get(key), str):
                return f"{key}={doc[key]!r}"
        keys = ", ".join(sorted(map(str, doc))[:8])
        return f"object with keys [{keys}]"
    return f"JSON {type(doc).__name__}"


def parse(source: str, event: str | None, doc: Any) -> list[NormalisedEvent]:
    """Map one decoded callback into normalised events, or raise ParseError."""
    formats = _BY_SOURCE.get(source)
    if formats is None:
        raise UnsupportedEvent(f"unsupported source {source!r}")
    for fmt in formats:
        if fmt.matches(doc, event):
            return fmt.parse(doc, event)
    where = f" (URL event {event!r})" if event else ""
    raise UnsupportedEvent(f"unsupported event type for {source}: {_describe(doc)}{where}")
