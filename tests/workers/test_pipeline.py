"""The drain pipeline against real PostgreSQL and Redis."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime

import orjson
import pytest

from shared import inbox
from shared.db import messages
from shared.db.pool import make_pool
from shared.envelope import Envelope, new_id
from shared.model import NormalisedEvent
from shared.providers import Format
from tests.helpers import FIXTURES, drain_all, enqueue, receipt
from tests.workers import dying
from workers.ahead import ReadAhead
from workers.pipeline import parse_lease, process_lease
from workers.tasks import drain_round


def message(rt, message_id="msg-1", source=None):
    with rt.pool.connection() as conn:
        rows = messages.get(conn, message_id, source)
    assert len(rows) == 1, rows
    return rows[0]


def count(rt, sql, *params):
    with rt.pool.connection() as conn:
        return conn.execute(sql, params).fetchone()[0]


@pytest.mark.parametrize("name,status", [
    ("dr_sent", "sent"), ("dr_delivered", "delivered"), ("dr_read", "read"),
    ("dr_error", "failed"),
])
def test_every_seed_receipt_is_applied(rt, name, status):
    body = (FIXTURES / "kaleyra-rcs" / f"{name}.json").read_bytes()
    enqueue(rt, body)
    assert drain_all(rt) == 1
    doc = orjson.loads(body)
    row = message(rt, doc["messageId"])
    assert row["status"] == status
    assert row[f"{status}_at"] is not None
    assert row["sender"] == doc["to"] and row["msisdn"] == doc["from"]


def test_same_receipt_three_times_is_one_event_and_one_history_row(rt):
    for _ in range(3):
        enqueue(rt, receipt("DELIVERED"))
    drain_all(rt)
    # And once more in a later batch.
    enqueue(rt, receipt("DELIVERED"))
    drain_all(rt)
    assert count(rt, "SELECT count(*) FROM events") == 1
    assert count(rt, "SELECT count(*) FROM message_status_history") == 1


def test_receipt_without_event_id_dedupes_on_message_and_type(rt):
    for _ in range(2):
        enqueue(rt, receipt("READ", event_id=None))
    enqueue(rt, receipt("SENT", event_id=None))
    drain_all(rt)
    assert count(rt, "SELECT count(*) FROM events") == 2


def test_read_before_delivered_stays_read_with_both_timestamps(rt):
    enqueue(rt, receipt("READ", offset=10))
    drain_all(rt)
    enqueue(rt, receipt("DELIVERED", offset=3))
    drain_all(rt)
    row = message(rt)
    assert row["status"] == "read"
    assert row["read_at"] is not None and row["delivered_at"] is not None
    assert row["delivered_at"] < row["read_at"]


def _final_row(rt, bodies):
    for body in bodies:
        enqueue(rt, body)
        drain_all(rt)  # one batch per receipt: the worst case for ordering
    row = message(rt)
    row.pop("events")
    return row


def test_out_of_order_receipts_end_as_in_order(make_rt):
    bodies = [receipt("SENT", offset=0), receipt("DELIVERED", offset=2),
              receipt("READ", offset=5), receipt("ERROR", offset=1)]
    rows = []
    for perm in itertools.permutations(bodies):
        rt = make_rt()
        rt.redis.flushdb()
        with rt.pool.connection() as conn:
            conn.execute("TRUNCATE events, event_keys, messages, message_status_history CASCADE")
        rows.append(_final_row(rt, perm))
    assert all(r == rows[0] for r in rows)
    assert rows[0]["status"] == "read"


def test_invalid_json_becomes_a_dead_letter_with_a_reason(rt):
    broken = b'{ "type": "SENT", "messageId": "x", }'
    ingest_id = enqueue(rt, broken)
    drain_all(rt)
    with rt.pool.connection() as conn:
        reason, body, iid = conn.execute(
            "SELECT reason, body, ingest_id FROM dead_letters").fetchone()
    assert reason.startswith("invalid JSON")
    assert bytes(body) == broken and iid == ingest_id


def test_schema_invalid_receipt_names_the_field(rt):
    enqueue(rt, orjson.dumps({"type": "SENT", "messageId": "m", "from": "1", "to": "a"}))
    drain_all(rt)
    with rt.pool.connection() as conn:
        (reason,) = conn.execute("SELECT reason FROM dead_letters").fetchone()
    assert "sentAt" in reason and "Missing data" in reason


def test_invalid_utf8_and_nul_become_dead_letters(rt):
    enqueue(rt, b'{"type": "SENT", "x": "\xff\xfe"}')
    enqueue(rt, b'{"type": "SENT", "x": "\\u0000"}')
    drain_all(rt)
    with rt.pool.connection() as conn:
        reasons = sorted(r[0] for r in conn.execute("SELECT reason FROM dead_letters"))
    assert len(reasons) == 2
    assert any("UTF-8" in r for r in reasons) and any("u0000" in r for r in reasons)


def test_a_backslash_before_u0000_is_text_not_a_nul(rt):
    enqueue(rt, receipt("SENT", note="\\u0000"))  # JSON "\\u0000": no NUL in it
    drain_all(rt)
    assert count(rt, "SELECT count(*) FROM dead_letters") == 0
    assert message(rt)["status"] == "sent"


def test_a_nul_in_an_envelopes_event_still_becomes_a_dead_letter(rt):
    # Queued before ingest refused such names: PostgreSQL refuses NUL in text, and
    # the letter that could not be stored went round the retry list for ever.
    enqueue(rt, receipt("SENT"), source="kaleyra-io", event="sms\x00x")
    drain_all(rt)
    with rt.pool.connection() as conn:
        event, reason = conn.execute("SELECT event, reason FROM dead_letters").fetchone()
    assert event == "sms\\0x" and "sms\\x00x" in reason
    assert rt.redis.llen(inbox.RETRY) == 0 and rt.redis.hlen(inbox.ATTEMPTS) == 0


def test_a_retry_list_of_duplicates_is_drained_by_one_task(rt, monkeypatch):
    # A worker killed between COMMIT and release: its whole lease comes back through
    # the retry list and applies nothing. Taken for idleness, it drained 20 a tick.
    from workers import tasks

    monkeypatch.setattr(tasks, "send_drain", lambda: None)
    raws = [Envelope(id=new_id(), source="kaleyra-rcs", event=None, received_at=time.time(),
                     body=receipt("SENT", message_id=f"m-{i}")).encode() for i in range(100)]
    rt.redis.lpush(inbox.INBOX, *raws)
    drain_all(rt)
    rt.redis.lpush(inbox.RETRY, *raws)
    tasks.drain()
    assert rt.redis.llen(inbox.RETRY) == 0
    assert count(rt, "SELECT count(*) FROM events") == 100


def test_a_batch_whose_worker_died_is_reprocessed_exactly_once(make_rt):
    rt = make_rt(HOOKLINE_LEASE_SECONDS="5")
    for kind in ("SENT", "DELIVERED", "READ"):
        enqueue(rt, receipt(kind))
    lease = rt.inbox.lease(10)  # the worker takes the batch ...
    assert lease is not None and len(lease.items) == 3
    # ... and dies before committing or releasing: nothing happens until the lease expires.
    assert drain_all(rt) == 0
    assert rt.inbox.reclaim_expired(now=time.time() + 6) == 3
    assert drain_all(rt) == 3
    assert message(rt)["status"] == "read"
    assert count(rt, "SELECT count(*) FROM events") == 3
    assert inbox.depths(rt.redis, 5).leases == 0


def _commit_then_die(rt):
    # The worker commits its batch and dies before it can release the lease.
    rt.inbox.release = dying.die
    drain_round(rt)


def test_a_batch_that_committed_but_died_before_release_has_no_second_effect(
    make_rt, base_env
):
    rt = make_rt()
    iid = enqueue(rt, receipt("DELIVERED"))
    [raw] = rt.redis.lrange(inbox.INBOX, 0, -1)
    assert dying.in_child(base_env, _commit_then_die) == dying.DIED
    assert count(rt, "SELECT count(*) FROM events WHERE ingest_id = %s", iid) == 1
    assert inbox.depths(rt.redis, 5).leases == 1  # the dead worker's lease is still held
    # Its lease lapses: the very same envelope goes to the retry list ...
    assert rt.inbox.reclaim_expired(now=time.time() + 6) == 1
    assert rt.redis.lrange(inbox.RETRY, 0, -1) == [raw]
    # ... is leased from there with an attempt counted against its ingest id ...
    lease = rt.inbox.lease(1, from_retry=True)
    assert lease.items == [raw]
    parsed = parse_lease(rt, lease)
    assert int(rt.redis.hget(inbox.ATTEMPTS, iid)) == 1
    # ... and applying it again changes nothing; its count is forgotten.
    out = process_lease(rt, lease, parsed)
    assert not out.applied and out.ingest_ids == [iid]
    assert not rt.redis.hexists(inbox.ATTEMPTS, iid)
    assert count(rt, "SELECT count(*) FROM events") == 1
    assert count(rt, "SELECT count(*) FROM message_status_history") == 1
    assert count(rt, "SELECT count(*) FROM dead_letters") == 0
    depths = inbox.depths(rt.redis, 5)
    assert (depths.inbox, depths.retry, depths.leases) == (0, 0, 0)


_BOOM = Format(source="kaleyra-rcs", name="test-poison",
               matches=lambda doc, ev: isinstance(doc, dict) and doc.get("type") == "POISON",
               parse=lambda doc, ev: 1 / 0)


@pytest.fixture
def poison_format(monkeypatch):
    import shared.providers as registry

    formats = (_BOOM, *registry._BY_SOURCE["kaleyra-rcs"])
    monkeypatch.setitem(registry._BY_SOURCE, "kaleyra-rcs", formats)


def test_poison_envelope_is_isolated_retried_and_dead_lettered(make_rt, poison_format):
    rt = make_rt(HOOKLINE_MAX_ATTEMPTS="3")
    enqueue(rt, receipt("SENT"))
    poison = enqueue(rt, orjson.dumps({"type": "POISON"}))
    enqueue(rt, receipt("READ"))
    drain_all(rt)
    assert message(rt)["status"] == "read"
    with rt.pool.connection() as conn:
        iid, reason, attempts = conn.execute(
            "SELECT ingest_id, reason, attempts FROM dead_letters").fetchone()
    assert iid == poison
    assert "ZeroDivisionError" in reason and attempts == 3
    depths = inbox.depths(rt.redis, 5)
    assert (depths.inbox, depths.retry, depths.leases) == (0, 0, 0)
    assert not rt.redis.hlen(inbox.ATTEMPTS)


def _unstorable(doc, event):
    # orjson refuses an integer beyond 64 bits: the events insert cannot encode it.
    return [NormalisedEvent(type="message.inbound", source="kaleyra-rcs", channel="rcs",
                            occurred_at=datetime.now(UTC), dedupe_key="unstorable",
                            data={"n": 2**70})]


_UNSTORABLE = Format(source="kaleyra-rcs", name="test-unstorable",
                     matches=lambda doc, ev: isinstance(doc, dict)
                     and doc.get("type") == "UNSTORABLE", parse=_unstorable)


@pytest.mark.parametrize("read_ahead", [False, True])
def test_an_event_that_cannot_be_encoded_is_isolated_not_a_stuck_batch(
    make_rt, monkeypatch, read_ahead
):
    import shared.providers as registry

    formats = (_UNSTORABLE, *registry._BY_SOURCE["kaleyra-rcs"])
    monkeypatch.setitem(registry._BY_SOURCE, "kaleyra-rcs", formats)
    rt = make_rt(HOOKLINE_MAX_ATTEMPTS="2")
    enqueue(rt, receipt("SENT"))
    bad = enqueue(rt, orjson.dumps({"type": "UNSTORABLE"}))
    enqueue(rt, receipt("READ"))
    ahead = ReadAhead(rt) if read_ahead else None
    if ahead is not None:
        ahead.start()  # the batch is parsed and encoded in the helper thread
    for _ in range(20):
        if drain_round(rt, ahead) is None:
            break
    assert message(rt)["status"] == "read"
    with rt.pool.connection() as conn:
        iid, reason = conn.execute("SELECT ingest_id, reason FROM dead_letters").fetchone()
    assert iid == bad and "64-bit" in reason
    depths = inbox.depths(rt.redis, 5)
    assert (depths.inbox, depths.retry, depths.leases) == (0, 0, 0)


_KILLER = Format(source="kaleyra-rcs", name="test-killer",
                 matches=lambda doc, ev: isinstance(doc, dict) and doc.get("type") == "KILLER",
                 parse=dying.die)


def test_envelope_that_keeps_killing_its_worker_is_dead_lettered(make_rt, base_env,
                                                                  monkeypatch):
    import shared.providers as registry

    # Inherited by every forked drain: parsing this envelope kills the process.
    monkeypatch.setitem(registry._BY_SOURCE, "kaleyra-rcs",
                        (_KILLER, *registry._BY_SOURCE["kaleyra-rcs"]))
    env = {**base_env, "HOOKLINE_MAX_ATTEMPTS": "2"}
    rt = make_rt(HOOKLINE_MAX_ATTEMPTS="2")
    killer = enqueue(rt, orjson.dumps({"type": "KILLER"}))
    seen = []
    # The first lease (from the inbox) and two from the retry list: three deaths.
    for _ in range(3):
        assert dying.in_child(env, drain_all) == dying.DIED
        seen.append(int(rt.redis.hget(inbox.ATTEMPTS, killer) or 0))
        assert rt.inbox.reclaim_expired(now=time.time() + 6) == 1
    assert seen == [0, 1, 2]  # each lease from the retry list counted, before parsing
    # The next lease is past HOOKLINE_MAX_ATTEMPTS: a dead letter, never parsed again.
    assert dying.in_child(env, drain_all) == 0
    with rt.pool.connection() as conn:
        iid, reason, attempts = conn.execute(
            "SELECT ingest_id, reason, attempts FROM dead_letters").fetchone()
    assert iid == killer and attempts == 2
    assert reason == "processing failed 2 times: the worker died while processing it"
    assert not rt.redis.hexists(inbox.ATTEMPTS, killer)


def test_unknown_source_in_an_envelope_is_a_dead_letter(rt):
    enqueue(rt, b'{"a": 1}', source="nobody")
    drain_all(rt)
    with rt.pool.connection() as conn:
        (reason,) = conn.execute("SELECT reason FROM dead_letters").fetchone()
    assert reason == "unsupported source 'nobody'"


def test_corrupt_envelope_is_kept_as_a_dead_letter(rt):
    rt.redis.lpush(inbox.INBOX, b"not an envelope at all")
    drain_all(rt)
    with rt.pool.connection() as conn:
        source, body = conn.execute("SELECT source, body FROM dead_letters").fetchone()
    assert source == "unknown" and bytes(body) == b"not an envelope at all"


def test_database_down_returns_the_batch_to_the_inbox(make_rt):
    from workers.pipeline import DatabaseUnavailable, process_lease

    rt = make_rt()
    enqueue(rt, receipt("SENT"))
    enqueue(rt, receipt("READ"))
    bad = make_rt(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    bad._pool = make_pool(bad.settings.database_url, 1, timeout=1)
    lease = bad.inbox.lease(10)
    with pytest.raises(DatabaseUnavailable):
        process_lease(bad, lease)
    depths = inbox.depths(rt.redis, 5)
    assert (depths.inbox, depths.leases) == (2, 0)
    assert drain_all(rt) == 2
    assert message(rt)["status"] == "read"
