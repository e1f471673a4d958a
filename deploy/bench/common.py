"""Shared plumbing for the benchmark scripts: services, processes, sampling."""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import psutil
import psycopg

HERE = Path(__file__).resolve().parent
# The code measured: this checkout, or another one's (run_all.py --tree, e.g. the tree
# before partitions, for a same-sitting comparison with these same scripts). Not
# HOOKLINE_*: services() passes every other variable on to what it starts.
TREE = "BENCH_TREE"
ROOT = Path(os.environ.get(TREE) or HERE.parents[1]).resolve()
sys.path.insert(0, str(ROOT))

from shared.db.migrate import migrate  # noqa: E402
from shared.embedded import EmbeddedPostgres, EmbeddedRedis  # noqa: E402


@contextlib.contextmanager
def services(until: str | None = None) -> Iterator[dict[str, str]]:
    """A fresh database and a flushed Redis database: the machine's when
    DATABASE_URL / REDIS_URL are set, embedded otherwise. ``until``: the schema only
    up to that migration (shared.db.migrate), e.g. to measure an older layout."""
    stack = contextlib.ExitStack()
    with stack:
        base = _service(stack, "DATABASE_URL", EmbeddedPostgres, "hl-bench-pg-")
        redis_url = _service(stack, "REDIS_URL", EmbeddedRedis, "hl-bench-redis-")
        name = f"hookline_bench_{secrets.token_hex(3)}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        stack.callback(_drop, base, name)
        url = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
        migrate(url, until=until)
        import redis

        redis.Redis.from_url(redis_url).flushdb()
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
        env.update(DATABASE_URL=url, REDIS_URL=redis_url, HOOKLINE_LOG_FORMAT="text",
                   HOOKLINE_API_TOKEN="bench")
        yield env


def make_partitions(database_url: str, at: str) -> list[str]:
    """Opt-in (``--partitions-at``, AFTER migration 010 only): daily partitions of every
    partitioned table around the given UTC days, so that the workload's events land in
    real partitions, not in the DEFAULT ones (migrate makes them only around now, and
    the fixtures carry their own timestamps, 2017 to 2026). ``at`` is ``fixtures`` (every
    day any fixture's events occur on, the same set whatever the run's size) or
    comma-separated YYYY-MM-DD days. Made before the inbox is filled; the names made."""
    from datetime import UTC, date, datetime, timedelta

    from shared.db import events, partitions

    if at == "fixtures":
        from workload import _fixtures

        from shared import providers

        days = set()
        for source, event, doc in _fixtures():
            try:
                found = providers.parse(source, event, doc)
            except Exception:  # a fixture that does not parse has no day
                continue
            days |= {e.occurred_at.astimezone(UTC).date() for e in found}
    else:
        days = {date.fromisoformat(d) for d in at.split(",")}
    # Only the days the rows need (partitions.ensure would make BEHIND_DAYS more around
    # each, three times the catalogue work, minutes under callgrind): each table's day,
    # and for event_keys the DEDUPE_DAYS buckets after it too.
    made: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        for parent, column in partitions.TABLES:
            extra = events.DEDUPE_DAYS if parent == "event_keys" else 0
            have = partitions.partitions(conn, parent)
            for lower in sorted({datetime(d.year, d.month, d.day, tzinfo=UTC)
                                 + timedelta(days=k) for d in days for k in range(extra + 1)}):
                upper = lower + timedelta(days=1)
                if any(p.lower < upper and lower < p.upper for p in have):
                    continue
                name = partitions.name_for(parent, lower)
                partitions._create(conn, parent, column, name, lower, upper)
                have.append(partitions.Partition(name, lower, upper))
                made.append(name)
    return made


def _service(stack: contextlib.ExitStack, variable: str,
             embedded: type[EmbeddedPostgres | EmbeddedRedis], prefix: str) -> str:
    """The URL the variable names, else an embedded server's in a new temporary folder,
    stopped when ``stack`` closes."""
    url = os.environ.get(variable)
    if url:
        return url
    server = embedded(Path(tempfile.mkdtemp(prefix=prefix)))
    url = server.start()
    stack.callback(server.stop)
    return url


def _drop(base: str, name: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def hookline(args: list[str], env: dict[str, str], log: str) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115 - lives as long as the process
    # Open callbacks: the numbers stay comparable with the runs before ingest refused to
    # start without a credential (docs/benchmarks.md measures the unauthenticated path).
    env = {"HOOKLINE_CALLBACKS_OPEN": "true", **env}
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                            env.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "hookline", *args], env=env, cwd=ROOT,
                            stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def stopping(procs: list[subprocess.Popen]) -> Iterator[list[subprocess.Popen]]:
    """The processes, stopped when the block ends, however it ends."""
    try:
        yield procs
    finally:
        for p in procs:
            stop(p)


@contextlib.contextmanager
def fast_receiver(threads: int = 32) -> Iterator[tuple[int, int]]:
    """fast_receiver.py (the customer endpoint that answers 200 at once) in a process of its
    own with ``threads`` blocking threads; yields its port and pid once it answers."""
    port = free_port()
    rx = subprocess.Popen([sys.executable, str(HERE / "fast_receiver.py"), str(port),
                           str(threads)], cwd=HERE,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with stopping([rx]):
        wait_http(f"http://127.0.0.1:{port}/", timeout=30)
        yield port, rx.pid


R = TypeVar("R")


def cli(run: Callable[..., R], report: Callable[[R], list[str]], **defaults: float) -> None:
    """A benchmark's command line: a --flag for each keyword of ``defaults`` (of its
    default's type), ``run`` called with them, its report printed."""
    print("\n".join(report(run(**vars(flags(None, **defaults))))))


def flags(doc: str | None, **defaults: float) -> argparse.Namespace:
    """The command line's --flags, one for each keyword of ``defaults`` (of its default's
    type); ``doc``'s first line describes the command."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    for name, default in defaults.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    return p.parse_args()


class RssSampler(threading.Thread):
    """Peak RSS of any single process in a process tree, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(self.pid)
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):
                        self.peak = max(self.peak, p.memory_info().rss)
            time.sleep(0.05)

    def stop(self) -> float:
        self.running = False
        return self.peak / 2**20


def wait_ready(app, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.control.ping(timeout=0.5):
            return
    raise RuntimeError("worker did not answer a ping")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


class CpuMeter(threading.Thread):
    """CPU seconds used by a changing set of processes while it runs.

    ``pids()`` is asked every 0.2 s; each process counts from the first time it
    is seen (its CPU at the first look when it was there at the start, zero when
    it was born later) to the last time it was seen, so short-lived processes
    count too.
    """

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.running = True
        self._look(initial=True)

    def _look(self, initial: bool = False) -> None:
        for pid in self.pids():
            with contextlib.suppress(psutil.Error):
                t = psutil.Process(pid).cpu_times()
                used = t.user + t.system
                self.first.setdefault(pid, used if initial else 0.0)
                self.last[pid] = used

    def run(self) -> None:
        while self.running:
            time.sleep(0.2)
            with contextlib.suppress(Exception):
                self._look()

    def stop(self) -> float:
        self.running = False
        self.join()
        with contextlib.suppress(Exception):
            self._look()
        return sum(self.last[p] - self.first[p] for p in self.last)


CGROUP_CPU = Path("/sys/fs/cgroup/cpu")


class CpuQuota:
    """Holds processes to a fixed share of one CPU each (the cgroup v1 cpu controller,
    as root): a scaling figure with the CPU per process held constant, free of the
    cores the processes share with PostgreSQL."""

    def __init__(self, fraction: float) -> None:
        if not (CGROUP_CPU / "cpu.cfs_quota_us").exists():
            sys.exit(f"--cpu-quota needs the cgroup v1 cpu controller at {CGROUP_CPU}")
        self.fraction = fraction
        self.groups: list[Path] = []

    def confine(self, pid: int) -> None:
        group = CGROUP_CPU / f"hookline-bench-{pid}"
        group.mkdir(exist_ok=True)
        period = int((group / "cpu.cfs_period_us").read_text())
        (group / "cpu.cfs_quota_us").write_text(str(int(period * self.fraction)))
        (group / "cgroup.procs").write_text(str(pid))  # every thread of the process
        self.groups.append(group)

    def close(self) -> None:
        for group in self.groups:
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (CGROUP_CPU / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                group.rmdir()


def tree(pid: int) -> Callable[[], list[int]]:
    """The pids of a process and all its descendants."""

    def pids() -> list[int]:
        try:
            root = psutil.Process(pid)
            return [pid, *(c.pid for c in root.children(recursive=True))]
        except psutil.Error:
            return []

    return pids


class PgBackends:
    """The pids of the PostgreSQL backends serving a database (local servers only)."""

    def __init__(self, database_url: str) -> None:
        self.conn = psycopg.connect(database_url, autocommit=True)

    def __call__(self) -> list[int]:
        rows = self.conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND pid <> pg_backend_pid()").fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        self.conn.close()


def redis_server(redis_url: str) -> Callable[[], list[int]]:
    """The pid of a local Redis server, from INFO."""
    import redis

    pid = int(redis.Redis.from_url(redis_url).info("server")["process_id"])
    return lambda: [pid]


def require_valgrind() -> None:
    if not shutil.which("valgrind"):
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")


def callgrind_threads(script: Path, args: list[str], env: dict[str, str]) -> list[int]:
    """Instructions of each thread of ``python script --child *args`` run under
    valgrind's callgrind, the main thread first. PYTHONHASHSEED is fixed so two
    runs hash (and so allocate) alike; the script's folder and the project are on
    its path."""
    env = {**env, "PYTHONHASHSEED": "0",
           "PYTHONPATH": os.pathsep.join([str(script.parent), str(ROOT)])}
    with tempfile.TemporaryDirectory(prefix="hl-bench-cg-") as out:
        subprocess.run(
            ["valgrind", "--tool=callgrind", "--separate-threads=yes",
             f"--callgrind-out-file={out}/cg", sys.executable, str(script), "--child", *args],
            env=env, capture_output=True, text=True, check=True, timeout=3600)
        files = sorted(glob.glob(f"{out}/cg-*"), key=lambda f: int(f.rsplit("-", 1)[1]))
        return [_callgrind_total(f) for f in files]


def _callgrind_total(path: str) -> int:
    text = Path(path).read_text(errors="replace")
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
    if not found:
        raise RuntimeError(f"no instruction total in {path}")
    return int(found.group(1))
