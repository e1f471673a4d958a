"""PostgreSQL's own instructions, for the *_instructions.py scripts that talk to it.

callgrind counts only the process it runs; what a change costs in SQL is spent in the
server's backends. With the server itself under callgrind, each backend writes its
count when it exits (its connection closed), and a script adds up those of the
backends that exited during its run. A private server, nothing else connected to it
(the scripts run one after another), autovacuum and parallel workers off so that no
other process's work falls in the window:

    PGB=$(python -c 'import pgserver, os; print(os.path.dirname(pgserver.__file__))')/pginstall/bin
    su pgserver -c "$PGB/initdb -D /tmp/pgcg/data -U postgres -A trust"   # not as root
    su pgserver -c "valgrind --tool=callgrind --callgrind-out-file=/tmp/pgcg/cg/cg.%p \
        $PGB/postgres -D /tmp/pgcg/data -p 55437 -c listen_addresses=127.0.0.1 \
        -c autovacuum=off -c jit=off -c max_parallel_workers_per_gather=0" &
    DATABASE_URL=postgresql://postgres@127.0.0.1:55437/postgres \
        HOOKLINE_BENCH_PG_CALLGRIND=/tmp/pgcg/cg python deploy/bench/drain_instructions.py
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

VARIABLE = "HOOKLINE_BENCH_PG_CALLGRIND"
_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.M)


def enabled() -> bool:
    return bool(os.environ.get(VARIABLE))


def exited() -> dict[int, int]:
    """Instructions of each server process that has exited so far, by pid; waits until
    the files stop coming (a backend dumps as it exits, its file whole once it is gone)."""
    folder = Path(os.environ[VARIABLE])
    last: dict[int, int] | None = None
    while True:
        time.sleep(2)
        counts = {}
        for f in folder.glob("cg.*"):
            pid = int(f.name.rsplit(".", 1)[1])
            found = None if Path(f"/proc/{pid}").exists() else _TOTAL.search(
                f.read_text(errors="replace"))
            if found is not None:
                counts[pid] = int(found.group(1))
        if counts == last:
            return counts
        last = counts


def since(before: dict[int, int]) -> dict[int, int]:
    """The processes that exited after ``before`` was taken, with their counts."""
    return {pid: n for pid, n in exited().items() if pid not in before}
