"""The drain-kick protocol on real Redis and PostgreSQL: ingest claims the kick flag
only when its push finds the inbox empty, so no envelope may ever be left in the
inbox with no drain queued or running to lease it. The drains here are the real
task, run in this process; only send_task is recorded (each recorded send is one
queued drain). The scheduler's tick, the protocol's safety net, never runs."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared import inbox
from shared.envelope import Envelope, new_id
from tests.helpers import receipt
from workers import dispatch_kick, tasks

REAL_ROUND = tasks.drain_round


class Broker:
    """Drains sent but not yet started, and pushes to make while one runs."""

    def __init__(self, rt, monkeypatch) -> None:
        self.rt, self.queued, self.pushed, self.during = rt, 0, 0, []
        monkeypatch.setattr(tasks, "send_drain", self.send)
        monkeypatch.setattr(dispatch_kick, "send_dispatch", lambda: None)  # not under test here

        def round_with_pushes(rt, ahead=None):
            outcome = REAL_ROUND(rt, ahead)
            self.push(self.during.pop(0) if self.during else 0)  # between two rounds
            return outcome

        monkeypatch.setattr(tasks, "drain_round", round_with_pushes)

    def send(self) -> None:
        self.queued += 1

    def push(self, n: int) -> None:
        for _ in range(n):
            self.pushed += 1
            # What ingest does: push, then send a drain when it claimed the flag.
            if self.rt.pusher.push(_envelope(self.rt)):
                self.send()

    def run_one(self, during: list[int]) -> None:
        self.queued -= 1
        self.during = list(during)
        tasks.drain()

    def run_all(self) -> None:
        while self.queued:
            self.run_one([])


def _envelope(rt) -> bytes:
    body = receipt("SENT", message_id=new_id())
    return Envelope(id=new_id(), source="kaleyra-rcs", event=None, received_at=time.time(),
                    body=body).encode()


def test_a_drain_that_emptied_the_inbox_is_followed_by_a_kick(rt, monkeypatch):
    broker = Broker(rt, monkeypatch)
    broker.push(30)
    assert broker.queued == 1
    # While the drain runs, callbacks arrive just after it found the inbox empty.
    broker.run_one(during=[0, 3])
    assert broker.queued == 1 and rt.redis.llen(inbox.INBOX) == 3
    broker.run_all()
    assert rt.redis.llen(inbox.INBOX) == 0
    with rt.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 33


@pytest.mark.parametrize("shards", ["1", "4"])
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(
    st.tuples(st.integers(0, 8), st.lists(st.integers(0, 6), max_size=4)),
    min_size=1, max_size=6))
def test_no_envelope_is_stranded_without_a_drain(make_rt, monkeypatch, shards, script):
    # With shards, a push finds its own shard empty, and a drain ends only when a
    # whole turn of the shards found nothing.
    rt = make_rt(HOOKLINE_INBOX_SHARDS=shards)
    rt.redis.flushdb()
    broker = Broker(rt, monkeypatch)
    for before, during in script:
        broker.push(before)
        if broker.queued:
            broker.run_one(during)
        else:
            broker.push(sum(during))
    broker.run_all()  # every drain that was sent, nothing else
    depths = inbox.depths(rt.redis, 5, int(shards))
    assert (depths.inbox, depths.retry, depths.shards) == (0, 0, int(shards))
