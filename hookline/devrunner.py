"""`hookline dev`: every part of hookline in one command, on embedded services.

Starts PostgreSQL and Redis from pip packages when DATABASE_URL / REDIS_URL are
not set, migrates, then runs ingest, a worker, the scheduler and Flower as
child processes. Ctrl-C or SIGTERM stops them all and leaves nothing behind.

Each child runs in a process group of its own, so a terminal's Ctrl-C reaches only
this supervisor, which stops each child with one SIGTERM, waits for its whole group
(Celery's pool processes) with a deadline, then SIGKILLs what is left. Children get
SIGTERM from the kernel if the supervisor dies without stopping them, and granian's
workers SIGKILL when their server does (shared.lifetime).
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
import threading
import time
from pathlib import Path
from typing import IO

from shared import config, embedded, lifetime
from shared.db.migrate import migrate
from shared.embedded import EmbeddedPostgres, EmbeddedRedis
from shared.providers import SOURCES
from shared.status import SERVICES_FILE

# Within the 15 s a Ctrl-C promises, leaving time to stop Redis and PostgreSQL after.
# Longer than ingest's --workers-kill-timeout, so granian usually ends its own workers.
STOP_GRACE_SECONDS = 8
REDIS_STOP_SECONDS = 3

# What `hookline dev` changes from the production defaults (a variable set wins): logs a
# person reads, and a first local receiver (http://127.0.0.1:9000/hook) that is accepted.
DEV_DEFAULTS = {"HOOKLINE_LOG_FORMAT": "text", "HOOKLINE_ALLOW_PRIVATE_ENDPOINTS": "true"}
# Each child's lines are led by its name padded to this width: "worker    | ...".
NAME_WIDTH = 10
_output_lock = threading.Lock()


def relay(name: str, stream: IO[bytes], out: IO[bytes]) -> None:
    """Copy a child's output to ``out`` line by line, each led by the child's name, until
    every process holding the pipe has closed it. If ``out`` fails (the terminal is
    gone) the lines are read and dropped: a child must never block on a full pipe."""
    tag = f"{name:<{NAME_WIDTH}}| ".encode()
    broken = False
    with stream:
        for line in iter(stream.readline, b""):
            if broken:
                continue
            try:
                with _output_lock:
                    out.write(tag + line if line.endswith(b"\n") else tag + line + b"\n")
                    out.flush()
            except (OSError, ValueError):
                broken = True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal still counts
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_groups(procs: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM each child, wait up to ``grace`` seconds until every member of its
    process group has exited, then SIGKILL the groups that have not."""
    for proc in procs:
        if proc.poll() is None:
            # The child alone: it stops its own processes in order (a Celery worker lets
            # its pool finish the batch in hand; signalled too, the pool would cut it short).
            proc.send_signal(signal.SIGTERM)
        else:
            _signal_group(proc.pid, signal.SIGTERM)  # what a child that died left behind
    pending = list(procs)
    deadline = time.monotonic() + grace
    while True:
        for proc in pending:
            proc.poll()  # reap the leader: a zombie still counts as a member
        # A group seen empty is never signalled again: its id may be reused.
        pending = [proc for proc in pending if _group_alive(proc.pid)]
        if not pending:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    for proc in pending:
        _signal_group(proc.pid, signal.SIGKILL)
    for proc in pending:
        proc.wait()
        # Members re-parented to init are reaped by it, a moment later.
        end = time.monotonic() + 2
        while _group_alive(proc.pid) and time.monotonic() < end:
            time.sleep(0.02)


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
        self.relays: list[threading.Thread] = []
        self.stop_requested = False
        self._stopped = False

    def services(self, env: dict[str, str]) -> None:
        embedded.require(postgres=not env.get("DATABASE_URL"), redis=not env.get("REDIS_URL"))
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
        proc = subprocess.Popen(
            argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, process_group=0,
            preexec_fn=lifetime.child_dies_with_me())
        self.children.append((name, proc))
        thread = threading.Thread(target=relay, args=(name, proc.stdout, sys.stdout.buffer),
                                  name=f"relay-{name}", daemon=True)
        thread.start()
        self.relays.append(thread)

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
        stop_groups([proc for _, proc in self.children], STOP_GRACE_SECONDS)
        for thread in self.relays:  # the children's last lines
            thread.join(timeout=1)
        if self.redis:
            self.redis.stop(REDIS_STOP_SECONDS)
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
    env = config.with_files(os.environ)  # X_FILE read here, so X given below is not twice
    for name, value in DEV_DEFAULTS.items():
        env.setdefault(name, value)
    env.setdefault("HOOKLINE_API_TOKEN", _persistent_secret(runner.data_dir))
    # Callbacks are never open, not even here: a forged opt-out fans out to customers.
    env.setdefault("HOOKLINE_CALLBACK_TOKEN",
                   _persistent_secret(runner.data_dir, "callback-token"))
    # The dev console is served over plain http on loopback.
    env.setdefault("HOOKLINE_CONSOLE_SECURE_COOKIE", "false")
    if not env.get("HOOKLINE_SECRET_KEYS"):
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
        if not runner.stop_requested:  # a Ctrl-C while the services started
            runner.start_children(env)
            _banner(args, env)
        return runner.wait()
    except config.ConfigError as exc:
        print(f"hookline: configuration error: {exc}", file=sys.stderr)
        return 2
    except embedded.EmbeddedError as exc:
        print(f"hookline dev: {exc}", file=sys.stderr)
        return 2
    except Exception:
        if not runner.stop_requested:
            raise
        # Ctrl-C while PostgreSQL or Redis started: the terminal's SIGINT reached the
        # initdb or pg_ctl it was running too, which then failed. Stopping was asked for.
        return 0
    finally:
        runner.stop()


def _banner(args: argparse.Namespace, env: dict[str, str]) -> None:
    lines = [
        "hookline dev is running",
        "  callbacks  " + "\n             ".join(
            f"http://127.0.0.1:{args.port}/callbacks/{source}?token="
            f"{env['HOOKLINE_CALLBACK_TOKEN']}" for source in sorted(SOURCES)),
        f"  API        http://127.0.0.1:{args.port}/v1  (Authorization: Bearer "
        f"{env['HOOKLINE_API_TOKEN']})",
        f"  metrics    http://127.0.0.1:{args.port}/metrics",
        f"  console    http://127.0.0.1:{args.port}/console/  (sign in with the API token)",
    ]
    if not args.no_flower:
        lines.append(f"  Flower     http://127.0.0.1:{args.flower_port}")
    if config.load(env).allow_private_endpoints:
        lines.append("  endpoints  loopback and private URLs allowed (production refuses them)")
    lines += [f"  PostgreSQL {env['DATABASE_URL']}", f"  Redis      {env['REDIS_URL']}",
              "Ctrl-C stops everything."]
    with _output_lock:  # not in the middle of a child's line
        print("\n".join(lines), flush=True)
