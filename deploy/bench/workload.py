"""Mixed callback workloads for the benchmarks, built from the seed fixtures.

Every copy of a fixture gets fresh ids and party numbers, so it is a distinct
event from a distinct user; duplicates and invalid bodies are mixed in at the
requested rates.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from shared.envelope import Envelope, new_id
from shared.timeutil import parse_timestamp

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
# Ids, and the parties' numbers: real traffic has many recipients, so each copy
# gets its own (with the fixtures' few numbers, every consent event of a run would
# pile onto a handful of subscriptions, all with the same timestamp).
ID_KEYS = frozenset({"eventId", "messageId", "id", "mid", "cid", "foreign_id", "from", "to",
                     "receiver", "mobile", "msisdn", "phoneNumber", "recipient", "source",
                     "sender"})
BROKEN = [b'{"type": "SENT", "messageId": "x",}', b'{"type": "READ"', b"not json at all"]
# The members of each provider's documents that carry a time of the provider's clock
# (the fixtures' own, 2017 to 2026). restamp() moves them to around now, as live
# traffic is stamped; a provider not listed keeps its fixtures' times.
TIME_KEYS: dict[str, frozenset[str]] = {
    "comapi": frozenset({"timestamp", "updatedOn", "receivedOn", "clickedOn", "sentOn",
                         "sendTime", "publishTime", "statustimeutc", "submissiontime",
                         "datetime", "watermark"}),
    "kaleyra-io": frozenset({"timestamp", "created_at", "updated_at", "delivered_at",
                             "read_at", "processed_at", "sent_time", "submit_time",
                             "deliv_time", "start_at", "end_at", "received_at"}),
    "kaleyra-rcs": frozenset({"sentAt"}),
}
# Live callbacks arrive seconds after the provider stamped them; replays and provider
# backlogs (the old share) days to months after, outside the partitions made ahead
# (shared.db.partitions.BEHIND_DAYS), so they go to the DEFAULT partitions.
LAG_SECONDS = (0.0, 10.0)
OLD_DAYS = (3.0, 120.0)
_ISO = re.compile(r"(\d{4}-\d\d-\d\d)([T ])(\d\d:\d\d:\d\d)(\.\d+)?(Z|z|[+-]\d\d:?\d\d)?$")


def _fixtures() -> list[tuple[str, str | None, object]]:
    expected = json.loads((FIXTURES / "expected.json").read_text())
    return [
        (meta["source"], meta["url_event"], orjson.loads((FIXTURES / rel).read_bytes()))
        for rel, meta in sorted(expected.items())
    ]


def _reid(doc: object, suffix: str) -> object:
    if isinstance(doc, dict):
        return {
            k: (f"{v}-{suffix}" if k in ID_KEYS and isinstance(v, str | int) else _reid(v, suffix))
            for k, v in doc.items()
        }
    if isinstance(doc, list):
        return [_reid(v, suffix) for v in doc]
    return doc


def _times(doc: object, keys: frozenset[str]) -> Iterator[tuple[str, object]]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k in keys and isinstance(v, str | int | float) and not isinstance(v, bool):
                yield k, v
            else:
                yield from _times(v, keys)
    elif isinstance(doc, list):
        for v in doc:
            yield from _times(v, keys)


def _parsed(value: object) -> datetime | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # epoch seconds in a string (Comapi's email receipts)
    try:
        return parse_timestamp(value)  # type: ignore[arg-type]
    except ValueError:
        return None


def _shifted(value: object, delta: timedelta) -> object:
    """``value`` moved by ``delta``, written in its own dialect."""
    when = _parsed(value)
    if when is None:
        return value
    new = when + delta
    if isinstance(value, int | float):
        return round(new.timestamp() * 1000) if value > 1e11 else round(new.timestamp())
    text = str(value).strip()
    if text.isdigit():
        return str(round(new.timestamp() * 1000) if int(text) > 1e11 else round(new.timestamp()))
    m = _ISO.match(text)
    if m is None:
        return value
    _, sep, _, frac, zone = m.groups()
    if zone and zone not in ("Z", "z"):
        new = new.astimezone(datetime.fromisoformat(text).tzinfo)  # its own offset
    out = new.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if frac:  # as many digits as it had
        out += "." + f"{new.microsecond:06d}"[:len(frac) - 1].ljust(len(frac) - 1, "0")
    return out + (zone or "")


def restamp(doc: object, source: str, at: datetime) -> object:
    """``doc`` with every provider time (TIME_KEYS) moved by one offset, so that its
    latest is ``at`` and the others keep their distance from it (a sent before its
    delivered)."""
    keys = TIME_KEYS.get(source)
    if not keys:
        return doc
    found = [t for _, v in _times(doc, keys) if (t := _parsed(v)) is not None]
    if not found:
        return doc
    return _moved(doc, keys, at - max(found))


def _moved(doc: object, keys: frozenset[str], delta: timedelta) -> object:
    if isinstance(doc, dict):
        return {k: (_shifted(v, delta) if k in keys and not isinstance(v, bool)
                    and isinstance(v, str | int | float) else _moved(v, keys, delta))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [_moved(v, keys, delta) for v in doc]
    return doc


def stamp_time(rng: random.Random, now: datetime, old_share: float) -> datetime:
    """When a callback's provider stamped it: seconds ago, or (``old_share`` of them)
    days to months ago."""
    if rng.random() < old_share:
        return now - timedelta(days=rng.uniform(*OLD_DAYS))
    return now - timedelta(seconds=rng.uniform(*LAG_SECONDS))


def callbacks(
    n: int, dup_rate: float = 0.10, invalid_rate: float = 0.01, seed: int = 7,
    old_share: float = 0.0, fixture_times: bool = False,
) -> Iterator[tuple[str, str | None, bytes]]:
    """(source, url_event, body) triples: distinct events, duplicates and junk. Provider
    times are around now (``old_share`` of them days to months old), or the fixtures'
    own with ``fixture_times`` (the workload before issue 25)."""
    rng = random.Random(seed)
    stamps = random.Random(seed + 1)  # its own stream: the mix is the same either way
    now = datetime.now(UTC)
    fixtures = _fixtures()
    recent: list[tuple[str, str | None, bytes]] = []
    for i in range(n):
        roll = rng.random()
        if roll < invalid_rate:
            yield "kaleyra-rcs", None, rng.choice(BROKEN)
            continue
        if roll < invalid_rate + dup_rate and recent:
            yield rng.choice(recent)
            continue
        source, event, doc = fixtures[i % len(fixtures)]
        doc = _reid(doc, str(i))
        if not fixture_times:
            doc = restamp(doc, source, stamp_time(stamps, now, old_share))
        item = (source, event, orjson.dumps(doc))
        recent = [*recent[-999:], item]
        yield item


def envelopes(n: int, **kwargs: float) -> list[bytes]:
    now = time.time()
    return [
        Envelope(id=new_id(), source=s, event=e, received_at=now, body=b).encode()
        for s, e, b in callbacks(n, **kwargs)
    ]
