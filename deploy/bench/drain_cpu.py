"""CPU per callback of the drain, in-process (no Celery): worker and PostgreSQL
CPU seconds and wall time, for before/after comparisons of an optimisation.
Runs alternate between variants (A, B, A, B, ...) so a busy neighbour hurts
each alike; CPU time is far less sensitive to one than wall time.

    python deploy/bench/drain_cpu.py [--events 20000] [--rounds 3]
                                     [--variants before no-ahead current]

The drain runs as the drain task runs it (GC tuned as in a worker pool process,
the next batch read ahead while one commits), switched to each variant of
undo.py in turn.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import CpuMeter, PgBackends, services
from undo import VARIANTS, set_variant


def once(env: dict[str, str], events: int, variant: str) -> dict[str, float]:
    from processing import fill_inbox

    from shared import config
    from shared.runtime import Runtime, install
    from workers.ahead import ReadAhead
    from workers.tasks import drain_round

    rt = Runtime(config.load(env))
    install(rt)
    fill_inbox(rt.redis, events)
    drain_round(rt)  # warm: connections, prepared statements
    set_variant(variant)
    backends = PgBackends(env["DATABASE_URL"])
    pg = CpuMeter(backends)
    pg.start()
    wall, cpu = time.perf_counter(), time.process_time()
    ahead = ReadAhead(rt)
    while drain_round(rt, ahead) is not None:
        pass
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pg_cpu = pg.stop()
    backends.close()
    rt.close()
    done = events - rt.settings.batch_size
    return {"wall_us": wall / done * 1e6, "cpu_us": cpu / done * 1e6,
            "pg_us": pg_cpu / done * 1e6, "per_s": done / wall}


def main() -> None:
    import logging

    logging.disable(logging.WARNING)  # one line per dead letter is not what we measure
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=list(reversed(VARIANTS)), choices=VARIANTS)
    args = p.parse_args()
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    for _ in range(args.rounds):
        for v in args.variants:
            with services() as env:
                results[v].append(once(env, args.events, v))
    for v, rs in results.items():
        runs = ", ".join(f"{r['cpu_us']:.1f}" for r in rs)
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"{v:8s} worker CPU {med['cpu_us']:5.1f} us/callback, PostgreSQL CPU "
              f"{med['pg_us']:5.1f} us, wall {med['wall_us']:5.1f} us ({med['per_s']:.0f}/s) "
              f"[median of {len(rs)}; worker CPU per run: {runs}]")


if __name__ == "__main__":
    main()
