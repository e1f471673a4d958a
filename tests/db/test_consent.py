"""Consent: keywords, the followed-event pairs of seed 001, and the order-independence
of subscriptions and message status, proven against the real database."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.consent import apply_keywords, keyword_consent
from shared.db.apply import apply_batch
from shared.db.events import Incoming, rows
from shared.model import (
    FAILURE_STATUSES,
    STATUS_ORDER,
    STATUS_RANK,
    Consent,
    EventType,
    NormalisedEvent,
)
from tests.consent_support import (
    FIXTURES,
    apply,
    consent_event,
    drain_notes,
    empty,
    fast_rt,  # noqa: F401 (the cheaper rt fixture)
    module_rt,  # noqa: F401
    subscription,
    transitions,
)
from tests.helpers import T0, enqueue

PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
IN, OUT = Consent.OPT_IN, Consent.OPT_OUT
MSISDN = "+447700900001"


# --- keywords (pure) ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("STOP", OUT), ("stop", OUT), (" Stop ", OUT), ("\tUnsubscribe\n", OUT),
    ("START", IN), ("start", IN), (" Subscribe", IN),
    ("STOP please", None), ("please stop", None), ("STOPP", None), ("S T O P", None),
    ("STOP.", None), ("", None), ("   ", None), (None, None), (42, None),
])
def test_whole_message_keywords(text, expected):
    found = keyword_consent(text, ("START", "SUBSCRIBE"), ("STOP", "UNSUBSCRIBE"))
    assert (found[0] if found else None) == expected


def test_keyword_lists_are_configurable_and_opt_out_wins_a_clash():
    assert keyword_consent("halt", ("GO",), ("HALT",)) == (OUT, "HALT")
    assert keyword_consent("stop", ("GO",), ("HALT",)) is None
    assert keyword_consent("both", ("BOTH",), ("BOTH",)) == (OUT, "BOTH")


def inbound(text: str, **fields: Any) -> NormalisedEvent:
    base = dict(type=EventType.MESSAGE_INBOUND.value, source="comapi", channel="sms",
                occurred_at=T0, dedupe_key="e:1", sender="447123123123", msisdn=MSISDN,
                data={"text": text})
    return NormalisedEvent(**{**base, **fields})


def test_keyword_sets_consent_but_keeps_the_inbound_type():
    event = inbound(" Stop ")
    assert apply_keywords(event, ("START",), ("STOP",))
    assert (event.type, event.consent, event.data["consent_keyword"]) == (
        "message.inbound", OUT, "STOP")
    assert event.data["text"] == " Stop "


@pytest.mark.parametrize("fields", [
    {"msisdn": None}, {"sender": None},  # e.g. Messenger: nobody to key consent on
    {"type": EventType.MESSAGE_DELIVERED.value},  # only inbound text counts
])
def test_keyword_needs_an_inbound_with_sender_and_msisdn(fields):
    event = inbound("STOP", **fields)
    assert not apply_keywords(event, ("START",), ("STOP",))
    assert event.consent is None


# --- keywords through the pipeline ----------------------------------------------------------

def comapi_sms(text: str, event_id: str) -> bytes:
    doc = orjson.loads((FIXTURES / "comapi/message_inbound__sms.json").read_bytes())
    doc["eventId"] = event_id
    doc["payload"]["body"] = text
    return orjson.dumps(doc)


@pytest.mark.parametrize(("text", "status"), [
    ("stop", "opted_out"), (" Stop ", "opted_out"), ("STOP please", None), ("Start", "opted_in"),
])
def test_keyword_from_any_source_changes_consent(rt, text, status):
    enqueue(rt, comapi_sms(text, "kw-1"), source="comapi")
    notes = drain_notes(rt)
    sub = subscription(rt, "sms", "447123123123", "447234234234")
    assert (sub["status"] if sub else None) == status
    assert transitions(notes) == ([f"subscription.{status}"] if status else [])
    assert [n.type for n in notes if n.type == "message.inbound"] == ["message.inbound"]


def test_configured_keywords_replace_the_defaults(make_rt):
    rt = make_rt(HOOKLINE_OPT_OUT_KEYWORDS="halt, arret", HOOKLINE_OPT_IN_KEYWORDS="go")
    enqueue(rt, comapi_sms("STOP", "kw-1"), source="comapi")
    drain_notes(rt)
    assert subscription(rt, "sms", "447123123123", "447234234234") is None
    enqueue(rt, comapi_sms("Arret", "kw-2"), source="comapi")
    drain_notes(rt)
    assert subscription(rt, "sms", "447123123123", "447234234234")["status"] == "opted_out"


# --- the followed-event pairs of seed 001 ---------------------------------------------------

def seed_pair(change: str, follow_up: str) -> list[bytes]:
    """The seed's event and its followed USER_MESSAGE, from one user (the samples mask
    their numbers differently)."""
    out = []
    for name in (change, follow_up):
        doc = orjson.loads((FIXTURES / f"kaleyra-rcs/mo_envelope_{name}.json").read_bytes())
        doc["data"]["from"] = "19782412456"
        out.append(orjson.dumps(doc))
    return out


@pytest.mark.parametrize(("change", "follow_up", "status"), [
    ("unsubscribe", "user_message_stop", "opted_out"),
    ("subscribe", "user_message_start", "opted_in"),
])
@pytest.mark.parametrize("arrival", ["in order, two batches", "in order, one batch",
                                     "reversed, two batches", "reversed, one batch"])
def test_followed_pair_is_one_transition_and_one_inbound(rt, change, follow_up, status,
                                                         arrival):
    bodies = seed_pair(change, follow_up)
    if arrival.startswith("reversed"):
        bodies.reverse()
    notes = []
    for body in bodies:
        enqueue(rt, body)
        if arrival.endswith("two batches"):
            notes += drain_notes(rt)
    notes += drain_notes(rt)
    assert transitions(notes) == [f"subscription.{status}"]
    assert [n.type for n in notes if not n.type.startswith("subscription.")] == [
        "message.inbound"]
    (inbound_note,) = [n for n in notes if n.type == "message.inbound"]
    assert inbound_note.event.data["text"] in ("STOP", "START")
    sub = subscription(rt, "rcs", "kio_rcs", "19782412456")
    # The follow-up is 1-4 ms later: it is the winner, with the same status.
    assert sub["status"] == status and sub["dedupe_key"] == inbound_note.event.dedupe_key
    with rt.pool.connection() as conn:
        history = conn.execute(
            "SELECT event_type, keyword, transition FROM consent_history ORDER BY occurred_at"
        ).fetchall()
        inbound_rows = conn.execute("SELECT text FROM inbound_messages").fetchall()
    assert [h[0] for h in history] == [f"subscription.{status}", "message.inbound"]
    assert sum(h[2] for h in history) == 1
    if arrival.startswith("in order"):
        assert history[0][2] is True  # the SUBSCRIBE / UNSUBSCRIBE itself made the change
    assert inbound_rows == [(inbound_note.event.data["text"],)]


def test_reapplying_changes_nothing(rt):
    for body in seed_pair("unsubscribe", "user_message_stop") * 2:
        enqueue(rt, body)
    assert len(transitions(drain_notes(rt))) == 1
    for body in seed_pair("unsubscribe", "user_message_stop"):
        enqueue(rt, body)
    assert drain_notes(rt) == []


# --- permutations: consent ------------------------------------------------------------------

def rule_key(e: NormalisedEvent) -> tuple:
    return (e.occurred_at, e.consent is OUT, f"{e.source} {e.dedupe_key}")


def status_of(e: NormalisedEvent) -> str:
    return "opted_out" if e.consent is OUT else "opted_in"


def expected_transitions(order: list[NormalisedEvent]) -> list[str]:
    """One per event that beats the winner so far with a different status."""
    winner: NormalisedEvent | None = None
    out = []
    for e in order:
        if winner is None or rule_key(e) > rule_key(winner):
            if winner is None or status_of(e) != status_of(winner):
                out.append(f"subscription.{status_of(e)}")
            winner = e
    return out


consent_events = st.lists(
    st.tuples(st.sampled_from([IN, OUT]), st.integers(0, 3), st.booleans()),
    min_size=1, max_size=7,
).map(lambda specs: [consent_event(c, ms, f"c{i}", keyword=k)
                     for i, (c, ms, k) in enumerate(specs)])


@PROPERTY
@given(data=st.data(), events=consent_events)
def test_consent_is_the_same_for_every_order(rt, data, events):
    order = data.draw(st.permutations(events))
    winner = max(events, key=rule_key)
    expected_row = {"status": status_of(winner), "changed_at": winner.occurred_at,
                    "dedupe_key": winner.dedupe_key, "scope": "sender",
                    "source": "kaleyra-rcs", "event_key": f"kaleyra-rcs {winner.dedupe_key}"}

    empty(rt)
    notes = [n for e in order for n in apply(rt, [e]).notifications]
    assert subscription(rt, "rcs", "agent_1", MSISDN) == expected_row
    # Exactly the real changes of state, in the order they happened to this row.
    assert transitions(notes) == expected_transitions(order)
    assert len([n for n in notes if n.type == "message.inbound"]) == sum(
        e.type == "message.inbound" for e in events)
    assert apply(rt, order).notifications == []  # re-applying: no new transition
    with rt.pool.connection() as conn:
        flags = [r[0] for r in conn.execute("SELECT transition FROM consent_history")]
    assert len(flags) == len(events) and sum(flags) == len(transitions(notes))

    empty(rt)
    notes = apply(rt, order).notifications
    assert subscription(rt, "rcs", "agent_1", MSISDN) == expected_row
    # One batch gives the changes of the events taken in time order.
    assert transitions(notes) == expected_transitions(sorted(events, key=rule_key))


def test_on_a_tie_opt_out_wins_in_either_order(rt):
    for first, second in ((IN, OUT), (OUT, IN)):
        empty(rt)
        apply(rt, [consent_event(first, 5, "a")])
        apply(rt, [consent_event(second, 5, "b")])
        assert subscription(rt, "rcs", "agent_1", MSISDN)["status"] == "opted_out"


def test_older_opt_in_after_newer_opt_out_is_no_transition(rt):
    assert transitions(apply(rt, [consent_event(OUT, 20, "late")]).notifications) == [
        "subscription.opted_out"]
    assert apply(rt, [consent_event(IN, 10, "early")]).notifications == []
    assert subscription(rt, "rcs", "agent_1", MSISDN)["status"] == "opted_out"


# --- permutations: delivery status ----------------------------------------------------------

def receipt_event(status: str, seconds: int, key: str,
                  failure: tuple[str | None, str | None] = (None, None)) -> NormalisedEvent:
    reason, code = failure if status in FAILURE_STATUSES else (None, None)
    return NormalisedEvent(
        type=f"message.{status}", source="kaleyra-rcs", channel="rcs",
        occurred_at=T0 + timedelta(seconds=seconds), dedupe_key=f"e:{key}",
        message_id="m-1", sender="agent_1", msisdn=MSISDN, status=status,
        provider_status=status.upper(), failure_reason=reason, failure_code=code,
    )


failures = st.tuples(st.sampled_from([None, "b", "a"]), st.sampled_from([None, "2", "1"]))
receipts = st.lists(st.tuples(st.sampled_from(STATUS_ORDER), st.integers(0, 4), failures),
                    min_size=1, max_size=8).map(
    lambda specs: [receipt_event(s, t, f"r{i}", f) for i, (s, t, f) in enumerate(specs)])


def message_row(rt) -> dict[str, Any]:
    with rt.pool.connection() as conn:
        cur = conn.execute("SELECT * FROM messages")
        (row,) = cur.fetchall()
        return dict(zip([c.name for c in cur.description], row, strict=True))


def expected_message(events: list[NormalisedEvent]) -> dict[str, Any]:
    top = max(events, key=lambda e: STATUS_RANK[e.status])
    # The winning status's receipt with a reason or code, then the smallest (reason, code).
    chosen = min((e for e in events if e.status == top.status), key=lambda e: (
        e.failure_reason is None and e.failure_code is None,
        e.failure_reason or "", e.failure_code or ""))
    row: dict[str, Any] = {
        "source": "kaleyra-rcs", "message_id": "m-1", "channel": "rcs", "sender": "agent_1",
        "msisdn": MSISDN, "status": top.status, "status_rank": STATUS_RANK[top.status],
        "last_event_at": max(e.occurred_at for e in events),
        "failure_reason": chosen.failure_reason, "failure_code": chosen.failure_code,
        "tenant_id": None,  # no tenant owns agent_1
    }
    for s in STATUS_ORDER:
        times = [e.occurred_at for e in events if e.status == s]
        row[f"{s}_at"] = min(times) if times else None
    return row


@PROPERTY
@given(data=st.data(), events=receipts)
def test_message_status_is_the_same_for_every_order(rt, data, events):
    _same_in_every_order(rt, data, events)


# Mostly failing receipts: two of the winning status with other reasons are common here.
failing_receipts = st.lists(
    st.tuples(st.sampled_from(["sent", "expired", "failed"]), st.integers(0, 4), failures),
    min_size=2, max_size=6).map(
    lambda specs: [receipt_event(s, t, f"r{i}", f) for i, (s, t, f) in enumerate(specs)])


@PROPERTY
@given(data=st.data(), events=failing_receipts)
def test_failure_reason_is_the_same_for_every_order(rt, data, events):
    _same_in_every_order(rt, data, events)


def _same_in_every_order(rt, data, events: list[NormalisedEvent]) -> None:
    order = data.draw(st.permutations(events))
    expected = expected_message(events)
    empty(rt)
    for e in order:
        apply(rt, [e])
    assert message_row(rt) == expected
    empty(rt)
    apply(rt, order)
    assert message_row(rt) == expected


# --- two workers at once --------------------------------------------------------------------

def race(rt, first: list[NormalisedEvent], second: list[NormalisedEvent]) -> tuple[list, list]:
    """Apply ``first`` and hold its transaction open; apply ``second`` on another
    connection (it must wait for the row lock), then commit ``first``."""
    results: dict[str, list] = {}
    held, release = threading.Event(), threading.Event()
    pids: dict[str, int] = {}

    def worker(name: str, events: list[NormalisedEvent], hold: bool) -> None:
        with rt.pool.connection() as conn:
            pids[name] = conn.info.backend_pid
            with conn.transaction():
                incoming = [Incoming(e, {}, T0) for e in events]
                results[name] = apply_batch(conn, rows(incoming), []).notifications
                if hold:
                    held.set()
                    release.wait(10)

    a = threading.Thread(target=worker, args=("a", first, True))
    a.start()
    assert held.wait(10)
    b = threading.Thread(target=worker, args=("b", second, False))
    b.start()
    _wait_until_blocked(rt, pids, "b")
    release.set()
    a.join(10)
    b.join(10)
    return results["a"], results["b"]


def _wait_until_blocked(rt, pids: dict[str, int], name: str) -> None:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if name in pids:
            with rt.pool.connection() as conn:
                waiting = conn.execute(
                    "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                    (pids[name],)).fetchone()
            if waiting and waiting[0] == "Lock":
                return
        time.sleep(0.01)
    pytest.fail("the second worker never waited for the first")


@pytest.mark.parametrize(("first", "second", "a_notes", "b_notes"), [
    # The newer opt-out is applied first; the older opt-in waits, then loses.
    ((OUT, 20), (IN, 10), ["subscription.opted_out"], []),
    # The older opt-in first; the newer opt-out waits, then wins: a real change.
    ((IN, 10), (OUT, 20), ["subscription.opted_in"], ["subscription.opted_out"]),
])
def test_two_workers_on_one_subscription(rt, first, second, a_notes, b_notes):
    a, b = race(rt, [consent_event(*first, "a")], [consent_event(*second, "b")])
    assert (transitions(a), transitions(b)) == (a_notes, b_notes)
    sub = subscription(rt, "rcs", "agent_1", MSISDN)
    assert (sub["status"], sub["changed_at"]) == ("opted_out", T0 + timedelta(milliseconds=20))


def test_two_workers_on_one_message(rt):
    race(rt, [receipt_event("read", 9, "r")], [receipt_event("sent", 1, "s"),
                                                 receipt_event("delivered", 4, "d")])
    row = message_row(rt)
    assert row["status"] == "read"
    assert (row["sent_at"], row["delivered_at"], row["read_at"]) == tuple(
        T0 + timedelta(seconds=s) for s in (1, 4, 9))
