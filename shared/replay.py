"""Replaying dead letters: one (the /v1 API) or many (`hookline replay`).

A replay is a new callback: a new ingest id, the original body (or a fixed
one), queued on the inbox like any other, so it goes through the whole
pipeline again. The dead letter is kept and marked as replayed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from shared import inbox
from shared.db import dead_letters
from shared.envelope import Envelope, new_id
from shared.runtime import Runtime


class AlreadyReplayed(Exception):
    """The dead letter was replayed before (its callback may have been applied since);
    replaying it again needs ``force``."""

    def __init__(self, letter_id: int, replay_ingest_id: str | None) -> None:
        super().__init__(f"dead letter {letter_id} was replayed already as {replay_ingest_id}")
        self.letter_id = letter_id
        self.replay_ingest_id = replay_ingest_id


def replay(runtime: Runtime, letter_id: int, body: bytes | None = None,
           force: bool = False) -> str | None:
    """Queue a dead letter again as a new callback; None when it does not exist. A
    letter replayed already raises AlreadyReplayed unless ``force``: its replay is a new
    ingest id, so a second one is applied again wherever the first one's dedupe keys
    are gone."""
    with runtime.pool.connection() as conn:
        letter = dead_letters.get(conn, letter_id)
        if letter is None:
            return None
        if letter["replayed_at"] is not None and not force:
            raise AlreadyReplayed(letter_id, letter["replay_ingest_id"])
        envelope = Envelope(
            id=new_id(), source=letter["source"], event=letter["event"],
            received_at=time.time(), body=body if body is not None else bytes(letter["body"]),
            headers=dict(letter["headers"] or {}), remote_addr=letter["remote_addr"],
            replay_of=letter_id, tenant_id=letter["tenant_id"],
        )
        # Marked (and the row locked) first, committed only after the push: a replay
        # racing this one waits and then finds it replayed, and a crash before the
        # commit leaves it replayable.
        if not dead_letters.mark_replayed(conn, letter_id, envelope.id, again=force):
            conn.rollback()
            raise AlreadyReplayed(letter_id, dead_letters.get(conn, letter_id)["replay_ingest_id"])
        if runtime.pusher.push(envelope.encode()):
            # This push claimed the kick flag but cannot send a drain from here;
            # left set, the flag would hold off the scheduler's tick for 2 s.
            inbox.clear_kick(runtime.redis)
    return envelope.id


@dataclass(frozen=True)
class Selection:
    """Which dead letters `hookline replay` takes: never those replayed already."""

    source: str | None = None
    reason: str | None = None  # a case-insensitive substring of the reason
    since: datetime | None = None  # received_at >= since
    until: datetime | None = None  # received_at < until
    limit: int | None = None


PAGE = 500


def count(runtime: Runtime, sel: Selection) -> int:
    with runtime.pool.connection() as conn:
        n = dead_letters.count_unreplayed(conn, sel.source, sel.reason, sel.since, sel.until)
    return n if sel.limit is None else min(n, sel.limit)


def replay_matching(runtime: Runtime, sel: Selection,
                    progress: Callable[[int], None] = lambda done: None) -> int:
    """Replay every matching dead letter, oldest first; returns how many.

    Only letters that existed when it started: a replay that fails again becomes
    a new dead letter, which this run must not pick up and replay in a loop.
    """
    with runtime.pool.connection() as conn:
        ceiling = dead_letters.max_id(conn)
    done, after = 0, 0
    while sel.limit is None or done < sel.limit:
        page = PAGE if sel.limit is None else min(PAGE, sel.limit - done)
        with runtime.pool.connection() as conn:
            ids = dead_letters.unreplayed_ids(conn, after, ceiling, page, sel.source,
                                              sel.reason, sel.since, sel.until)
        if not ids:
            break
        for letter_id in ids:
            if replay(runtime, letter_id) is not None:
                done += 1
                progress(done)
        after = ids[-1]
    return done


class ProgressBar:
    """A one-line progress bar on stderr (plain lines when it is not a terminal)."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = max(total, 0)
        self.stream = stream
        self.tty = stream.isatty()
        self._last = 0.0
        self._shown = -1

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        final = done >= self.total
        if not final and now - self._last < (0.1 if self.tty else 2.0):
            return
        self._last = now
        self._show(done)

    def _show(self, done: int) -> None:
        if done == self._shown:
            return
        self._shown = done
        share = done / self.total if self.total else 1.0
        filled = int(self.WIDTH * min(share, 1.0))
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"replay [{bar}] {done}/{self.total} ({share:.0%})"
        self.stream.write(f"\r{line}" if self.tty else f"{line}\n")
        self.stream.flush()

    def close(self, done: int) -> None:
        self._show(done)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
