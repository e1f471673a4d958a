"""Where each inbox shard's keys live, and how many shards the drains must visit.

A shard is an inbox list, its retry list, its lease set and its per-lease lists.
Every Lua call touches the keys of one shard only, and a shard's keys share one
Redis Cluster hash tag (``hookline:{inbox:3}:...``), so each call stays inside
one slot. On a single Redis (or Sentinel), shard 0 keeps the names the inbox had
before it was sharded, so an upgrade finds what was queued where it was; on a
Cluster, where those names would spread one shard over several slots, shard 0
is tagged like the others (nothing was ever queued on a Cluster before).

Ingest spreads envelopes over ``HOOKLINE_INBOX_SHARDS`` shards; drains visit
every shard below a high-water mark kept in Redis: the most shards any process
has pushed to. Raising the setting raises the mark before the first push to a
new shard; lowering it never lowers the mark, so the shards ingest no longer
fills are still drained, reclaimed and counted (an empty one costs a drain one
script call per round).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.cluster import RedisCluster

LEGACY_INBOX = "hookline:inbox"
LEGACY_RETRY = "hookline:inbox:retry"
LEGACY_LEASES = "hookline:leases"
LEGACY_LEASE_PREFIX = "hookline:lease:"
HIGH_WATER = "hookline:inbox:shards"
MAX_SHARDS = 256

_RAISE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '1')
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', KEYS[1], wanted)
  return wanted
end
return current
"""


@dataclass(frozen=True, slots=True)
class Shard:
    index: int
    inbox: str
    retry: str
    leases: str
    lease_prefix: str


def tagged(client: redis.Redis | RedisCluster) -> bool:
    """Hash-tagged names for every shard: only a Cluster needs them."""
    return isinstance(client, RedisCluster)


def shard(index: int, cluster: bool) -> Shard:
    if index == 0 and not cluster:
        return Shard(0, LEGACY_INBOX, LEGACY_RETRY, LEGACY_LEASES, LEGACY_LEASE_PREFIX)
    tag = f"hookline:{{inbox:{index}}}"
    return Shard(index, f"{tag}:queue", f"{tag}:retry", f"{tag}:leases", f"{tag}:lease:")


def shards(count: int, cluster: bool) -> list[Shard]:
    return [shard(i, cluster) for i in range(count)]


def high_water(client: redis.Redis | RedisCluster) -> int:
    raw = client.get(HIGH_WATER)
    return max(1, min(MAX_SHARDS, int(raw))) if raw else 1


def in_use(client: redis.Redis | RedisCluster, configured: int) -> list[Shard]:
    """Every shard that may hold envelopes: ``configured`` or the high-water mark
    another process recorded, whichever is more."""
    return shards(max(configured, high_water(client)), tagged(client))


def raise_high_water(client: redis.Redis | RedisCluster, count: int) -> int:
    """Record that ``count`` shards may hold envelopes; returns the mark. A single
    shard writes nothing: an unsharded inbox looks exactly as it always did."""
    if count <= 1:
        return high_water(client)
    return int(client.eval(_RAISE, 1, HIGH_WATER, count))
