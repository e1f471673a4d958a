"""Ingest: `hookline ingest` (the production server configuration) against a bare
Flask app that only LPUSHes the body to the same Redis, served the same way,
under wrk with 32 connections and the Kaleyra RCS receipt bodies.

    python deploy/bench/ingest_wrk.py [--seconds 10] [--rounds 2] [--connections 32]

Rounds alternate hookline, hookline with a tenant's callback key, bare, ... so a busy
neighbour hurts all alike; each server gets a short warm-up first. The tenant-key runs
send a live callback key of a tenant instead of the source's token: ingest resolves it
from its in-process snapshot (ingest.tenant_keys), the cost docs/tenants.md names.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import redis
from common import (
    ROOT,
    CpuMeter,
    free_port,
    hookline,
    redis_server,
    services,
    stopping,
    tree,
    wait_http,
)

HERE = Path(__file__).resolve().parent
BODIES = sorted((ROOT / "tests" / "fixtures" / "kaleyra-rcs").glob("dr_*.json"))
TOKEN = "bench-callback-token"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * _UNITS[unit]


def parse_wrk(out: str) -> dict[str, float]:
    """requests/s, p50 and p99 (ms) and the non-2xx count from `wrk --latency`."""
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)$", out, re.M)
    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(pct["50"]),
        "p99_ms": _ms(pct["99"]),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sock.group(1).strip() if sock else "",
    }


def wrk(url: str, seconds: int, connections: int, token: str = TOKEN) -> dict[str, float]:
    cmd = ["wrk", "-t", str(min(connections, os.cpu_count() or 2)), "-c", str(connections),
           "-d", f"{int(seconds)}s", "--latency", "-s", str(HERE / "kaleyra.lua"), url, "--",
           *map(str, BODIES)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env={**os.environ, "BENCH_TOKEN": token}, timeout=seconds + 60).stdout
    return parse_wrk(out)


def start_servers(env: dict[str, str], server_args: list[str] = ()
                  ) -> tuple[dict[str, str], list[subprocess.Popen]]:
    """hookline ingest and the bare app, same command line; returns their URLs."""
    ports = {"hookline": free_port(), "bare": free_port()}
    args = ["--host", "127.0.0.1", *server_args]
    env = {**env, "HOOKLINE_CALLBACK_TOKEN": TOKEN}
    procs = [
        hookline(["ingest", *args, "--port", str(ports["hookline"])], env,
                 "/tmp/bench-ingest-hookline.log"),
        subprocess.Popen(
            [sys.executable, str(HERE / "serve_bare.py"), *args, "--port", str(ports["bare"])],
            env={**env, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)])}, cwd=ROOT,
            stdout=open("/tmp/bench-ingest-bare.log", "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT),
    ]
    for port in ports.values():
        wait_http(f"http://127.0.0.1:{port}/healthz")
    return {k: f"http://127.0.0.1:{p}/callbacks/kaleyra-rcs" for k, p in ports.items()}, procs


def run(seconds: int = 10, rounds: int = 2, connections: int = 32,
        server_args: list[str] = ()) -> dict[str, dict]:
    """``server_args``: extra `hookline ingest` options for both servers (e.g. --threads 4);
    none measures the production defaults."""
    with services() as env:
        r = redis.Redis.from_url(env["REDIS_URL"])
        # A tree from before tenants (--tree) has no tenant keys: that run is left out.
        key = _tenant_callback_key(env["DATABASE_URL"]) if _has_tenants() else None
        urls, procs = start_servers(env, server_args)
        # (name, URL, token, the server's process)
        plan = [("hookline", urls["hookline"], TOKEN, procs[0]),
                ("hookline_tenant_key", urls["hookline"], key, procs[0]),
                ("bare", urls["bare"], TOKEN, procs[1])]
        plan = [step for step in plan if step[2] is not None]
        try:
            with stopping(procs):
                for _, url, token, _ in plan:
                    wrk(url, 2, connections, token)  # warm-up: connections, imports, caches
                runs: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in plan}
                for _ in range(rounds):
                    for name, url, token, proc in plan:
                        runs[name].append(_metered(url, seconds, connections, proc.pid, env,
                                                   token))
                        r.flushdb()  # keep the shared Redis small between rounds
        finally:
            r.flushdb()
    result = {name: _mean(rs) for name, rs in runs.items()}
    result["ratio"] = {"rps": result["hookline"]["rps"] / result["bare"]["rps"]}
    if "hookline_tenant_key" in result:
        result["ratio"]["tenant_key_rps"] = (result["hookline_tenant_key"]["rps"]
                                             / result["bare"]["rps"])
    return result


def _has_tenants() -> bool:
    return (ROOT / "shared" / "db" / "tenants.py").exists()


def _tenant_callback_key(database_url: str) -> str:
    """A tenant's live callback key in the benchmark's database."""
    # Imported here: a tree measured with --tree from before tenants has no such modules.
    import psycopg

    from shared.db import keys, tenants

    with psycopg.connect(database_url) as conn:
        tenant = tenants.create(conn, "bench", [])
        return keys.create(conn, tenant["id"], "bench", "callback")["key"]


def _metered(url: str, seconds: int, connections: int, server: int,
             env: dict[str, str], token: str = TOKEN) -> dict[str, float]:
    """One wrk run, with the server's and Redis's CPU per request."""
    meters = {"server": CpuMeter(tree(server)), "redis": CpuMeter(redis_server(env["REDIS_URL"]))}
    for m in meters.values():
        m.start()
    res = wrk(url, seconds, connections, token)
    for name, m in meters.items():
        res[f"{name}_cpu_us"] = m.stop() / max(1, res["requests"]) * 1e6
    return res


def _mean(rs: list[dict[str, float]]) -> dict[str, float]:
    keys = ("rps", "p50_ms", "p99_ms", "server_cpu_us", "redis_cpu_us")
    out = {k: statistics.fmean(r[k] for r in rs) for k in keys}
    out["non_2xx"] = sum(r["non_2xx"] for r in rs)
    out["rounds_rps"] = [round(r["rps"]) for r in rs]
    return out


def _server_line(name: str, r: dict[str, float]) -> str:
    return (f"ingest {name}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
            f"p99 {r['p99_ms']:.2f} ms (rounds {r['rounds_rps']}, non-2xx {r['non_2xx']}); "
            f"CPU per request: server {r['server_cpu_us']:.0f} us, "
            f"Redis {r['redis_cpu_us']:.0f} us")


def report(res: dict[str, dict]) -> list[str]:
    h = res["hookline"]
    lines = [_server_line("hookline", h), _server_line("bare LPUSH app", res["bare"]),
             f"ingest ratio hookline/bare: {res['ratio']['rps']:.2f} (target >= 0.90); "
             f"hookline p99 {h['p99_ms']:.2f} ms (target < 20 ms)"]
    if "hookline_tenant_key" in res:
        lines[1:1] = [_server_line("hookline, tenant callback key", res["hookline_tenant_key"])]
        lines.append("ingest ratio with a tenant callback key/bare: "
                     f"{res['ratio']['tenant_key_rps']:.2f} (target >= 0.90)")
    return lines


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=None,
                   help="blocking threads per server process (default: hookline ingest's)")
    args = p.parse_args()
    server_args = ["--threads", str(args.threads)] if args.threads else []
    print("\n".join(report(run(args.seconds, args.rounds, args.connections, server_args))))


if __name__ == "__main__":
    main()
