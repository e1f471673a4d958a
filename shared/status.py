"""`hookline status`: the state an operator checks first, as a table or as JSON."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg

from shared import config, inbox
from shared.db import stats
from shared.runtime import redis_client

DEFAULT_DATA_DIR = ".hookline"
# Written by a running `hookline dev` into its data dir: the URLs of its services.
SERVICES_FILE = "services.json"


def service_env(data_dir: str | None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to read: a running `hookline dev`'s services when ``data_dir``
    is given (or when neither URL is configured and ./.hookline has one), else ``env``."""
    out = dict(os.environ if env is None else env)
    if data_dir is None:
        if any(out.get(n) for n in ("DATABASE_URL", "REDIS_URL", "DATABASE_URL_FILE",
                                    "REDIS_URL_FILE")):
            return out
        if not (Path(DEFAULT_DATA_DIR) / SERVICES_FILE).exists():
            return out
        data_dir = DEFAULT_DATA_DIR
    path = Path(data_dir) / SERVICES_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise config.ConfigError(f"no running `hookline dev` uses {data_dir} "
                                 f"({path} does not exist)") from None
    pid = doc.get("pid")
    if isinstance(pid, int) and not _alive(pid):
        raise config.ConfigError(f"`hookline dev` (pid {pid}) that wrote {path} is not running")
    out.update(DATABASE_URL=doc["DATABASE_URL"], REDIS_URL=doc["REDIS_URL"])
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def redact(url: str | None) -> str | None:
    """A service URL without its password."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def gather(settings: config.Settings) -> dict[str, Any]:
    """Every figure; a service that cannot be reached is named under "errors"."""
    doc: dict[str, Any] = {
        "at": datetime.now(UTC),
        "services": {"database": redact(settings.database_url),
                     "redis": redact(settings.redis_url)},
        "inbox": None, "dead_letters": None, "deliveries": None, "endpoints": None,
        "errors": {},
    }
    try:
        client = redis_client(settings.require_redis())
        d = inbox.depths(client, settings.lease_seconds, settings.inbox_shards)
        client.close()
        doc["inbox"] = {"queued": d.inbox, "retry": d.retry, "leases": d.leases,
                        "oldest_lease_age_seconds": round(d.oldest_lease_age, 1),
                        "shards": d.shards}
    except Exception as exc:
        doc["errors"]["redis"] = _first_line(exc)
    try:
        with psycopg.connect(settings.require_database(), autocommit=True,
                             connect_timeout=5) as conn:
            doc["dead_letters"] = stats.dead_letter_summary(conn)
            endpoints = stats.endpoint_health(conn)
    except Exception as exc:
        doc["errors"]["postgresql"] = _first_line(exc)
        return doc
    if endpoints is not None:
        for e in endpoints:
            e["url"] = redact(e["url"])  # credentials in a customer's URL stay private
        doc["endpoints"] = endpoints
        doc["deliveries"] = {"pending": sum(e["pending"] for e in endpoints),
                             "dead": sum(e["dead"] for e in endpoints)}
    return doc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def to_json(doc: dict[str, Any]) -> str:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode()


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"


def _rows(title: str, rows: list[tuple[str, object]]) -> list[str]:
    return [title, *(f"  {label:<22} {value}" for label, value in rows)]


def render(doc: dict[str, Any]) -> str:
    lines = [f"hookline status at {_when(doc['at'])}",
             f"  database {doc['services']['database']}", f"  redis    {doc['services']['redis']}",
             ""]
    if (inbox := doc["inbox"]) is not None:
        lines += _rows("Inbox", [
            ("queued", inbox["queued"]), ("retry list", inbox["retry"]),
            ("leased batches", inbox["leases"]),
            ("oldest lease", f"{inbox['oldest_lease_age_seconds']:.1f} s"),
            ("shards", inbox.get("shards", 1)),
        ])
    if (letters := doc["dead_letters"]) is not None:
        lines += _rows("Dead letters (not replayed)", [
            ("total", letters["unreplayed"]), ("oldest", _when(letters["oldest"])),
            *letters["by_source"].items(),
        ])
    lines += _deliveries(doc)
    for service, error in doc["errors"].items():
        lines.append(f"ERROR {service}: {error}")
    return "\n".join(lines)


def _deliveries(doc: dict[str, Any]) -> list[str]:
    if doc["deliveries"] is None:
        return [] if doc["errors"].get("postgresql") else ["Deliveries: fan-out is not set up"]
    endpoints = doc["endpoints"]
    failing = sum(1 for e in endpoints if e["enabled"] and (e["consecutive_failures"]
                                                            or e["failing_since"]))
    disabled = sum(1 for e in endpoints if not e["enabled"])
    lines = _rows("Deliveries", [("pending or retrying", doc["deliveries"]["pending"]),
                                 ("dead", doc["deliveries"]["dead"])])
    lines.append(f"Endpoints: {len(endpoints)} ({failing} failing, {disabled} disabled)")
    if endpoints:
        lines.append(f"  {'ID':<20} {'STATE':<9} {'FAILS':>5} {'PENDING':>8} {'DEAD':>6}  "
                     f"{'LAST SUCCESS':<23} URL")
    for e in endpoints:
        state = "disabled" if not e["enabled"] else (
            "failing" if e["consecutive_failures"] or e["failing_since"] else "ok")
        lines.append(f"  {e['id']:<20} {state:<9} {e['consecutive_failures']:>5} "
                     f"{e['pending']:>8} {e['dead']:>6}  {_when(e['last_success_at']):<23} "
                     f"{e['url']}")
    return lines
