"""Instructions per delivery of claiming and recording it (the sending left out):
the noise-free view of what fan-out asks of PostgreSQL.

    python deploy/bench/record_instructions.py [--callbacks 1000] [--warm 500]
                                               [--ordered 0|1]
                                               [--partitions-at fixtures|YYYY-MM-DD,...]
                                               [--old-share 0.1]

The outbox is filled as the drain fills it (mixed callbacks, one endpoint subscribed
to every event; ``--ordered 1`` makes it ordered), then one process under callgrind
claims batches with ``claims.claim`` and records each as answered 200 with
``attempts.record``, on two connections, until nothing is left. Two runs, of W and
W + N callbacks: the difference divided by the difference in deliveries is the cost
of one. With PostgreSQL under callgrind (pg_callgrind.py) its claiming and
recording backends are reported apart. ``--partitions-at`` and ``--old-share`` as in
drain_instructions.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pg_callgrind
from common import callgrind_threads, cli, make_partitions, require_valgrind, services

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("BENCH_TREE") or HERE.parents[1])  # common.TREE


def _child(pids_file: str) -> None:
    import os
    from datetime import UTC, datetime

    import psycopg

    sys.path[:0] = [str(ROOT), str(HERE)]
    from shared.db import endpoints
    from shared.db.outbox import attempts, claims

    claim_conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    record_conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    pid = "SELECT pg_backend_pid()"
    Path(pids_file).write_text(f"{claim_conn.execute(pid).fetchone()[0]} "
                               f"{record_conn.execute(pid).fetchone()[0]}")
    rules = claims.ClaimRules(cap=64, breaker_failures=5, lease=120.0)
    # The claims' look at which partitions hold work (issue 25) comes every 30 s of
    # wall clock: 50 times as many per claim under callgrind as at full speed, and
    # more in the longer run. Once per run here, as the first claim takes it.
    if hasattr(claims, "LOOK_SECONDS"):
        claims.LOOK_SECONDS = float("inf")
    health = endpoints.HealthRules(5, 30.0, 5 * 86400.0)
    while batch := claims.claim(claim_conn, 200, rules):
        now = datetime.now(UTC)
        # As workers.attempt builds them; a tree from before issue 25 has no occurred_at.
        attempts.record(record_conn, [
            attempts.Result(c.id, c.endpoint_id, c.token, now, 1, True, 200, "ok",
                            **({"occurred_at": c.occurred_at}
                               if hasattr(c, "occurred_at") else {}))
            for c in batch], [60.0], health)
    claim_conn.close()
    record_conn.close()


def _fill(env: dict[str, str], callbacks: int, ordered: bool, old_share: float) -> int:
    """The outbox as the drain leaves it; how many deliveries it holds."""
    import logging

    import psycopg
    from processing import fill_inbox

    from shared import config
    from shared.db import endpoints
    from shared.runtime import Runtime, install
    from workers.tasks import drain_round

    rt = Runtime(config.load(env))
    install(rt)
    with rt.pool.connection() as conn:
        endpoints.create(conn, url="http://127.0.0.1:9/hook", event_types=["*"],
                         secret="bench", ordered=ordered)
    fill_inbox(rt.redis, callbacks, old_share=old_share)
    logging.disable(logging.WARNING)
    while drain_round(rt) is not None:
        pass
    logging.disable(logging.NOTSET)
    rt.close()
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        return conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]


def _once(callbacks: int, ordered: bool, partitions_at: str = "", old_share: float = 0.0
          ) -> tuple[int, int, int, int]:
    """Deliveries, client instructions, PostgreSQL's claiming and recording backends'."""
    import psycopg

    with services() as env, tempfile.NamedTemporaryFile("r") as pids:
        if partitions_at:
            make_partitions(env["DATABASE_URL"], partitions_at)
        n = _fill(env, callbacks, ordered, old_share)
        before = pg_callgrind.exited() if pg_callgrind.enabled() else {}
        client = sum(callgrind_threads(Path(__file__).resolve(), [pids.name], env))
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            left = conn.execute("SELECT count(*) FROM deliveries "
                                "WHERE status <> 'succeeded'").fetchone()[0]
        if left:
            raise RuntimeError(f"{left} deliveries not recorded")
        claim_pid, record_pid = map(int, Path(pids.name).read_text().split())
    pg = pg_callgrind.since(before) if pg_callgrind.enabled() else {}
    return n, client, pg.get(claim_pid, 0), pg.get(record_pid, 0)


def run(callbacks: int = 1000, warm: int = 500, ordered: int = 0,
        partitions_at: str = "", old_share: float = 0.0) -> dict[str, float]:
    require_valgrind()
    low, high = (_once(warm, bool(ordered), partitions_at, old_share),
                 _once(warm + callbacks, bool(ordered), partitions_at, old_share))
    n = high[0] - low[0]
    return {"deliveries": n, "client": (high[1] - low[1]) / n,
            "pg_claim": (high[2] - low[2]) / n, "pg_record": (high[3] - low[3]) / n,
            "ordered": ordered}


def report(res: dict[str, float]) -> list[str]:
    kind = "ordered" if res["ordered"] else "unordered"
    return [f"claim + record instructions per delivery (callgrind, {res['deliveries']:.0f} "
            f"deliveries, one {kind} endpoint): client {res['client']:,.0f}; PostgreSQL's "
            f"claiming backend {res['pg_claim']:,.0f}, recording backend {res['pg_record']:,.0f}"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2])
        return
    cli(run, report, callbacks=1000, warm=500, ordered=0, partitions_at="", old_share=0.0)


if __name__ == "__main__":
    main()
