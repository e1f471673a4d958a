"""Processing throughput: events/s per worker process from a pre-filled inbox of
mixed callbacks to committed PostgreSQL state, against a Celery worker running
one no-op task per event on the same machine.

    python deploy/bench/processing.py [--events 100000] [--processes 1 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import redis
from common import RssSampler, hookline, services, stop, wait_ready

from shared import config, queue
from workers.celery_app import make_app


def fill_inbox(r: redis.Redis, n: int) -> None:
    from workload import envelopes

    items = envelopes(n)
    pipe = r.pipeline(transaction=False)
    for i in range(0, len(items), 1000):
        pipe.lpush(queue.INBOX, *items[i:i + 1000])
    pipe.execute()


def drained(r: redis.Redis) -> bool:
    d = queue.depths(r, 60)
    return d.inbox == 0 and d.retry == 0 and d.leases == 0


def run_hookline(n: int, processes: int) -> dict[str, float]:
    with services() as env:
        r = redis.Redis.from_url(env["REDIS_URL"])
        fill_inbox(r, n)
        worker = hookline(["worker", "--concurrency", str(processes), "--metrics-port", "0",
                           "--loglevel", "warning"], env, f"/tmp/bench-worker-{processes}.log")
        try:
            app = make_app(config.load(env))
            wait_ready(app)
            sampler = RssSampler(worker.pid)
            sampler.start()
            started = time.perf_counter()
            app.send_task("hookline.drain", queue="hookline-drain")
            while not drained(r):
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            peak = sampler.stop()
        finally:
            stop(worker)
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            letters = conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    return {"callbacks": n, "events": events, "dead_letters": letters, "seconds": elapsed,
            "callbacks_per_s": n / elapsed, "peak_rss_mb": peak}


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
        try:
            started = time.perf_counter()
            while int(r.get(noop_app.COUNTER) or 0) < n:
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
        finally:
            stop(worker)
    return {"tasks": n, "seconds": elapsed, "tasks_per_s": n / elapsed}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--noop-tasks", type=int, default=20_000)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    noop = run_noop(args.noop_tasks)
    print(f"celery no-op baseline: {noop['tasks_per_s']:.0f} tasks/s "
          f"({noop['tasks']} tasks in {noop['seconds']:.1f}s, 1 process)")
    base = None
    for procs in args.processes:
        res = run_hookline(args.events, procs)
        per = res["callbacks_per_s"] / procs
        base = base or res["callbacks_per_s"]
        print(f"hookline {procs} process(es): {res['callbacks_per_s']:.0f} callbacks/s "
              f"({per:.0f}/s per process, {per / noop['tasks_per_s']:.1f}x no-op per process, "
              f"scaling {res['callbacks_per_s'] / base:.2f}x); {res['events']} events, "
              f"{res['dead_letters']} dead letters in {res['seconds']:.1f}s; "
              f"peak RSS {res['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
