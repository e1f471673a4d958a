"""Ordered endpoints hold a message's later deliveries (next_attempt_at NULL) until
the one before settles: released exactly once, in order, never lost, and never
walked by a claim. Claims and records are driven directly, one step at a time."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from shared.db.apply import apply_batch
from shared.db.endpoints import HealthRules
from shared.db.events import Incoming, rows
from shared.db.outbox import attempts, claims, enqueue
from shared.db.outbox.attempts import Result
from shared.db.outbox.claims import Claimed
from shared.model import NormalisedEvent
from shared.notifications import Notification
from shared.runtime import Runtime
from tests.fanout.fanout_helpers import AUTH, apply_receipts, create_endpoint
from tests.helpers import T0

RULES = claims.ClaimRules(cap=64, breaker_failures=50, lease=60)
HEALTH = HealthRules(breaker_failures=50, breaker_cooldown=30, disable_after=5 * 86400)
RETRY_LATER = (60.0,)   # a failure waits a minute: the test sees it still pending
NO_RETRIES = ()         # a failure is final: dead
MIGRATION = (Path(__file__).parents[2] / "shared/db/migrations/008_held_followers.sql")


def _sql(rt: Runtime, sql: str, *params) -> list[tuple]:
    with rt.pool.connection() as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def _chain(rt: Runtime, endpoint_id: str) -> list[tuple[str, str, bool]]:
    """(type, status, held) in the endpoint's order."""
    return [(t, s, h) for t, s, h in _sql(
        rt, "SELECT type, status, next_attempt_at IS NULL FROM deliveries "
            "WHERE endpoint_id = %s ORDER BY message_key, occurred_at, rank, seq", endpoint_id)]


def _claim(rt: Runtime, limit: int = 50) -> list[Claimed]:
    with rt.pool.connection() as conn:
        return claims.claim(conn, limit, RULES)


def _types(rt: Runtime, claimed: list[Claimed]) -> list[str]:
    return [_sql(rt, "SELECT type FROM deliveries WHERE id = %s", c.id)[0][0] for c in claimed]


def _settle(rt: Runtime, claimed: list[Claimed], ok: bool = True,
            schedule: tuple[float, ...] = RETRY_LATER) -> dict[str, str]:
    results = [Result(c.id, c.endpoint_id, c.token, datetime.now(UTC), 5, ok=ok,
                      status_code=200 if ok else 500) for c in claimed]
    with rt.pool.connection() as conn:
        return attempts.record(conn, results, schedule, HEALTH).statuses


def _receipt(status: str, seconds: float, message_id: str = "msg-1",
             source: str = "kaleyra-rcs") -> NormalisedEvent:
    return NormalisedEvent(type=f"message.{status}", source=source, channel="rcs",
                           occurred_at=T0 + timedelta(seconds=seconds), status=status,
                           dedupe_key=f"{message_id}-{status}", message_id=message_id)


def test_followers_are_held_and_each_settle_lets_exactly_the_next_go(api, frt, receiver):
    ordered = create_endpoint(api, receiver.url("/o"), ordered=True)
    free = create_endpoint(api, receiver.url("/f"))
    apply_receipts(frt, "READ", "SENT", "DELIVERED", offsets=(3, 1, 2))
    assert [h for _, _, h in _chain(frt, ordered["id"])] == [False, True, True]
    assert [h for _, _, h in _chain(frt, free["id"])] == [False, False, False]
    first = [c for c in _claim(frt) if c.endpoint_id == ordered["id"]]
    assert _types(frt, first) == ["message.sent"]
    _settle(frt, first)  # succeeded: the next goes
    assert _chain(frt, ordered["id"]) == [
        ("message.sent", "succeeded", True),  # settled rows have no next attempt
        ("message.delivered", "pending", False), ("message.read", "pending", True)]
    second = _claim(frt)
    assert _types(frt, second) == ["message.delivered"]
    assert _settle(frt, second, ok=False, schedule=NO_RETRIES) == {second[0].id: "dead"}
    # A dead delivery no longer holds the others back.
    assert _chain(frt, ordered["id"])[2] == ("message.read", "pending", False)
    assert _types(frt, _claim(frt)) == ["message.read"]


def test_a_failed_attempt_keeps_what_follows_held(api, frt, receiver):
    ordered = create_endpoint(api, receiver.url("/o"), ordered=True)
    apply_receipts(frt, "SENT", "DELIVERED")
    first = _claim(frt)
    assert _settle(frt, first, ok=False) == {first[0].id: "failed"}
    assert [(s, h) for _, s, h in _chain(frt, ordered["id"])] == [
        ("failed", False), ("pending", True)]
    assert _claim(frt) == []


def test_an_earlier_event_arriving_during_a_send_goes_first_once_that_send_failed(
        api, frt, receiver):
    ordered = create_endpoint(api, receiver.url("/o"), ordered=True)
    apply_receipts(frt, "DELIVERED", offsets=(5.0,))
    in_flight = _claim(frt)
    apply_receipts(frt, "SENT", offsets=(1.0,))  # orders first; waits for the send
    assert _claim(frt) == []
    _settle(frt, in_flight, ok=False)  # DELIVERED waits for its retry; SENT may go
    assert _types(frt, _claim(frt)) == ["message.sent"]
    assert [s for _, s, _ in _chain(frt, ordered["id"])] == ["pending", "failed"]


def test_a_retried_delivery_goes_before_what_followed_it(api, frt, receiver):
    ordered = create_endpoint(api, receiver.url("/o"), ordered=True)
    apply_receipts(frt, "SENT", "DELIVERED")
    sent = _claim(frt)
    _settle(frt, sent)
    assert api.post(f"/v1/deliveries/{sent[0].id}/retry", headers=AUTH).status_code == 202
    again = _claim(frt)
    assert [c.id for c in again] == [sent[0].id]  # DELIVERED, due already, waits
    _settle(frt, again)
    assert _types(frt, _claim(frt)) == ["message.delivered"]
    assert [h for _, _, h in _chain(frt, ordered["id"])] == [True, False]


def test_replay_holds_all_but_the_first_of_each_message(api, frt, receiver):
    ordered = create_endpoint(api, receiver.url("/o"), ordered=True)
    for message_id in ("m1", "m2"):
        apply_receipts(frt, "SENT", "DELIVERED", "READ", message_id=message_id)
    sent: list[str] = []
    while batch := _claim(frt):
        sent += _types(frt, batch)
        _settle(frt, batch)
    assert len(sent) == 6
    resp = api.post(f"/v1/endpoints/{ordered['id']}/replay", headers=AUTH,
                    json={"since": "2000-01-01T00:00:00Z"})
    assert resp.get_json()["queued"] == 6
    assert [h for _, _, h in _chain(frt, ordered["id"])] == [False, True, True] * 2
    order: list[str] = []
    while batch := _claim(frt):
        assert len(batch) == 2  # one of each message at a time
        order += _types(frt, batch)
        _settle(frt, batch)
    assert order == [t for t in ("message.sent", "message.delivered", "message.read")
                     for _ in range(2)]


def test_an_endpoint_no_longer_ordered_lets_every_held_one_go(api, frt, receiver):
    ordered = create_endpoint(api, receiver.url("/o"), ordered=True)
    apply_receipts(frt, "SENT", "DELIVERED", "READ")
    resp = api.patch(f"/v1/endpoints/{ordered['id']}", json={"ordered": False}, headers=AUTH)
    assert resp.status_code == 200
    assert [h for _, _, h in _chain(frt, ordered["id"])] == [False] * 3
    assert len(_claim(frt)) == 3


def test_a_deleted_endpoints_settle_touches_no_one_else(api, frt, receiver):
    gone = create_endpoint(api, receiver.url("/gone"), ordered=True)
    kept = create_endpoint(api, receiver.url("/kept"), ordered=True)
    apply_receipts(frt, "SENT", "DELIVERED")
    claimed = _claim(frt)
    assert len(claimed) == 2
    assert api.delete(f"/v1/endpoints/{gone['id']}", headers=AUTH).status_code == 204
    statuses = _settle(frt, claimed)
    assert set(statuses) == {c.id for c in claimed if c.endpoint_id == kept["id"]}
    assert _types(frt, _claim(frt)) == ["message.delivered"]


def test_a_follower_written_while_the_one_before_settles_is_let_go(api, frt, receiver):
    # The drain writes DELIVERED held (SENT is in flight) and has not committed when
    # SENT's success is recorded: the record must see DELIVERED, or it waits for ever.
    ordered = create_endpoint(api, receiver.url("/o"), ordered=True)
    with frt.pool.connection() as conn, conn.transaction():
        apply_batch(conn, rows([Incoming(_receipt("sent", 1), {}, T0)]), [])
    sent = _claim(frt)
    recorded = threading.Event()
    with frt.pool.connection() as conn, conn.transaction():
        apply_batch(conn, rows([Incoming(_receipt("delivered", 2), {}, T0)]), [])
        t = threading.Thread(target=lambda: (_settle(frt, sent), recorded.set()))
        t.start()
        time.sleep(0.5)
        assert not recorded.is_set()  # it waits for this transaction's order lock
    t.join(10)
    assert recorded.is_set()
    assert _chain(frt, ordered["id"])[1] == ("message.delivered", "pending", False)


def test_two_claimers_at_once_never_send_two_of_one_message(api, frt, receiver):
    create_endpoint(api, receiver.url("/o"), ordered=True)
    for i in range(8):
        apply_receipts(frt, "READ", "DELIVERED", "SENT", message_id=f"m{i}",
                       offsets=(3, 2, 1))
    lock = threading.Lock()
    in_flight: set[str] = set()
    seen: dict[str, list[str]] = {}
    errors: list[str] = []

    def work() -> None:
        for _ in range(200):
            batch = _claim(frt, limit=3)
            with lock:
                for c in batch:
                    key = _sql(frt, "SELECT message_key FROM deliveries WHERE id = %s",
                               c.id)[0][0]
                    if key in in_flight:
                        errors.append(f"two of {key} at once")
                    in_flight.add(key)
                    seen.setdefault(key, []).extend(_types(frt, [c]))
            time.sleep(0.005)
            with lock:
                for c in batch:
                    in_flight.discard(_sql(frt, "SELECT message_key FROM deliveries "
                                                "WHERE id = %s", c.id)[0][0])
                _settle(frt, batch)
            if not batch and not _sql(frt, "SELECT 1 FROM deliveries WHERE status = 'pending'"):
                return

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert list(seen.values()) == [["message.sent", "message.delivered", "message.read"]] * 8


def _held_backlog(rt: Runtime, endpoint_id: str, messages: int, per_message: int) -> None:
    """Through the real outbox write: ``messages`` messages of ``per_message`` events;
    then each message's first fails and waits an hour for its retry."""
    (event_id,) = _sql(rt, "SELECT id FROM events LIMIT 1")[0]
    notes = [Notification(event_id, f"bench.{m}.{i}",
                          _receipt("delivered", i, message_id=f"m{m}", source="backlog"))
             for m in range(messages) for i in range(per_message)]
    with rt.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        enqueue.enqueue(cur, notes)
        cur.execute("UPDATE deliveries SET status = 'failed', attempts = 1, "
                    "round_attempts = 1, next_attempt_at = now() + interval '1 hour' "
                    "WHERE endpoint_id = %s AND type LIKE 'bench.%%.0'", (endpoint_id,))


def _claim_plan(rt: Runtime) -> dict:
    """The claim's plan as it ran (EXPLAIN ANALYZE runs it; rolled back)."""
    with rt.pool.connection() as conn:
        conn.execute("ANALYZE deliveries")
    params = dict(threshold=50, cap=64, limit=200, token=uuid.uuid4(), lease=60.0,
                  slow=[], slow_cap=0, los=[], his=[])
    with rt.pool.connection() as conn, conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL enable_bitmapscan = off")  # as claim() runs it
        return conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                            + claims.Skipped().statement, params).fetchone()[0][0]["Plan"]


def _nodes(node: dict) -> list[dict]:
    return [node] + [n for child in node.get("Plans", ()) for n in _nodes(child)]


def _picking(plan: dict) -> tuple[int, int]:
    """What choosing the deliveries cost (the update's index writes aside): rows the
    scans of deliveries read (kept or filtered out, every loop) and shared buffers."""
    (picked,) = [n for n in _nodes(plan) if n.get("Subplan Name") == "CTE picked"]
    rows = sum((n["Actual Rows"] + n.get("Rows Removed by Filter", 0)) * n["Actual Loops"]
               for n in _nodes(picked) if n.get("Relation Name") == "deliveries")
    return rows, picked["Shared Hit Blocks"] + picked["Shared Read Blocks"]


def test_a_claim_does_not_walk_the_held_followers(api, frt, receiver):
    backlog = create_endpoint(api, receiver.url("/backlog"), ordered=True,
                              filter={"source": "backlog"})
    create_endpoint(api, receiver.url("/live"), ordered=True, filter={"source": "kaleyra-rcs"})
    for i in range(20):
        apply_receipts(frt, "SENT", message_id=f"live-{i}")
    _held_backlog(frt, backlog["id"], messages=2000, per_message=10)
    assert _sql(frt, "SELECT count(*) FROM deliveries WHERE next_attempt_at IS NULL") == [
        (18000,)]
    plan = _claim_plan(frt)
    assert plan["Actual Rows"] == 20  # the live endpoint's
    # Before, the claim read each of the 18,000 followers (a heap row and an index
    # probe each) to drop it; now the scans read the rows they claim, no more.
    rows, buffers = _picking(plan)
    assert rows <= 2 * 20, (rows, buffers)


def test_migration_008_holds_the_followers_already_written(api, frt, receiver):
    ordered = create_endpoint(api, receiver.url("/o"), ordered=True)
    free = create_endpoint(api, receiver.url("/f"))
    apply_receipts(frt, "SENT", "DELIVERED", "READ", message_id="m1")
    apply_receipts(frt, "SENT", "DELIVERED", message_id="m2")
    in_flight = [c for c in _claim(frt) if c.endpoint_id == ordered["id"]]
    # As the code before it left them: every pending delivery due.
    _sql(frt, "UPDATE deliveries SET next_attempt_at = now() WHERE next_attempt_at IS NULL")
    # m2's DELIVERED is claimed beside its SENT (the old claim's race window).
    with frt.pool.connection() as conn:
        conn.execute("UPDATE deliveries SET claim_token = gen_random_uuid(), "
                     "next_attempt_at = now() + interval '1 minute' WHERE endpoint_id = %s "
                     "AND message_key LIKE '%%:m2' AND type = 'message.delivered'",
                     (ordered["id"],))
    for _ in range(2):  # re-runnable
        with psycopg.connect(frt.settings.require_database()) as conn:
            conn.execute(MIGRATION.read_text())
    assert [h for _, _, h in _chain(frt, ordered["id"])] == [False, True, True, False, False]
    assert [h for _, _, h in _chain(frt, free["id"])] == [False] * 5
    _settle(frt, in_flight)
    assert [h for _, _, h in _chain(frt, ordered["id"])][:3] == [True, False, True]

