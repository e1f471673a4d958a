"""The drain's hot-path optimisations keep its behaviour: read-ahead, the
marshmallow validator shortcut and the worker's GC settings (docs/benchmarks.md)."""

from __future__ import annotations

import gc

import pytest

from shared import inbox, providers
from shared.db.pool import make_pool
from tests.helpers import drain_all, enqueue, receipt
from tests.procs import wait_for
from workers.ahead import ReadAhead
from workers.pipeline import DatabaseUnavailable
from workers.tasks import drain_round


def _counts(rt) -> tuple[int, int]:
    with rt.pool.connection() as conn:
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    return events, letters


def test_read_ahead_applies_every_batch_in_order(make_rt):
    rt = make_rt(HOOKLINE_BATCH_SIZE="3")
    for i in range(10):
        enqueue(rt, receipt("SENT", message_id=f"m{i}"))
    enqueue(rt, b"not json")
    ahead = ReadAhead(rt)
    rounds = [drain_round(rt, ahead)]
    # The first batch is applied and the second already leased (and parsed) ahead.
    wait_for(lambda: inbox.depths(rt.redis, 5).leases == 1, timeout=5)
    assert inbox.depths(rt.redis, 5).inbox == 5
    while (outcome := drain_round(rt, ahead)) is not None:
        rounds.append(outcome)
    assert len(rounds) == 4  # 11 envelopes, 3 a batch
    assert _counts(rt) == (10, 1)
    with rt.pool.connection() as conn:
        ids = [r[0] for r in conn.execute("SELECT message_id FROM events ORDER BY id")]
    assert ids == [f"m{i}" for i in range(10)]  # batches commit in lease order
    depths = inbox.depths(rt.redis, 5)
    assert (depths.inbox, depths.retry, depths.leases) == (0, 0, 0)


def test_a_batch_read_ahead_and_not_applied_goes_back_untouched(make_rt):
    rt = make_rt(HOOKLINE_BATCH_SIZE="2")
    for i in range(3):
        enqueue(rt, receipt("SENT", message_id=f"m{i}"))
    ahead = ReadAhead(rt)
    ahead.start()
    ahead.give_back()
    depths = inbox.depths(rt.redis, 5)
    assert (depths.inbox, depths.leases) == (3, 0)
    assert ahead.take() is None  # given back once, not twice
    assert drain_all(rt) == 3


def test_an_outage_gives_back_the_batch_in_hand_and_the_one_read_ahead(make_rt):
    rt = make_rt()
    for i in range(4):
        enqueue(rt, receipt("SENT", message_id=f"m{i}"))
    bad = make_rt(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", HOOKLINE_BATCH_SIZE="2")
    bad._pool = make_pool(bad.settings.database_url, 1, timeout=1)
    ahead = ReadAhead(bad)
    with pytest.raises(DatabaseUnavailable):
        drain_round(bad, ahead)
    ahead.give_back()
    depths = inbox.depths(rt.redis, 5)
    assert (depths.inbox, depths.retry, depths.leases) == (4, 0, 0)
    assert drain_all(rt) == 4
    assert _counts(rt) == (4, 0)


def test_validators_still_run_where_fields_have_them():
    ok = {"type": "SENT", "from": "9170", "to": "agent", "messageId": "m1",
          "sentAt": "2025-06-16T13:46:38.929Z"}
    assert providers.parse("kaleyra-rcs", None, ok)[0].message_id == "m1"
    with pytest.raises(providers.ParseError, match="messageId: Shorter than minimum length 1"):
        providers.parse("kaleyra-rcs", None, {**ok, "messageId": ""})
    with pytest.raises(providers.ParseError, match="sentAt"):
        providers.parse("kaleyra-rcs", None, {**ok, "sentAt": "yesterday"})


def test_worker_processes_tune_the_garbage_collector():
    from workers.tasks import GC_THRESHOLDS, _tune_gc

    before = gc.get_threshold()
    try:
        _tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
