"""Claims plan only the outbox partitions holding work (issue 25), and miss nothing
for it: work written into a partition a claim left out is claimed at once, and an
ordered message's pending predecessor there still holds its follower back."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.db import endpoints, partitions
from shared.db.outbox import claims

RULES = claims.ClaimRules(cap=64, breaker_failures=5, lease=60.0)
# Inside the partitions migrate() makes (two days behind now to three ahead), not
# today's: a range partition a claim leaves out while only today's holds work.
EARLIER = datetime.now(UTC) - timedelta(days=1, hours=12)

_ROW = """
INSERT INTO deliveries (endpoint_id, event_id, type, payload, message_key, occurred_at, rank,
                        next_attempt_at)
VALUES (%s, 1, 'message.sent', '{}', %s, %s, 0, now() - interval '1 second') RETURNING id
"""


@pytest.fixture(autouse=True)
def fresh_look(monkeypatch):
    monkeypatch.setattr(claims, "_skipped", claims.Skipped())
    # Every settled block left out, however many other tests' partitions split them
    # into (the claim keeps the two largest: its text's length).
    monkeypatch.setattr(claims, "_BLOCKS", 1000)


def _endpoint(rt, ordered: bool = False) -> str:
    with rt.pool.connection() as conn:
        return endpoints.create(conn, url="http://127.0.0.1:9/hook", event_types=["*"],
                                secret="s", ordered=ordered)["id"]


def _write(rt, endpoint_id: str, at: datetime, key: str | None = None) -> str:
    with rt.pool.connection() as conn:
        return conn.execute(_ROW, (endpoint_id, key, at)).fetchone()[0]


def _claim(rt) -> list[str]:
    with rt.pool.connection() as conn:
        return [c.id for c in claims.claim(conn, 200, RULES)]


def test_a_claim_plans_only_the_partitions_that_hold_work(rt):
    now = datetime.now(UTC)
    _write(rt, _endpoint(rt), now)
    with rt.pool.connection() as conn:
        skipped = claims.look(conn)
        kept = partitions.partitions(conn, "deliveries")
        params = dict(threshold=5, cap=64, limit=200, token=uuid.uuid4(), lease=60.0, slow=[],
                      slow_cap=0, los=list(skipped.los), his=list(skipped.his))
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + skipped.statement, params))
    today = partitions.name_for("deliveries", partitions.start_of(now, 1))
    assert len(kept) >= 5
    assert set(re.findall(r" on (deliveries_\w+)", plan)) == {today, "deliveries_default"}


def test_work_written_into_a_partition_left_out_is_claimed_at_once(rt):
    endpoint_id = _endpoint(rt)
    first = _write(rt, endpoint_id, datetime.now(UTC))
    assert _claim(rt) == [first]
    assert any(lo <= EARLIER < hi for lo, hi in zip(claims._skipped.los, claims._skipped.his,
                                                     strict=True))
    late = _write(rt, endpoint_id, EARLIER)  # a replay, a provider's backlog
    assert _claim(rt) == [late]


def test_a_predecessor_in_a_partition_left_out_holds_its_follower(rt):
    endpoint_id = _endpoint(rt, ordered=True)
    assert _claim(rt) == []  # nothing anywhere: every range partition is left out
    first = _write(rt, endpoint_id, EARLIER, key="kaleyra-rcs:m1")
    _write(rt, endpoint_id, datetime.now(UTC), key="kaleyra-rcs:m1")
    assert _claim(rt) == [first]
