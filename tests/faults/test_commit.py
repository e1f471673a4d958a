"""A PostgreSQL connection killed during commit (issue 6, item 5)."""

from __future__ import annotations

import pytest

from tests.faults.conftest import audit, settle
from tests.faults.load import Load, Traffic
from tests.faults.pgproxy import CommitCutter
from tests.faults.servers import DATABASE
from tests.faults.stack import wait_until

pytestmark = pytest.mark.faults


def test_connection_cut_at_commit_redelivers_as_a_no_op(servers, stack, ledger):
    cutter = CommitCutter(str(servers.pg.sock / ".s.PGSQL.5432"), every=3, limit=8).start()
    try:
        # The worker reaches PostgreSQL only through the cutter.
        stack.env["DATABASE_URL"] = cutter.url(DATABASE)
        stack.start(workers=1)
        load = Load(stack.base, ledger, Traffic("commit", bad_every=29), rate=200,
                    seconds=20).start()
        wait_until(lambda: cutter.cuts.after >= 3 and cutter.cuts.before >= 3, 25, 0.1,
                   "commits cut both ways")
        load.stop()
        load.join()
        took = settle(servers, ledger, stack, timeout=60)
    finally:
        cutter.stop()
    audit(servers, ledger, stack)
    c = cutter.cuts
    print(f"\ncut at commit: {c.before} before the server saw it, {c.after} after it "
          f"committed, of {c.commits} batch commits; "
          f"{ledger.codes} settled {took:.1f}s after the load")

