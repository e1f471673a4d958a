"""Instructions per callback of the drain, per thread: the noise-free view of
processing's worker side (callbacks/s and CPU seconds move by a fifth from run to
run on this shared VM; instruction counts repeat to within about 1 %).

    python deploy/bench/drain_instructions.py [--events 2000] [--warm 1000]
                                              [--endpoint none|unordered|ordered]
                                              [--partitions-at fixtures|YYYY-MM-DD,...]
                                              [--old-share 0.1]

The drain runs in one process under valgrind's callgrind (Debian package
``valgrind``) as the drain task runs it: GC tuned as in a worker pool process,
the next batch leased and parsed ahead by the helper thread while one commits,
against real PostgreSQL and Redis. Two runs, of W and W + N callbacks of the mixed
workload, each on a fresh database and a filled inbox: the difference divided by
N is the cost of one callback, start-up and imports cancelled out. Reported per
thread: the drain's own thread is the critical path (it alone talks to
PostgreSQL, one batch at a time); the read-ahead thread works while it waits.
PostgreSQL's own work is not counted here (processing.py measures its CPU), unless
the server runs under callgrind too (pg_callgrind.py): then its backends' instructions
per callback are reported beside.

``--endpoint unordered`` (or ``ordered``) subscribes one endpoint to every event
first, so each callback's events are written to the outbox as well (nothing is sent).
``--partitions-at`` (after migration 010) makes daily partitions around those days
first (common.make_partitions), so the events land in them rather than in the DEFAULT
partitions. The workload's provider times are seconds old (workload.restamp);
``--old-share`` stamps that share of them days to months old (DEFAULT partitions).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pg_callgrind
from common import callgrind_threads, cli, make_partitions, require_valgrind, services

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("BENCH_TREE") or HERE.parents[1])  # common.TREE


def _child() -> None:
    """Drain the inbox to committed state in this process (run under callgrind)."""
    import gc
    import logging

    sys.path[:0] = [str(ROOT), str(HERE)]
    logging.disable(logging.WARNING)  # a line per dead letter is not what we count
    from shared import config
    from shared.runtime import Runtime, install
    from workers.ahead import ReadAhead
    from workers.tasks import GC_THRESHOLDS, drain_round

    rt = Runtime(config.load(os.environ))
    install(rt)
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    ahead = ReadAhead(rt)
    while drain_round(rt, ahead) is not None:
        pass
    ahead.give_back()
    rt.close()


def _subscribe(database_url: str, endpoint: str) -> None:
    import psycopg

    from shared.db import endpoints

    if endpoint == "none":
        return
    with psycopg.connect(database_url, autocommit=True) as conn:
        endpoints.create(conn, url="http://127.0.0.1:9/hook", event_types=["*"],
                         secret="bench", ordered=endpoint == "ordered")


def _per_thread(n: int, endpoint: str, partitions_at: str = "", old_share: float = 0.0
                ) -> tuple[list[int], int]:
    """Instructions of each thread of one drain of ``n`` callbacks, main thread first,
    and of PostgreSQL's backends (0 unless it runs under callgrind)."""
    import redis
    from processing import drained, fill_inbox

    pg_before = pg_callgrind.exited() if pg_callgrind.enabled() else {}
    with services() as env:
        if partitions_at:
            make_partitions(env["DATABASE_URL"], partitions_at)
        _subscribe(env["DATABASE_URL"], endpoint)
        r = redis.Redis.from_url(env["REDIS_URL"])
        fill_inbox(r, n, old_share=old_share)
        counts = callgrind_threads(Path(__file__).resolve(), [], env)
        if not drained(r):
            raise RuntimeError("the drain under callgrind left callbacks in the inbox")
    pg = sum(pg_callgrind.since(pg_before).values()) if pg_callgrind.enabled() else 0
    return counts, pg


def run(events: int = 2000, warm: int = 1000, endpoint: str = "none",
        partitions_at: str = "", old_share: float = 0.0) -> dict[str, float]:
    require_valgrind()
    (low, pg_low), (high, pg_high) = (
        _per_thread(warm, endpoint, partitions_at, old_share),
        _per_thread(warm + events, endpoint, partitions_at, old_share))
    main = (high[0] - low[0]) / events
    helpers = (sum(high[1:]) - sum(low[1:])) / events
    return {"drain_thread": main, "other_threads": helpers, "total": main + helpers,
            "events": events, "postgres": (pg_high - pg_low) / events}


def report(res: dict[str, float]) -> list[str]:
    return [
        f"drain instructions per callback (callgrind, {res['events']:.0f} callbacks): "
        f"{res['total']:,.0f} in all; drain thread {res['drain_thread']:,.0f} (the critical "
        f"path, beside PostgreSQL), read-ahead and other threads {res['other_threads']:,.0f}"
        + (f"; PostgreSQL's backends {res['postgres']:,.0f}" if res["postgres"] else ""),
    ]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child()
        return
    cli(run, report, events=2000, warm=1000, endpoint="none", partitions_at="",
        old_share=0.0)


if __name__ == "__main__":
    main()
