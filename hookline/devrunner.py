"""`hookline dev`: every part of hookline in one command, on embedded services.

Starts PostgreSQL and Redis from pip packages when DATABASE_URL / REDIS_URL are
not set, migrates, then runs ingest, a worker, the scheduler and Flower as
child processes. Ctrl-C or SIGTERM stops them all and leaves nothing behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared import config
from shared.db.migrate import migrate
from shared.embedded import EmbeddedPostgres, EmbeddedRedis
from shared.status import SERVICES_FILE

STOP_GRACE_SECONDS = 20


def _die_with_parent() -> None:
    # A child must not outlive a `hookline dev` that was killed outright.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _persistent_secret(data_dir: Path, name: str = "api-token") -> str:
    """A random secret kept in the data dir, so restarts keep using it."""
    path = data_dir / name
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


class DevRunner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir = Path(args.data_dir).resolve()
        self.pg: EmbeddedPostgres | None = None
        self.redis: EmbeddedRedis | None = None
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.stop_requested = False
        self._stopped = False

    def services(self, env: dict[str, str]) -> None:
        if not env.get("DATABASE_URL"):
            self.pg = EmbeddedPostgres(self.data_dir / "postgres")
            env["DATABASE_URL"] = self.pg.start()
        if not env.get("REDIS_URL"):
            self.redis = EmbeddedRedis(self.data_dir / "redis")
            env["REDIS_URL"] = self.redis.start()
        (self.data_dir / SERVICES_FILE).write_text(json.dumps(
            {"DATABASE_URL": env["DATABASE_URL"], "REDIS_URL": env["REDIS_URL"],
             "pid": os.getpid()}))

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent)
        self.children.append((name, proc))

    def start_children(self, env: dict[str, str]) -> None:
        hookline = [sys.executable, "-m", "hookline"]
        a = self.args
        self.spawn("ingest", [*hookline, "ingest", "--host", "127.0.0.1", "--port",
                              str(a.port), "--workers", "1"], env)
        self.spawn("worker", [*hookline, "worker", "--concurrency", str(a.concurrency),
                              "--hostname", f"dev-{os.getpid()}@%h"], env)
        self.spawn("scheduler", [*hookline, "scheduler", "--schedule",
                                 str(self.data_dir / "beat-schedule")], env)
        if not a.no_flower:
            self.spawn("flower", [*hookline, "flower", "--address", "127.0.0.1",
                                  "--port", str(a.flower_port)], env)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for _, proc in self.children:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for _, proc in self.children:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.redis:
            self.redis.stop()
        if self.pg:
            self.pg.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / SERVICES_FILE).unlink()

    def wait(self) -> int:
        while not self.stop_requested:
            for name, proc in self.children:
                if proc.poll() is not None:
                    print(f"hookline dev: {name} exited with {proc.returncode}; stopping",
                          file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0


def run_dev(args: argparse.Namespace) -> int:
    runner = DevRunner(args)
    runner.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("HOOKLINE_LOG_FORMAT", "text")
    env.setdefault("HOOKLINE_API_TOKEN", _persistent_secret(runner.data_dir))
    # Kept beside the data: endpoint secrets sealed with it must open next time.
    env.setdefault("HOOKLINE_SECRET_KEY", _persistent_secret(runner.data_dir, "secret-key"))

    def on_signal(signum: int, _frame: object) -> None:
        runner.stop_requested = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        config.load(env)
        runner.services(env)
        migrate(env["DATABASE_URL"])
        runner.start_children(env)
        _banner(args, env)
        return runner.wait()
    except config.ConfigError as exc:
        print(f"hookline: configuration error: {exc}", file=sys.stderr)
        return 2
    finally:
        runner.stop()


def _banner(args: argparse.Namespace, env: dict[str, str]) -> None:
    lines = [
        "hookline dev is running",
        f"  callbacks  http://127.0.0.1:{args.port}/callbacks/<source>",
        f"  API        http://127.0.0.1:{args.port}/v1  (Authorization: Bearer "
        f"{env['HOOKLINE_API_TOKEN']})",
        f"  metrics    http://127.0.0.1:{args.port}/metrics",
    ]
    if not args.no_flower:
        lines.append(f"  Flower     http://127.0.0.1:{args.flower_port}")
    lines += [f"  PostgreSQL {env['DATABASE_URL']}", f"  Redis      {env['REDIS_URL']}",
              "Ctrl-C stops everything."]
    print("\n".join(lines), flush=True)
