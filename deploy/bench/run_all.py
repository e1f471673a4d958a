"""Run every benchmark in one go and print every figure, side by side.

    python deploy/bench/run_all.py [--wait-quiet 40] [--quick] [--json results.json]

Uses the machine's PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set
(a fresh database and a flushed Redis database per benchmark), embedded ones
otherwise. Needs wrk and valgrind (`apt-get install wrk valgrind`). ``--wait-quiet N`` waits, before
each benchmark, for the 1-minute load average to drop below 1.0 (checked every
60 s), up to N minutes in all, and says each time whether it did. ``--quick``
shrinks every benchmark to check the setup, not to measure.
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

import common
import psutil
import psycopg
import redis
from common import services

PACKAGES = ("flask", "werkzeug", "granian", "celery", "kombu", "redis", "hiredis", "psycopg",
            "psycopg-pool", "marshmallow", "orjson", "prometheus-client", "httpx")
QUIET_LOAD = 1.0


def wait_quiet(deadline: float) -> str:
    """Wait until the load is low or ``deadline`` (time.monotonic()) has passed."""
    started = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        if load < QUIET_LOAD:
            return f"quiet: 1-minute load average {load:.2f} < {QUIET_LOAD}"
        if time.monotonic() >= deadline:
            return (f"NOT quiet: 1-minute load average still {load:.2f} after waiting "
                    f"{(time.monotonic() - started) / 60:.0f} min; this benchmark ran on a "
                    "busy machine")
        print(f"waiting for a quiet machine: load average {load:.2f}", flush=True)
        time.sleep(60)


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_speed() -> float:
    """CPU seconds of a fixed pure-Python loop (best of 3): how fast this VM's vCPU
    is today. Shared hosts differ from day to day (seen: twice as slow one evening,
    for the same code); figures from two runs compare only at the same speed."""
    best = float("inf")
    for _ in range(3):
        started, total = time.process_time(), 0
        for i in range(5_000_000):
            total += i
        best = min(best, time.process_time() - started)
    return best


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
        f"CPU speed check: a 5,000,000-step Python loop takes {cpu_speed():.3f} s of CPU "
        "(best of 3; lower is faster)",
    ]


def _step(name: str, fn: Callable[[], dict], report: Callable[[dict], list[str]],
          results: dict, lines: list[str], quiet_until: float | None) -> None:
    if quiet_until is not None:
        lines.append(f"{name}: {wait_quiet(quiet_until)}")
        print(lines[-1], flush=True)
    load = os.getloadavg()[0]
    print(f"--- {name} (load average {load:.2f})", flush=True)
    started = time.monotonic()
    try:
        raw = fn()
        out = report(raw)
    except Exception as exc:  # one benchmark failing must not hide the others' figures
        raw, out = None, [f"{name}: FAILED: {type(exc).__name__}: {exc}"]
    load_after = os.getloadavg()[0]
    out.append(f"{name}: load average {load:.2f} before, {load_after:.2f} after")
    results[name] = {"raw": raw, "lines": out, "load_before": load, "load_after": load_after,
                     "seconds": round(time.monotonic() - started, 1)}
    print("\n".join(out), flush=True)
    lines += out


def _row(figure: str, value: str, against: str, ratio: str, target: str, met: bool | None
         ) -> str:
    verdict = "n/a" if met is None else ("yes" if met else "NO")
    return f"| {figure} | {value} | {against} | {ratio} | {target} | {verdict} |"


def summary(results: dict) -> list[str]:
    """One table row per figure, with its comparison, ratio and target."""
    rows = ["| figure | hookline | compared with | ratio | target | met |",
            "| --- | --- | --- | --- | --- | --- |"]
    raw = {k: v["raw"] for k, v in results.items() if v.get("raw")}
    if "ingest" in raw:
        h, b = raw["ingest"]["hookline"], raw["ingest"]["bare"]
        ratio = h["rps"] / b["rps"]
        rows += [
            _row("ingest requests/s (wrk, 32 connections)", f"{h['rps']:.0f}",
                 f"bare LPUSH app {b['rps']:.0f}", f"{ratio:.2f}", ">= 0.90", ratio >= 0.9),
            _row("ingest p50", f"{h['p50_ms']:.2f} ms", f"bare {b['p50_ms']:.2f} ms",
                 f"{h['p50_ms'] / b['p50_ms']:.2f}", "", None),
            _row("ingest p99", f"{h['p99_ms']:.2f} ms", f"bare {b['p99_ms']:.2f} ms",
                 f"{h['p99_ms'] / b['p99_ms']:.2f}", "< 20 ms", h["p99_ms"] < 20),
        ]
    if "ingest_instructions" in raw:
        h, b = (raw["ingest_instructions"][k]["per_request"] for k in ("hookline", "bare"))
        rows.append(_row("ingest instructions per request (callgrind)", f"{h:,.0f}",
                         f"bare LPUSH app {b:,.0f}", f"{h / b:.2f}", "", None))
    if "drain_instructions" in raw:
        d = raw["drain_instructions"]
        rows.append(_row("drain instructions per callback (callgrind): drain thread",
                         f"{d['drain_thread']:,.0f}", f"all threads {d['total']:,.0f}",
                         f"{d['drain_thread'] / d['total']:.2f}", "", None))
    if "processing" in raw:
        noop = raw["processing"]["noop"]["tasks_per_s"]
        runs = raw["processing"]["hookline"]
        one = runs.get((1, "current"))
        for (procs, variant), r in runs.items():
            if variant != "current":
                continue
            per = r["callbacks_per_s"] / procs
            rows.append(_row(f"processing, {procs} worker process(es): callbacks/s per process",
                             f"{per:.0f}", f"Celery no-op task {noop:.0f}/s",
                             f"{per / noop:.1f}", ">= 13x the no-op (issue 25)",
                             per / noop >= 13 if procs == 1 else None))
            rows.append(_row(f"processing, {procs} worker process(es): PostgreSQL CPU per "
                             "callback", f"{r['postgres_cpu_us']:.0f} us", "", "",
                             "<= 60 us (issue 25)",
                             r["postgres_cpu_us"] <= 60 if procs == 1 else None))
            if procs > 1 and one:
                scale = r["callbacks_per_s"] / one["callbacks_per_s"]
                rows.append(_row(f"processing scaling, {procs} processes",
                                 f"{r['callbacks_per_s']:.0f}/s",
                                 f"1 process {one['callbacks_per_s']:.0f}/s", f"{scale:.2f}",
                                 ">= 1.5 (issue 25; linear: 2)", scale >= 1.5))
                # Whether the work per callback grows with processes (contention) or
                # the machine simply has no more cores to give (docs/benchmarks.md).
                cpu, cpu1 = (x["worker_cpu_us"] + x["postgres_cpu_us"] for x in (r, one))
                ceiling = (os.cpu_count() or 1) * 1e6 / (cpu + r["redis_cpu_us"])
                rows.append(_row(f"CPU per callback (worker + PostgreSQL), {procs} processes",
                                 f"{cpu:.0f} us", f"1 process {cpu1:.0f} us",
                                 f"{cpu / cpu1:.2f}", f"machine ceiling {ceiling:.0f}/s",
                                 None))
            rows.append(_row(f"peak RSS of a worker process, processing ({procs})",
                             f"{r['peak_rss_mb']:.0f} MB", "", "", "< 200 MB",
                             r["peak_rss_mb"] < 200))
        for (procs, name), r in runs.items():
            base = runs.get((procs, "current"))
            if name.startswith("current, ") and "old-stamped" in name and base:
                ratio = r["postgres_cpu_us"] / base["postgres_cpu_us"]
                rows.append(_row(f"processing [{name}]: PostgreSQL CPU per callback",
                                 f"{r['postgres_cpu_us']:.0f} us",
                                 f"realistic {base['postgres_cpu_us']:.0f} us",
                                 f"{ratio:.2f}", "<= 1.2 (issue 25)", ratio <= 1.2))
    if "latency" in raw:
        r = raw["latency"]
        rows += [
            _row(f"latency 202 -> committed p50 at {r['rate']:.0f}/s", f"{r['p50_ms']:.1f} ms",
                 "", "", "< 50 ms", r["p50_ms"] < 50),
            _row(f"latency 202 -> committed p99 at {r['rate']:.0f}/s", f"{r['p99_ms']:.1f} ms",
                 "", "", "< 500 ms", r["p99_ms"] < 500),
            _row("peak RSS of a worker process, latency run", f"{r['peak_rss_mb']:.0f} MB",
                 "", "", "< 200 MB", r["peak_rss_mb"] < 200),
        ]
    if "fanout" in raw:
        f, s = raw["fanout"]["fast"], raw["fanout"]["with_slow"]
        ratio = raw["fanout"]["ratio"]["fast_rate"]
        rows += [
            _row("fan-out deliveries/s, 1 worker process, 3 endpoints", f"{f['fast_per_s']:.0f}",
                 "", "", ">= 2,000", f["fast_per_s"] >= 2000),
            _row("fan-out fast endpoints' rate with a slow endpoint", f"{s['fast_per_s']:.0f}",
                 f"without it {f['fast_per_s']:.0f}", f"{ratio:.2f}", ">= 0.90", ratio >= 0.9),
        ]
    if "send_instructions" in raw:
        rows.append(_row("send instructions per delivery attempt (callgrind)",
                         f"{raw['send_instructions']['per_attempt']:,.0f}", "", "", "", None))
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="MINUTES")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None, help="also write the figures here")
    p.add_argument("--tree", default=None, metavar="PATH",
                   help="measure another checkout's code with these scripts (e.g. `git "
                        "worktree add /tmp/old dfed776`, then --tree /tmp/old)")
    p.add_argument("--old-share", type=float, default=0.1,
                   help="processing's second run: this share stamped days to months old")
    p.add_argument("--skip", nargs="*", default=[],
                   choices=["ingest", "ingest_instructions", "processing",
                            "drain_instructions", "latency", "fanout", "send_instructions",
                            "tracing_cost"])
    args = p.parse_args()
    tree = str(Path(args.tree).resolve()) if args.tree else None
    if tree and os.environ.get(common.TREE) != tree:
        # Imports made at start-up came from this checkout: start again on the other.
        os.environ[common.TREE] = tree
        os.execv(sys.executable, [sys.executable, str(Path(__file__).resolve()),
                                  *sys.argv[1:]])

    header = machine()
    header.append(f"code measured: {common.ROOT}")
    print("\n".join(header), flush=True)
    quiet_until = time.monotonic() + args.wait_quiet * 60 if args.wait_quiet else None
    header.append(f"load average at start: {os.getloadavg()[0]:.2f}")
    q = args.quick
    results: dict = {}
    lines: list[str] = []
    import drain_instructions
    import fanout_bench
    import ingest_instructions
    import ingest_wrk
    import latency
    import processing
    import send_instructions
    import tracing_cost

    steps: list[tuple[str, Callable[[], dict], Callable[[dict], list[str]]]] = [
        # Rounds alternate and the medians are reported: single runs on this shared
        # VM differed by up to a fifth for the same code.
        ("ingest", lambda: ingest_wrk.run(seconds=3 if q else 10, rounds=1 if q else 3),
         ingest_wrk.report),
        # The same comparison without the machine's noise (needs valgrind).
        ("ingest_instructions", lambda: ingest_instructions.run(requests=200 if q else 1000),
         ingest_instructions.report),
        # The realistic workload (provider times seconds old), then one with a tenth
        # stamped days to months old (replays, provider backlogs), 1 process.
        ("processing", lambda: processing.run(events=10_000 if q else 100_000,
                                              noop_tasks=1_000 if q else 20_000,
                                              rounds=1 if q else 2,
                                              old_shares=(0.0, args.old_share)
                                              if args.old_share else (0.0,)),
         processing.report),
        # The worker's side of processing without the machine's noise, per thread.
        ("drain_instructions", lambda: drain_instructions.run(events=500 if q else 2000,
                                                              warm=1000),
         drain_instructions.report),
        ("latency", lambda: latency.run(seconds=5 if q else 30), latency.report),
        ("fanout", lambda: fanout_bench.run(events=10_000, rounds=1 if q else 2, quick=q),
         fanout_bench.report),
        # The sending thread's side of fan-out without the machine's noise.
        ("send_instructions", lambda: send_instructions.run(attempts=500 if q else 2000),
         send_instructions.report),
        # An ingest request with tracing off (as above) and on (docs/benchmarks.md).
        ("tracing_cost", lambda: tracing_cost.run(requests=200 if q else 1000),
         tracing_cost.report),
    ]
    for name, fn, report in steps:
        if name not in args.skip:
            _step(name, fn, report, results, lines, quiet_until)
    footer = f"load average at end: {os.getloadavg()[0]:.2f}"
    table = summary(results)
    print("\n=== all figures\n" + "\n".join([*header, *lines, footer, "", *table]))
    if args.json:
        for v in results.values():
            v.pop("raw", None)  # tuple keys; the lines and the table say it all
        Path(args.json).write_text(json.dumps({"header": header, "results": results,
                                               "footer": footer, "table": table}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
