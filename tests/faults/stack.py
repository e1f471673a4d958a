"""Real hookline processes (ingest, workers, scheduler) for fault tests.

Each process runs in its own session, so a fault can SIGKILL a worker with its
prefork children as a crashed machine would, without touching anything else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.procs import CALLBACK_TOKEN, HOOKLINE, ROOT, free_port, poll

# `hookline worker` with a test-only provider format that crashes on demand.
POISON_WORKER = [sys.executable, "-m", "tests.faults.poison_worker"]


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
               what: str = "condition") -> Any:
    """Like tests.procs.wait_for, but a timeout raises TimeoutError, which fault tests and
    their fixtures catch (pytest.fail would end the test)."""
    value = poll(predicate, timeout, interval)
    if not value:
        raise TimeoutError(f"{what} not met within {timeout}s")
    return value


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill_group(self) -> None:
        """SIGKILL the process and every child it forked (a crashed host)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM the main process only, as an orchestrator would; wait for it."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            # Evidence for the failure: Celery logs the main process's threads on
            # SIGUSR1, hookline's pool processes theirs on SIGUSR2 (workers/celery_app.py).
            self.popen.send_signal(signal.SIGUSR1)
            with contextlib.suppress(psutil.Error):  # the main process may be gone
                children = psutil.Process(self.popen.pid).children(recursive=True)
                for child in children:
                    with contextlib.suppress(psutil.Error):
                        child.send_signal(signal.SIGUSR2)
            time.sleep(1)
            raise
        finally:
            # Leave nothing behind even if the warm shutdown hung.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Stack:
    env: dict[str, str]
    logdir: Path
    procs: list[Proc] = field(default_factory=list)
    base: str = ""
    _n: int = 0

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        self._n += 1
        log = self.logdir / f"{self._n:02d}-{name}.log"
        popen = subprocess.Popen(
            argv, env={"HOOKLINE_CALLBACK_TOKEN": CALLBACK_TOKEN, **self.env, **(env or {})},
            cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def ingest(self) -> Proc:
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        return self.spawn("ingest", [*HOOKLINE, "ingest", "--host", "127.0.0.1", "--port",
                                     str(port), "--workers", "1", "--threads", "8"])

    def worker(self, name: str, concurrency: int = 2, poison: bool = False,
               env: dict[str, str] | None = None) -> Proc:
        argv = [*(POISON_WORKER if poison else HOOKLINE), "worker", "--concurrency",
                str(concurrency), "--hostname", f"{name}@faults", "--metrics-port", "0"]
        return self.spawn(name, argv, env)

    def scheduler(self) -> Proc:
        return self.spawn("scheduler", [*HOOKLINE, "scheduler", "--schedule",
                                        str(self.logdir / f"beat-{self._n}")])

    def wait_ingest(self, timeout: float = 30) -> None:
        def up() -> bool:
            try:
                return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout, 0.1, "ingest /healthz")

    def wait_worker(self, proc: Proc, timeout: float = 30) -> None:
        def ready() -> bool:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited:\n{proc.text()[-3000:]}")
            return " ready." in proc.text()

        wait_until(ready, timeout, 0.1, f"{proc.name} ready")

    def start(self, workers: int = 1, poison: bool = False) -> list[Proc]:
        """ingest, ``workers`` workers and the scheduler; returns the workers once all are up."""
        self.ingest()
        made = [self.worker(f"w{i + 1}", poison=poison) for i in range(workers)]
        self.scheduler()
        self.wait_ingest()
        for w in made:
            self.wait_worker(w)
        return made

    def stop(self) -> None:
        for p in self.procs:
            if p.alive():
                p.popen.send_signal(signal.SIGTERM)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.popen.pid, signal.SIGKILL)
            p.popen.wait(10)

    def logs(self, tail: int = 2500) -> str:
        return "\n".join(f"--- {p.log.name}\n{p.text()[-tail:]}" for p in self.procs)
