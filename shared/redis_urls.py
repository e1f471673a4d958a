"""Redis URLs beyond redis-py's own: a Cluster and a Sentinel-managed master.

* ``redis://``, ``rediss://``, ``unix://``: one server, as redis-py reads them.
* ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://``
  for TLS): a Redis Cluster, found from any of the nodes listed.
* ``redis+sentinel://[user:password@]host:port[,host:port...]/master-name[/db]``: the
  master a group of Sentinels names, followed across failovers. The credentials are
  the master's; the Sentinels themselves are asked without any.

Celery's Redis transport (kombu) speaks Sentinel under its own URL form, made by
``kombu_broker``; it does not speak Cluster at all (celery/celery#8329, kombu#732).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
SENTINEL_SCHEMES = ("redis+sentinel://",)
SENTINEL_PORT = 26379
REDIS_PORT = 6379
_TIMEOUTS: dict[str, Any] = dict(socket_timeout=5, socket_connect_timeout=2)


@dataclass(frozen=True)
class Parsed:
    scheme: str
    hosts: list[tuple[str, int]]
    username: str | None
    password: str | None
    path: list[str]  # the path's non-empty parts


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def is_sentinel(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEMES)


def parse(url: str, default_port: int) -> Parsed:
    """Several hosts in one netloc, which urllib cannot split."""
    scheme, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    path = path.partition("?")[0]
    userinfo, _, hostlist = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    hosts = []
    for part in hostlist.split(","):
        if not part.strip():
            continue
        host, sep, port = part.strip().rpartition(":")
        if not sep:
            host, port = port, str(default_port)
        if not port.isdigit():
            raise ValueError(f"{url.split('@')[-1]!r}: {part!r} is not host:port")
        hosts.append((host.strip("[]"), int(port)))
    if not hosts:
        raise ValueError(f"{scheme}:// needs at least one host:port")
    return Parsed(scheme, hosts, unquote(username) or None, unquote(password) or None,
                  [p for p in path.split("/") if p])


def sentinel_master(url: str) -> tuple[Parsed, str, int]:
    p = parse(url, SENTINEL_PORT)
    if not p.path:
        raise ValueError("redis+sentinel:// needs the master's name as its path "
                         "(redis+sentinel://host:26379/mymaster)")
    db = p.path[1] if len(p.path) > 1 else "0"
    if not db.isdigit():
        raise ValueError(f"redis+sentinel://: database {db!r} is not a number")
    return p, p.path[0], int(db)


def client(url: str, **options: Any) -> redis.Redis | RedisCluster:
    """A client for any of the URL forms above."""
    options = {**_TIMEOUTS, **options}
    if is_cluster(url):
        p = parse(url, REDIS_PORT)
        if p.path:
            raise ValueError("redis+cluster:// takes no database: a Cluster has only db 0")
        return RedisCluster(
            startup_nodes=[ClusterNode(h, port) for h, port in p.hosts],
            username=p.username, password=p.password,
            ssl=p.scheme.startswith("rediss"), **options)
    if is_sentinel(url):
        p, name, db = sentinel_master(url)
        sentinel = Sentinel(p.hosts, sentinel_kwargs=dict(_TIMEOUTS))
        return sentinel.master_for(name, db=db, username=p.username, password=p.password,
                                   **options)
    return redis.Redis.from_url(url, **options)


def kombu_broker(url: str) -> tuple[str, dict[str, Any]]:
    """kombu's form of a broker URL and the transport options it needs: a Sentinel
    group is ``sentinel://host:port/db;sentinel://...`` with ``master_name``."""
    if is_cluster(url):
        raise ValueError("Celery's Redis broker cannot use a Redis Cluster")
    if not is_sentinel(url):
        return url, {}
    p, name, db = sentinel_master(url)
    auth = ""
    if p.password is not None:
        auth = f"{quote(p.username or '', safe='')}:{quote(p.password, safe='')}@"
    hosts = ";".join(f"sentinel://{auth if i == 0 else ''}{h}:{port}/{db}"
                     for i, (h, port) in enumerate(p.hosts))
    return hosts, {"master_name": name}
