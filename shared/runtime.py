"""Per-process resources (settings, Redis client, PostgreSQL pool), made on first use.

Created lazily so that forked children (Celery prefork, granian workers) each
open their own connections instead of sharing their parent's sockets.
"""

from __future__ import annotations

import os
import threading

import redis
from psycopg_pool import ConnectionPool

from shared import config, redis_urls
from shared.db.pool import make_pool
from shared.inbox import Inbox, Pusher


def redis_client(url: str) -> redis.Redis:
    """A single server, a Cluster or a Sentinel group's master (shared.redis_urls)."""
    return redis_urls.client(url, health_check_interval=30)


class Runtime:
    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._redis: redis.Redis | None = None
        self._pool: ConnectionPool | None = None
        self._inbox: Inbox | None = None
        self._pusher: Pusher | None = None

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    self._redis = redis_client(self.settings.require_redis())
        return self._redis

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = make_pool(
                        self.settings.require_database(), self.settings.db_pool_size
                    )
        return self._pool

    @property
    def inbox(self) -> Inbox:
        if self._inbox is None:
            self._inbox = Inbox(self.redis, self.settings.lease_seconds,
                                self.settings.batch_bytes, self.settings.inbox_shards)
        return self._inbox

    @property
    def pusher(self) -> Pusher:
        """Ingest's side of the inbox: the shard each envelope goes to, and WAIT."""
        if self._pusher is None:
            s = self.settings
            self._pusher = Pusher(self.redis, s.inbox_shards, s.inbox_wait_replicas,
                                  s.inbox_wait_timeout_ms)
        return self._pusher

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._redis is not None:
            self._redis.close()
        self._pool = self._redis = self._inbox = self._pusher = None


_current: Runtime | None = None


def get() -> Runtime:
    """This process's runtime; a forked child gets a fresh one."""
    global _current
    if _current is None or _current._pid != os.getpid():
        _current = Runtime(config.load())
    return _current


def install(runtime: Runtime) -> None:
    """Use ``runtime`` in this process (tests and the dev runner)."""
    global _current
    _current = runtime


def reset() -> None:
    global _current
    if _current is not None and _current._pid == os.getpid():
        _current.close()
    _current = None
