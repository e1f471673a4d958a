"""Duplicate storms and concurrent out-of-order events (issue 6, item 8)."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta

import httpx
import orjson
import pytest

from shared.db.apply import apply_batch
from shared.db.events import rows
from shared.envelope import Envelope, new_id
from tests.faults.conftest import audit, settle
from tests.faults.ledger import Expect, Ledger, message_state_errors
from tests.faults.load import SOURCE, Load
from tests.helpers import T0, receipt
from tests.procs import CALLBACK_AUTH
from workers.pipeline import decode_one

STORM = 1000


def _storm(base: str, ledger: Ledger, body: bytes, expect: Expect, threads: int = 25) -> None:
    """POST the same body STORM times from ``threads`` threads released at once."""
    gate = threading.Barrier(threads)

    def run(n: int) -> None:
        with httpx.Client(timeout=10) as client:
            gate.wait()
            for _ in range(n):
                r = client.post(f"{base}/callbacks/{SOURCE}", content=body,
                                headers=CALLBACK_AUTH)
                ledger.record(r.status_code, r.json().get("id"), expect)

    workers = [threading.Thread(target=run, args=(STORM // threads,)) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)


@pytest.mark.faults
def test_the_same_body_1000_times_at_once_is_one_effect(servers, stack, ledger):
    stack.env["HOOKLINE_BATCH_SIZE"] = "20"  # many small batches racing on one key
    stack.start(workers=2)
    body = receipt("DELIVERED", message_id="storm-m", event_id="storm-e")
    started = time.monotonic()
    _storm(stack.base, ledger, body, Expect(SOURCE, "e:storm-e", "storm-m"))
    posted = time.monotonic() - started
    assert ledger.codes == {"202": STORM}, ledger.codes
    took = settle(servers, ledger, stack)
    audit(servers, ledger, stack)
    with servers.connect() as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM message_status_history),"
            " (SELECT count(*) FROM dead_letters)").fetchone()
    assert counts == (1, 1, 0), counts
    print(f"\nstorm: {STORM} identical POSTs in {posted:.1f}s -> events, history, dead letters "
          f"= {counts}; settled {took:.1f}s")


class OutOfOrder:
    """Receipts for a few messages, every status several times with its own event id
    and time, handed out in random order."""

    def __init__(self, messages: int = 8, per_message: int = 24, seed: int = 6) -> None:
        import random

        rand = random.Random(seed)
        kinds = ("SENT", "DELIVERED", "READ", "ERROR")
        made = []
        for m, i in itertools.product(range(messages), range(per_message)):
            mid, kind = f"ooo-m{m}", kinds[i % 4]
            doc = {"type": kind, "eventId": f"ooo-{m}-{i}", "from": "917673908652",
                   "to": "mmx_traffic", "messageId": mid,
                   "sentAt": (T0 + timedelta(seconds=rand.randrange(600)))
                   .isoformat().replace("+00:00", "Z")}
            made.append((orjson.dumps(doc), Expect(SOURCE, f"e:ooo-{m}-{i}", mid)))
        rand.shuffle(made)
        self._it = iter(made)
        self._lock = threading.Lock()
        self.total = len(made)

    def __call__(self) -> tuple[bytes, Expect]:
        with self._lock:
            return next(self._it)


@pytest.mark.faults
def test_two_workers_applying_out_of_order_events_end_in_the_right_state(
        servers, stack, ledger):
    stack.env["HOOKLINE_BATCH_SIZE"] = "3"  # both workers hold batches of one message at once
    stack.start(workers=2)
    traffic = OutOfOrder()
    Load(stack.base, ledger, traffic, rate=400, seconds=traffic.total / 400,
         threads=8).start().join()
    took = settle(servers, ledger, stack)
    audit(servers, ledger, stack)  # includes each message's state against its events
    with servers.connect() as conn:
        rows = conn.execute("SELECT message_id, status, sent_at, delivered_at, read_at, "
                            "failed_at FROM messages ORDER BY 1").fetchall()
        with_events = conn.execute(
            "SELECT count(DISTINCT message_id) FROM events").fetchone()[0]
    assert len(rows) == 8 and with_events == 8
    # Every message had a READ (it outranks the others here): read, with every time set.
    assert all(r[1] == "read" and all(r[2:]) for r in rows), rows
    print(f"\nout of order on two workers: {traffic.total} receipts, {ledger.codes}; "
          f"settled {took:.1f}s")


def _incoming(body: bytes):
    env = Envelope(id=new_id(), source=SOURCE, event=None, received_at=time.time(), body=body)
    return decode_one(env.encode()).incoming


def _blocked(rt, pid: int) -> bool:
    with rt.pool.connection() as conn:
        row = conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                           (pid,)).fetchone()
    return bool(row) and row[0] == "Lock"


@pytest.mark.parametrize("first,second", [
    (("READ",), ("SENT", "DELIVERED")),
    (("SENT", "DELIVERED"), ("READ",)),
    (("DELIVERED",), ("ERROR", "SENT", "READ")),
])
def test_two_transactions_on_one_message_at_once_end_in_the_right_state(rt, first, second):
    """Deterministic: the second transaction provably waits on the first's row lock
    while both are open, whichever order the statuses come in."""
    bodies = {k: receipt(k, message_id="race-m", offset=o)
              for k, o in (("SENT", 1), ("DELIVERED", 4), ("READ", 9), ("ERROR", 2))}
    a = [i for k in first for i in _incoming(bodies[k])]
    b = [i for k in second for i in _incoming(bodies[k])]
    with rt.pool.connection() as c1, rt.pool.connection() as c2:
        c1.execute("BEGIN")
        apply_batch(c1, rows(a), [])
        pid2 = c2.info.backend_pid
        done = threading.Event()

        def second_txn() -> None:
            with c2.transaction():
                apply_batch(c2, rows(b), [])
            done.set()

        t = threading.Thread(target=second_txn)
        t.start()
        deadline = time.monotonic() + 10
        while not _blocked(rt, pid2) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _blocked(rt, pid2) and not done.is_set()
        c1.execute("COMMIT")
        t.join(10)
        assert done.is_set()
        assert message_state_errors(c1) == []
        status, history = c1.execute(
            "SELECT m.status, (SELECT count(*) FROM message_status_history) FROM messages m"
        ).fetchone()
    statuses = set(first) | set(second)
    assert status == ("read" if "READ" in statuses else "delivered")
    assert history == len(statuses)
