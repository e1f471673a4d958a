"""Time partitions against the real database: deduplication across partition
boundaries, partitions made ahead taking over the default partition's rows, and the
interval setting."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from shared import config
from shared.db import partitions
from shared.db.apply import apply_batch
from shared.db.events import DEDUPE_DAYS, Incoming, rows
from shared.model import EventType, NormalisedEvent
from tests.helpers import drain_all, enqueue_at, receipt, z

NOW = datetime.now(UTC)
# A midnight inside the partitions migrate() made (two days behind to three ahead).
MIDNIGHT = partitions.start_of(NOW, 1)


def placed(rt, message_id: str) -> list[tuple[str, str]]:
    """(partition, dedupe key) of each stored event of a message."""
    with rt.pool.connection() as conn:
        return [tuple(r) for r in conn.execute(
            "SELECT tableoid::regclass::text, dedupe_key FROM events WHERE message_id = %s "
            "ORDER BY id", (message_id,))]


def test_a_retry_that_arrives_after_midnight_is_a_duplicate(rt):
    body = receipt("DELIVERED", message_id="late", sentAt=z(MIDNIGHT - timedelta(seconds=1)))
    enqueue_at(rt, body, age_days=(NOW - MIDNIGHT).total_seconds() / 86400 + 1 / 86400)
    assert drain_all(rt) == 1
    enqueue_at(rt, body, age_days=0)  # the provider's retry, received the next day
    assert drain_all(rt) == 0
    day_before = (MIDNIGHT - timedelta(days=1)).strftime("%Y%m%d")
    assert placed(rt, "late") == [(f"events_p{day_before}", "e:late-DELIVERED")]


@pytest.mark.parametrize("first", ["before", "after"])
def test_one_key_stamped_either_side_of_midnight_is_applied_once(rt, first):
    # The same eventId, stamped a second before and a second after midnight (a provider
    # that stamps a resend afresh): the two times fall in different partitions.
    before = receipt("READ", message_id="edge", sentAt=z(MIDNIGHT - timedelta(seconds=1)))
    after = receipt("READ", message_id="edge", sentAt=z(MIDNIGHT + timedelta(seconds=1)))
    for body in ([before, after] if first == "before" else [after, before]):
        enqueue_at(rt, body, age_days=0)
        drain_all(rt)  # one batch each: the second meets the first only in event_keys
    stored = placed(rt, "edge")
    assert len(stored) == 1
    day = MIDNIGHT if first == "after" else MIDNIGHT - timedelta(days=1)
    assert stored[0][0] == f"events_p{day:%Y%m%d}"


def test_one_key_further_apart_than_the_window_is_two_events(rt):
    # The stated limit: DEDUPE_DAYS. Times two whole buckets apart share none.
    for days in (-1, DEDUPE_DAYS):
        enqueue_at(rt, receipt("SENT", message_id="far", sentAt=z(MIDNIGHT + timedelta(
            days=days, hours=12))), age_days=0)
        drain_all(rt)
    assert len(placed(rt, "far")) == 2


def _event(t: datetime) -> NormalisedEvent:
    return NormalisedEvent(type=EventType.MESSAGE_SENT.value, source="kaleyra-rcs",
                           channel="rcs", occurred_at=t, dedupe_key="e:race-SENT",
                           message_id="race", status="sent", provider_status="SENT")


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_concurrent_duplicates_across_midnight_apply_once(rt, outcome):
    """Two workers apply the two sides at once: the second waits on the first's key
    and is a duplicate if it committed, new if it rolled back."""
    url = rt.settings.database_url
    first = _event(MIDNIGHT - timedelta(milliseconds=1))
    second = _event(MIDNIGHT + timedelta(milliseconds=1))
    result: dict[str, int] = {}
    with psycopg.connect(url) as a, psycopg.connect(url) as b:
        a_new = apply_batch(a, rows([Incoming(first, {}, NOW)]), []).stored
        assert len(a_new) == 1  # applied, not committed

        def other() -> None:
            result["new"] = len(apply_batch(b, rows([Incoming(second, {}, NOW)]), []).stored)
            b.commit()

        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), "the second insert must wait for the first's key"
        a.commit() if outcome == "commit" else a.rollback()
        thread.join(10)
    assert result["new"] == (0 if outcome == "commit" else 1)
    assert len(placed(rt, "race")) == 1


def test_a_partition_made_later_takes_over_the_default_partitions_rows(rt):
    far = NOW + timedelta(days=20)  # a provider clock weeks ahead: no partition yet
    body = receipt("SENT", message_id="ahead", sentAt=z(far))
    enqueue_at(rt, body, age_days=0)
    assert drain_all(rt) == 1
    assert placed(rt, "ahead")[0][0] == "events_default"
    with psycopg.connect(rt.settings.database_url, autocommit=True) as conn:
        made = partitions.ensure(conn, now=far)
        assert f"events_p{far:%Y%m%d}" in made
        left = conn.execute("SELECT count(*) FROM event_keys_default").fetchone()[0]
    assert placed(rt, "ahead")[0][0] == f"events_p{far:%Y%m%d}"
    assert left == 0  # both of its key buckets moved too
    enqueue_at(rt, body, age_days=0)
    assert drain_all(rt) == 0  # and still dedupe it
    with psycopg.connect(rt.settings.database_url, autocommit=True) as conn:
        assert partitions.ensure(conn, now=far) == []  # nothing twice


def test_weekly_partitions_are_aligned_and_named_by_their_first_day(rt):
    with psycopg.connect(rt.settings.database_url, autocommit=True) as conn:
        later = NOW + timedelta(days=60)
        partitions.ensure(conn, now=later, interval_days=7, ahead_days=7)
        weekly = [p for p in partitions.partitions(conn, "events")
                  if p.lower > NOW + timedelta(days=50)]
    assert weekly and all(p.upper - p.lower == timedelta(days=7) for p in weekly)
    assert all(p.lower == partitions.start_of(p.lower, 7) for p in weekly)
    assert all(p.name == f"events_p{p.lower:%Y%m%d}" for p in weekly)


@pytest.mark.parametrize(("raw", "days"), [(None, 1), ("", 1), ("day", 1), ("week", 7),
                                           ("3 days", 3), ("14d", 14), ("1 day", 1)])
def test_the_partition_interval_setting(raw, days):
    env = {} if raw is None else {"HOOKLINE_PARTITION_INTERVAL": raw}
    assert config.partition_interval(env) == days


@pytest.mark.parametrize("raw", ["0", "month", "1.5 days", "-2"])
def test_a_bad_partition_interval_names_the_variable(raw):
    with pytest.raises(config.ConfigError, match="HOOKLINE_PARTITION_INTERVAL"):
        config.partition_interval({"HOOKLINE_PARTITION_INTERVAL": raw})


def test_a_drop_whose_lock_stays_busy_is_left_for_the_next_run(rt, monkeypatch):
    monkeypatch.setattr(partitions, "LOCK_TRIES", 2)
    monkeypatch.setattr(partitions, "LOCK_PAUSE_SECONDS", 0.01)
    old = NOW - timedelta(days=40)
    name = f"events_p{partitions.start_of(old, 1):%Y%m%d}"
    url = rt.settings.database_url
    with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url) as reader:
        partitions.ensure(conn, now=old)
        reader.execute("SELECT count(*) FROM events")  # a long read holds its lock
        started = time.monotonic()
        out = partitions.drop_expired(conn, NOW - timedelta(days=30))
        # Each try waited LOCK_TIMEOUT at most: drains queued behind it no longer.
        assert time.monotonic() - started < 2 * 0.2 * len(partitions.TABLES) + 2
        assert name not in out.partitions
        assert name in {p.name for p in partitions.partitions(conn, "events")}
        reader.rollback()
        assert name in partitions.drop_expired(conn, NOW - timedelta(days=30)).partitions


def test_two_ensures_at_once_make_each_partition_once(rt):
    far = NOW + timedelta(days=100)
    made: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(rt.settings.database_url, autocommit=True) as conn:
                made.append(partitions.ensure(conn, now=far))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    first, second = sorted(made, key=len)
    assert first == [] and f"events_p{far:%Y%m%d}" in second


def test_a_batch_routed_to_the_default_as_a_partition_is_attached_is_retried(rt, caplog):
    """ensure() locks the default partition, attaches a new one and commits; a batch that
    routed a row for that range to the default meanwhile fails the default's new
    constraint, and is tried again whole (not isolated envelope by envelope)."""
    from workers import pipeline

    later = NOW + timedelta(days=45)
    lower = partitions.start_of(later, 1)
    enqueue_at(rt, receipt("SENT", message_id="routed", sentAt=z(later)), age_days=0)
    with psycopg.connect(rt.settings.database_url) as a:
        a.execute("LOCK TABLE event_keys_default, events_default IN ACCESS EXCLUSIVE MODE")
        applied: list[int] = []
        thread = threading.Thread(target=lambda: applied.append(drain_all(rt)))
        thread.start()
        time.sleep(0.5)  # the drain's insert has routed its key row and waits on the lock
        for parent in ("event_keys", "events"):
            partitions._create(a, parent, partitions.COLUMN[parent],
                               partitions.name_for(parent, lower), lower,
                               lower + timedelta(days=1))
        a.commit()
        thread.join(30)
    assert applied == [1]
    assert placed(rt, "routed")[0][0] == f"events_p{lower:%Y%m%d}"
    assert "lost a race" in caplog.text and "isolating" not in caplog.text
    assert pipeline.RACE_RETRIES >= 2
