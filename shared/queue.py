"""The Redis inbox: a reliable queue of raw envelopes with leased batches.

Ingest LPUSHes envelopes onto ``INBOX``. A drain leases up to N of the oldest
envelopes atomically (Lua): they move into a per-lease list and the lease id
goes into a sorted set scored by its deadline. After the batch commits in
PostgreSQL the lease is released. A lease whose deadline passed (its worker
died) is reclaimed: its envelopes move to ``RETRY``, which drains lease one at
a time, so one envelope that kills its worker cannot take its batch-mates down
with it more than once. Reprocessing is harmless: deduplication in PostgreSQL
makes every effect exactly-once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis

INBOX = "hookline:inbox"
RETRY = "hookline:inbox:retry"
LEASES = "hookline:leases"
LEASE_PREFIX = "hookline:lease:"
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

# Up to n of the oldest envelopes, but no more bytes than ARGV[4] (the oldest one
# always): the worker's parsed batch is many times its bytes.
_LEASE = _PUSH_SLICES + """
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
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return items
"""

_RECLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
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


@dataclass(slots=True)
class Lease:
    id: str
    items: list[bytes]  # oldest first
    from_retry: bool = False

    @property
    def key(self) -> str:
        return LEASE_PREFIX + self.id


def push(client: redis.Redis, envelope: bytes) -> bool:
    """Queue one envelope; True when the caller should kick a drain.

    Only the push that finds the inbox empty tries to claim the kick flag. Any
    other envelope has company that some drain will lease with it: a drain works
    until it finds the inbox empty (its lease is atomic, so an envelope pushed
    after that finds it empty too and kicks), and a running drain that sees more
    than its batch kicks another process itself. Under load that makes a
    callback one Redis command, as cheap as a bare LPUSH (docs/benchmarks.md);
    the scheduler's tick remains the safety net for a drain message lost.
    """
    if client.lpush(INBOX, envelope) != 1:
        return False
    try:
        return claim_kick(client)
    except redis.RedisError:
        # The envelope is queued: that is what the caller's answer must say. The
        # scheduler's tick starts a drain for it within a second.
        return False


def claim_kick(client: redis.Redis) -> bool:
    return bool(client.set(KICK, b"1", nx=True, px=KICK_TTL_MS))


def clear_kick(client: redis.Redis) -> None:
    client.delete(KICK)


def kick(client: redis.Redis, send: Callable[[], object]) -> bool:
    """Queue a drain unless one is already queued; True when one was sent."""
    if not claim_kick(client):
        return False
    try:
        send()
    except Exception:
        # Let the next enqueue (or the scheduler's tick) try again.
        clear_kick(client)
        raise
    return True


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
    """Leases, releases and reclaims batches; one per worker process."""

    def __init__(self, client: redis.Redis, lease_seconds: int, batch_bytes: int) -> None:
        self.client = client
        self.lease_seconds = lease_seconds
        self.batch_bytes = batch_bytes
        self._lease = client.register_script(_LEASE)
        self._reclaim = client.register_script(_RECLAIM)
        self._release = client.register_script(_RELEASE)

    def lease(self, n: int, from_retry: bool = False) -> Lease | None:
        lease_id = uuid.uuid4().hex
        source = RETRY if from_retry else INBOX
        deadline = time.time() + self.lease_seconds
        items = self._lease(
            keys=[source, LEASES, LEASE_PREFIX + lease_id],
            args=[n, deadline, lease_id, self.batch_bytes],
        )
        if not items:
            return None
        items.reverse()  # LRANGE -n -1 lists newest first; process oldest first
        return Lease(lease_id, items, from_retry)

    def release(
        self, lease: Lease, requeue: list[bytes] = (), to_inbox: bool = False
    ) -> None:
        """Drop a finished lease. ``requeue`` goes, in the same step, to the retry
        list, or with ``to_inbox`` back to the inbox's oldest end, to go first."""
        if requeue and to_inbox:
            target, side, items = RETRY if lease.from_retry else INBOX, "right", reversed(requeue)
        elif requeue:
            target, side, items = RETRY, "left", requeue
        else:
            target, side, items = RETRY, "", ()
        self._release(keys=[LEASES, lease.key, target], args=[lease.id, side, *items])

    def reclaim_expired(self, now: float | None = None, limit: int = 100) -> int:
        """Return the envelopes of expired leases to the retry list; how many moved."""
        now = time.time() if now is None else now
        return int(self._reclaim(keys=[LEASES, RETRY], args=[now, LEASE_PREFIX, limit]))

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


def depths(client: redis.Redis, lease_seconds: int) -> Depths:
    pipe = client.pipeline(transaction=False)
    pipe.llen(INBOX)
    pipe.llen(RETRY)
    pipe.zcard(LEASES)
    pipe.zrange(LEASES, 0, 0, withscores=True)
    inbox, retry, leases, oldest = pipe.execute()
    age = 0.0
    if oldest:
        age = max(0.0, time.time() - (oldest[0][1] - lease_seconds))
    return Depths(int(inbox), int(retry), int(leases), age)
