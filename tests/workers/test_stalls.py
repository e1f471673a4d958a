"""A batch that stalls in PostgreSQL, a lease that outlives its time, clocks that
disagree: against real PostgreSQL and Redis, with real drains."""

from __future__ import annotations

import threading
import time
import types

import psycopg
import pytest
from prometheus_client import REGISTRY

from shared import inbox
from tests.helpers import drain_all, enqueue, receipt
from tests.workers import dying
from workers import lease_renewal, pipeline
from workers.pipeline import parse_lease, process_lease
from workers.tasks import drain_round


def count(rt, sql, *params):
    with rt.pool.connection() as conn:
        return conn.execute(sql, params).fetchone()[0]


def _hold_row(rt, message_id):
    """Another session locks the message's row and keeps it: a stalled batch."""
    conn = psycopg.connect(rt.settings.database_url)
    conn.execute("SELECT 1 FROM messages WHERE message_id = %s FOR UPDATE", (message_id,))
    return conn


def _in_thread(fn, seconds):
    """fn's result, or an AssertionError if it has not returned within ``seconds``."""
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("out", fn()), daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still blocked after {seconds} s"
    return box["out"]


def test_a_batch_blocked_on_a_lock_is_retried_uncounted_and_never_dead_lettered(make_rt):
    rt = make_rt(HOOKLINE_LEASE_SECONDS="5", HOOKLINE_MAX_ATTEMPTS="1")
    enqueue(rt, receipt("SENT"))
    drain_all(rt)
    blocker = _hold_row(rt, "msg-1")
    try:
        blocked = enqueue(rt, receipt("DELIVERED"))
        free = enqueue(rt, receipt("SENT", message_id="msg-2"))
        # Lock timeout: a sixth of the lease (833 ms); today the drain waits as long as
        # the lock is held, its lease lapses and the reclaims count it as a crash.
        before = REGISTRY.get_sample_value("hookline_envelopes_stalled_total") or 0
        out = _in_thread(lambda: drain_round(rt), 4)
        assert out.stalled == 2
        assert REGISTRY.get_sample_value("hookline_envelopes_stalled_total") == before + 2
        depths = inbox.depths(rt.redis, 5)
        assert (depths.inbox, depths.retry, depths.leases) == (0, 2, 0)
        # More rounds than HOOKLINE_MAX_ATTEMPTS while the lock is still held: the
        # one that meets the lock stalls again each time, the other one goes through.
        for _ in range(4):
            _in_thread(lambda: drain_round(rt), 4)
        assert count(rt, "SELECT count(*) FROM events WHERE ingest_id = %s", free) == 1
        assert count(rt, "SELECT count(*) FROM dead_letters") == 0
        assert int(rt.redis.hget(inbox.ATTEMPTS, blocked) or 0) <= 1
    finally:
        blocker.close()
    drain_all(rt)
    assert count(rt, "SELECT count(*) FROM events WHERE ingest_id = %s", blocked) == 1
    assert count(rt, "SELECT count(*) FROM dead_letters") == 0
    assert count(rt, "SELECT status FROM messages WHERE message_id = 'msg-1'") == "delivered"


def test_a_drains_statements_are_bounded_below_its_lease(make_rt, monkeypatch):
    rt = make_rt(HOOKLINE_LEASE_SECONDS="8")
    bounds = pipeline.time_bounds(rt.settings.lease_seconds)
    assert bounds.lock_ms < bounds.statement_ms < 8000
    assert bounds.idle_ms < 8000
    # What the drain's transaction really runs with, read back inside it.
    seen = {}
    real = pipeline.apply_batch

    def spy(conn, rows, letters):
        for name in ("statement_timeout", "lock_timeout",
                     "idle_in_transaction_session_timeout"):
            seen[name] = conn.execute(f"SHOW {name}").fetchone()[0]
        return real(conn, rows, letters)

    monkeypatch.setattr(pipeline, "apply_batch", spy)
    enqueue(rt, receipt("SENT"))
    drain_all(rt)
    assert seen == {"statement_timeout": "2s", "lock_timeout": "1333ms",
                    "idle_in_transaction_session_timeout": "2s"}
    # Lent to anything else afterwards, the connection has the server's defaults.
    with rt.pool.connection() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "0"


def test_the_heartbeat_keeps_a_lease_in_hand_past_its_deadline(make_rt):
    rt = make_rt(HOOKLINE_LEASE_SECONDS="5")
    enqueue(rt, receipt("SENT"))
    lease = rt.inbox.lease(10)
    lease_renewal.watch(rt.inbox, lease)
    try:
        time.sleep(7)  # past its first deadline: renewed every 1.25 s meanwhile
        assert rt.inbox.reclaim_expired() == 0
        assert rt.redis.zscore(inbox.LEASES, lease.id) is not None
        assert not lease.lost
    finally:
        lease_renewal.forget(lease)
    process_lease(rt, lease)
    assert count(rt, "SELECT count(*) FROM events") == 1
    assert inbox.depths(rt.redis, 5).retry == 0


def test_a_lease_reclaimed_under_a_live_worker_rolls_back_and_is_not_renewed(make_rt):
    rt = make_rt(HOOKLINE_LEASE_SECONDS="5", HOOKLINE_MAX_ATTEMPTS="1")
    iid = enqueue(rt, receipt("SENT"))
    lease = rt.inbox.lease(10)
    # The heartbeat could not reach Redis in time: the lease lapsed and was reclaimed.
    assert rt.inbox.reclaim_expired(now=time.time() + 6) == 1
    beat = lease_renewal.LeaseRenewal()
    beat.watch(rt.inbox, lease)
    beat.beat()
    assert lease.lost
    assert rt.redis.zscore(inbox.LEASES, lease.id) is None  # renewing did not revive it
    out = process_lease(rt, lease)
    assert out.stalled == 1 and not out.applied
    assert count(rt, "SELECT count(*) FROM events") == 0
    # Its next lease is not counted as an attempt: the worker was alive.
    drain_all(rt)
    assert count(rt, "SELECT count(*) FROM events WHERE ingest_id = %s", iid) == 1
    assert count(rt, "SELECT count(*) FROM dead_letters") == 0


def test_lease_deadlines_are_on_rediss_clock_not_the_workers(make_rt, monkeypatch):
    rt = make_rt(HOOKLINE_LEASE_SECONDS="5")
    enqueue(rt, receipt("SENT"))
    enqueue(rt, receipt("READ"))
    live = rt.inbox.lease(1)  # a worker with a good clock holds a batch
    # Another worker's clock runs an hour ahead (or the first one's behind).
    ahead = types.SimpleNamespace(time=lambda: time.time() + 3600, monotonic=time.monotonic)
    monkeypatch.setattr(inbox, "time", ahead)
    assert rt.inbox.reclaim_expired() == 0  # the live lease stays where it is
    skewed = rt.inbox.lease(1)
    redis_now = float(rt.redis.time()[0])
    for lease in (live, skewed):
        deadline = rt.redis.zscore(inbox.LEASES, lease.id)
        assert redis_now + 3 < deadline < redis_now + 7


def _commit_then_die(rt):
    # The worker commits its batch and dies before releasing it.
    rt.inbox.release = dying.die
    drain_round(rt)


def _die_applying(rt):
    # A worker that dies inside its transaction, after the real attempt count.
    pipeline.apply_batch = dying.die
    drain_round(rt)


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_an_envelope_applied_is_never_dead_lettered_however_often_it_is_retried(
    make_rt, base_env, max_attempts
):
    env = {**base_env, "HOOKLINE_MAX_ATTEMPTS": str(max_attempts)}
    rt = make_rt(HOOKLINE_MAX_ATTEMPTS=str(max_attempts))
    iid = enqueue(rt, receipt("DELIVERED"))
    assert dying.in_child(env, _commit_then_die) == dying.DIED
    for _ in range(max_attempts):
        # Reclaimed, leased from the retry list (an attempt counted), killed again.
        assert rt.inbox.reclaim_expired(now=time.time() + 61) == 1
        assert dying.in_child(env, _die_applying) == dying.DIED
    assert int(rt.redis.hget(inbox.ATTEMPTS, iid)) == max_attempts
    assert rt.inbox.reclaim_expired(now=time.time() + 61) == 1
    lease = rt.inbox.lease(1, from_retry=True)
    parsed = parse_lease(rt, lease)
    assert parsed.decoded[0].letter is not None  # past the limit: would be dead-lettered
    process_lease(rt, lease, parsed)
    assert count(rt, "SELECT count(*) FROM events WHERE ingest_id = %s", iid) == 1
    assert count(rt, "SELECT count(*) FROM dead_letters") == 0
    assert not rt.redis.hexists(inbox.ATTEMPTS, iid)
    depths = inbox.depths(rt.redis, 5)
    assert (depths.inbox, depths.retry, depths.leases) == (0, 0, 0)
