"""Which tenant an event belongs to, decided in the apply's insert (shared.db.events)."""

from __future__ import annotations

import orjson

from shared.db import subscriptions
from shared.replay import replay
from tests.helpers import FIXTURES, drain_all, enqueue, receipt
from tests.tenants.support import SENDER_A, enqueue_as, make_tenant, one, two_tenants

SMS_RECEIPT = FIXTURES / "kaleyra-io" / "flat" / "sms_message_status__delivrd.json"
SMS_EVENT = "sms:message:status"


def event_tenants(rt) -> list:
    with rt.pool.connection() as conn:
        return [r[0] for r in conn.execute("SELECT tenant_id FROM events ORDER BY id")]


def test_the_owner_of_the_sender(rt):
    a, _ = two_tenants(rt)
    enqueue(rt, receipt("DELIVERED"))
    drain_all(rt)
    assert event_tenants(rt) == [a.id]
    assert one(rt, "SELECT tenant_id FROM messages WHERE message_id = 'msg-1'") == a.id


def test_the_callback_key_comes_before_the_sender(rt):
    a, b = two_tenants(rt)
    enqueue_as(rt, receipt("DELIVERED"), b.id)
    drain_all(rt)
    assert event_tenants(rt) == [b.id] and a.id != b.id


def test_no_key_and_nobody_s_sender_is_no_tenant(rt):
    make_tenant(rt, "Bravo", "agent_b")
    enqueue(rt, receipt("DELIVERED"))
    drain_all(rt)
    assert event_tenants(rt) == [None]
    assert one(rt, "SELECT tenant_id FROM messages") is None


def test_a_receipt_without_sender_takes_the_key_or_its_message_s_tenant(rt):
    a, _ = two_tenants(rt)
    first = SMS_RECEIPT.read_bytes()
    enqueue_as(rt, first, a.id, source="kaleyra-io", event=SMS_EVENT)
    drain_all(rt)
    # A later receipt of the same message, with no key (and no sender): its message's.
    doc = orjson.loads(first)
    later = {**orjson.loads((SMS_RECEIPT.parent / "sms_message_status__undeliv.json")
                            .read_bytes()), "id": doc["id"]}
    enqueue(rt, orjson.dumps(later), source="kaleyra-io", event=SMS_EVENT)
    # And another message's, with neither: no tenant.
    enqueue(rt, orjson.dumps({**doc, "id": "other:1"}), source="kaleyra-io", event=SMS_EVENT)
    drain_all(rt)
    assert one(rt, "SELECT count(*) FROM events WHERE sender IS NULL") == 3
    assert event_tenants(rt) == [a.id, a.id, None]


def test_an_all_senders_opt_out_binds_only_the_tenant_that_received_it(rt):
    a, b = two_tenants(rt)
    body = (FIXTURES / "kaleyra-io" / "flat" / "rcs_unsubscription__all.json").read_bytes()
    enqueue_as(rt, body, a.id, source="kaleyra-io", event="rcs:unsubscription")
    drain_all(rt)
    msisdn = one(rt, "SELECT msisdn FROM subscriptions")
    assert one(rt, "SELECT tenant_id FROM subscriptions") == a.id
    with rt.pool.connection() as conn:
        for_a = subscriptions.status_of(conn, "rcs", SENDER_A, msisdn)
        for_b = subscriptions.status_of(conn, "rcs", "agent_b", msisdn)
        asked_by_b = subscriptions.status_of(conn, "rcs", SENDER_A, msisdn, tenant_id=b.id)
    assert for_a["all"]["status"] == "opted_out"
    assert for_b["all"] is None and for_b["history"] == []
    assert asked_by_b["all"] is None
    # The same opt-out received by B too is B's own row, not a conflict with A's.
    enqueue_as(rt, body.replace(b'"id": 73', b'"id": 74'), b.id, source="kaleyra-io",
               event="rcs:unsubscription")
    drain_all(rt)
    assert one(rt, "SELECT count(*) FROM subscriptions WHERE sender = '*'") == 2
    with rt.pool.connection() as conn:
        assert subscriptions.status_of(conn, "rcs", "agent_b", msisdn)["all"]["tenant_id"] \
            == b.id


def test_a_dead_letter_keeps_its_callback_key_s_tenant_through_replay(rt):
    a, _ = two_tenants(rt)
    enqueue_as(rt, b"{not json", a.id, source="kaleyra-io", event=SMS_EVENT)
    drain_all(rt)
    letter_id = one(rt, "SELECT id FROM dead_letters WHERE tenant_id = %s", a.id)
    assert letter_id is not None
    # The fixed body, replayed: a receipt without sender, so only the key names its tenant.
    assert replay(rt, letter_id, SMS_RECEIPT.read_bytes())
    drain_all(rt)
    assert event_tenants(rt) == [a.id]
