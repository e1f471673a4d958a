"""A poison callback under load (issue 6, item 7): bounded attempts, a dead letter,
and the rest of its batch and of the traffic flows on."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest

from tests.faults.conftest import audit, settle
from tests.faults.ledger import Expect
from tests.faults.load import SOURCE, Load, Traffic
from tests.faults.poison_worker import KEY
from tests.faults.stack import wait_until
from tests.procs import CALLBACK_AUTH

pytestmark = pytest.mark.faults

MAX_ATTEMPTS = 2


def _post(stack, ledger, body: bytes, expect: Expect) -> str:
    r = httpx.post(f"{stack.base}/callbacks/{SOURCE}", content=body, headers=CALLBACK_AUTH)
    ledger.record(r.status_code, r.json().get("id"), expect)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _letter(servers, ingest_id: str):
    with servers.connect() as conn:
        return conn.execute("SELECT reason, attempts FROM dead_letters WHERE ingest_id = %s",
                            (ingest_id,)).fetchone()


def _applied(servers, key: str) -> bool:
    with servers.connect() as conn:
        return bool(conn.execute("SELECT 1 FROM events WHERE dedupe_key = %s",
                                 (key,)).fetchone())


def test_poison_callbacks_are_dead_lettered_and_traffic_flows_on(servers, stack, ledger):
    stack.env["HOOKLINE_MAX_ATTEMPTS"] = str(MAX_ATTEMPTS)
    [worker] = stack.start(workers=1, poison=True)
    traffic = Traffic("poison")
    load = Load(stack.base, ledger, traffic, rate=100, seconds=40).start()
    time.sleep(0.5)
    poisons = {how: _post(stack, ledger, orjson.dumps({KEY: how, "n": how}), Expect(SOURCE))
               for how in ("raise", "exit")}
    # While the poison is being retried, fresh callbacks are applied promptly.
    probes: list[float] = []
    n = 0
    while not all(_letter(servers, i) for i in poisons.values()):
        n += 1
        body, expect = traffic.receipt(10**6 + n)
        _post(stack, ledger, body, expect)
        started = time.monotonic()
        wait_until(lambda e=expect: _applied(servers, e.key), 10, 0.02, "a probe applied")
        probes.append(time.monotonic() - started)
        assert n < 200, "the poison callbacks never became dead letters"
        time.sleep(0.2)
    load.stop()
    load.join()
    took = settle(servers, ledger, stack)
    audit(servers, ledger, stack)
    raised, exited = _letter(servers, poisons["raise"]), _letter(servers, poisons["exit"])
    assert "RuntimeError: poisoned on purpose" in raised[0] and raised[1] == MAX_ATTEMPTS
    assert "worker died" in exited[0] and exited[1] == MAX_ATTEMPTS
    assert worker.alive(), "the worker itself must survive its pool process dying"
    assert len(probes) >= 5 and max(probes) < 6, probes
    print(f"\npoison: dead letters {raised[0]!r} / {exited[0]!r}; {len(probes)} probes applied "
          f"meanwhile, slowest {max(probes):.2f}s; {ledger.codes} settled {took:.1f}s")
