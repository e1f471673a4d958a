"""Processing throughput: events/s per worker process from a pre-filled inbox of
mixed callbacks to committed PostgreSQL state, against a Celery worker running
one no-op task per event on the same machine.

    python deploy/bench/processing.py [--events 100000] [--processes 1 2]
                                      [--variants current] [--rounds 1] [--cpu-quota F]
                                      [--shards 1]

``--cpu-quota 0.35`` holds each worker pool process to 0.35 of one CPU (cgroup v1,
root): scaling from 1 to 2 processes with the CPU per process held constant, so two
cores shared with PostgreSQL are not what it measures.

``--shards 1 4`` runs each with HOOKLINE_INBOX_SHARDS set so, the inbox pre-filled
round-robin over that many shards, as ingest would (docs/benchmarks.md, sharded inbox).

``--old-share 0 0.1`` runs the realistic workload (provider times seconds old) and
then one with that share stamped days to months old (workload.stamp_time), one
process each beyond the first share: what replays and provider backlogs cost.

``--variants current no-ahead before`` compares hookline with some of its
optimisations undone (undo.py), runs interleaved, medians reported.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import redis
from common import (
    CpuMeter,
    CpuQuota,
    PgBackends,
    RssSampler,
    hookline,
    redis_server,
    services,
    stop,
    stopping,
    tree,
    wait_ready,
)
from undo import VARIANTS

from shared import config, inbox, inbox_shards
from workers.celery_app import make_app


def fill_inbox(r: redis.Redis, n: int, shards: int = 1, **rates: float) -> None:
    from workload import envelopes

    items = envelopes(n, **rates)
    keys = [s.inbox for s in inbox_shards.shards(shards, False)]
    pipe = r.pipeline(transaction=False)
    for k, key in enumerate(keys):
        mine = items[k::len(keys)]  # round-robin, as ingest's pushes take turns
        for i in range(0, len(mine), 1000):
            pipe.lpush(key, *mine[i:i + 1000])
    pipe.execute()
    inbox_shards.raise_high_water(r, shards)


def drained(r: redis.Redis, shards: int = 1) -> bool:
    d = inbox.depths(r, 60, shards)
    return d.inbox == 0 and d.retry == 0 and d.leases == 0


def run_hookline(n: int, processes: int, variant: str = "current",
                 cpu_quota: float | None = None, shards: int = 1,
                 old_share: float = 0.0) -> dict[str, float]:
    with services() as env:
        r = redis.Redis.from_url(env["REDIS_URL"])
        fill_inbox(r, n, shards, old_share=old_share)
        if shards > 1:
            env = {**env, "HOOKLINE_INBOX_SHARDS": str(shards)}
        if variant != "current":
            env = {**env, "BENCH_VARIANT": variant,
                   "PYTHONPATH": str(Path(__file__).resolve().parent / "variants")}
        worker = hookline(["worker", "--concurrency", str(processes), "--metrics-port", "0",
                           "--loglevel", "warning"], env, f"/tmp/bench-worker-{processes}.log")
        quota = CpuQuota(cpu_quota) if cpu_quota else None
        try:
            app = make_app(config.load(env))
            wait_ready(app)
            if quota:
                for pid in tree(worker.pid)()[1:]:  # the pool processes
                    quota.confine(pid)
            sampler = RssSampler(worker.pid)
            sampler.start()
            backends = PgBackends(env["DATABASE_URL"])
            meters = {"worker": CpuMeter(tree(worker.pid)), "postgres": CpuMeter(backends),
                      "redis": CpuMeter(redis_server(env["REDIS_URL"]))}
            for m in meters.values():
                m.start()
            started = time.perf_counter()
            app.send_task("hookline.drain", queue="hookline-drain")
            while not drained(r, shards):
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            cpu = {k: m.stop() for k, m in meters.items()}
            backends.close()
            peak = sampler.stop()
        finally:
            stop(worker)
            if quota:
                quota.close()
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    return {"callbacks": n, "events": events, "dead_letters": letters, "seconds": elapsed,
            "callbacks_per_s": n / elapsed, "peak_rss_mb": peak,
            **{f"{k}_cpu_us": v / n * 1e6 for k, v in cpu.items()}}


def run_noop(n: int) -> dict[str, float]:
    with services() as env:
        import noop_app

        app = noop_app.make(env["REDIS_URL"])
        r = redis.Redis.from_url(env["REDIS_URL"])
        for _ in range(n):
            app.send_task(noop_app.TASK, queue=noop_app.QUEUE)
        here = Path(__file__).parent
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "noop_app", "worker", "-Q", noop_app.QUEUE,
             "--concurrency", "1", "--loglevel", "warning", "--prefetch-multiplier", "1"],
            cwd=here, env={**env, "BENCH_REDIS_URL": env["REDIS_URL"]},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with stopping([worker]):
            started = time.perf_counter()
            while int(r.get(noop_app.COUNTER) or 0) < n:
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
    return {"tasks": n, "seconds": elapsed, "tasks_per_s": n / elapsed}


def run(events: int = 100_000, noop_tasks: int = 20_000, processes: tuple[int, ...] = (1, 2),
        variants: tuple[str, ...] = ("current",), rounds: int = 1,
        cpu_quota: float | None = None, shards: tuple[int, ...] = (1,),
        old_shares: tuple[float, ...] = (0.0,)) -> dict:
    runs: dict[tuple[int, str], list[dict[str, float]]] = {}
    for _ in range(rounds):
        for k, share in enumerate(old_shares):
            for procs in processes if k == 0 else processes[:1]:
                for variant in variants:
                    for count in shards:
                        name = variant if count == 1 else f"{variant}, {count} shards"
                        if share:
                            name += f", {share:.0%} old-stamped"
                        runs.setdefault((procs, name), []).append(
                            run_hookline(events, procs, variant, cpu_quota, count, share))
    hookline_runs = {key: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                     for key, rs in runs.items()}
    return {"noop": run_noop(noop_tasks), "hookline": hookline_runs}


def report(res: dict) -> list[str]:
    noop = res["noop"]
    lines = [f"processing celery no-op baseline: {noop['tasks_per_s']:.0f} tasks/s "
             f"({noop['tasks']} tasks in {noop['seconds']:.1f}s, 1 process)"]
    for (procs, variant), r in res["hookline"].items():
        per = r["callbacks_per_s"] / procs
        one = res["hookline"].get((1, variant))
        scaling = f", scaling {r['callbacks_per_s'] / one['callbacks_per_s']:.2f}x of 1 " \
            f"process (linear {procs:.2f}x)" if one and procs > 1 else ""
        name = "" if variant == "current" else f" [{variant}]"
        if res.get("cpu_quota"):
            name += f" [each process held to {res['cpu_quota']:g} CPU]"
        lines.append(
            f"processing hookline{name} {procs} process(es): {r['callbacks_per_s']:.0f} "
            f"callbacks/s, {per:.0f}/s per process (target >= 10000), "
            f"{per / noop['tasks_per_s']:.1f}x the no-op per process{scaling}; "
            f"{r['events']:.0f} events, {r['dead_letters']:.0f} dead letters in "
            f"{r['seconds']:.1f}s; peak RSS {r['peak_rss_mb']:.0f} MB (target < 200 MB)")
        lines.append(
            f"processing CPU per callback{name} ({procs} process(es)): worker "
            f"{r['worker_cpu_us']:.0f} us, PostgreSQL {r['postgres_cpu_us']:.0f} us, Redis "
            f"{r['redis_cpu_us']:.0f} us")
    lines += old_stamped(res["hookline"])
    return lines


def old_stamped(runs: dict) -> list[str]:
    """What the old-stamped share costs PostgreSQL per callback, against the realistic
    run of the same variant and process count (issue 25: at most 1.2x)."""
    out = []
    for (procs, name), r in runs.items():
        base = runs.get((procs, name.split(", ")[0]))
        if "old-stamped" in name and base:
            ratio = r["postgres_cpu_us"] / base["postgres_cpu_us"]
            out.append(f"processing [{name}] ({procs} process(es)): PostgreSQL CPU per "
                       f"callback {r['postgres_cpu_us']:.0f} us, {ratio:.2f}x the realistic "
                       f"workload's {base['postgres_cpu_us']:.0f} us (target <= 1.2x)")
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--noop-tasks", type=int, default=20_000)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--variants", nargs="+", default=["current"], choices=VARIANTS)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--cpu-quota", type=float, help="each pool process's share of one CPU")
    p.add_argument("--shards", type=int, nargs="+", default=[1],
                   help="HOOKLINE_INBOX_SHARDS values to run (interleaved)")
    p.add_argument("--old-share", type=float, nargs="+", default=[0.0],
                   help="shares of callbacks stamped days to months old, one run each")
    args = p.parse_args()
    res = run(args.events, args.noop_tasks, tuple(args.processes), tuple(args.variants),
              args.rounds, args.cpu_quota, tuple(args.shards), tuple(args.old_share))
    res["cpu_quota"] = args.cpu_quota
    print("\n".join(report(res)))


if __name__ == "__main__":
    main()
