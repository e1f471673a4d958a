"""The Redis inbox: a reliable queue of raw envelopes with leased batches.

Ingest LPUSHes envelopes onto ``INBOX`` (or, sharded, onto one shard's list:
shared.inbox_shards). A drain leases up to N of the oldest
envelopes atomically (Lua): they move into a per-lease list and the lease id
goes into a sorted set scored by its deadline. After the batch commits in
PostgreSQL the lease is released. A lease whose deadline passed (its worker
died) is reclaimed: its envelopes move to ``RETRY``, which drains lease one at
a time, so one envelope that kills its worker cannot take its batch-mates down
with it more than once. Reprocessing is harmless: deduplication in PostgreSQL
makes every effect exactly-once. Every script touches one shard's keys only.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from redis.exceptions import RedisClusterException

from shared import inbox_shards, kicks
from shared.inbox_shards import Shard

# Shard 0's keys on a single Redis: the names the inbox has always had.
INBOX = inbox_shards.LEGACY_INBOX
RETRY = inbox_shards.LEGACY_RETRY
LEASES = inbox_shards.LEGACY_LEASES
LEASE_PREFIX = inbox_shards.LEGACY_LEASE_PREFIX
ATTEMPTS = "hookline:attempts"
ERRORS = "hookline:errors"
KICK = "hookline:drain:kick"
BACKOFF = "hookline:drain:backoff"
FAILURES = "hookline:drain:failures"
MAX_BACKOFF_MS = 30000

# While this flag exists a drain is queued and has not started yet, so an inbox
# that keeps emptying and refilling costs one send_task per drain, not one per
# request.
KICK_TTL_MS = 2000

# Redis's Lua unpacks at most ~8,000 values and keeps the writes a failed script
# made, so every push goes in slices and anything destructive comes last: a
# script that fails must never have removed what it did not copy.
_PUSH_SLICES = """
local function push(cmd, key, items, first, last)
  for i = first, last, 1000 do
    redis.call(cmd, key, unpack(items, i, math.min(i + 999, last)))
  end
end
"""

# Lease deadlines are on Redis's clock: every worker's clock would otherwise have to
# agree with every other's, and one running ahead would reclaim live leases.
_NOW = """
local function _now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

# Up to n of the oldest envelopes, but no more bytes than ARGV[4] (the oldest one
# always): the worker's parsed batch is many times its bytes.
_LEASE = _PUSH_SLICES + _NOW + """
local n = tonumber(ARGV[1])
local budget = tonumber(ARGV[4])
local items = redis.call('LRANGE', KEYS[1], -n, -1)
local count = #items
if count == 0 then return items end
local first, bytes = 1, 0
for i = count, 1, -1 do
  bytes = bytes + #items[i]
  if bytes > budget and i < count then
    first = i + 1
    break
  end
end
if first > 1 then
  local kept = {}
  for i = first, count do kept[#kept + 1] = items[i] end
  items, count = kept, #kept
end
push('RPUSH', KEYS[3], items, 1, count)
redis.call('LTRIM', KEYS[1], 0, -count - 1)
redis.call('ZADD', KEYS[2], _now() + tonumber(ARGV[2]), ARGV[3])
return items
"""

_RECLAIM = _NOW + """
local now = ARGV[1] == '' and _now() or tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local moved = 0
for _, id in ipairs(ids) do
  local key = ARGV[2] .. id
  local items = redis.call('LRANGE', key, 0, -1)
  for i = #items, 1, -1 do
    redis.call('LPUSH', KEYS[2], items[i])
  end
  moved = moved + #items
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], id)
end
return moved
"""

# Release only a lease that is still ours. A batch that outlived its lease (its
# worker stalled, e.g. waiting for PostgreSQL) was reclaimed: its envelopes are
# back in the retry list already, and requeueing them again would duplicate them.
_RELEASE = _PUSH_SLICES + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if ARGV[2] == 'left' then
  push('LPUSH', KEYS[3], ARGV, 3, #ARGV)
elseif ARGV[2] == 'right' then
  push('RPUSH', KEYS[3], ARGV, 3, #ARGV)
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""

# The heartbeat: a lease moves its deadline on only while it is still ours. Once
# reclaimed, its envelopes belong to the retry list, and the batch must not commit.
_RENEW = _NOW + """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', _now() + tonumber(ARGV[2]), ARGV[1])
return 1
"""


@dataclass(slots=True)
class Lease:
    id: str
    items: list[bytes]  # oldest first
    from_retry: bool = False
    shard: Shard = field(default_factory=lambda: inbox_shards.shard(0, False))
    # Set by the heartbeat when the lease was found reclaimed: the batch must not commit.
    lost: bool = False

    @property
    def key(self) -> str:
        return self.shard.lease_prefix + self.id


class NotReplicated(redis.RedisError):
    """The envelope is on the master, but fewer replicas than required confirmed it
    in time: no promise can be made (ingest answers 503, the provider retries)."""


def push(client: redis.Redis, envelope: bytes, shard: Shard | None = None,
         replicas: int = 0, wait_ms: int = 0) -> bool:
    """Queue one envelope; True when the caller should kick a drain.

    Only the push that finds the inbox empty tries to claim the kick flag. Any
    other envelope has company that some drain will lease with it: a drain works
    until it finds the inbox empty (its lease is atomic, so an envelope pushed
    after that finds it empty too and kicks), and a running drain that sees more
    than its batch kicks another process itself. Under load that makes a
    callback one Redis command, as cheap as a bare LPUSH (docs/benchmarks.md);
    the scheduler's tick remains the safety net for a drain message lost.
    Sharded, "the inbox" is the envelope's shard: a push that finds its shard empty
    kicks, and a drain ends only after a whole turn of the shards found nothing.
    With ``replicas``, returns only once that many replicas hold the envelope (if
    they do not, NotReplicated: the envelope is queued all the same, and the tick
    starts its drain).
    """
    if shard is None:
        shard = inbox_shards.shard(0, inbox_shards.tagged(client))
    if replicas:
        length = _push_replicated(client, shard.inbox, envelope, replicas, wait_ms)
    else:
        length = client.lpush(shard.inbox, envelope)
    if length != 1:
        return False
    try:
        return claim_kick(client)
    except redis.RedisError:
        # The envelope is queued: that is what the caller's answer must say. The
        # scheduler's tick starts a drain for it within a second.
        return False


def _push_replicated(client: redis.Redis, key: str, envelope: bytes, replicas: int,
                     wait_ms: int) -> int:
    """LPUSH, then WAIT on the same server: asynchronous replication means a failover
    can lose what the master acknowledged but had not yet sent on."""
    # WAIT counts the replicas holding this connection's writes, so both go down one
    # connection (a pipeline): sent apart, another thread could take the LPUSH's
    # connection in between, and the WAIT vouch for an older write of its own.
    cluster = inbox_shards.tagged(client)
    try:
        # WAIT names no key: on a Cluster, the master of the key's slot is asked directly.
        server = client.get_redis_connection(client.get_node_from_key(key)) if cluster \
            else client
        pipe = server.pipeline(transaction=False)
        pipe.lpush(key, envelope)
        pipe.execute_command("WAIT", replicas, wait_ms)
        length, acked = pipe.execute()
    except (redis.RedisError, RedisClusterException) as exc:
        if not cluster:
            raise
        # A failover or a moved slot: the next push asks the slot map afresh (if no
        # node answers now, the next error tries again). Refused now all the same.
        with contextlib.suppress(redis.RedisError, RedisClusterException):
            client.nodes_manager.initialize()
        if isinstance(exc, redis.RedisError):
            raise
        raise redis.ConnectionError(f"the Cluster cannot serve {key} now: {exc}") from exc
    if int(acked) < replicas:
        raise NotReplicated(f"{acked} of {replicas} replicas confirmed within {wait_ms} ms")
    return int(length)


class Pusher:
    """Ingest's side of the inbox: which shard the next envelope goes to (in turn),
    and how many replicas must hold it before it is answered 202."""

    # Re-recorded this often: a failover or a FLUSHALL may have lost the mark.
    MARK_SECONDS = 5.0

    def __init__(self, client: redis.Redis, shards: int = 1, replicas: int = 0,
                 wait_ms: int = 0) -> None:
        self.client = client
        self.shards = inbox_shards.shards(shards, inbox_shards.tagged(client))
        self.replicas = replicas
        self.wait_ms = wait_ms
        # Each process starts its turns somewhere else: many ingest processes, each just
        # started, do not all fill shard 0 first.
        self._turn = itertools.count(random.randrange(len(self.shards)))
        self._marked = -self.MARK_SECONDS

    def push(self, envelope: bytes) -> bool:
        if len(self.shards) > 1 and time.monotonic() - self._marked > self.MARK_SECONDS:
            # Before any push to a shard the drains might not know of yet.
            inbox_shards.raise_high_water(self.client, len(self.shards))
            self._marked = time.monotonic()
        shard = self.shards[next(self._turn) % len(self.shards)]
        return push(self.client, envelope, shard, self.replicas, self.wait_ms)


def claim_kick(client: redis.Redis) -> bool:
    return kicks.claim(client, KICK, KICK_TTL_MS)


def clear_kick(client: redis.Redis) -> None:
    client.delete(KICK)


def kick(client: redis.Redis, send: Callable[[], object]) -> bool:
    """Queue a drain unless one is already queued; True when one was sent."""
    return kicks.coalesced(client, KICK, KICK_TTL_MS, send)


def back_off(client: redis.Redis) -> float:
    """Record a failed drain (PostgreSQL away); pause drains, doubling to 30 s."""
    failures = int(client.incr(FAILURES))
    pause_ms = min(MAX_BACKOFF_MS, 250 * 2 ** min(failures, 10))
    client.set(BACKOFF, b"1", px=pause_ms)
    return pause_ms / 1000


def backing_off(client: redis.Redis) -> bool:
    return bool(client.exists(BACKOFF))


def recovered(client: redis.Redis) -> None:
    client.delete(FAILURES)


class Inbox:
    """Leases, releases and reclaims batches; one per worker process. Leases come from
    the shards in turn: a lease that finds one shard empty tries the next."""

    # How long the shard count read from Redis is trusted.
    SHARDS_SECONDS = 1.0

    def __init__(self, client: redis.Redis, lease_seconds: int, batch_bytes: int,
                 shards: int = 1) -> None:
        self.client = client
        self.lease_seconds = lease_seconds
        self.batch_bytes = batch_bytes
        self.configured = shards
        self._shards = inbox_shards.shards(shards, inbox_shards.tagged(client))
        self._read_at = -self.SHARDS_SECONDS
        self._turn = itertools.count()
        self._lease = client.register_script(_LEASE)
        self._reclaim = client.register_script(_RECLAIM)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    def shards(self) -> list[Shard]:
        """Every shard that may hold envelopes: this process's setting or the high-water
        mark another process recorded, whichever is more."""
        now = time.monotonic()
        if now - self._read_at > self.SHARDS_SECONDS:
            self._shards = inbox_shards.in_use(self.client, self.configured)
            self._read_at = now
        return self._shards

    def lease(self, n: int, from_retry: bool = False) -> Lease | None:
        shards = self.shards()
        start = next(self._turn)
        for k in range(len(shards)):
            lease = self._lease_from(shards[(start + k) % len(shards)], n, from_retry)
            if lease is not None:
                return lease
        return None

    def _lease_from(self, shard: Shard, n: int, from_retry: bool) -> Lease | None:
        lease_id = uuid.uuid4().hex
        source = shard.retry if from_retry else shard.inbox
        items = self._lease(
            keys=[source, shard.leases, shard.lease_prefix + lease_id],
            args=[n, self.lease_seconds, lease_id, self.batch_bytes],
        )
        if not items:
            return None
        items.reverse()  # LRANGE -n -1 lists newest first; process oldest first
        return Lease(lease_id, items, from_retry, shard)

    def backlog(self, lease: Lease) -> int:
        """Envelopes still queued on the shard ``lease`` came from."""
        return int(self.client.llen(lease.shard.inbox))

    def renew(self, lease: Lease) -> bool:
        """Another HOOKLINE_LEASE_SECONDS from now (Redis's clock); False if the lease
        was reclaimed already."""
        shard = lease.shard
        return bool(self._renew(keys=[shard.leases], args=[lease.id, self.lease_seconds]))

    def release(
        self, lease: Lease, requeue: list[bytes] = (), to_inbox: bool = False
    ) -> bool:
        """Drop a finished lease. ``requeue`` goes, in the same step, to the retry
        list, or with ``to_inbox`` back to the inbox's oldest end, to go first
        (both of the lease's own shard). False if the lease was no longer ours."""
        shard = lease.shard
        if requeue and to_inbox:
            target = shard.retry if lease.from_retry else shard.inbox
            side, items = "right", reversed(requeue)
        elif requeue:
            target, side, items = shard.retry, "left", requeue
        else:
            target, side, items = shard.retry, "", ()
        return bool(self._release(keys=[shard.leases, lease.key, target],
                                  args=[lease.id, side, *items]))

    def reclaim_expired(self, now: float | None = None, limit: int = 100) -> int:
        """Return the envelopes of expired leases, on every shard, to their shard's
        retry list; how many moved. Expired by Redis's clock, unless ``now`` is given."""
        at = "" if now is None else repr(float(now))
        return sum(
            int(self._reclaim(keys=[s.leases, s.retry], args=[at, s.lease_prefix, limit]))
            for s in self.shards()
        )

    def bump_attempts(self, envelope_id: str) -> int:
        # Cleared by forget_attempts once the envelope is applied or dead-lettered.
        return int(self.client.hincrby(ATTEMPTS, envelope_id, 1))

    def unbump_attempts(self, envelope_ids: list[str]) -> None:
        """Take back attempts counted for processing that never ran (PostgreSQL away)."""
        if envelope_ids:
            pipe = self.client.pipeline(transaction=False)
            for envelope_id in envelope_ids:
                pipe.hincrby(ATTEMPTS, envelope_id, -1)
            pipe.execute()

    def forget_attempts(self, envelope_ids: list[str]) -> None:
        if envelope_ids:
            pipe = self.client.pipeline(transaction=False)
            pipe.hdel(ATTEMPTS, *envelope_ids)
            pipe.hdel(ERRORS, *envelope_ids)
            pipe.execute()


@dataclass(slots=True)
class Depths:
    inbox: int
    retry: int
    leases: int
    oldest_lease_age: float  # seconds since the oldest live lease was taken
    shards: int = 1  # how many shards were counted


def depths(client: redis.Redis, lease_seconds: int, shards: int = 1) -> Depths:
    """Summed over every shard below the high-water mark (or ``shards``, if more)."""
    layout = inbox_shards.in_use(client, shards)
    pipe = client.pipeline(transaction=False)
    for s in layout:
        pipe.llen(s.inbox)
        pipe.llen(s.retry)
        pipe.zcard(s.leases)
        pipe.zrange(s.leases, 0, 0, withscores=True)
    answers = pipe.execute()
    # Deadlines are on Redis's clock. Asked apart: a Cluster pipeline takes keyed
    # commands only.
    seconds, micros = client.time()
    inbox, retry, leases = (sum(int(a) for a in answers[i::4]) for i in range(3))
    deadlines = [oldest[0][1] for oldest in answers[3::4] if oldest]
    age = 0.0
    if deadlines:
        age = max(0.0, seconds + micros / 1e6 - (min(deadlines) - lease_seconds))
    return Depths(inbox, retry, leases, age, len(layout))
