"""Retention against the real database: only old rows go, in batches, with what hangs off
them; deduplication holds for every event still kept."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from shared.db import endpoints, locks, partitions, retention
from tests.helpers import drain_all, enqueue_at, receipt
from workers import tasks


def count(rt, sql: str, *params) -> int:
    with rt.pool.connection() as conn:
        return conn.execute(sql, params).fetchone()[0]


def at(days_ago: float) -> str:
    """A provider timestamp ``days_ago`` days back (what partitions and retention go by)."""
    t = datetime.now(UTC) - timedelta(days=days_ago)
    return t.isoformat().replace("+00:00", "Z")


def old_receipt(message_id: str, days_ago: float) -> bytes:
    return receipt("SENT", message_id=message_id, sentAt=at(days_ago))


def test_purge_drops_expired_partitions_and_deletes_old_default_rows(make_rt):
    rt = make_rt(HOOKLINE_RETENTION_DAYS="30")
    with psycopg.connect(rt.settings.database_url, autocommit=True) as conn:
        partitions.ensure(conn, now=datetime.now(UTC) - timedelta(days=40))
        # Made now, or by an earlier test (tests/fanout/test_held_stranded.py): a clean
        # database truncates partitions but keeps them.
        names = {p.name for p in partitions.partitions(conn, "events")}
    assert "events_p" + (datetime.now(UTC) - timedelta(days=40)).strftime("%Y%m%d") in names
    with rt.pool.connection() as conn:
        ep = endpoints.create(conn, url="https://example.com/hook", event_types=["*"],
                              secret="whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=")
    for i in range(7):
        enqueue_at(rt, old_receipt(f"old-{i}", 40), age_days=40)
    enqueue_at(rt, old_receipt("old-pending", 40), age_days=40)
    for i in range(3):
        enqueue_at(rt, old_receipt(f"new-{i}", 1), age_days=1)
    for i in range(2):  # no partition that far back: the default partitions hold them
        enqueue_at(rt, old_receipt(f"ancient-{i}", 400), age_days=40)
    # Stamped as long ago, but received yesterday: kept by receipt time.
    enqueue_at(rt, old_receipt("ancient-late", 400), age_days=1)
    enqueue_at(rt, b"{old and replayed", age_days=40)
    enqueue_at(rt, b"{old, never replayed", age_days=40)
    drain_all(rt)
    with rt.pool.connection() as conn:
        conn.execute("UPDATE deliveries SET status = 'succeeded'")
        conn.execute("UPDATE deliveries SET status = 'failed' WHERE event_id = "
                     "(SELECT id FROM events WHERE message_id = 'old-pending')")
        conn.execute("UPDATE dead_letters SET replayed_at = now() - interval '35 days' "
                     "WHERE body = %s", (b"{old and replayed",))
    assert count(rt, "SELECT count(*) FROM events_default") == 3
    assert count(rt, "SELECT count(*) FROM message_status_history") == 14
    assert count(rt, "SELECT count(*) FROM deliveries WHERE endpoint_id = %s", ep["id"]) == 14

    cutoff = datetime.now(UTC) - timedelta(days=30)
    with psycopg.connect(rt.settings.database_url, autocommit=True) as conn:
        out = retention.purge(conn, cutoff, batch=1)
    assert out.finished and out.deleted["dead_letters"] == 1
    assert out.deleted["events_default"] == 2 and out.deleted["deliveries_default"] == 2
    assert out.deleted["event_keys_default"] == 4  # two buckets an event
    # Whole partitions went: every old event and its history. The outbox partition
    # with the retrying delivery stays, with every delivery in it, until it settles.
    day = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y%m%d")
    for parent in ("events", "event_keys", "message_status_history", "inbound_messages",
                   "delivery_attempts"):
        assert f"{parent}_p{day}" in out.dropped
    assert out.kept == [f"deliveries_p{day}"]
    assert {r for (r,) in _rows(rt, "SELECT message_id FROM events")} == {
        "new-0", "new-1", "new-2", "ancient-late"}
    assert count(rt, "SELECT count(*) FROM message_status_history") == 4
    assert count(rt, "SELECT count(*) FROM event_keys_default") == 2
    assert count(rt, "SELECT count(*) FROM deliveries") == 12
    assert [b for (b,) in _rows(rt, "SELECT body FROM dead_letters")] == [
        b"{old, never replayed"]
    # The per-message summary is kept: a late receipt still ranks against it.
    assert count(rt, "SELECT count(*) FROM messages") == 14

    # A disabled endpoint sends nothing: its unsent delivery no longer keeps the partition.
    with rt.pool.connection() as conn:
        endpoints.update(conn, ep["id"], {"enabled": False})
    with psycopg.connect(rt.settings.database_url, autocommit=True) as conn:
        again = retention.purge(conn, cutoff)
    assert sorted(again.dropped) == sorted(out.kept) and not again.kept
    assert count(rt, "SELECT count(*) FROM deliveries") == 4


def _rows(rt, sql: str) -> list[tuple]:
    with rt.pool.connection() as conn:
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in conn.execute(sql)]


def test_dedupe_holds_for_kept_events_and_ends_with_the_window(make_rt):
    rt = make_rt(HOOKLINE_RETENTION_DAYS="30")
    kept = old_receipt("kept", 29)
    purged = old_receipt("purged", 33)  # its keys' buckets too are past the cutoff
    enqueue_at(rt, kept, age_days=29)
    enqueue_at(rt, purged, age_days=33)
    drain_all(rt)
    tasks.purge()  # the scheduled task, run here: HOOKLINE_RETENTION_DAYS=30
    assert count(rt, "SELECT count(*) FROM events") == 1
    # The same callbacks again: the kept one is still a duplicate and has no effect;
    # the purged one is outside the window and is applied anew.
    enqueue_at(rt, kept, age_days=0)
    enqueue_at(rt, purged, age_days=0)
    assert drain_all(rt) == 1
    assert [m for (m,) in _rows(rt, "SELECT message_id FROM events ORDER BY id")] == [
        "kept", "purged"]


def test_a_purge_with_a_spent_budget_says_so_and_one_runs_at_a_time(make_rt):
    rt = make_rt()
    for i in range(5):
        enqueue_at(rt, old_receipt(f"b-{i}", 60), age_days=60)
    drain_all(rt)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    url = rt.settings.database_url
    with psycopg.connect(url, autocommit=True) as a, psycopg.connect(url, autocommit=True) as b:
        a.execute("SELECT pg_advisory_lock(%s)", (locks.RETENTION.key,))
        assert retention.purge(b, cutoff).skipped  # another purge holds the lock
        a.execute("SELECT pg_advisory_unlock(%s)", (locks.RETENTION.key,))
        out = retention.purge(b, cutoff, batch=2, budget_seconds=0)
    assert not out.finished and out.deleted["events_default"] == 2
    assert count(rt, "SELECT count(*) FROM events") == 3


def test_dedupe_and_history_last_the_window_from_receipt_whatever_the_stamp(make_rt):
    """A callback stamped before the cutoff and received now (an old dead letter
    replayed, a provider's backlog, a wrong clock) keeps its dedupe keys and history
    for HOOKLINE_RETENTION_DAYS from its receipt: its duplicate has no effect."""
    rt = make_rt(HOOKLINE_RETENTION_DAYS="30")
    with psycopg.connect(rt.settings.database_url, autocommit=True) as conn:
        partitions.ensure(conn, now=datetime.now(UTC) - timedelta(days=40))
    in_a_partition = old_receipt("stamped-40-days-ago", 40)  # its partition is due to go
    in_the_default = old_receipt("stamped-a-year-ago", 400)  # no partition at all
    for body in (in_a_partition, in_the_default):
        enqueue_at(rt, body, age_days=0)
    drain_all(rt)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    with psycopg.connect(rt.settings.database_url, autocommit=True) as conn:
        out = retention.purge(conn, cutoff, batch=1)
    day = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y%m%d")
    assert f"events_p{day}" in out.kept and f"event_keys_p{day}" in out.kept
    assert count(rt, "SELECT count(*) FROM events") == 2
    assert count(rt, "SELECT count(*) FROM message_status_history") == 2
    for body in (in_a_partition, in_the_default):  # the provider sends them again
        enqueue_at(rt, body, age_days=0)
    assert drain_all(rt) == 0
    assert count(rt, "SELECT count(*) FROM events") == 2
