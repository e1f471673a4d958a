"""A held delivery whose head went without settling (retention took a disabled
endpoint's unsent head, or anything else removed it) is let go: by the purge, by
enabling the endpoint again, and it shows in a metric until then."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import psycopg

from shared import inbox
from shared.db import partitions, retention, stats
from shared.envelope import Envelope, new_id
from tests.fanout.fanout_helpers import AUTH, create_endpoint
from tests.helpers import drain_all, receipt
from workers import metrics

DAY = 86400.0


def _received(rt, kind: str, days_ago: float) -> None:
    """A receipt stamped and received ``days_ago`` days back."""
    t = datetime.now(UTC) - timedelta(days=days_ago)
    body = receipt(kind, sentAt=t.isoformat().replace("+00:00", "Z"))
    env = Envelope(id=new_id(), source="kaleyra-rcs", event=None,
                   received_at=time.time() - days_ago * DAY, body=body)
    inbox.push(rt.redis, env.encode())


def _chain(rt, endpoint_id):
    """(type, held) in the endpoint's order."""
    with rt.pool.connection() as conn:
        return conn.execute(
            "SELECT type, next_attempt_at IS NULL FROM deliveries WHERE endpoint_id = %s "
            "ORDER BY message_key, occurred_at, rank, seq", (endpoint_id,)).fetchall()


def _head_and_follower(frt, api, receiver):
    with psycopg.connect(frt.settings.database_url, autocommit=True) as conn:
        partitions.ensure(conn, now=datetime.now(UTC) - timedelta(days=40))
    ep = create_endpoint(api, receiver.url("/o"), ordered=True)
    _received(frt, "SENT", 40)      # the head, in a partition retention is due to drop
    _received(frt, "DELIVERED", 1)  # its follower, held behind it
    drain_all(frt)
    assert _chain(frt, ep["id"]) == [("message.sent", False), ("message.delivered", True)]
    return ep


def _patch(api, ep, **changes):
    resp = api.patch(f"/v1/endpoints/{ep['id']}", json=changes, headers=AUTH)
    assert resp.status_code == 200, resp.get_json()


def test_the_purge_lets_go_what_a_dropped_head_held(frt, api, receiver):
    ep = _head_and_follower(frt, api, receiver)
    _patch(api, ep, enabled=False)  # a disabled endpoint's unsent head holds nothing
    cutoff = datetime.now(UTC) - timedelta(days=30)
    with psycopg.connect(frt.settings.database_url, autocommit=True) as conn:
        out = retention.purge(conn, cutoff)
    day = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y%m%d")
    assert f"deliveries_p{day}" in out.dropped
    assert out.released == 1
    assert _chain(frt, ep["id"]) == [("message.delivered", False)]
    _patch(api, ep, enabled=True)
    with frt.pool.connection() as conn:
        assert stats.held_deliveries(conn)[1] == 0


def test_enabling_lets_go_what_a_vanished_head_held_and_the_metric_shows_it(
    frt, api, receiver
):
    ep = _head_and_follower(frt, api, receiver)
    _patch(api, ep, enabled=False)
    with frt.pool.connection() as conn:  # the head goes by any other way than settling
        conn.execute("DELETE FROM deliveries WHERE endpoint_id = %s AND type = "
                     "'message.sent'", (ep["id"],))
        conn.execute("UPDATE endpoints SET enabled = true WHERE id = %s", (ep["id"],))
        age, stranded = stats.held_deliveries(conn)
    assert stranded == 1 and age > 0
    text = _scrape(frt)
    assert "hookline_held_deliveries_stranded 1" in text
    assert "hookline_held_delivery_oldest_seconds" in text
    with frt.pool.connection() as conn:
        conn.execute("UPDATE endpoints SET enabled = false WHERE id = %s", (ep["id"],))
    _patch(api, ep, enabled=True)
    assert _chain(frt, ep["id"]) == [("message.delivered", False)]
    assert "hookline_held_deliveries_stranded 0" in _scrape(frt)


def _scrape(rt) -> str:
    collector = metrics.StateCollector(rt.settings)
    out = []
    for family in collector.collect():
        out += [f"{s.name} {s.value}" for s in family.samples]
    return "\n".join(out)


def test_retrying_a_stranded_delivery_lets_it_go(frt, api, receiver):
    ep = _head_and_follower(frt, api, receiver)
    with frt.pool.connection() as conn:
        conn.execute("DELETE FROM deliveries WHERE endpoint_id = %s AND type = "
                     "'message.sent'", (ep["id"],))
        [(follower,)] = conn.execute("SELECT id FROM deliveries WHERE endpoint_id = %s",
                                     (ep["id"],)).fetchall()
    resp = api.post(f"/v1/deliveries/{follower}/retry", headers=AUTH)
    assert resp.status_code in (200, 202), resp.get_json()
    assert _chain(frt, ep["id"]) == [("message.delivered", False)]
