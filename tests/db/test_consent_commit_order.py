"""Suspected in issue 22: which consent transitions are notified depends on the order two
batches commit. Confirmed, and pinned as the rule: a transition is notified when it
changes the winning state at the moment its batch commits. So the notified *set* follows
commit order (an opt-out already superseded when it commits is not news), while the final
state never does, and the notifications, read in order, always end in that final state.
Real PostgreSQL, through the real apply layer."""

from __future__ import annotations

import itertools

import pytest

from shared.model import Consent
from tests.consent_support import (  # noqa: F401  (rt: the module's fixture)
    apply,
    consent_event,
    empty,
    fast_rt,
    module_rt,
    subscription,
    transitions,
)

IN, OUT = Consent.OPT_IN, Consent.OPT_OUT
MSISDN = "+447700900001"
STATE = {"subscription.opted_in": "opted_in", "subscription.opted_out": "opted_out"}


def _run(rt, batches: list[list]) -> tuple[list[list[str]], dict]:
    empty(rt)
    apply(rt, [consent_event(IN, 0, "prior")])  # opted in before either batch
    notified = [transitions(apply(rt, batch).notifications) for batch in batches]
    return notified, subscription(rt, "rcs", "agent_1", MSISDN)


def test_the_notified_transitions_follow_the_commit_order(rt):
    older_out, newer_in = [consent_event(OUT, 10, "a")], [consent_event(IN, 20, "b")]
    in_time_order, final = _run(rt, [older_out, newer_in])
    assert in_time_order == [["subscription.opted_out"], ["subscription.opted_in"]]
    reversed_order, final_again = _run(rt, [newer_in, older_out])
    # The newer opt-in repeats the state; the older opt-out then loses: nothing is news.
    assert reversed_order == [[], []]
    assert final["status"] == final_again["status"] == "opted_in"
    assert final["changed_at"] == final_again["changed_at"]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_in_any_commit_order_the_notifications_end_in_the_final_state(rt, order):
    batches = [[consent_event(OUT, 10, "a")], [consent_event(IN, 20, "b")],
               [consent_event(OUT, 30, "c"), consent_event(IN, 5, "d")]]
    notified, final = _run(rt, [batches[i] for i in order])
    state = "opted_in"
    for types in notified:
        for t in types:
            assert STATE[t] != state, f"a repeat notified: {notified}"
            state = STATE[t]
    assert state == final["status"] == "opted_out"
