"""A batch blocked in PostgreSQL under load (issue 22, defect 1), against a real
`hookline worker`, `ingest` and `scheduler`: a session holds a message's row lock for
several leases while traffic flows. Before the fix every drain that met the lock sat
blocked, the blocked batch's lease lapsed and was reclaimed as a dead worker's, a
reclaim dead-lettered it ("the worker died while processing it") and the blocked batch
then committed as well: applied and dead-lettered."""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest

from tests.faults.conftest import audit, settle
from tests.faults.ledger import Expect
from tests.faults.load import SOURCE, Load, Traffic
from tests.faults.stack import wait_until
from tests.helpers import receipt
from tests.procs import CALLBACK_AUTH

pytestmark = pytest.mark.faults

LEASE_SECONDS = 5
MAX_ATTEMPTS = 1
HELD_SECONDS = 4 * LEASE_SECONDS  # more leases than attempts allowed


def _post(stack, ledger, body: bytes, expect: Expect) -> str:
    r = httpx.post(f"{stack.base}/callbacks/{SOURCE}", content=body, headers=CALLBACK_AUTH)
    ledger.record(r.status_code, r.json().get("id"), expect)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _applied(servers, key: str) -> bool:
    with servers.connect() as conn:
        return bool(conn.execute("SELECT 1 FROM events WHERE dedupe_key = %s",
                                 (key,)).fetchone())


def test_a_batch_blocked_on_a_lock_is_applied_once_and_never_dead_lettered(
    servers, stack, ledger
):
    stack.env["HOOKLINE_MAX_ATTEMPTS"] = str(MAX_ATTEMPTS)
    stack.env["HOOKLINE_LEASE_SECONDS"] = str(LEASE_SECONDS)
    stack.start(workers=1)
    _post(stack, ledger, receipt("SENT", message_id="stalled"),
          Expect(SOURCE, "e:stalled-SENT", "stalled"))
    wait_until(lambda: _applied(servers, "e:stalled-SENT"), 20, 0.05, "the first receipt")

    blocker = psycopg.connect(servers.database_url)
    blocker.execute("SELECT 1 FROM messages WHERE message_id = 'stalled' FOR UPDATE")
    try:
        blocked = _post(stack, ledger, receipt("DELIVERED", message_id="stalled"),
                        Expect(SOURCE, "e:stalled-DELIVERED", "stalled"))
        traffic = Traffic("stall")
        load = Load(stack.base, ledger, traffic, rate=50, seconds=HELD_SECONDS).start()
        # While the lock is held, other callbacks are applied promptly.
        probes: list[float] = []
        deadline = time.monotonic() + HELD_SECONDS
        n = 0
        while time.monotonic() < deadline:
            n += 1
            body, expect = traffic.receipt(10**6 + n)
            _post(stack, ledger, body, expect)
            started = time.monotonic()
            wait_until(lambda e=expect: _applied(servers, e.key), 15, 0.02, "a probe applied")
            probes.append(time.monotonic() - started)
            time.sleep(0.5)
        load.stop()
        load.join()
        assert not _applied(servers, "e:stalled-DELIVERED")  # the lock really held it
    finally:
        blocker.close()
    took = settle(servers, ledger, stack)
    audit(servers, ledger, stack)
    with servers.connect() as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters WHERE ingest_id = %s",
                            (blocked,)).fetchone()[0] == 0
        assert conn.execute("SELECT status FROM messages WHERE message_id = 'stalled'"
                            ).fetchone()[0] == "delivered"
    assert len(probes) >= 5 and max(probes) < 5, probes
    print(f"\nstall: lock held {HELD_SECONDS}s; {len(probes)} probes applied meanwhile, "
          f"slowest {max(probes):.2f}s; {ledger.codes} settled {took:.1f}s")
