"""The lock context manager (shared.db.locks.held) and the retry helper
(shared.retry.run_with_retries) that the migrations, partitions, retention, the
conversion, the recorder and the drain share."""

from __future__ import annotations

import threading

import psycopg
import pytest

from shared import retry
from shared.db import locks

PROBE = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND pid = %s"


def _holds(conn: psycopg.Connection, by: psycopg.Connection, lock: locks.Lock) -> bool:
    return conn.execute(PROBE, (lock.key, by.info.backend_pid)).fetchone()[0] == 1


def test_held_takes_the_lock_for_the_block_and_lets_it_go(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as a, \
            psycopg.connect(database_url, autocommit=True) as b:
        for wait in ("block", "try", "poll"):
            with locks.held(a, locks.CONVERT, wait=wait) as took:
                assert took and _holds(b, a, locks.CONVERT)
            assert not _holds(b, a, locks.CONVERT)
        with pytest.raises(RuntimeError), locks.held(a, locks.CONVERT):
            raise RuntimeError("the block failed")
        assert not _holds(b, a, locks.CONVERT)  # let go on the way out of a failure too


def test_try_does_nothing_while_another_holds_it_and_poll_waits(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as a, \
            psycopg.connect(database_url, autocommit=True) as b:
        with locks.held(a, locks.RETENTION, wait="try") as took:
            assert took
            with locks.held(b, locks.RETENTION, wait="try") as second:
                assert not second
            got: list[bool] = []
            waiter = threading.Thread(target=lambda: got.append(_poll(database_url)))
            waiter.start()
            waiter.join(0.3)
            assert waiter.is_alive() and got == []  # polling while a holds it
        waiter.join(5)
        assert got == [True]
        assert a.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                         "AND objid = %s", (locks.RETENTION.key,)).fetchone()[0] == 0


def _poll(url: str) -> bool:
    with psycopg.connect(url, autocommit=True) as c, \
            locks.held(c, locks.RETENTION, wait="poll", poll_seconds=0.02) as took:
        return took


def test_transaction_locks_are_not_held_as_session_locks(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as a, pytest.raises(ValueError):
        locks.held(a, locks.CLAIM).__enter__()


def test_run_with_retries_tries_again_only_what_the_predicate_allows(monkeypatch) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(retry.time, "sleep", pauses.append)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("busy")
        return "done"

    seen: list[int] = []
    assert retry.run_with_retries(flaky, lambda e: isinstance(e, TimeoutError), [0.1, 0.2, 0.4],
                                  on_retry=lambda n, e: seen.append(n)) == "done"
    assert (len(calls), pauses, seen) == (3, [0.1, 0.2], [1, 2])

    calls.clear()
    pauses.clear()
    with pytest.raises(TimeoutError):  # the schedule runs out: the last error goes up
        retry.run_with_retries(flaky, lambda e: True, [0.5])
    assert (len(calls), pauses) == (2, [0.5])

    calls.clear()
    with pytest.raises(TimeoutError):  # not worth retrying: no second try
        retry.run_with_retries(flaky, lambda e: False, [0.5, 0.5])
    assert len(calls) == 1
