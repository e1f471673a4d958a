"""Run every benchmark in one go and print every figure, side by side.

    python deploy/bench/run_all.py [--wait-quiet 40] [--quick] [--json results.json]

Uses the machine's PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set
(a fresh database and a flushed Redis database per benchmark), embedded ones
otherwise. Needs wrk (`apt-get install wrk`). ``--wait-quiet N`` first waits up
to N minutes for the 1-minute load average to drop below 1.0 (checked every
60 s) and says whether it did. ``--quick`` shrinks every benchmark to check the
setup, not to measure.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import psycopg
import redis
from common import services

PACKAGES = ("flask", "werkzeug", "granian", "celery", "kombu", "redis", "hiredis", "psycopg",
            "psycopg-pool", "marshmallow", "orjson", "prometheus-client", "httpx")
QUIET_LOAD = 1.0


def wait_quiet(minutes: float) -> str:
    deadline = time.monotonic() + minutes * 60
    while True:
        load = os.getloadavg()[0]
        if load < QUIET_LOAD:
            return f"quiet: 1-minute load average {load:.2f} < {QUIET_LOAD}"
        if time.monotonic() >= deadline:
            return (f"NOT quiet: 1-minute load average still {load:.2f} after waiting "
                    f"{minutes:.0f} min; figures below are from a busy machine")
        print(f"waiting for a quiet machine: load average {load:.2f}", flush=True)
        time.sleep(60)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> list[str]:
    with services() as env:
        with psycopg.connect(env["DATABASE_URL"]) as conn:
            pg = conn.execute("SHOW server_version").fetchone()[0]
        info = redis.Redis.from_url(env["REDIS_URL"]).info("server")
    versions = []
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name} {importlib.metadata.version(name)}")
    wrk = shutil.which("wrk")
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split(
        "\n")[0] if wrk else "not installed"
    where = "machine's" if os.environ.get("DATABASE_URL") else "embedded"
    return [
        f"machine: {os.cpu_count()} CPUs ({_cpu_model()}), "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB memory, {platform.platform()}",
        f"versions: Python {platform.python_version()}, PostgreSQL {pg} ({where}), "
        f"Redis {info['redis_version']}, {wrk_version.strip()}",
        f"packages: {', '.join(versions)}",
    ]


def _step(name: str, fn: Callable[[], list[str]], results: dict, lines: list[str]) -> None:
    load = os.getloadavg()[0]
    print(f"--- {name} (load average {load:.2f})", flush=True)
    started = time.monotonic()
    try:
        out = fn()
    except Exception as exc:  # one benchmark failing must not hide the others' figures
        out = [f"{name}: FAILED: {type(exc).__name__}: {exc}"]
    results[name] = {"lines": out, "seconds": round(time.monotonic() - started, 1),
                     "load_before": load}
    print("\n".join(out), flush=True)
    lines += out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="MINUTES")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["ingest", "processing", "latency", "fanout"])
    args = p.parse_args()

    header = machine()
    print("\n".join(header), flush=True)
    if args.wait_quiet:
        header.append(wait_quiet(args.wait_quiet))
        print(header[-1], flush=True)
    header.append(f"load average at start: {os.getloadavg()[0]:.2f}")
    q = args.quick
    results: dict = {}
    lines: list[str] = []
    import fanout_bench
    import ingest_wrk
    import latency
    import processing

    steps: list[tuple[str, Callable[[], list[str]]]] = [
        ("ingest", lambda: ingest_wrk.report(
            ingest_wrk.run(seconds=3 if q else 10, rounds=1 if q else 2))),
        ("processing", lambda: processing.report(processing.run(
            events=10_000 if q else 100_000, noop_tasks=1_000 if q else 20_000))),
        ("latency", lambda: latency.report(latency.run(seconds=5 if q else 30))),
        ("fanout", lambda: fanout_bench.report(fanout_bench.run(quick=q))),
    ]
    for name, fn in steps:
        if name not in args.skip:
            _step(name, fn, results, lines)
    footer = f"load average at end: {os.getloadavg()[0]:.2f}"
    print("\n=== all figures\n" + "\n".join([*header, *lines, footer]))
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "results": results,
                                               "footer": footer}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
