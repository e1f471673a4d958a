"""A body that is a JSON array of events (Dotdigital / Comapi deliver webhooks in
batches): one event per element; an element that cannot be parsed is its own dead
letter, with its position, and the others apply. Real PostgreSQL and Redis.

The elements are the seed's ``comapi/message_delivered__sms.json`` with the event
and message ids changed (constructed: a batch of distinct receipts), and elements
no format reads.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import inbox
from shared.envelope import Envelope, new_id
from tests.helpers import FIXTURES, clean, drain_all

SOURCE = "comapi"
RECEIPT = orjson.loads((FIXTURES / SOURCE / "message_delivered__sms.json").read_bytes())
BAD: list[Any] = [{"name": "message.bogus", "payload": {}}, 42, "x", [], {"eventId": "e"}]


def receipt(n: int) -> dict[str, Any]:
    doc = copy.deepcopy(RECEIPT)
    doc["eventId"] = f"batch-event-{n}"
    doc["payload"]["id"] = f"batch-message-{n}"
    return doc


def push(rt, body: bytes) -> bytes:
    env = Envelope(id=new_id(), source=SOURCE, event=None, received_at=1.7e9, body=body)
    raw = env.encode()
    inbox.push(rt.redis, raw)
    return raw


def counts(rt) -> tuple[int, int]:
    with rt.pool.connection() as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    return events, letters


def test_a_bad_element_is_its_own_dead_letter_and_the_others_apply(rt):
    batch = [receipt(0), {"name": "message.bogus", "payload": {}}, receipt(1)]
    raw = push(rt, orjson.dumps(batch))
    drain_all(rt)
    with rt.pool.connection() as conn:
        ids = [r[0] for r in conn.execute("SELECT message_id FROM events ORDER BY id")]
        (letter,) = conn.execute("SELECT ingest_id, reason, body FROM dead_letters").fetchall()
    assert ids == ["batch-message-0", "batch-message-1"]
    assert letter[0].endswith("#1") and letter[1].startswith("batch element 1 of 3: ")
    assert "name='message.bogus'" in letter[1]
    assert orjson.loads(bytes(letter[2])) == batch[1]
    assert raw  # the envelope itself is not a dead letter: it applied


def test_an_empty_batch_is_a_dead_letter(rt):
    push(rt, b"[]")
    drain_all(rt)
    with rt.pool.connection() as conn:
        (reason,) = conn.execute("SELECT reason FROM dead_letters").fetchone()
    assert reason.startswith("empty batch")


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.integers(0, 5).map(receipt), st.sampled_from(BAD)),
                min_size=1, max_size=12))
def test_n_elements_give_n_events_or_dead_letters_none_lost_none_doubled(rt, batch):
    clean(rt)
    good = {e["eventId"] for e in batch if isinstance(e, dict) and "payload" in e
            and e.get("name") == "message.delivered"}
    bad = len(batch) - sum(1 for e in batch if isinstance(e, dict) and
                           e.get("name") == "message.delivered")
    raw = push(rt, orjson.dumps(batch))
    drain_all(rt)
    # Every element is an event (a repeated receipt is one event: it is the same event)
    # or a dead letter.
    assert counts(rt) == (len(good), bad)
    # The inbox delivers the same envelope again (a lease that expired): nothing doubles.
    inbox.push(rt.redis, raw)
    drain_all(rt)
    assert counts(rt) == (len(good), bad)
    # The provider sends the batch again: no event doubles; the bad elements are dead
    # letters of that delivery too, as a single bad callback sent twice is.
    push(rt, orjson.dumps(batch))
    drain_all(rt)
    assert counts(rt) == (len(good), 2 * bad)
