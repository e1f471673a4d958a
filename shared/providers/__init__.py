"""The provider registry: every module in this package that defines FORMATS."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from shared.model import NormalisedEvent
from shared.providers.base import BaseSchema, Format, ParseError, UnsupportedEvent

__all__ = ["BODY_LIMITS", "FORMATS", "SOURCES", "Format", "ParseError", "UnsupportedEvent",
           "parse", "schemas"]


def _modules() -> list[Any]:
    return [importlib.import_module(f"{__name__}.{info.name}")
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name)
            if info.name != "base"]


def _discover() -> list[Format]:
    return [fmt for module in _modules() for fmt in getattr(module, "FORMATS", ())]


def schemas() -> list[BaseSchema]:
    """Every schema instance the format modules hold, and those nested in their fields
    (directly or in a list): for checks and benchmarks that must reach all of them."""
    found = [v for module in _modules() for v in vars(module).values()
             if isinstance(v, BaseSchema)]
    for schema in found:  # grows while it runs: nested schemas' own nested ones too
        for f in schema.load_fields.values():
            inner = getattr(getattr(f, "inner", f), "schema", None)
            if isinstance(inner, BaseSchema) and inner not in found:
                found.append(inner)
    return found


FORMATS: tuple[Format, ...] = tuple(_discover())
# A source's default body limit where its provider documents sending more than the
# global HOOKLINE_MAX_BODY_BYTES (a module's MAX_BODY_BYTES = {source: bytes}).
BODY_LIMITS: dict[str, int] = {
    source: limit for module in _modules()
    for source, limit in getattr(module, "MAX_BODY_BYTES", {}).items()
}
SOURCES: frozenset[str] = frozenset(f.source for f in FORMATS)
_BY_SOURCE: dict[str, tuple[Format, ...]] = {
    s: tuple(sorted((f for f in FORMATS if f.source == s), key=lambda f: f.fallback))
    for s in SOURCES
}


def _describe(doc: Any) -> str:
    """What the body is: its kind field if it has one, and its top-level keys."""
    if isinstance(doc, dict):
        keys = sorted(map(str, doc))
        shown = ", ".join(k[:40] for k in keys[:12]) + (", ..." if len(keys) > 12 else "")
        for key in ("type", "name", "event"):
            if isinstance(doc.get(key), str):
                return f"{key}={doc[key][:100]!r} (top-level keys [{shown}])"
        return f"object with top-level keys [{shown}]"
    return f"JSON {type(doc).__name__}"


def _needs(formats: tuple[Format, ...]) -> str:
    found = [f"{f.name}: {f.needs}" for f in formats if f.needs]
    return f"; needed one of: {' | '.join(found)}" if found else ""


def parse(source: str, event: str | None, doc: Any) -> list[NormalisedEvent]:
    """Map one decoded callback into normalised events, or raise ParseError."""
    formats = _BY_SOURCE.get(source)
    if formats is None:
        raise UnsupportedEvent(f"unsupported source {source!r}")
    for fmt in formats:
        if fmt.matches(doc, event):
            return fmt.parse(doc, event)
    where = f" (URL event {event!r})" if event else ""
    raise UnsupportedEvent(
        f"unsupported event type for {source}: {_describe(doc)}{where}{_needs(formats)}")
