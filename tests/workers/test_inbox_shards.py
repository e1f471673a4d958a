"""The sharded inbox on a real Redis: key names, spreading, draining every shard,
changing the shard count, and WAIT before a 202."""

from __future__ import annotations

import pytest

from ingest.app import create_app
from shared import inbox, inbox_shards, status
from tests.helpers import drain_all, receipt
from workers.metrics import StateCollector

SOURCE = "kaleyra-rcs"


def _post(app, n: int, prefix: str) -> list[int]:
    client = app.test_client()
    codes = []
    for i in range(n):
        r = client.post(f"/callbacks/{SOURCE}", data=receipt("SENT", message_id=f"{prefix}{i}"),
                        content_type="application/json")
        codes.append(r.status_code)
    return codes


def _app(rt):
    return create_app(rt=rt, send_drain=lambda: None)


def _events(rt) -> int:
    with rt.pool.connection() as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def _lengths(rt, count: int) -> list[int]:
    return [rt.redis.llen(s.inbox) for s in inbox_shards.shards(count, False)]


def _keys(rt) -> set[str]:
    return {k.decode() for k in rt.redis.scan_iter(match="hookline:*")}


def test_one_shard_uses_the_unsharded_names_and_records_nothing(rt):
    assert _post(_app(rt), 3, "a") == [202] * 3
    assert rt.redis.llen("hookline:inbox") == 3
    assert _keys(rt) <= {"hookline:inbox", "hookline:drain:kick"}
    lease = rt.inbox.lease(10)
    assert lease.key == "hookline:lease:" + lease.id
    assert rt.redis.zscore("hookline:leases", lease.id) is not None


def test_four_shards_take_turns_and_every_one_is_drained(make_rt):
    rt = make_rt(HOOKLINE_INBOX_SHARDS="4")
    assert _post(_app(rt), 40, "b") == [202] * 40
    assert _lengths(rt, 4) == [10, 10, 10, 10]
    assert rt.redis.llen("hookline:{inbox:3}:queue") == 10  # one hash tag per shard
    assert inbox_shards.high_water(rt.redis) == 4
    assert inbox.depths(rt.redis, 5).inbox == 40  # status and metrics count every shard
    drain_all(rt)
    assert _events(rt) == 40
    assert inbox.depths(rt.redis, 5) == inbox.Depths(0, 0, 0, 0.0, 4)


def test_expired_leases_are_reclaimed_on_every_shard(make_rt):
    rt = make_rt(HOOKLINE_INBOX_SHARDS="3")
    _post(_app(rt), 6, "c")
    leases = [rt.inbox.lease(1) for _ in range(6)]
    assert {lease.shard.index for lease in leases} == {0, 1, 2}
    assert rt.inbox.reclaim_expired(now=1e12) == 6
    assert [rt.redis.llen(s.retry) for s in inbox_shards.shards(3, False)] == [2, 2, 2]
    assert inbox.depths(rt.redis, 5).leases == 0
    drain_all(rt)
    assert _events(rt) == 6


def test_a_requeue_goes_back_to_its_own_shard(make_rt):
    rt = make_rt(HOOKLINE_INBOX_SHARDS="2")
    _post(_app(rt), 2, "d")
    first = rt.inbox.lease(10)
    second = rt.inbox.lease(10)
    assert {first.shard.index, second.shard.index} == {0, 1}
    rt.inbox.release(second, requeue=second.items, to_inbox=True)
    rt.inbox.release(first, requeue=first.items)
    assert rt.redis.llen(second.shard.inbox) == 1 and rt.redis.llen(first.shard.retry) == 1
    assert rt.redis.llen(first.shard.inbox) == 0 and rt.redis.llen(second.shard.retry) == 0


def test_raising_the_shard_count_keeps_draining_what_shard_0_held(make_rt):
    old = make_rt()
    _post(_app(old), 5, "e")  # queued before the upgrade, under the unsharded names
    new = make_rt(HOOKLINE_INBOX_SHARDS="4")
    _post(_app(new), 8, "f")
    drain_all(new)
    assert _events(new) == 13


def test_workers_still_on_one_shard_drain_the_shards_a_new_ingest_fills(make_rt):
    # Ingest upgraded first: its pushes raise the mark, so old-setting drains follow.
    worker = make_rt()
    ingest = make_rt(HOOKLINE_INBOX_SHARDS="4")
    _post(_app(ingest), 8, "g")
    worker.inbox._read_at = -1e9  # its cached shard count is older than a second
    drain_all(worker)
    assert _events(worker) == 8


def test_lowering_the_shard_count_still_drains_the_retired_shards(make_rt):
    wide = make_rt(HOOKLINE_INBOX_SHARDS="4")
    _post(_app(wide), 8, "h")
    first = wide.inbox.lease(1)
    wide.inbox.release(first, requeue=first.items, to_inbox=True)
    lease = wide.inbox.lease(1)  # a batch in flight on a shard about to be retired
    assert lease.shard.index == 1
    narrow = make_rt(HOOKLINE_INBOX_SHARDS="1")
    _post(_app(narrow), 4, "i")
    assert _lengths(narrow, 4) == [6, 1, 2, 2]  # ingest now fills shard 0 only
    assert inbox_shards.high_water(narrow.redis) == 4  # never lowered
    assert inbox.depths(narrow.redis, 5, 1).inbox == 11
    drain_all(narrow)
    assert narrow.inbox.reclaim_expired(now=1e12) == 1  # the retired shard's lease too
    drain_all(narrow)
    assert _events(narrow) == 12
    assert inbox.depths(narrow.redis, 5) == inbox.Depths(0, 0, 0, 0.0, 4)


def test_no_replica_confirming_within_the_wait_is_503(make_rt):
    # This Redis has no replica: WAIT 1 times out, so no 202 may be promised.
    rt = make_rt(HOOKLINE_INBOX_WAIT_REPLICAS="1", HOOKLINE_INBOX_WAIT_TIMEOUT_MS="20")
    r = _app(rt).test_client().post(f"/callbacks/{SOURCE}", data=receipt("SENT"),
                                    content_type="application/json")
    assert r.status_code == 503 and r.headers["Retry-After"]
    with pytest.raises(inbox.NotReplicated):
        rt.pusher.push(b"x")
    # The master has them: processed, and the provider's retry of the 503 is a duplicate
    # that PostgreSQL's dedupe absorbs (tests/faults/test_redis_ha.py has the replicas).
    assert rt.redis.llen(inbox.INBOX) == 2


def test_status_and_gauges_count_every_shard(make_rt):
    rt = make_rt(HOOKLINE_INBOX_SHARDS="4")
    _post(_app(rt), 8, "k")
    rt.inbox.lease(1)
    doc = status.gather(rt.settings)
    assert doc["inbox"]["queued"] == 7 and doc["inbox"]["leases"] == 1
    assert doc["inbox"]["shards"] == 4 and "shards" in status.render(doc)
    gauges = {m.name: m.samples[0].value for m in StateCollector(rt.settings)._queue()}
    assert gauges["hookline_inbox_depth"] == 7 and gauges["hookline_inbox_shards"] == 4
