"""The Redis inbox's Lua scripts against a real Redis: sizes and budgets."""

from __future__ import annotations

from shared import inbox


def _fill(rt, items: list[bytes]) -> None:
    rt.redis.lpush(inbox.INBOX, *items)  # first item pushed = oldest


def test_a_lease_past_luas_unpack_limit_moves_every_envelope(rt):
    # Redis's Lua unpacks ~8,000 values at most, and a failed script keeps what it
    # had already trimmed from the inbox: one push of 9,000 lost them all.
    items = [b"e%05d" % i for i in range(9000)]
    _fill(rt, items)
    lease = rt.inbox.lease(9000)
    assert lease is not None and lease.items == items
    assert rt.redis.llen(inbox.INBOX) == 0 and rt.redis.llen(lease.key) == 9000

    rt.inbox.release(lease, requeue=lease.items)
    assert rt.redis.lrange(inbox.RETRY, 0, -1) == items[::-1]  # oldest at the leasing end
    assert not rt.redis.exists(lease.key) and rt.redis.zcard(inbox.LEASES) == 0


def test_a_large_requeue_to_the_inbox_keeps_the_order(rt):
    items = [b"e%05d" % i for i in range(9000)]
    _fill(rt, items)
    lease = rt.inbox.lease(9000)
    rt.inbox.release(lease, requeue=lease.items, to_inbox=True)
    again = rt.inbox.lease(9000)
    assert again is not None and again.items == items


def test_a_lease_stops_at_its_byte_budget(make_rt):
    rt = make_rt(HOOKLINE_BATCH_BYTES="65536")
    items = [bytes([65 + i]) * 30000 for i in range(5)]
    _fill(rt, items)
    lease = rt.inbox.lease(500)
    assert lease is not None and lease.items == items[:2]  # a third passes 65,536 bytes
    assert rt.redis.llen(inbox.INBOX) == 3 and rt.redis.llen(lease.key) == 2
    rt.inbox.release(lease)
    assert rt.inbox.lease(500).items == items[2:4]


def test_an_envelope_over_the_budget_is_leased_alone(make_rt):
    rt = make_rt(HOOKLINE_BATCH_BYTES="65536")
    huge, small = b"h" * 100_000, b"s" * 10
    _fill(rt, [huge, small])
    assert rt.inbox.lease(500).items == [huge]
    assert rt.inbox.lease(500).items == [small]
