"""Fan-out against a real HTTP receiver, with the dispatcher driven in this process."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from standardwebhooks.webhooks import WebhookVerificationError

from shared.db.outbox import attempts, claims, enqueue
from shared.notifications import Notification
from tests.fanout.fanout_helpers import (
    AUTH,
    apply_receipts,
    body,
    client_for,
    create_endpoint,
    deliver,
    delivery_rows,
    rows,
    verify,
)
from tests.receiver import Reply
from workers import fanout


def test_every_delivery_is_signed_per_standard_webhooks(api, frt, receiver):
    one = create_endpoint(api, receiver.url("/a"))
    two = create_endpoint(api, receiver.url("/b"), event_types=["message.read"])
    apply_receipts(frt, "DELIVERED", "READ")
    deliver(frt)
    got_a, got_b = receiver.requests("/a"), receiver.requests("/b")
    assert len(got_a) == 2 and len(got_b) == 1
    for req in got_a:
        doc = verify(req, one["secret"])
        assert set(doc) == {"type", "timestamp", "data"}
        assert doc["data"]["message_id"] == "msg-1" and doc["data"]["event_id"]
        assert req.headers["content-type"] == "application/json"
        with pytest.raises(WebhookVerificationError):
            verify(req, two["secret"])
    doc = verify(got_b[0], two["secret"])
    assert doc["type"] == "message.read"
    assert doc["timestamp"] == doc["data"]["occurred_at"]
    ids = {r[0] for r in delivery_rows(frt, one["id"])}
    assert {r.headers["webhook-id"] for r in got_a} == ids
    assert all(r[1] == "succeeded" for r in delivery_rows(frt, one["id"]))


def test_an_event_applied_twice_yields_one_delivery_per_endpoint(api, frt, receiver):
    a = create_endpoint(api, receiver.url("/a"))
    b = create_endpoint(api, receiver.url("/b"))
    apply_receipts(frt, "SENT")
    apply_receipts(frt, "SENT")  # the same callback again, a later batch
    (event_id, stored, occurred_at) = rows(frt, "SELECT id, type, occurred_at FROM events")[0]
    # And the outbox write itself, repeated for the same applied event (its time is
    # the event's: the outbox is partitioned on it).
    from tests.fanout.fanout_helpers import sample_event

    note = Notification(event_id, stored, replace(sample_event(), occurred_at=occurred_at))
    with frt.pool.connection() as conn, conn.cursor() as cur:
        assert enqueue.enqueue(cur, [note]) == 0
    deliver(frt)
    assert len(delivery_rows(frt, a["id"])) == 1 and len(delivery_rows(frt, b["id"])) == 1
    assert len(receiver.requests("/a")) == 1 and len(receiver.requests("/b")) == 1


def test_retries_after_500s_then_success(api, frt, receiver):
    ep = create_endpoint(api, receiver.url("/flaky"))
    receiver.script("/flaky", Reply(500, body=b"boom"), Reply(502), Reply(200, body=b"thanks"))
    apply_receipts(frt, "READ")
    deliver(frt, until=lambda: delivery_rows(frt, ep["id"])[0][1] == "succeeded")
    got = receiver.requests("/flaky")
    assert len(got) == 3
    assert len({r.headers["webhook-id"] for r in got}) == 1  # stable across retries
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert all(g >= 0.2 * 0.8 - 0.02 for g in gaps), gaps  # the schedule, with jitter
    (delivery_id, status, attempts, _) = delivery_rows(frt, ep["id"])[0]
    assert (status, attempts) == ("succeeded", 3)
    doc = api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH).get_json()
    history = doc["attempt_history"]
    assert [h["status_code"] for h in history] == [500, 502, 200]
    assert history[0]["response_body"] == "boom" and history[0]["error"] == "HTTP 500"
    assert history[2]["response_body"] == "thanks" and history[2]["error"] is None
    assert all(h["duration_ms"] >= 0 and h["attempted_at"] for h in history)


def test_retry_after_is_honoured_for_the_delivery_and_the_endpoint(api, frt, receiver):
    ep = create_endpoint(api, receiver.url("/busy"))
    receiver.script("/busy", Reply(429, headers={"Retry-After": "1"}))
    apply_receipts(frt, "SENT")
    deliver(frt, until=lambda: len(receiver.requests("/busy")) == 1)
    paused = api.get(f"/v1/endpoints/{ep['id']}", headers=AUTH).get_json()
    assert paused["health"]["paused_until"] is not None
    apply_receipts(frt, "READ")  # a second delivery to the throttled endpoint waits too
    deliver(frt, until=lambda: len(receiver.requests("/busy")) == 3)
    first, *later = receiver.requests("/busy")
    assert all(r.at - first.at >= 0.95 for r in later), [r.at - first.at for r in later]
    deliver(frt, until=lambda: {r[1] for r in delivery_rows(frt, ep["id"])} == {"succeeded"})


def test_410_disables_the_endpoint_and_the_api_shows_it(api, frt, receiver):
    ep = create_endpoint(api, receiver.url("/gone"))
    receiver.default("/gone", Reply(410))
    apply_receipts(frt, "SENT")
    deliver(frt, until=lambda: receiver.requests("/gone"))
    doc = deliver(frt, until=lambda: _disabled(api, ep["id"]))
    assert "410" in doc["disabled_reason"] and doc["disabled_at"]
    apply_receipts(frt, "READ", "DELIVERED")
    deliver(frt)
    assert len(receiver.requests("/gone")) == 1  # nothing more goes to it
    assert len(delivery_rows(frt, ep["id"])) == 1  # and disabled endpoints get no new rows
    # Re-enabled, it starts afresh: the pending delivery goes.
    receiver.default("/gone", Reply(200))
    resp = api.patch(f"/v1/endpoints/{ep['id']}", json={"enabled": True}, headers=AUTH)
    assert resp.get_json()["enabled"] and resp.get_json()["disabled_reason"] is None
    deliver(frt, until=lambda: delivery_rows(frt, ep["id"])[0][1] == "succeeded")


def _disabled(client, endpoint_id):
    doc = client.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH).get_json()
    return None if doc["enabled"] else doc


def test_a_timeout_is_recorded_and_retried(fast_rt, receiver):
    rt = fast_rt(HOOKLINE_DELIVERY_TIMEOUT="0.5")
    api = client_for(rt)
    ep = create_endpoint(api, receiver.url("/slow"))
    receiver.script("/slow", Reply(hang=True))
    apply_receipts(rt, "SENT")
    deliver(rt, until=lambda: delivery_rows(rt, ep["id"])[0][1] == "succeeded")
    (delivery_id, _, attempts, _) = delivery_rows(rt, ep["id"])[0]
    history = api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH).get_json()
    first = history["attempt_history"][0]
    assert attempts == 2 and first["status_code"] is None
    assert "timed out" in first["error"] and 450 <= first["duration_ms"] < 1500


def test_an_answer_dripping_in_past_the_timeout_is_a_timeout(fast_rt, receiver):
    rt = fast_rt(HOOKLINE_DELIVERY_TIMEOUT="0.5")
    api = client_for(rt)
    ep = create_endpoint(api, receiver.url("/drip"))
    # Each byte well within the read timeout, the whole answer far beyond it.
    receiver.script("/drip", Reply(200, body=b"0123456789", drip=0.2))
    apply_receipts(rt, "SENT")
    deliver(rt, until=lambda: delivery_rows(rt, ep["id"])[0][1] == "succeeded")
    (delivery_id, _, attempts, _) = delivery_rows(rt, ep["id"])[0]
    first = api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH).get_json()[
        "attempt_history"][0]
    assert attempts == 2 and "timed out" in first["error"], first
    assert first["duration_ms"] < 900


def test_dead_after_the_schedule_then_replayed(fast_rt, receiver):
    rt = fast_rt(HOOKLINE_RETRY_SCHEDULE="0.05,0.05")
    api = client_for(rt)
    ep = create_endpoint(api, receiver.url("/down"))
    receiver.default("/down", Reply(500))
    started = datetime.now(UTC) - timedelta(seconds=5)
    apply_receipts(rt, "SENT")
    deliver(rt, until=lambda: delivery_rows(rt, ep["id"])[0][1] == "dead")
    assert len(receiver.requests("/down")) == 3  # first attempt + one per schedule step
    dead = api.get(f"/v1/endpoints/{ep['id']}/deliveries?status=dead", headers=AUTH).get_json()
    assert [d["status"] for d in dead["items"]] == ["dead"]
    assert dead["items"][0]["next_attempt_at"] is None

    receiver.default("/down", Reply(200))
    resp = api.post(f"/v1/endpoints/{ep['id']}/replay", headers=AUTH,
                    json={"since": started.isoformat(), "status": "dead"})
    assert resp.status_code == 202 and resp.get_json()["queued"] == 1
    deliver(rt, until=lambda: delivery_rows(rt, ep["id"])[0][1] == "succeeded")
    delivery_id = dead["items"][0]["id"]
    doc = api.get(f"/v1/deliveries/{delivery_id}", headers=AUTH).get_json()
    assert len(doc["attempt_history"]) == 4 and doc["requeued_at"]
    # Same webhook-id on the replay: receivers can deduplicate.
    assert receiver.requests("/down")[-1].headers["webhook-id"] == delivery_id


def test_manual_retry_of_one_delivery(api, frt, receiver):
    ep = create_endpoint(api, receiver.url("/r"))
    apply_receipts(frt, "SENT")
    deliver(frt)
    (delivery_id, status, _, _) = delivery_rows(frt, ep["id"])[0]
    assert status == "succeeded"
    assert api.post(f"/v1/deliveries/{delivery_id}/retry", headers=AUTH).status_code == 202
    deliver(frt)
    assert len(receiver.requests("/r")) == 2
    assert api.post("/v1/deliveries/msg_nope/retry", headers=AUTH).status_code == 404


def test_ordered_endpoint_keeps_the_order_of_one_message(api, frt, receiver):
    ordered = create_endpoint(api, receiver.url("/ordered"), ordered=True)
    create_endpoint(api, receiver.url("/free"))
    receiver.script("/ordered", Reply(500), Reply(500))  # the earliest event fails twice
    # Applied in reverse order of occurrence, in one batch.
    apply_receipts(frt, "READ", "DELIVERED", "SENT", offsets=(9, 4, 1))
    deliver(frt, until=lambda: {r[1] for r in delivery_rows(frt, ordered["id"])}
            == {"succeeded"})
    got = [body(r)["type"] for r in receiver.requests("/ordered")]
    assert got == ["message.sent"] * 3 + ["message.delivered", "message.read"]
    # The unordered endpoint did not wait for anything.
    assert len(receiver.requests("/free")) == 3
    first_free = receiver.requests("/free")[-1].at
    assert first_free < receiver.requests("/ordered")[-1].at


@pytest.mark.parametrize("batches", [[("SENT", "DELIVERED", "READ")],
                                     [("READ",), ("DELIVERED",), ("SENT",)]],
                         ids=["one batch", "newest first, a batch each"])
def test_ordered_endpoint_sends_equal_time_receipts_by_status_rank(api, frt, receiver, batches):
    # Kaleyra.io stamps receipts to the second. Ordered by insertion, one batch went
    # out by dedupe key (delivered, read, sent) and a receiver applying them in order
    # ended on "sent" while the message was read.
    ordered = create_endpoint(api, receiver.url("/ordered"), ordered=True)
    for kinds in batches:
        apply_receipts(frt, *kinds, offsets=(5.0,) * len(kinds))
    deliver(frt, until=lambda: {r[1] for r in delivery_rows(frt, ordered["id"])}
            == {"succeeded"})
    got = [body(r)["type"] for r in receiver.requests("/ordered")]
    assert got == ["message.sent", "message.delivered", "message.read"]


def test_ordered_endpoint_keeps_one_partys_consent_transitions_in_order(api, frt, receiver):
    from shared.model import Consent
    from tests.consent_support import apply, consent_event

    ep = create_endpoint(api, receiver.url("/ordered"), ordered=True,
                         event_types=["subscription.opted_out", "subscription.opted_in"])
    receiver.script("/ordered", Reply(500))  # the first to go fails once
    apply(frt, [consent_event(Consent.OPT_OUT, 0, "stop", keyword=True)])
    apply(frt, [consent_event(Consent.OPT_IN, 10, "start", keyword=True)])
    deliver(frt, until=lambda: {r[1] for r in delivery_rows(frt, ep["id"])} == {"succeeded"})
    got = [body(r)["type"] for r in receiver.requests("/ordered")]
    assert got == ["subscription.opted_out"] * 2 + ["subscription.opted_in"]


def test_ordered_endpoint_sends_nothing_of_a_message_while_one_is_in_flight(api, frt, receiver):
    # SENT arriving after DELIVERED (same second) orders before it: it must still
    # wait while DELIVERED is being sent, or both are in flight at once.
    create_endpoint(api, receiver.url("/ordered"), ordered=True)
    rules = claims.ClaimRules(8, 50, lease=60)
    apply_receipts(frt, "DELIVERED", offsets=(5.0,))
    with frt.pool.connection() as conn:
        assert len(claims.claim(conn, 10, rules)) == 1
    apply_receipts(frt, "SENT", offsets=(5.0,))
    with frt.pool.connection() as conn:
        assert claims.claim(conn, 10, rules) == []


def test_a_slow_endpoint_does_not_delay_a_fast_one(fast_rt, receiver):
    rt = fast_rt(HOOKLINE_ENDPOINT_CONCURRENCY="2", HOOKLINE_DELIVERY_TIMEOUT="5")
    api = client_for(rt)
    create_endpoint(api, receiver.url("/slow"))
    fast = create_endpoint(api, receiver.url("/fast"))
    receiver.default("/slow", Reply(delay=1.5))
    for i in range(10):
        apply_receipts(rt, "SENT", message_id=f"m{i}")
    started = time.monotonic()
    deliver(rt, until=lambda: len(receiver.requests("/fast")) == 10, budget=0.1)
    fast_done = time.monotonic() - started
    assert fast_done < 0.5, fast_done
    assert len(receiver.requests("/slow")) <= 2  # the cap: two at a time
    deliver(rt, until=lambda: {r[1] for r in delivery_rows(rt, fast["id"])} == {"succeeded"})


def test_breaker_pauses_a_failing_endpoint_and_probes_one_at_a_time(fast_rt, receiver):
    rt = fast_rt(HOOKLINE_BREAKER_FAILURES="3", HOOKLINE_BREAKER_COOLDOWN="0.6",
                 HOOKLINE_ENDPOINT_CONCURRENCY="1", HOOKLINE_RETRY_SCHEDULE="0.05,0.05,0.05")
    api = client_for(rt)
    ep = create_endpoint(api, receiver.url("/sick"))
    receiver.default("/sick", Reply(500))
    for i in range(5):
        apply_receipts(rt, "SENT", message_id=f"m{i}")
    deliver(rt, until=lambda: client_health(api, ep["id"])["paused_until"])
    health = client_health(api, ep["id"])
    assert health["consecutive_failures"] >= 3
    time.sleep(0.1)  # an attempt in flight when it tripped lands
    n = len(receiver.requests("/sick"))
    deliver(rt, until=lambda: len(receiver.requests("/sick")) > n)
    before, probe = receiver.requests("/sick")[n - 1:n + 1]
    assert probe.at - before.at >= 0.5  # nothing went during the cool-down
    receiver.default("/sick", Reply(200))  # it recovers: the next probe closes the breaker
    deliver(rt, until=lambda: sum(r[1] == "succeeded" for r in delivery_rows(rt, ep["id"]))
            == 5, timeout=15)
    health = client_health(api, ep["id"])
    assert health["consecutive_failures"] == 0 and health["paused_until"] is None


def client_health(client, endpoint_id):
    return client.get(f"/v1/endpoints/{endpoint_id}", headers=AUTH).get_json()["health"]


def test_an_endpoint_failing_for_days_is_disabled(fast_rt, receiver):
    rt = fast_rt(HOOKLINE_ENDPOINT_DISABLE_AFTER_DAYS="5")
    api = client_for(rt)
    ep = create_endpoint(api, receiver.url("/long-dead"))
    receiver.default("/long-dead", Reply(503))
    apply_receipts(rt, "SENT")
    deliver(rt, until=lambda: receiver.requests("/long-dead"))
    assert api.get(f"/v1/endpoints/{ep['id']}", headers=AUTH).get_json()["enabled"]
    # It has been failing since six days ago (and every attempt since has failed).
    with rt.pool.connection() as conn:
        conn.execute("UPDATE endpoints SET failing_since = now() - interval '6 days'")
    doc = deliver(rt, until=lambda: _disabled(api, ep["id"]))
    assert doc["disabled_reason"].startswith("failing continuously since")


def test_rotation_signs_with_both_secrets_during_the_overlap(api, frt, receiver):
    ep = create_endpoint(api, receiver.url("/rot"))
    resp = api.post(f"/v1/endpoints/{ep['id']}/rotate-secret", headers=AUTH)
    new = resp.get_json()
    assert new["secret"].startswith("whsec_") and new["secret"] != ep["secret"]
    assert new["previous_secret_signs_until"]
    apply_receipts(frt, "SENT")
    deliver(frt)
    req = receiver.requests("/rot")[0]
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    verify(req, ep["secret"])
    verify(req, new["secret"])
    # After the overlap only the new secret signs.
    with frt.pool.connection() as conn:
        conn.execute("UPDATE endpoints SET previous_secret_expires_at = now() - interval '1s'")
    apply_receipts(frt, "READ")
    deliver(frt)
    req = receiver.requests("/rot")[1]
    verify(req, new["secret"])
    with pytest.raises(WebhookVerificationError):
        verify(req, ep["secret"])


def test_a_dead_senders_claim_expires_and_the_delivery_goes_again(frt, api, receiver):
    ep = create_endpoint(api, receiver.url("/again"))
    apply_receipts(frt, "SENT")
    with frt.pool.connection() as conn:
        # A worker claims it and is killed before sending anything.
        lost = claims.claim(conn, 10, claims.ClaimRules(8, 50, lease=0.3))
    assert len(lost) == 1
    deliver(frt)
    assert receiver.requests("/again") == []  # still leased
    time.sleep(0.35)
    deliver(frt, until=lambda: delivery_rows(frt, ep["id"])[0][1] == "succeeded")
    # The dead worker's late result, if it ever came, would change nothing.
    late = attempts.Result(lost[0].id, ep["id"], lost[0].token, datetime.now(UTC), 1,
                             ok=False, error="late")
    with frt.pool.connection() as conn:
        rec = attempts.record(conn, [late], [0.2], _rules())
    assert rec.statuses == {}
    assert delivery_rows(frt, ep["id"])[0][1:3] == ("succeeded", 1)


def _rules():
    from shared.db.endpoints import HealthRules

    return HealthRules(50, 1.0, 86400.0)


def test_endpoint_filters_and_event_types_select_deliveries(api, frt, receiver):
    create_endpoint(api, receiver.url("/rcs"), filter={"source": "kaleyra-rcs"})
    create_endpoint(api, receiver.url("/other"), filter={"source": ["comapi"]})
    create_endpoint(api, receiver.url("/reads"), event_types=["message.read"])
    apply_receipts(frt, "SENT", "READ")
    deliver(frt)
    assert len(receiver.requests("/rcs")) == 2
    assert receiver.requests("/other") == []
    assert [body(r)["type"] for r in receiver.requests("/reads")] == ["message.read"]


def test_the_payload_is_the_normalised_event(api, frt, receiver):
    ep = create_endpoint(api, receiver.url("/p"))
    apply_receipts(frt, "DELIVERED")
    deliver(frt)
    doc = verify(receiver.requests("/p")[0], ep["secret"])
    data = doc["data"]
    assert data["type"] == "message.delivered" and data["status"] == "delivered"
    assert data["source"] == "kaleyra-rcs" and data["channel"]
    assert data["occurred_at"].endswith("+00:00")
    (stored,) = rows(frt, "SELECT payload FROM deliveries")[0]
    assert orjson.loads(receiver.requests("/p")[0].body) == stored


def test_a_result_postgresql_refuses_is_recorded_on_its_own(api, frt, receiver):
    # One unstorable result (here a NaN Retry-After) sank its whole batch of up to
    # 500 before: none recorded, every one sent again after its lease, for ever.
    good = create_endpoint(api, receiver.url("/good"))
    bad = create_endpoint(api, receiver.url("/bad"))
    apply_receipts(frt, "SENT")
    with frt.pool.connection() as conn:
        claimed = {c.endpoint_id: c for c in claims.claim(
            conn, 10, claims.ClaimRules(8, 50, lease=60))}
    now = datetime.now(UTC)
    c_good, c_bad = claimed[good["id"]], claimed[bad["id"]]
    results = [
        attempts.Result(c_good.id, good["id"], c_good.token, now, 3, ok=True, status_code=200),
        attempts.Result(c_bad.id, bad["id"], c_bad.token, now, 3, ok=False, status_code=503,
                          error="HTTP 503", retry_after=float("nan")),
    ]
    fanout.dispatcher_for(frt)._write(results)
    assert delivery_rows(frt, good["id"])[0][1:3] == ("succeeded", 1)
    assert delivery_rows(frt, bad["id"])[0][1:3] == ("failed", 1)
    [(error,)] = rows(frt, "SELECT error FROM delivery_attempts WHERE delivery_id = %s",
                      c_bad.id)
    assert "could not be stored" in error


def test_an_undecryptable_secret_fails_its_own_deliveries_only(fast_rt, receiver):
    # An endpoint saved under another HOOKLINE_SECRET_KEY (e.g. mid key change):
    # opening its secret raised after the claim, stranding everyone's deliveries.
    other = fast_rt(HOOKLINE_SECRET_KEY="another-key-0123456789abcdef")
    stranger = create_endpoint(client_for(other), receiver.url("/stranger"))
    rt = fast_rt()
    ours = create_endpoint(client_for(rt), receiver.url("/ours"))
    apply_receipts(rt, "SENT")
    deliver(rt, until=lambda: delivery_rows(rt, stranger["id"])[0][2] >= 1)
    deliver(rt, until=lambda: delivery_rows(rt, ours["id"])[0][1] == "succeeded")
    assert receiver.requests("/stranger") == []
    [(error,)] = rows(rt, "SELECT last_error FROM deliveries WHERE endpoint_id = %s",
                      stranger["id"])
    assert error.startswith("cannot sign")


def test_deleting_an_endpoint_stops_what_is_queued_for_it(fast_rt, receiver):
    rt = fast_rt(HOOKLINE_ENDPOINT_CONCURRENCY="1")
    api = client_for(rt)
    ep = create_endpoint(api, receiver.url("/doomed"))
    receiver.default("/doomed", Reply(delay=0.3))
    for i in range(6):
        apply_receipts(rt, "SENT", message_id=f"m{i}")
    fanout.dispatch(rt, budget=0.05)  # all six claimed into its lane, one in flight
    assert api.delete(f"/v1/endpoints/{ep['id']}", headers=AUTH).status_code == 204
    assert fanout.dispatcher_for(rt).flush(10)
    # What was in flight, and at most the one taken before its result was recorded.
    assert len(receiver.requests("/doomed")) <= 2


def test_healthy_but_slow_endpoints_cannot_starve_the_others(fast_rt, receiver):
    # As many slow endpoints as threads / cap: before, they held every sending thread
    # and every claim this process may hold, and the fast ones waited for their backlog.
    rt = fast_rt(HOOKLINE_DELIVERY_THREADS="4", HOOKLINE_ENDPOINT_CONCURRENCY="1",
                 HOOKLINE_DELIVERY_TIMEOUT="5")
    api = client_for(rt)
    for i in range(4):
        create_endpoint(api, receiver.url(f"/slow{i}"))
        receiver.default(f"/slow{i}", Reply(delay=1.2))
    for i in range(3):
        create_endpoint(api, receiver.url(f"/fast{i}"))
    for i in range(12):
        apply_receipts(rt, "SENT", message_id=f"m{i}")
    started = time.monotonic()
    deliver(rt, until=lambda: all(len(receiver.requests(f"/fast{i}")) == 12 for i in range(3)),
            timeout=30, budget=0.1)
    fast_done = time.monotonic() - started
    slow_sent = sum(len(receiver.requests(f"/slow{i}")) for i in range(4))
    # One round of slow answers (1.2 s) passes before they are known to be slow.
    assert fast_done < 5, (fast_done, slow_sent)
