"""Workers dying and being replaced under steady load (issue 6, items 1 and 2)."""

from __future__ import annotations

import time

import pytest

from shared import inbox
from tests.faults.conftest import audit, settle
from tests.faults.load import Load, Traffic
from tests.faults.stack import wait_until

pytestmark = pytest.mark.faults


def _kill_mid_batch(servers, worker) -> list[str]:
    """SIGKILL ``worker`` (with its pool) the moment a batch is leased; the leases
    that outlive it are the batches it was in the middle of."""
    client = servers.client()
    leases = wait_until(lambda: client.zrange(inbox.LEASES, 0, -1), 10, 0.001, "a lease")
    worker.kill_group()
    time.sleep(0.3)  # let any other worker release what it held
    return [lid for lid in leases if client.zscore(inbox.LEASES, lid) is not None]


def test_sigkill_a_worker_mid_batch_loses_and_duplicates_nothing(servers, stack, ledger):
    [w1] = stack.start(workers=1)
    load = Load(stack.base, ledger, Traffic("kill"), rate=300, seconds=6).start()
    time.sleep(1)
    orphaned: list[str] = []
    for attempt in range(5):  # the kill may land between batches; try again
        orphaned = _kill_mid_batch(servers, w1)
        w1 = stack.worker(f"w1-{attempt}")
        if orphaned:
            break
    assert orphaned, "never caught a worker in the middle of a batch"
    stack.wait_worker(w1)
    load.join()
    took = settle(servers, ledger, stack)
    audit(servers, ledger, stack)
    print(f"\nkill -9 mid-batch: {ledger.codes} accepted={len(ledger)} "
          f"orphaned leases={len(orphaned)} settled {took:.1f}s after the load")


def test_rolling_restart_with_sigterm_loses_and_duplicates_nothing(servers, stack, ledger):
    workers = stack.start(workers=2)
    # Long enough to outlast the restart; stopped once it is over.
    load = Load(stack.base, ledger, Traffic("roll"), rate=300, seconds=30).start()
    time.sleep(0.5)
    started = time.monotonic()
    for i, old in enumerate(workers):
        code = old.terminate(timeout=30)
        assert code == 0, f"{old.name} did not shut down warmly:\n{old.text()[-3000:]}"
        new = stack.worker(f"w{i + 1}-new")
        stack.wait_worker(new)
    restart = time.monotonic() - started
    time.sleep(0.5)
    assert load.running, "the load ended before the restart did"
    load.stop()
    load.join()
    took = settle(servers, ledger, stack)
    audit(servers, ledger, stack)
    print(f"\nrolling restart: {ledger.codes} accepted={len(ledger)} restart {restart:.1f}s "
          f"settled {took:.1f}s")
