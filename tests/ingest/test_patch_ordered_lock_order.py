"""Suspected in issue 22, confirmed: `PATCH ordered=false` took the endpoint's row, then
the order lock (to let held deliveries go); a delivery's record takes the order lock,
then the endpoint's row (its health). Interleaved, PostgreSQL found a deadlock and
failed one of them. The PATCH now takes the order lock first, as every record does."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import psycopg

from shared.db.endpoints import HealthRules
from shared.db.outbox import attempts, claims
from shared.db.outbox.attempts import Result
from tests.fanout.fanout_helpers import AUTH, apply_receipts, create_endpoint
from tests.procs import wait_for

RULES = claims.ClaimRules(cap=64, breaker_failures=50, lease=60)
HEALTH = HealthRules(breaker_failures=50, breaker_cooldown=30, disable_after=5 * 86400)


def _waiting(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock'").fetchone()[0]


def test_patch_ordered_false_and_a_record_at_once_do_not_deadlock(api, frt, receiver):
    url = frt.settings.database_url
    endpoint = create_endpoint(api, receiver.url("/o"), ordered=True)
    apply_receipts(frt, "SENT", "DELIVERED")  # the second waits held for the first
    with frt.pool.connection() as conn:
        claimed = claims.claim(conn, 10, RULES)
    assert [c.endpoint_id for c in claimed] == [endpoint["id"]]
    results = [Result(c.id, c.endpoint_id, c.token, datetime.now(UTC), 5, ok=True,
                      status_code=200) for c in claimed]
    outcome: dict[str, object] = {}

    def patch() -> None:
        try:
            outcome["patch"] = api.patch(f"/v1/endpoints/{endpoint['id']}",
                                         json={"ordered": False}, headers=AUTH).status_code
        except Exception as exc:  # the deadlock, reported below
            outcome["patch"] = exc

    def record() -> None:
        try:
            with frt.pool.connection() as conn:
                outcome["record"] = attempts.record(conn, results, (60.0,), HEALTH).statuses
        except Exception as exc:
            outcome["record"] = exc

    # A third transaction holds the endpoint's row, so the two queue up in the order
    # that deadlocked: the PATCH first, then the record.
    with psycopg.connect(url) as holder:
        holder.execute("SELECT 1 FROM endpoints WHERE id = %s FOR UPDATE", (endpoint["id"],))
        threads = [threading.Thread(target=patch), threading.Thread(target=record)]
        threads[0].start()
        wait_for(lambda: _waiting(url) >= 1, timeout=10)
        threads[1].start()
        wait_for(lambda: _waiting(url) >= 2, timeout=10)
        holder.commit()
    for t in threads:
        t.join(30)
    assert outcome["patch"] == 200, outcome
    assert outcome["record"] == {claimed[0].id: "succeeded"}, outcome
    with frt.pool.connection() as conn:
        held = conn.execute("SELECT count(*) FROM deliveries WHERE endpoint_id = %s "
                            "AND status = 'pending' AND next_attempt_at IS NULL",
                            (endpoint["id"],)).fetchone()[0]
    assert held == 0  # nothing left waiting on an endpoint no longer ordered
