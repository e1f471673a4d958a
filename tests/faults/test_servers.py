"""Redis and PostgreSQL going away under load (issue 6, items 3 and 4)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.conftest import audit, settle
from tests.faults.load import Load, Traffic
from tests.faults.stack import wait_until

pytestmark = pytest.mark.faults

REDIS_DOWN_SECONDS = 5
POSTGRES_DOWN_SECONDS = 30


def test_redis_kill_9_and_restart_loses_nothing_answered_202(servers, stack, ledger):
    stack.start(workers=1)
    load = Load(stack.base, ledger, Traffic("redis"), rate=300, seconds=30).start()
    time.sleep(2)
    servers.redis.kill()
    wait_until(lambda: ledger.codes["503"] >= 20, 10, 0.05, "503s while Redis is down")
    time.sleep(REDIS_DOWN_SECONDS)
    down_503 = ledger.codes["503"]
    servers.redis.start()
    # Once Redis answers again, ingest accepts again without a restart.
    accepted = len(ledger)
    wait_until(lambda: len(ledger) > accepted + 200, 15, 0.1, "202s after the restart")
    load.stop()
    load.join()
    # ... and the worker and scheduler resume by themselves: nobody was restarted.
    took = settle(servers, ledger, stack, timeout=60)
    assert all(p.alive() for p in stack.procs), stack.logs()
    audit(servers, ledger, stack)
    other = {c: n for c, n in ledger.codes.items() if c not in ("202", "503")}
    assert not other, f"answers other than 202 and 503: {other}\n{stack.logs()}"
    print(f"\nredis kill -9: {ledger.codes} 503 while down={down_503} "
          f"accepted={len(ledger)} settled {took:.1f}s after the load")


def test_postgres_down_30s_ingest_accepts_and_workers_catch_up(servers, stack, ledger):
    # The smallest attempts budget: an outage must not count as attempts at processing
    # a callback (or good callbacks would end as dead letters).
    stack.env["HOOKLINE_MAX_ATTEMPTS"] = "1"
    stack.start(workers=1)
    load = Load(stack.base, ledger, Traffic("pg"), rate=200, seconds=60).start()
    time.sleep(2)
    servers.pg.stop("immediate")
    down_at, accepted = time.monotonic(), len(ledger)
    time.sleep(POSTGRES_DOWN_SECONDS)
    assert ledger.codes.keys() == {"202"}, f"ingest refused while PostgreSQL was down: " \
                                            f"{ledger.codes}"
    during = len(ledger) - accepted
    # Ready for callbacks (the k8s readiness probe keeps the pod in the Service); the full
    # check, for operators, says PostgreSQL is away.
    assert httpx.get(f"{stack.base}/readyz", timeout=5).status_code == 200
    full = httpx.get(f"{stack.base}/readyz/full", timeout=5)
    assert full.status_code == 503 and full.json()["checks"]["redis"] == "ok"
    servers.pg.start()
    back_at = time.monotonic()
    time.sleep(2)
    load.stop()
    load.join()
    took = settle(servers, ledger, stack, timeout=60)
    assert ledger.codes.keys() == {"202"}, ledger.codes
    audit(servers, ledger, stack)
    print(f"\npostgres down {back_at - down_at:.0f}s: accepted {during} while down, "
          f"{len(ledger)} in all; settled {took:.1f}s after the load stopped "
          f"({time.monotonic() - back_at:.1f}s after PostgreSQL returned)")
