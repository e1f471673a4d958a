"""The ledger itself can fail: each kind of damage it exists to find, made on purpose."""

from __future__ import annotations

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
