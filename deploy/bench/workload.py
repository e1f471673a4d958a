"""Mixed callback workloads for the benchmarks, built from the fixtures.

Every copy of a fixture gets fresh ids and party numbers, so it is a distinct
event from a distinct user; duplicates and invalid bodies are mixed in at the
requested rates.

Two mixes. ``today`` (the default) takes the seed fixtures in turn, as the
benchmarks always have, so a run compares with earlier ones. ``traffic`` is what
a messaging platform receives (issue 21): WhatsApp and SMS receipts the bulk, with
Kaleyra.io WhatsApp API V2 bodies, SMS delivery reports as GET query strings and
form posts, Dotdigital batches; see TRAFFIC for the proportions.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import orjson

from shared.envelope import Envelope, new_id
from shared.timeutil import parse_timestamp

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
# Ids, and the parties' numbers: real traffic has many recipients, so each copy
# gets its own (with the fixtures' few numbers, every consent event of a run would
# pile onto a handful of subscriptions, all with the same timestamp).
ID_KEYS = frozenset({"eventId", "messageId", "id", "mid", "cid", "foreign_id", "from", "to",
                     "receiver", "mobile", "msisdn", "phoneNumber", "recipient", "source",
                     "sender", "recipient_id", "wa_id", "message_id"})
# Fixtures added with issue 21: not in the ``today`` mix, so it stays what it was.
NEW_IN_21 = ("kaleyra-io/whatsapp_v2", "kaleyra-io/whatsapp_onprem", "kaleyra-io/whatsapp_meta",
             "kaleyra-rcs/dr_sent_refs", "kaleyra-rcs/dr_ttl")
FORM = "application/x-www-form-urlencoded; hookline-from=query"
# The ``traffic`` mix: (share, kind, fixture path prefixes). Receipts of WhatsApp and
# SMS are most of what a messaging platform is called back with; a Dotdigital batch
# holds BATCH events.
TRAFFIC: tuple[tuple[float, str, tuple[str, ...]], ...] = (
    (0.35, "json", ("kaleyra-io/whatsapp_v2__status",)),
    (0.13, "json", ("kaleyra-io/flat/sms_message_status",)),
    (0.12, "query", ("kaleyra-io/flat/sms_message_status",)),
    (0.10, "json", ("kaleyra-rcs/dr_",)),
    (0.08, "json", ("kaleyra-io/whatsapp_v2__message", "kaleyra-io/whatsapp_meta")),
    (0.05, "batch", ("comapi/message_delivered", "comapi/message_sent", "comapi/message_read")),
    (0.05, "json", ("comapi/",)),
    (0.12, "json", ("kaleyra-rcs/mo_", "kaleyra-io/flat/voice", "kaleyra-io/flat/vmn",
                    "kaleyra-io/flat/contacts", "kaleyra-io/rcs_", "kaleyra-io/whatsapp_message")),
)
BATCH = 20
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


def _fixtures(prefixes: tuple[str, ...] | None = None) -> list[tuple[str, str | None, object]]:
    """The fixtures under ``prefixes``; None: those of the ``today`` mix."""
    expected = json.loads((FIXTURES / "expected.json").read_text())
    return [
        (meta["source"], meta["url_event"], orjson.loads((FIXTURES / rel).read_bytes()))
        for rel, meta in sorted(expected.items())
        if (rel.startswith(prefixes) if prefixes else not rel.startswith(NEW_IN_21))
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


def traffic(n: int, dup_rate: float = 0.10, invalid_rate: float = 0.01, seed: int = 7
            ) -> Iterator[tuple[str, str | None, bytes, str]]:
    """(source, url_event, body, content type) in the proportions of TRAFFIC."""
    rng = random.Random(seed)
    kinds = [(share, kind, _fixtures(prefixes)) for share, kind, prefixes in TRAFFIC]
    recent: list[tuple[str, str | None, bytes, str]] = []
    for i in range(n):
        roll = rng.random()
        if roll < invalid_rate:
            yield "kaleyra-rcs", None, rng.choice(BROKEN), "application/json"
            continue
        if roll < invalid_rate + dup_rate and recent:
            yield rng.choice(recent)
            continue
        _, kind, pool = rng.choices(kinds, weights=[k[0] for k in kinds])[0]
        source, event, doc = rng.choice(pool)
        if kind == "query":
            fields = {k: str(v) for k, v in _reid(doc, str(i)).items()}  # type: ignore[union-attr]
            item = (source, event, urlencode(fields).encode(), FORM)
        elif kind == "batch":
            batch = [_reid(rng.choice(pool)[2], f"{i}-{j}") for j in range(BATCH)]
            item = (source, event, orjson.dumps(batch), "application/json")
        else:
            item = (source, event, orjson.dumps(_reid(doc, str(i))), "application/json")
        recent = [*recent[-999:], item]
        yield item


def envelopes(n: int, mix: str = "today", **kwargs: float) -> list[bytes]:
    now = time.time()
    if mix == "traffic":
        return [
            Envelope(id=new_id(), source=s, event=e, received_at=now, body=b,
                     headers={"content-type": t}).encode()
            for s, e, b, t in traffic(n, **kwargs)
        ]
    return [
        Envelope(id=new_id(), source=s, event=e, received_at=now, body=b).encode()
        for s, e, b in callbacks(n, **kwargs)
    ]
