"""The ledger itself can fail: each kind of damage it exists to find, made on purpose."""

from __future__ import annotations

from shared import inbox
from shared.model import Consent
from tests.consent_support import apply, consent_event
from tests.faults.ledger import Expect, Ledger
from tests.helpers import drain_all, enqueue, receipt

SOURCE = "kaleyra-rcs"


def _ledger(rt) -> Ledger:
    ledger = Ledger()
    for kind in ("SENT", "DELIVERED", "READ"):
        ledger.record(202, enqueue(rt, receipt(kind, message_id="L")),
                      Expect(SOURCE, f"e:L-{kind}", "L"))
    ledger.record(202, enqueue(rt, b"{broken"), Expect(SOURCE))
    ledger.record(503, None, Expect(SOURCE, "e:never", "L"))  # refused: no promise made
    drain_all(rt)
    return ledger


def test_a_clean_run_audits_clean(rt):
    ledger = _ledger(rt)
    with rt.pool.connection() as conn:
        audit = ledger.audit(conn)
        assert ledger.outstanding(conn) == 0
    assert audit.clean, audit
    assert ledger.codes == {"202": 4, "503": 1}


def test_losses_duplicates_wrong_state_and_misfiled_are_found(rt):
    ledger = _ledger(rt)
    with rt.pool.connection() as conn:
        conn.execute("DELETE FROM events WHERE dedupe_key = 'e:L-SENT'")  # lost
        conn.execute("DELETE FROM dead_letters")  # the broken body's dead letter: lost
        conn.execute("INSERT INTO message_status_history (event_id, source, message_id, status,"
                     " occurred_at) SELECT id, source, message_id, status, occurred_at"
                     " FROM events WHERE dedupe_key = 'e:L-READ'")  # a second effect
        conn.execute("UPDATE messages SET status = 'delivered'")  # wrong state
        audit = ledger.audit(conn)
        assert ledger.outstanding(conn) == 2
    assert len(audit.lost) == 2, audit
    assert any("2 status-history rows" in d for d in audit.duplicated), audit
    assert any("status delivered, events say read" in w for w in audit.wrong_state), audit


def test_a_receipt_dead_lettered_instead_of_applied_is_misfiled(rt):
    ledger = Ledger()
    ingest_id = enqueue(rt, b"{broken")
    ledger.record(202, ingest_id, Expect(SOURCE, "e:expected-event", "M"))
    drain_all(rt)
    with rt.pool.connection() as conn:
        audit = ledger.audit(conn)
    assert audit.misfiled and not audit.lost, audit


def test_a_provider_duplicate_dead_lettered_while_its_twin_applied_is_a_duplicate(rt):
    ledger = _ledger(rt)
    # The provider sent SENT again (a new ingest id, the same event); that copy went
    # round the retry list and was dead-lettered although its twin applied.
    twin = enqueue(rt, receipt("SENT", message_id="L"))
    ledger.record(202, twin, Expect(SOURCE, "e:L-SENT", "L"))
    rt.redis.delete(inbox.INBOX)
    with rt.pool.connection() as conn:
        conn.execute("INSERT INTO dead_letters (ingest_id, source, reason, body, received_at)"
                     " VALUES (%s, %s, 'processing failed 3 times', '', now())",
                     (twin, SOURCE))
        audit = ledger.audit(conn)
    assert any(twin in d and "another ingest id" in d for d in audit.duplicated), audit


def _error(reason: str, event_id: str) -> bytes:
    return receipt("ERROR", message_id="F", event_id=event_id,
                   error={"code": "E1", "message": reason})


def test_a_failure_reason_that_is_not_its_receipts_is_the_wrong_state(rt):
    ledger = Ledger()
    for reason, eid in (("b: unreachable", "F-1"), ("a: blocked", "F-2")):
        ledger.record(202, enqueue(rt, _error(reason, eid)), Expect(SOURCE, f"e:{eid}", "F"))
        drain_all(rt)
    with rt.pool.connection() as conn:
        assert ledger.audit(conn).clean, ledger.audit(conn)
        # The later, larger reason won: what a rule that depends on order would do.
        conn.execute("UPDATE messages SET failure_reason = 'b: unreachable'")
        audit = ledger.audit(conn)
    assert any("'b: unreachable'" in w and "'a: blocked'" in w for w in audit.wrong_state), \
        audit


def test_a_subscription_not_at_its_winning_event_and_a_doubled_one_are_found(rt):
    apply(rt, [consent_event(Consent.OPT_IN, 0, "in"), consent_event(Consent.OPT_OUT, 5, "out")])
    with rt.pool.connection() as conn:
        assert Ledger().audit(conn).clean, Ledger().audit(conn)
        conn.execute("UPDATE subscriptions SET status = 'opted_in'")
        conn.execute("INSERT INTO consent_history (event_id, source, event_key, event_type,"
                     " channel, sender, msisdn, category, scope, status, occurred_at,"
                     " transition) SELECT event_id, source, event_key, event_type, channel,"
                     " sender, msisdn, category, scope, status, occurred_at, transition"
                     " FROM consent_history WHERE event_key LIKE '%%in'")
        audit = Ledger().audit(conn)
    assert any("opted_in by" in w and "say opted_out" in w for w in audit.wrong_state), audit
    assert any("recorded 2 times" in d for d in audit.duplicated), audit
