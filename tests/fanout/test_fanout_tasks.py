"""Fan-out's Celery tasks and kicks, run in this process on real Redis and PostgreSQL
(the broker boundary, send_task, is recorded instead of sent)."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import REGISTRY

from shared.db.outbox import claims
from shared.db.outbox.claims import Claimed
from tests.fanout.fanout_helpers import apply_receipts, create_endpoint, deliver, delivery_rows
from tests.helpers import enqueue, receipt
from tests.receiver import Reply
from workers import dispatch_kick, fanout, tasks
from workers.lanes import Lanes


@pytest.fixture
def sent(monkeypatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(dispatch_kick, "send_dispatch", lambda: calls.append("dispatch"))
    monkeypatch.setattr(tasks, "send_drain", lambda: calls.append("drain"))
    return calls


def test_a_drain_that_applied_notifying_events_kicks_one_dispatch(api, frt, receiver, sent):
    create_endpoint(api, receiver.url())
    for kind in ("SENT", "DELIVERED", "READ"):
        enqueue(frt, receipt(kind))
    tasks.drain()
    assert sent.count("dispatch") == 1  # flag-guarded: one, not one per event
    frt.redis.delete(dispatch_kick.KICK_KEY)
    enqueue(frt, receipt("READ"))  # a duplicate: applies nothing, notifies nothing
    tasks.drain()
    assert sent.count("dispatch") == 1


def test_a_drain_whose_events_no_endpoint_takes_kicks_no_dispatch(api, frt, receiver, sent):
    # Each dispatch plans two claims over the outbox's partitions: for nothing here.
    create_endpoint(api, receiver.url(), filter={"source": "comapi"})
    enqueue(frt, receipt("SENT"))  # kaleyra-rcs
    tasks.drain()
    assert "dispatch" not in sent


def test_no_kick_while_a_dispatch_runs_unless_forced(frt, sent):
    frt.redis.zadd(dispatch_kick.RUNNING_KEY, {"other": time.time() + 5})
    assert not dispatch_kick.kick_dispatch()
    assert dispatch_kick.kick_dispatch(force=True)
    assert not dispatch_kick.kick_dispatch(force=True)  # one queued already
    assert sent == ["dispatch"]
    frt.redis.delete(dispatch_kick.KICK_KEY)
    frt.redis.zadd(dispatch_kick.RUNNING_KEY, {"other": time.time() - 1})  # that one died
    assert dispatch_kick.kick_dispatch() and sent == ["dispatch", "dispatch"]


def test_the_tick_kicks_only_when_something_is_due(api, frt, receiver, sent):
    fanout.fanout_tick()
    assert sent == []
    create_endpoint(api, receiver.url())
    apply_receipts(frt, "SENT")
    fanout.fanout_tick()
    assert sent == ["dispatch"]


def test_the_dispatch_task_sends_and_steps_aside(api, frt, receiver, sent):
    ep = create_endpoint(api, receiver.url("/t"))
    apply_receipts(frt, "SENT", "READ")
    frt.redis.set(dispatch_kick.KICK_KEY, b"1")
    assert fanout.dispatch_task() == 2
    assert fanout.dispatcher_for(frt).flush(5)
    assert {r[1] for r in delivery_rows(frt, ep["id"])} == {"succeeded"}
    assert not frt.redis.exists(dispatch_kick.KICK_KEY)  # a new kick may be sent
    assert frt.redis.zcard(dispatch_kick.RUNNING_KEY) == 0


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_count_attempts_by_outcome(api, frt, receiver):
    before = {o: _value("hookline_deliveries_total", outcome=o) for o in ("succeeded", "failed")}
    seconds = _value("hookline_delivery_seconds_count")
    ep = create_endpoint(api, receiver.url("/m"))
    receiver.script("/m", Reply(500))
    apply_receipts(frt, "SENT")
    deliver(frt, until=lambda: delivery_rows(frt, ep["id"])[0][1] == "succeeded")
    assert _value("hookline_deliveries_total", outcome="failed") == before["failed"] + 1
    assert _value("hookline_deliveries_total", outcome="succeeded") == before["succeeded"] + 1
    assert _value("hookline_delivery_seconds_count") == seconds + 2


def test_due_exists_ignores_what_cannot_be_sent_now(api, frt, receiver):
    ep = create_endpoint(api, receiver.url())
    apply_receipts(frt, "SENT")
    with frt.pool.connection() as conn:
        assert claims.due_exists(conn)
        conn.execute("UPDATE endpoints SET paused_until = now() + interval '1 minute'")
        assert not claims.due_exists(conn)
        conn.execute("UPDATE endpoints SET paused_until = NULL, enabled = false")
        assert not claims.due_exists(conn)
    api.patch(f"/v1/endpoints/{ep['id']}", json={"enabled": True},
              headers={"Authorization": "Bearer test-api-token"})
    deliver(frt)
    with frt.pool.connection() as conn:
        assert not claims.due_exists(conn)


def _claimed(endpoint_id: str, n: int) -> list[Claimed]:
    return [Claimed(f"{endpoint_id}-{i}", endpoint_id, "", b"", [], None) for i in range(n)]


def test_lanes_cap_each_endpoint_and_take_turns():
    lanes = Lanes(cap=2)
    lanes.add(_claimed("slow", 5) + _claimed("fast", 3))
    taken = [lanes.take(0.05) for _ in range(4)]
    assert [c.endpoint_id for c in taken] == ["slow", "fast", "slow", "fast"]  # in turn
    assert lanes.take(0.05) is None  # both at their cap: nothing may start
    lanes.done("fast")
    assert lanes.take(0.05).id == "fast-2"
    lanes.done("slow")
    assert lanes.take(0.05).id == "slow-2"
    assert [c.id for c in lanes.drop("slow")] == ["slow-3", "slow-4"]
    lanes.done("slow")
    assert lanes.take(0.05) is None  # dropped: nothing left for slow
    assert lanes.close() == [] and lanes.take() is None


def test_slow_endpoints_together_hold_at_most_their_threads():
    lanes = Lanes(cap=2, slow_threads=3)
    lanes.add(_claimed("a", 4) + _claimed("b", 4))
    first = lanes.take(0.05)  # "a", while nothing is known of it
    assert lanes.set_slow("a", True, keep=1) == _claimed("a", 4)[2:]  # beyond one queued
    assert lanes.set_slow("b", True, keep=4) == []
    assert lanes.slow_load() == 1 + 1 + 4  # the running send counts as slow from now on
    taken = [lanes.take(0.05) for _ in range(3)]
    assert sorted(c.id for c in taken if c) == ["a-1", "b-0"]
    assert taken[2] is None  # "a" at its cap; 3 slow sends running: none may start
    lanes.add(_claimed("fast", 2))
    assert lanes.take(0.05).endpoint_id == "fast"  # the threads kept for the others
    lanes.done(first.endpoint_id)
    assert lanes.take(0.05).id == "b-1"
    assert lanes.slow_load() == 3 + 2  # a-1, b-0, b-1 running; b-2, b-3 queued
    assert lanes.set_slow("b", False, keep=0) == []  # no longer slow: nothing handed back
    assert lanes.slow_load() == 1  # a-1: b's running sends no longer count as slow


def test_an_endpoint_no_longer_slow_wakes_a_thread_waiting_for_slow_room():
    lanes = Lanes(cap=2, slow_threads=1)
    lanes.add(_claimed("a", 1) + _claimed("b", 1))
    lanes.set_slow("a", True, keep=1)
    lanes.set_slow("b", True, keep=1)
    first = lanes.take(0.05)  # the one slow thread is busy
    got: list[Claimed | None] = []
    waiter = threading.Thread(target=lambda: got.append(lanes.take(5)))
    waiter.start()
    time.sleep(0.1)
    started = time.monotonic()
    lanes.set_slow(first.endpoint_id, False, keep=0)  # its running send no longer counts
    waiter.join(5)
    assert got and got[0] is not None and time.monotonic() - started < 1


def test_slow_and_other_endpoints_take_turns_when_both_may_start():
    lanes = Lanes(cap=4, slow_threads=4)
    lanes.add(_claimed("s", 4) + _claimed("f", 4))
    lanes.set_slow("s", True, keep=4)
    taken = [lanes.take(0.05).endpoint_id for _ in range(4)]
    assert sorted(taken) == ["f", "f", "s", "s"] and taken[0] != taken[1]


def test_a_claim_that_overlapped_the_last_record_does_not_end_the_dispatch(
        api, fast_rt, receiver, monkeypatch):
    """A claim whose snapshot saw the endpoint at its cap finds nothing; if the
    recorder commits the last batch meanwhile, nothing is outstanding by the time
    the claim returns. That is not idle: the deliveries are still due."""
    rt = fast_rt(HOOKLINE_ENDPOINT_CONCURRENCY="1", HOOKLINE_DELIVERY_THREADS="2")
    endpoint = create_endpoint(api, receiver.url())
    apply_receipts(rt, "SENT", "DELIVERED", "READ")
    for i in range(12):  # more than one claim's worth (cap 1 x PREFETCH)
        apply_receipts(rt, "SENT", message_id=f"m-{i}")
    real = claims.claim
    dispatcher = fanout.dispatcher_for(rt)
    overlapped: list[int] = []

    def claim_during_the_last_record(conn, limit, rules, *slow):
        if dispatcher.outstanding and not overlapped:
            overlapped.append(dispatcher.outstanding)
            dispatcher.flush(10)  # the recorder finishes while this claim "runs"...
            return []         # ...whose snapshot still saw the cap reached
        return real(conn, limit, rules, *slow)

    monkeypatch.setattr(claims, "claim", claim_during_the_last_record)
    _, idle = fanout.dispatch(rt, budget=10)
    dispatcher.flush(10)
    assert overlapped and idle
    statuses = [row[1] for row in delivery_rows(rt, endpoint["id"])]
    assert statuses == ["succeeded"] * 15
