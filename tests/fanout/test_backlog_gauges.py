"""The fan-out backlog gauges (worker /metrics) against real PostgreSQL and Redis."""

from __future__ import annotations

from shared import config
from tests.fanout.fanout_helpers import apply_receipts, create_endpoint
from workers import metrics

DEAD_URL = "http://127.0.0.1:9/hook"  # nothing is sent: the tests never dispatch


def execute(rt, sql: str) -> None:
    with rt.pool.connection() as conn:
        conn.execute(sql)


def gauges(rt) -> dict[str, float]:
    collector = metrics.StateCollector(config.load({"REDIS_URL": rt.settings.redis_url,
                                                    "DATABASE_URL": rt.settings.database_url}))
    return {f.name: f.samples[0].value for f in collector.collect()}


def test_pending_held_and_oldest_due(frt, api):
    create_endpoint(api, DEAD_URL)
    create_endpoint(api, DEAD_URL, ordered=True)
    # Three receipts of one message: the plain endpoint has three pending, the ordered
    # one its first pending and the two others held behind it.
    apply_receipts(frt, "SENT", "DELIVERED", "READ")
    execute(frt, "UPDATE deliveries SET next_attempt_at = now() - interval '90 seconds' "
              "WHERE id = (SELECT min(id) FROM deliveries WHERE next_attempt_at IS NOT NULL)")
    frt.redis.delete(metrics.BACKLOG_KEY, metrics.BACKLOG_LOCK)
    values = gauges(frt)
    assert values["hookline_deliveries_pending"] == 4
    assert values["hookline_deliveries_held"] == 2
    assert 89 <= values["hookline_oldest_due_delivery_age_seconds"] < 120


def test_nothing_due_reads_zero(frt, api):
    create_endpoint(api, DEAD_URL)
    apply_receipts(frt, "SENT")
    execute(frt, "UPDATE deliveries SET next_attempt_at = now() + interval '1 hour'")
    frt.redis.delete(metrics.BACKLOG_KEY, metrics.BACKLOG_LOCK)
    values = gauges(frt)
    assert values["hookline_deliveries_pending"] == 1
    assert values["hookline_oldest_due_delivery_age_seconds"] == 0


def test_replicas_share_one_reading_per_interval(frt, api):
    """A second replica's scrape within the interval serves the first one's reading,
    not a query of its own; once the interval passes, a fresh one."""
    create_endpoint(api, DEAD_URL)
    apply_receipts(frt, "SENT")
    frt.redis.delete(metrics.BACKLOG_KEY, metrics.BACKLOG_LOCK)
    reads = []

    def read():
        reads.append(1)
        return [len(reads), 0, 0.0]

    assert metrics.shared_reading(frt.redis, read) == [1, 0, 0.0]
    assert metrics.shared_reading(frt.redis, read) == [1, 0, 0.0]
    assert len(reads) == 1
    # The reading ages past the interval: one process takes the lock and reads again,
    # while another that finds the lock taken serves the previous reading.
    frt.redis.set(metrics.BACKLOG_KEY, b'{"t": 0, "v": [1, 0, 0.0]}')
    assert metrics.shared_reading(frt.redis, read) == [2, 0, 0.0]
    frt.redis.set(metrics.BACKLOG_KEY, b'{"t": 0, "v": [2, 0, 0.0]}')
    assert metrics.shared_reading(frt.redis, read) == [2, 0, 0.0]  # lock still held
    assert len(reads) == 2

