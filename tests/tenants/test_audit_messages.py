"""A tenant's callback key cannot read or change another tenant's message by naming its
id (audit of issue 24): the event is the key's tenant's, the message stays its owner's."""

from __future__ import annotations

from tests.fanout.fanout_helpers import client_for
from tests.helpers import drain_all, enqueue, receipt
from tests.tenants.support import SENDER_A, SENDER_B, bearer, enqueue_as, one, two_tenants


def _message(api, key, message_id):
    return api.get(f"/v1/messages/{message_id}", headers=bearer(key))


def test_a_key_cannot_change_another_tenant_s_message(rt):
    a, b = two_tenants(rt)
    api = client_for(rt)
    enqueue(rt, receipt("DELIVERED", message_id="msg-b", to=SENDER_B))
    drain_all(rt)
    # A, with its own callback key, forges a higher-ranked receipt of B's message, once
    # naming B's sender and once its own.
    enqueue_as(rt, receipt("READ", message_id="msg-b", to=SENDER_B), a.id)
    enqueue_as(rt, receipt("READ", message_id="msg-b", to=SENDER_A, eventId="x2"), a.id)
    drain_all(rt)
    got = _message(api, b.api_key, "msg-b").get_json()
    assert got["status"] == "delivered"
    assert [e["status"] for e in got["events"]] == ["delivered"]
    assert one(rt, "SELECT tenant_id FROM messages WHERE message_id = 'msg-b'") == b.id
    assert _message(api, a.api_key, "msg-b").status_code == 404
    # The forged events themselves are A's (its key brought them), never B's.
    assert one(rt, "SELECT count(*) FROM events WHERE tenant_id = %s", b.id) == 1
    assert one(rt, "SELECT count(*) FROM events WHERE tenant_id = %s", a.id) == 2


def test_a_key_naming_another_s_sender_does_not_claim_its_message(rt):
    a, b = two_tenants(rt)
    api = client_for(rt)
    # A's forged receipt arrives first, naming B's sender: the message is B's by its
    # sender, so A's key neither claims it nor sees B's later receipts.
    enqueue_as(rt, receipt("SENT", message_id="msg-b", to=SENDER_B), a.id)
    drain_all(rt)
    enqueue(rt, receipt("DELIVERED", message_id="msg-b", to=SENDER_B))
    drain_all(rt)
    assert _message(api, a.api_key, "msg-b").status_code == 404
    got = _message(api, b.api_key, "msg-b").get_json()
    assert [e["status"] for e in got["events"]] == ["delivered"]


def test_forged_and_real_receipts_in_one_batch(rt):
    a, b = two_tenants(rt)
    api = client_for(rt)
    enqueue(rt, receipt("DELIVERED", message_id="msg-b", to=SENDER_B))
    enqueue_as(rt, receipt("READ", message_id="msg-b", to=SENDER_B), a.id)
    drain_all(rt)
    got = _message(api, b.api_key, "msg-b").get_json()
    assert got["status"] == "delivered"
    assert _message(api, a.api_key, "msg-b").status_code == 404


def test_the_operator_s_token_still_moves_a_tenant_s_message(rt):
    """A receipt with no tenant (the source's own token, a sender nobody owns) is not
    a forgery by a tenant: it still counts for the message."""
    two_tenants(rt)
    enqueue(rt, receipt("DELIVERED", message_id="msg-b", to=SENDER_B))
    drain_all(rt)
    enqueue(rt, receipt("READ", message_id="msg-b", to="nobody_s_agent"))
    drain_all(rt)
    assert one(rt, "SELECT status FROM messages WHERE message_id = 'msg-b'") == "read"


def test_a_concurrent_batch_of_another_tenant_leaves_the_message_alone(rt):
    """Two batches that both find no row for a message: the one that waits on the
    other's insert neither moves nor writes history for the other tenant's message."""
    import threading
    from datetime import UTC, datetime

    from shared.db import messages
    from shared.db.events import Stored
    from shared.model import NormalisedEvent

    a, b = two_tenants(rt)

    def stored(event_id: int, status: str, tenant: str, sender: str) -> Stored:
        ev = NormalisedEvent(type=f"message.{status}", source="kaleyra-rcs", channel="rcs",
                             occurred_at=datetime.now(UTC), dedupe_key=f"k{event_id}",
                             message_id="msg-race", sender=sender, msisdn="91", status=status)
        return Stored(event_id, ev, tenant)

    with rt.pool.connection() as first, rt.pool.connection() as second:
        messages.apply_statuses(first.cursor(), [stored(1, "delivered", b.id, SENDER_B)])
        done = threading.Event()

        def forge() -> None:
            messages.apply_statuses(second.cursor(), [stored(2, "read", a.id, SENDER_A)])
            second.commit()
            done.set()

        t = threading.Thread(target=forge)
        t.start()
        assert not done.wait(0.5)  # waits on the first batch's row
        first.commit()
        t.join(10)
        assert done.is_set()
    assert one(rt, "SELECT status FROM messages WHERE message_id = 'msg-race'") == "delivered"
    assert one(rt, "SELECT tenant_id FROM messages WHERE message_id = 'msg-race'") == b.id
    assert one(rt, "SELECT array_agg(event_id) FROM message_status_history") == [1]
