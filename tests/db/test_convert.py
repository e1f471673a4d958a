"""Converting an installation from before migration 010 with the pipeline running: every
row moves across once, nothing is lost, and deduplication holds against rows not yet
moved."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from shared.db import convert, legacy, locks, partitions
from shared.db.events import DEDUPE_DAYS
from shared.db.migrate import migrate
from tests.helpers import drain_all, enqueue, receipt, z

LEGACY = 1200
CUTOFF = datetime.now(UTC) - timedelta(days=30)
INBOUND = 100

_EVENTS = """
INSERT INTO events (source, dedupe_key, type, channel, message_id, status, provider_status,
                    occurred_at, ingest_id, received_at)
SELECT 'kaleyra-rcs', 'e:conv-' || i || '-SENT',
       CASE WHEN i <= %(inbound)s THEN 'message.inbound' ELSE 'message.sent' END, 'rcs',
       'conv-' || i, 'sent', 'SENT', now() - i * interval '3 minutes', 'ing-' || i,
       now() - i * interval '3 minutes'
FROM generate_series(1, %(n)s) i
"""
_CHILDREN = [
    """INSERT INTO message_status_history (event_id, source, message_id, status, occurred_at)
       SELECT id, source, message_id, status, occurred_at FROM events""",
    """INSERT INTO inbound_messages (event_id, source, channel, occurred_at, text)
       SELECT id, source, channel, occurred_at, 'hi' FROM events
       WHERE type = 'message.inbound'""",
    """INSERT INTO deliveries (endpoint_id, event_id, type, payload, occurred_at, status,
                               next_attempt_at)
       SELECT 'ep_conv', id, type, '{}'::jsonb, occurred_at,
              CASE WHEN id % 80 = 0 THEN 'pending' ELSE 'succeeded' END,
              CASE WHEN id % 80 = 0 THEN now() END
       FROM events""",
    """INSERT INTO delivery_attempts (delivery_id, attempted_at, duration_ms, status_code)
       SELECT id, occurred_at + interval '1 second', 12, 200 FROM deliveries""",
]


@pytest.fixture
def legacy_url(fresh_url: str) -> Iterator[str]:
    """A database as it was before 010."""
    migrate(fresh_url, until="009_list_indexes")
    legacy.forget()
    yield fresh_url
    legacy.forget()  # the next test's database has no legacy tables


def load(url: str) -> None:
    """Rows in every table 010 partitions."""
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO endpoints (id, url, event_types, secret) VALUES "
                     "('ep_conv', 'https://example.com/h', '{*}', 'whsec_eA==')")
        conn.execute(_EVENTS, {"n": LEGACY, "inbound": INBOUND})
        for statement in _CHILDREN:
            conn.execute(statement)


def counts(url: str, suffix: str = "") -> dict[str, int]:
    tables = ("events", "message_status_history", "inbound_messages", "deliveries",
              "delivery_attempts")
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}{suffix}").fetchone()[0]
                for t in tables}


def test_conversion_moves_every_row_once_while_callbacks_are_applied(legacy_url, make_rt):
    rt = make_rt(DATABASE_URL=legacy_url)  # first: making it empties every table
    load(legacy_url)
    before = counts(legacy_url)
    assert before == {"events": LEGACY, "message_status_history": LEGACY,
                      "inbound_messages": INBOUND, "deliveries": LEGACY,
                      "delivery_attempts": LEGACY}
    with psycopg.connect(legacy_url) as conn:
        max_seq = conn.execute("SELECT max(seq) FROM deliveries").fetchone()[0]
    assert "010_partitions" in migrate(legacy_url)
    assert counts(legacy_url, "_legacy") == before
    assert counts(legacy_url)["events"] == 0
    with psycopg.connect(legacy_url) as conn:
        # migrate made the partitions back to the retention cutoff, before any worker
        # writes: the conversion need not make them while drains run.
        assert partitions.partitions(conn, "deliveries")[0].lower <= CUTOFF + timedelta(days=1)

    # While the conversion runs: duplicates of legacy events (moved or not yet) and new
    # callbacks, drained in another thread.
    # A retry carries its first delivery's time.
    with psycopg.connect(legacy_url) as conn:
        times = dict(conn.execute("SELECT message_id, occurred_at FROM events_legacy"))
    dupes = [receipt("SENT", message_id=f"conv-{i}", sentAt=z(times[f"conv-{i}"]))
             for i in range(101, LEGACY + 1, 7)]
    fresh = [receipt("SENT", message_id=f"new-{i}") for i in range(60)]
    stop = threading.Event()
    applied: list[int] = []

    def drain() -> None:
        for body in [b for pair in zip(dupes, fresh, strict=False) for b in pair] + \
                dupes[len(fresh):]:
            enqueue(rt, body)
            applied.append(drain_all(rt))
        stop.set()

    thread = threading.Thread(target=drain)
    thread.start()
    moved = 0
    with psycopg.connect(legacy_url, autocommit=True) as conn:
        while True:
            step = convert.step(conn, CUTOFF, 1, DEDUPE_DAYS, budget_seconds=0.01, batch=100)
            moved += step.events
            if step.finished:
                break
    thread.join(120)
    assert stop.is_set()
    assert moved == LEGACY and sum(applied) == len(fresh)

    after = counts(legacy_url)
    assert after == {"events": LEGACY + len(fresh), "message_status_history": LEGACY + len(fresh),
                     "inbound_messages": INBOUND, "deliveries": LEGACY + len(fresh),
                     "delivery_attempts": LEGACY}
    with psycopg.connect(legacy_url) as conn:
        assert conn.execute("SELECT to_regclass('events_legacy')").fetchone()[0] is None
        # Into partitions made back to the cutoff first, not into the defaults.
        # (The new callbacks carry the fixtures' 2025 time: those are in the defaults.)
        assert conn.execute("SELECT count(*) FROM events_default WHERE id <= %s",
                            (LEGACY,)).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM deliveries_default WHERE event_id <= %s",
                            (LEGACY,)).fetchone()[0] == 0
        # Ids and order kept; new deliveries come after the moved ones.
        assert conn.execute("SELECT count(DISTINCT id), min(id) FROM events").fetchone() == (
            LEGACY + len(fresh), 1)
        assert conn.execute("SELECT min(seq) FROM deliveries d JOIN events e ON "
                            "e.id = d.event_id WHERE e.message_id LIKE 'new-%'"
                            ).fetchone()[0] > max_seq
        # The deliveries still to send were moved and can be claimed.
        assert conn.execute("SELECT count(*) FROM deliveries WHERE status = 'pending' "
                            "AND event_id <= %s", (LEGACY,)).fetchone()[0] == LEGACY // 80
    # A duplicate of a moved event is still a duplicate.
    enqueue(rt, receipt("SENT", message_id="conv-3", sentAt=z(times["conv-3"])))
    assert drain_all(rt) == 0


def test_a_drain_that_still_thinks_the_legacy_tables_exist_carries_on(rt, caplog):
    # The conversion dropped them in another process; this one read that they exist.
    with rt.pool.connection() as conn:
        conn.execute("CREATE TABLE events_legacy (source text, dedupe_key text)")
    legacy.forget()
    with rt.pool.connection() as conn:
        assert legacy.legacy_present(conn)
        conn.execute("DROP TABLE events_legacy")
    try:
        enqueue(rt, receipt("SENT", message_id="after-the-drop"))
        assert drain_all(rt) == 1
        with rt.pool.connection() as conn:
            assert not legacy.legacy_present(conn)
    finally:
        legacy.forget()
    assert "isolating" not in caplog.text  # the batch went through whole, once


def test_one_conversion_at_a_time(rt):
    url = rt.settings.database_url
    with psycopg.connect(url, autocommit=True) as a, psycopg.connect(url, autocommit=True) as b:
        a.execute("CREATE TABLE events_legacy (id bigint)")
        try:
            a.execute("SELECT pg_advisory_lock(%s)", (locks.CONVERT.key,))
            out = convert.step(b, CUTOFF, 1, DEDUPE_DAYS, budget_seconds=1)
            assert out.skipped and not out.finished and out.events == 0
            a.execute("SELECT pg_advisory_unlock(%s)", (locks.CONVERT.key,))
        finally:
            a.execute("DROP TABLE events_legacy")
            legacy.forget()


_ORDERED = """
INSERT INTO endpoints (id, url, event_types, secret, ordered) VALUES
    ('ep_ord', 'https://example.com/o', '{*}', 'whsec_eA==', true);
INSERT INTO events (source, dedupe_key, type, channel, message_id, status, occurred_at,
                    ingest_id, received_at)
SELECT 'kaleyra-rcs', 'e:ord-' || i, 'message.sent', 'rcs', 'M' || (i / 3), 'sent',
       now() - interval '1 hour' + i * interval '1 second', 'ing-o' || i, now()
FROM generate_series(0, 5) i;
-- Message M0: its first delivery settled, the next two held (as if the release that
-- should have followed were lost). Message M1: its first pending and due, two held.
INSERT INTO deliveries (endpoint_id, event_id, type, payload, message_key, occurred_at,
                        status, next_attempt_at)
SELECT 'ep_ord', id, type, '{}'::jsonb, 'kaleyra-rcs:' || message_id, occurred_at,
       CASE WHEN dedupe_key = 'e:ord-0' THEN 'succeeded' ELSE 'pending' END,
       CASE WHEN dedupe_key = 'e:ord-3' THEN now() END
FROM events
"""


def test_a_message_s_unsent_deliveries_move_together_and_its_first_goes(legacy_url, make_rt):
    make_rt(DATABASE_URL=legacy_url)
    with psycopg.connect(legacy_url) as conn:
        conn.execute(_ORDERED)
    migrate(legacy_url)
    with psycopg.connect(legacy_url, autocommit=True) as conn:
        # One batch of one message: all its unsent events move in it, not one.
        first = convert.step(conn, CUTOFF, 1, DEDUPE_DAYS, budget_seconds=0, batch=1)
        assert first.events >= 2  # M0 has two unsent, M1 three
        while not convert.step(conn, CUTOFF, 1, DEDUPE_DAYS, batch=1).finished:
            pass
        due = dict(conn.execute(
            "SELECT e.dedupe_key, d.next_attempt_at IS NOT NULL FROM deliveries d "
            "JOIN events e ON e.id = d.event_id WHERE d.status = 'pending'").fetchall())
    # M0's first had settled: its next goes now, the one after waits. M1 as it was.
    assert due == {"e:ord-1": True, "e:ord-2": False,
                   "e:ord-3": True, "e:ord-4": False, "e:ord-5": False}
