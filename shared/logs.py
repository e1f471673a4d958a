"""Structured logging: one JSON object per line, with the ``extra`` fields kept."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import orjson

from shared.config import ConfigError

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


class TextFormatter(logging.Formatter):
    """One line a record for people (HOOKLINE_LOG_FORMAT=text, `hookline dev`): UTC time,
    level, logger, message, then the ``extra`` fields as key=value."""

    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s",
                         "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={value}" for key, value in vars(record).items()
                          if key not in _STANDARD and not key.startswith("_"))
        text = super().format(record)
        if not fields:
            return text
        head, sep, rest = text.partition("\n")  # fields before any traceback
        return f"{head}  {fields}{sep}{rest}"


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def env_level(env: Mapping[str, str] | None = None) -> int:
    """HOOKLINE_LOG_LEVEL (default info); debug also logs every accepted callback."""
    raw = (os.environ if env is None else env).get("HOOKLINE_LOG_LEVEL", "").strip().upper()
    if raw and raw not in LEVELS:
        raise ConfigError(f"HOOKLINE_LOG_LEVEL must be one of {', '.join(LEVELS).lower()}, "
                          f"got {raw.lower()!r}")
    return getattr(logging, raw or "INFO")


def setup(fmt: str = "json", level: int | str | None = None) -> None:
    """Log to stderr; ``level`` None means HOOKLINE_LOG_LEVEL."""
    if level is None:
        level = env_level()
    elif isinstance(level, str):
        level = logging.getLevelName(level.upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pgserver narrates every pg_ctl call at INFO.
    logging.getLogger("pgserver").setLevel(logging.WARNING)


def granian_config(fmt: str) -> dict:
    """granian's own log lines (start, workers, shutdown) through the same formatter as
    hookline's, so one stream reads alike."""
    formatter = "shared.logs.JsonFormatter" if fmt == "json" else "shared.logs.TextFormatter"
    return {
        "formatters": {"hookline": {"()": formatter}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "hookline",
                                 "stream": "ext://sys.stderr"}},
        "loggers": {"_granian": {"handlers": ["console"], "level": "INFO", "propagate": False}},
    }
