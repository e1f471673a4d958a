"""`hookline purge` and `hookline replay --id` as an operator runs them, on real services."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime, timedelta

from shared import inbox
from shared.envelope import Envelope, new_id
from tests.helpers import drain_all, enqueue, receipt
from tests.procs import HOOKLINE, ROOT

DAY = 86400.0


def hookline(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([*HOOKLINE, *args], env=env, capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def _received(rt, body: bytes, age_days: float) -> None:
    env = Envelope(id=new_id(), source="kaleyra-rcs", event=None,
                   received_at=time.time() - age_days * DAY, body=body)
    inbox.push(rt.redis, env.encode())


def _stamped(message_id: str, days_ago: float) -> bytes:
    t = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat().replace("+00:00", "Z")
    return receipt("SENT", message_id=message_id, sentAt=t)


def _count(rt, sql: str) -> int:
    with rt.pool.connection() as conn:
        return conn.execute(sql).fetchone()[0]


def test_purge_runs_retention_now_by_receipt_time(rt, base_env):
    _received(rt, _stamped("old", 400), age_days=40)        # old by both clocks: goes
    _received(rt, _stamped("old-stamp", 400), age_days=1)   # received yesterday: stays
    _received(rt, _stamped("fresh", 0), age_days=0)
    drain_all(rt)
    assert _count(rt, "SELECT count(*) FROM events") == 3
    out = hookline({**base_env, "HOOKLINE_RETENTION_DAYS": "30"}, "purge")
    assert "retention: 30 days after receipt" in out.stdout
    # The old event, its two dedupe keys and its history row; nothing of the other two.
    assert "deleted 4 rows" in out.stdout
    with rt.pool.connection() as conn:
        left = {m for (m,) in conn.execute("SELECT message_id FROM events")}
    assert left == {"old-stamp", "fresh"}


def test_replay_one_letter_refuses_a_second_replay_unless_forced(rt, base_env):
    enqueue(rt, b'{"broken": ')
    drain_all(rt)
    letter_id = _count(rt, "SELECT id FROM dead_letters")
    first = hookline(base_env, "replay", "--id", str(letter_id))
    assert first.stdout.startswith(f"dead letter {letter_id} replayed as ")
    again = hookline(base_env, "replay", "--id", str(letter_id), check=False)
    assert again.returncode != 0
    assert "was replayed already" in again.stderr and "--force" in again.stderr
    assert rt.redis.llen(inbox.INBOX) == 1
    hookline(base_env, "replay", "--id", str(letter_id), "--force")
    assert rt.redis.llen(inbox.INBOX) == 2
    missing = hookline(base_env, "replay", "--id", "999999", check=False)
    assert missing.returncode != 0 and "no dead letter 999999" in missing.stderr
