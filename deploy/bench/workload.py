"""Mixed callback workloads for the benchmarks, built from the seed fixtures.

Every copy of a fixture gets fresh ids and party numbers, so it is a distinct
event from a distinct user; duplicates and invalid bodies are mixed in at the
requested rates.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from shared.envelope import Envelope, new_id

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
# Ids, and the parties' numbers: real traffic has many recipients, so each copy
# gets its own (with the fixtures' few numbers, every consent event of a run would
# pile onto a handful of subscriptions, all with the same timestamp).
ID_KEYS = frozenset({"eventId", "messageId", "id", "mid", "cid", "foreign_id", "from", "to",
                     "receiver", "mobile", "msisdn", "phoneNumber", "recipient", "source",
                     "sender"})
BROKEN = [b'{"type": "SENT", "messageId": "x",}', b'{"type": "READ"', b"not json at all"]


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


def callbacks(
    n: int, dup_rate: float = 0.10, invalid_rate: float = 0.01, seed: int = 7
) -> Iterator[tuple[str, str | None, bytes]]:
    """(source, url_event, body) triples: distinct events, duplicates and junk."""
    rng = random.Random(seed)
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
        item = (source, event, orjson.dumps(_reid(doc, str(i))))
        recent = [*recent[-999:], item]
        yield item


def envelopes(n: int, **kwargs: float) -> list[bytes]:
    now = time.time()
    return [
        Envelope(id=new_id(), source=s, event=e, received_at=now, body=b).encode()
        for s, e, b in callbacks(n, **kwargs)
    ]
