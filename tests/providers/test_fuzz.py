"""Bad input through the whole worker path: nothing crashes or stalls a worker, and
every callback is either applied or a dead letter with a reason (issue 6).

Inputs are built from the seed samples in tests/fixtures (every valid JSON
fixture, with its source and URL event), mutated: subtrees replaced by random
JSON of the wrong type, huge numbers, long strings, deep nesting; plus raw bytes
(invalid UTF-8, truncations, NUL, 0 bytes, bodies at the size limit).
test_providers.py fuzzes the parsers alone (only ParseError may escape them);
here the unit is decode_one and the drain against real PostgreSQL and Redis.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import inbox
from shared.envelope import Envelope, new_id
from tests.helpers import FIXTURES, drain_all
from workers.pipeline import Decoded, decode_one

EXPECTED: dict[str, dict[str, Any]] = json.loads((FIXTURES / "expected.json").read_text())
MAX_BODY = 262144  # the default HOOKLINE_MAX_BODY_BYTES


def _seed(path: Path) -> tuple[str, str | None, Any]:
    rel = path.relative_to(FIXTURES).as_posix()
    meta = EXPECTED.get(rel, {})
    return meta.get("source", rel.split("/")[0]), meta.get("url_event"), orjson.loads(
        path.read_bytes())


SEEDS = [_seed(p) for p in sorted(FIXTURES.glob("*/**/*.json"))]
SOURCES = sorted({s for s, _, _ in SEEDS})
# A deep nest of arrays that orjson will not decode: it must become a dead letter.
DEEP = b"[" * 2000 + b"]" * 2000

json_leaves = st.one_of(
    st.none(), st.booleans(), st.text(max_size=40),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", " ", "0", "-1", "1e999", "null", "\u0000", "\ud7ff\ue000", "x" * 5000,
                     "2025-02-30T25:61:61Z", "9999-12-31T23:59:59Z", "0001-01-01", "READ",
                     "message.delivered", "+917673908652"]),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple, value: Any, delete: bool) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = _replace(copy[head], rest, value, delete)
    return copy


@st.composite
def mutated(draw) -> tuple[str, str | None, bytes]:
    source, event, doc = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(doc)))
        doc = _replace(doc, path, draw(json_values), delete=bool(path) and draw(st.booleans()))
    if draw(st.booleans()):
        source = draw(st.sampled_from(SOURCES))  # the right body on the wrong source
    try:
        body = orjson.dumps(doc)
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: send it as text
        body = json.dumps(doc).encode()
    return source, event, body


@st.composite
def raw_bodies(draw) -> tuple[str, str | None, bytes]:
    source, event, doc = draw(st.sampled_from(SEEDS))
    seed = orjson.dumps(doc)
    body = draw(st.one_of(
        st.binary(max_size=200),
        st.just(seed[: draw(st.integers(0, max(0, len(seed) - 1)))]),  # truncated
        st.just(seed.replace(b'"', b"\xff", 1)),  # invalid UTF-8 inside a string
        st.just(seed + b"\x00"),
        st.just(b"\xef\xbb\xbf" + seed),  # a byte-order mark
        st.just(seed.replace(b":", b": " + b"[" * 300, 1) + b"]" * 300),
        st.just(DEEP),
        st.just(b'{"n": ' + b"9" * 400 + b"}"),  # a number no 64-bit type holds
        st.just(b'{"n": 1e999}'),
        st.just(b""),
        st.just(b"   \n"),
    ))
    return source, event, body


inputs = st.one_of(mutated(), raw_bodies())


def envelope(source: str, event: str | None, body: bytes) -> bytes:
    return Envelope(id=new_id(), source=source, event=event, received_at=time.time(),
                    body=body).encode()


def _check_decoded(d: Decoded) -> None:
    """Exactly one outcome: events, a dead letter with a reason, or a parser crash
    (a bug: the pipeline retries it and then keeps it as a dead letter)."""
    outcomes = [bool(d.incoming), d.letter is not None, d.error is not None]
    assert sum(outcomes) == 1 or (not any(outcomes) and d.envelope is not None), d
    if d.letter is not None:
        assert d.letter.reason.strip() and d.letter.body == (
            d.envelope.body if d.envelope else d.raw)
    for i in d.incoming:
        e = i.event
        assert e.dedupe_key and e.occurred_at.tzinfo is not None and e.ingest_id == d.ingest_id
        orjson.dumps(e.to_dict())  # it can be stored and sent on


@settings(max_examples=400, deadline=None)
@given(case=inputs)
def test_decode_one_never_raises(case):
    _check_decoded(decode_one(envelope(*case)))


@pytest.mark.parametrize("body", [DEEP, b"[" * MAX_BODY, b'{"a":' * 50000 + b"1" + b"}" * 50000])
def test_deep_nesting_is_a_dead_letter_not_a_crash(body):
    d = decode_one(envelope("kaleyra-rcs", None, body))
    assert d.letter is not None and "JSON" in d.letter.reason


def _limit_size(source: str, event: str | None, doc: Any) -> bytes:
    """The seed with a padding field that brings it to exactly MAX_BODY bytes."""
    doc = {**doc, "padding": ""} if isinstance(doc, dict) else doc
    body = orjson.dumps(doc)
    return body.replace(b'"padding":""', b'"padding":"' + b"p" * (MAX_BODY - len(body)) + b'"')


def _account(rt, ledger: dict[str, Decoded]) -> list[str]:
    """Every envelope is either applied (its events' keys exist) or a dead letter with
    a reason, and so is every element of a batch (its own dead letter, ``<id>#<n>``);
    returns what is neither."""
    ids = [*ledger, *(p.ingest_id for d in ledger.values() for p in d.part_letters)]
    with rt.pool.connection() as conn:
        letters = dict(conn.execute(
            "SELECT ingest_id, reason FROM dead_letters WHERE ingest_id = ANY(%s)",
            (ids,)).fetchall())
        keys = {(s, k) for s, k in conn.execute("SELECT source, dedupe_key FROM events")}
    missing = [f"{p.ingest_id}: element dead letter missing" for d in ledger.values()
               for p in d.part_letters if not letters.get(p.ingest_id, "").strip()]
    for ingest_id, d in ledger.items():
        if ingest_id in letters:
            assert letters[ingest_id].strip(), ingest_id
        elif not (d.incoming or d.part_letters) or any(
                (i.event.source, i.event.dedupe_key) not in keys for i in d.incoming):
            missing.append(f"{ingest_id}: {d.raw[:120]!r}")
    return missing


def _drained(rt) -> None:
    depths = inbox.depths(rt.redis, rt.settings.lease_seconds)
    assert (depths.inbox, depths.retry, depths.leases) == (0, 0, 0), depths
    assert rt.redis.hlen(inbox.ATTEMPTS) == 0


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(inputs, min_size=1, max_size=25))
def test_worker_path_applies_or_dead_letters_every_input(rt, batch):
    ledger: dict[str, Decoded] = {}
    for case in batch:
        raw = envelope(*case)
        rt.redis.lpush(inbox.INBOX, raw)
        ledger[decode_one(raw).ingest_id] = decode_one(raw)
    drain_all(rt)  # raises if the inbox never empties: a stall
    _drained(rt)
    assert _account(rt, ledger) == []


def test_every_seed_and_its_limit_size_twin_are_applied_or_dead_lettered(rt):
    ledger: dict[str, Decoded] = {}
    for source, event, doc in SEEDS:
        for body in (orjson.dumps(doc), _limit_size(source, event, doc)):
            assert len(body) <= MAX_BODY
            raw = envelope(source, event, body)
            rt.redis.lpush(inbox.INBOX, raw)
            ledger[decode_one(raw).ingest_id] = decode_one(raw)
    drain_all(rt)
    _drained(rt)
    assert _account(rt, ledger) == []
    with rt.pool.connection() as conn:
        applied = conn.execute("SELECT count(DISTINCT ingest_id) FROM events").fetchone()[0]
    assert applied >= len(SEEDS) // 2  # the seeds are valid: most of them apply


def test_a_key_too_large_for_the_index_is_a_dead_letter_not_a_stall(make_rt):
    """A 10 kB random eventId fits the body limit but not a btree index row. PostgreSQL
    says so with an error psycopg files as OperationalError; taken for an outage, it
    sent the batch back to the inbox forever and stalled every callback behind it."""
    rt = make_rt(HOOKLINE_MAX_ATTEMPTS="2")
    big = os.urandom(5000).hex()
    doc = {"type": "SENT", "eventId": big, "from": "917673908652", "to": "mmx_traffic",
           "sentAt": "2025-06-16T13:46:49.193Z", "messageId": "big-key"}
    bad = envelope("kaleyra-rcs", None, orjson.dumps(doc))
    good = envelope("kaleyra-rcs", None, orjson.dumps({**doc, "eventId": "small"}))
    rt.redis.lpush(inbox.INBOX, bad, good)
    drain_all(rt)
    _drained(rt)
    with rt.pool.connection() as conn:
        events = conn.execute("SELECT dedupe_key FROM events").fetchall()
        reason, attempts = conn.execute("SELECT reason, attempts FROM dead_letters").fetchone()
    assert events == [("e:small",)]
    assert "index row" in reason and attempts == 2
