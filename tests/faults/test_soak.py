"""Longer variants of the fault tests: minutes of load with faults repeated.

Not part of CI (they take about six minutes in all). Run them with:

    python -m pytest -m soak tests/faults -s

Each prints what it measured; each ends with the same ledger audit as the short ones.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.faults.conftest import audit, settle
from tests.faults.load import Load, Traffic

pytestmark = pytest.mark.soak


def test_soak_repeated_worker_kills_and_restarts(servers, stack, ledger):
    workers = stack.start(workers=2)
    load = Load(stack.base, ledger, Traffic("soak-w", messages=500), rate=400,
                seconds=120).start()
    rand = random.Random(1)
    kills = terms = 0
    while load.running:
        time.sleep(rand.uniform(3, 8))
        i = rand.randrange(len(workers))
        if rand.random() < 0.5:
            workers[i].kill_group()
            kills += 1
        else:
            assert workers[i].terminate(timeout=60) == 0, workers[i].text()[-3000:]
            terms += 1
        workers[i] = stack.worker(f"w{i}-{kills + terms}")
        stack.wait_worker(workers[i])
    load.join()
    took = settle(servers, ledger, stack, timeout=120)
    audit(servers, ledger, stack)
    print(f"\nsoak workers: {kills} kill -9, {terms} SIGTERM; {ledger.codes}; "
          f"settled {took:.1f}s")


def test_soak_redis_and_postgres_going_away_in_turn(servers, stack, ledger):
    stack.start(workers=2)
    load = Load(stack.base, ledger, Traffic("soak-s", messages=500), rate=300,
                seconds=150).start()
    rounds = 0
    while load.running:
        time.sleep(5)
        servers.redis.kill()
        time.sleep(5)
        servers.redis.start()
        time.sleep(5)
        servers.pg.stop("immediate")
        time.sleep(20)
        servers.pg.start()
        rounds += 1
    load.join()
    took = settle(servers, ledger, stack, timeout=180)
    assert all(p.alive() for p in stack.procs), stack.logs()
    audit(servers, ledger, stack)
    print(f"\nsoak servers: {rounds} rounds of Redis kill -9 and PostgreSQL down 20 s; "
          f"{ledger.codes}; settled {took:.1f}s")
