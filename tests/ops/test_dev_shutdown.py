"""Stopping leaves nothing running: `hookline dev` (Ctrl-C, SIGTERM, even SIGKILL) and
`hookline ingest --workers N` under a process manager, as a user sees it.

Each run starts in a session of its own, as a terminal would start it; "nothing left" is
read from /proc: no live process in that session, none naming the data directory or the
port in its command line, no socket listening on the port, and the same port serves a
new `hookline dev` at once. A kept-alive client connection is open while it stops (a
browser tab, an API client), since that is what kept granian workers serving before.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from tests.procs import CALLBACK_TOKEN, HOOKLINE, ROOT, free_port, poll, wait_for, wait_http

STOP_SECONDS = 15  # what README promises for Ctrl-C and SIGTERM


def _stat(pid: str) -> tuple[str, int] | None:
    """(state, session id) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
    return fields[0], int(fields[3])


def _cmdline(pid: str) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [arg.decode(errors="replace") for arg in raw.split(b"\0") if arg]


def listening(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


@dataclass
class Run:
    """One started command: its session and what identifies its processes."""

    proc: subprocess.Popen
    log: Path
    ports: list[int]
    data_dir: Path | None = None
    descendants: list[psutil.Process] = field(default_factory=list)

    def _names_us(self, args: list[str]) -> bool:
        if self.data_dir and any(str(self.data_dir) in arg for arg in args):
            return True
        ports = {str(p) for p in self.ports}
        return any(arg in ports or arg.rsplit("=", 1)[-1] in ports for arg in args)

    def leftovers(self, keep_session: int | None = None) -> list[str]:
        """Every live process of this run (zombies are dead: only their exit status is
        left) and every port still listening; those in ``keep_session`` do not count."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            stat = _stat(pid)
            if stat is None or stat[0] in "ZX" or stat[1] == keep_session \
                    or int(pid) == os.getpid():
                continue
            args = _cmdline(pid)
            if stat[1] == self.proc.pid or self._names_us(args):
                found.append(f"{pid} [{stat[0]}] {' '.join(args)[:150]}")
        found += [f"port {p} listening" for p in self.ports if listening(p)]
        found += [f"{c.pid} (a descendant) still running" for c in self.descendants
                  if _alive(c)]
        return found

    def record_descendants(self) -> None:
        self.descendants = psutil.Process(self.proc.pid).children(recursive=True)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_all_gone(run: Run, signalled_at: float, keep_session: int | None = None) -> float:
    """Wait until nothing of ``run`` is left, at most STOP_SECONDS after the signal;
    returns how long it took."""
    def gone() -> bool:
        return run.proc.poll() is not None and not run.leftovers(keep_session)

    remaining = signalled_at + STOP_SECONDS - time.monotonic()
    if not poll(gone, remaining, 0.1):
        left = run.leftovers(keep_session)
        for c in run.descendants:
            if _alive(c):
                c.kill()
        pytest.fail(f"left running {STOP_SECONDS}s after the signal: {left}; "
                    f"log tail:\n{run.log.read_text()[-3000:]}")
    return time.monotonic() - signalled_at


@contextmanager
def kept_alive(url: str) -> Iterator[httpx.Client]:
    """A client holding an idle keep-alive connection to ``url``'s server."""
    with httpx.Client(timeout=2) as client:
        assert client.get(url).status_code == 200
        yield client


def _dev_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("HOOKLINE_")}


def start_dev(tmp_path: Path, data_dir: Path, port: int, flower_port: int | None,
              name: str) -> Run:
    flower = ["--flower-port", str(flower_port)] if flower_port else ["--no-flower"]
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen(
        [*HOOKLINE, "dev", "--data-dir", str(data_dir), "--port", str(port), *flower],
        env=_dev_env(), stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=tmp_path,
        start_new_session=True)  # a session and process group of its own, as from a shell
    run = Run(proc, log, [port, *([flower_port] if flower_port else [])], data_dir)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=90)
        if flower_port:
            wait_http(f"http://127.0.0.1:{flower_port}/healthcheck", timeout=90)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    run.record_descendants()
    return run


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    # A failed run must not leave its PostgreSQL behind (a daemon, in a session of its own).
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.kill(_postmaster_pid(path), signal.SIGINT)


def test_hookline_dev_stops_everything_on_ctrl_c_sigterm_and_even_sigkill(tmp_path, data_dir):
    port, flower_port = free_port(), free_port()

    # Ctrl-C in the terminal: SIGINT to the whole foreground process group.
    run = start_dev(tmp_path, data_dir, port, flower_port, "ctrl-c")
    assert any("flower" in " ".join(_cmdline(str(c.pid))) for c in run.descendants)
    with kept_alive(f"http://127.0.0.1:{port}/healthz"):
        signalled = time.monotonic()
        os.killpg(run.proc.pid, signal.SIGINT)
        took = assert_all_gone(run, signalled)
    assert run.proc.returncode == 0, run.log.read_text()[-3000:]
    print(f"Ctrl-C: everything gone after {took:.1f}s")

    # The same port at once (a second `hookline dev`); SIGTERM to the parent alone,
    # as a process manager or `kill` sends it.
    run = start_dev(tmp_path, data_dir, port, None, "sigterm")
    with kept_alive(f"http://127.0.0.1:{port}/healthz"):
        signalled = time.monotonic()
        run.proc.send_signal(signal.SIGTERM)
        took = assert_all_gone(run, signalled)
    assert run.proc.returncode == 0, run.log.read_text()[-3000:]
    print(f"SIGTERM: everything gone after {took:.1f}s")

    # SIGKILL runs no clean-up: the kernel's parent-death signal stops the children.
    # PostgreSQL is a daemon of pgserver's (its own session), left for the next run.
    run = start_dev(tmp_path, data_dir, port, None, "sigkill")
    postmaster = _postmaster_pid(data_dir)
    with kept_alive(f"http://127.0.0.1:{port}/healthz"):
        signalled = time.monotonic()
        run.proc.kill()
        took = assert_all_gone(run, signalled, keep_session=os.getsid(postmaster))
    print(f"SIGKILL: everything but PostgreSQL gone after {took:.1f}s")
    os.kill(postmaster, signal.SIGINT)  # PostgreSQL's fast shutdown
    assert_all_gone(run, time.monotonic())


def start_ingest(env: dict[str, str], tmp_path: Path, workers: int) -> Run:
    port = free_port()
    log = tmp_path / "ingest.log"
    proc = subprocess.Popen(
        [*HOOKLINE, "ingest", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        env={**env, "HOOKLINE_CALLBACK_TOKEN": CALLBACK_TOKEN}, stdout=log.open("w"),
        stderr=subprocess.STDOUT, cwd=ROOT,
        start_new_session=True)
    run = Run(proc, log, [port])
    wait_http(f"http://127.0.0.1:{port}/healthz")
    # Each worker has imported the app (and so shared.lifetime.server_worker has run).
    wait_for(lambda: run.log.read_text().count("Started worker-") >= workers)
    run.record_descendants()
    assert len(run.descendants) == workers
    return run


@pytest.mark.parametrize("how", ["SIGTERM to the server", "Ctrl-C to the group",
                                 "SIGKILL to the server"])
def test_hookline_ingest_alone_leaves_no_worker(base_env, tmp_path, how):
    run = start_ingest(base_env, tmp_path, workers=2)
    with kept_alive(f"http://127.0.0.1:{run.ports[0]}/healthz"):
        signalled = time.monotonic()
        if how == "Ctrl-C to the group":
            os.killpg(run.proc.pid, signal.SIGINT)
        elif how == "SIGTERM to the server":
            run.proc.send_signal(signal.SIGTERM)
        else:
            run.proc.kill()
        took = assert_all_gone(run, signalled)
    if how != "SIGKILL to the server":
        assert run.proc.returncode == 0, run.log.read_text()[-3000:]
        # Each worker stopped when asked: granian did not have to kill one after
        # --workers-kill-timeout (a worker hit by the group's SIGINT and its server's
        # SIGTERM at once used to hang there for good).
        assert "refused to gracefully stop" not in run.log.read_text()
        assert took < 3, took
    print(f"{how}: server and workers gone after {took:.1f}s")
