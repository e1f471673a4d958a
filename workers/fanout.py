"""Fan-out: the dispatcher that sends due deliveries, and its Celery tasks.

Each worker process has one Dispatcher: a lane (queue) per endpoint, sending
threads that take the lanes in turn (at most the endpoint cap at once per
endpoint), kept-alive connections per endpoint, and a recorder thread that
writes the attempts in batches. The ``hookline.dispatch`` task claims due
deliveries into the lanes, running ahead of the threads so they never wait for
the database, for a few seconds or until nothing is due. Slow sends do not hold
the task: they finish in the background and the recorder records them.

A dispatch is kicked right after a drain applies events that notify (so a new
delivery goes out within milliseconds), by the scheduler's once-a-second
``hookline.fanout_tick`` when retries fall due, and by a busy dispatch that
wants help. See docs/fanout.md.
"""

from __future__ import annotations

import logging
import os
import queue as stdqueue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

import psycopg
from celery import shared_task
from prometheus_client import Counter, Histogram
from psycopg_pool import PoolTimeout

from shared import runtime, secretbox, tracing
from shared.db.endpoints import HealthRules
from shared.db.outbox import attempts, claims
from shared.db.outbox.attempts import Result
from shared.db.outbox.claims import Claimed, ClaimRules
from shared.retry import run_with_retries
from workers import queues
from workers.attempt import Pools, attempt
from workers.dispatch_kick import KICK_KEY, RUNNING_KEY, kick_dispatch
from workers.lanes import Lanes

log = logging.getLogger(__name__)

DELIVERIES = Counter(
    "hookline_deliveries_total",
    "Delivery attempts, by the delivery's status after the attempt "
    "(succeeded, failed = retry scheduled, dead, stale = claim had expired)",
    ["outcome"],
)
DELIVERY_SECONDS = Histogram(
    "hookline_delivery_seconds", "Duration of one delivery attempt (HTTP request and answer)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

# How long one dispatch task keeps claiming before handing over to a fresh one.
DISPATCH_BUDGET_SECONDS = 5.0
CLAIM_MAX = 200             # deliveries per claim statement
IDLE_POLL_SECONDS = 0.05    # re-claim this often while sends are in flight
RECORD_BATCH_MAX = 500
RECORD_RETRIES = 5
# The pauses between the tries of a record: 0.4, 0.8, 1.6, 3.2 s.
RECORD_SCHEDULE = tuple(0.2 * 2 ** n for n in range(1, RECORD_RETRIES))
# Claims run ahead of the sending threads so they never wait on the database:
# up to PREFETCH x the endpoint cap may be claimed per endpoint, and up to
# PREFETCH x the thread count per process. Sends per endpoint stay at the cap.
PREFETCH = 8
# An endpoint whose answers take this long on average (exponentially weighted,
# this process's view) is slow until the average falls below half of it. Slow
# endpoints are claimed one round ahead only, hold at most half the process's
# claims and all but a quarter of its threads: healthy but slow receivers cannot
# starve the others, however many there are.
SLOW_MS = 1000.0
SLOW_WEIGHT = 0.3


def claim_lease(timeout: float) -> float:
    """Seconds a claim holds: the longest a claimed delivery can wait in its lane
    (PREFETCH rounds of sends ahead of it, each at most the timeout) and be sent, with
    room to record it. A worker that dies lets its claims fall due after this."""
    return (PREFETCH + 1) * timeout + 30


class Dispatcher:
    """Per process (and runtime): the lanes and sending threads, connection
    pools per endpoint, and the recorder thread."""

    def __init__(self, rt: runtime.Runtime) -> None:
        s = rt.settings
        self.rt = rt
        self.capacity = s.delivery_threads * PREFETCH  # claimed and not yet recorded
        self.max_retry_after = s.max_retry_after
        self.pools = Pools(s.delivery_timeout, s.allow_private_endpoints,
                           keep=s.endpoint_concurrency + 2)
        self.claim_rules = ClaimRules(s.endpoint_concurrency * PREFETCH, s.breaker_failures,
                                      claim_lease(s.delivery_timeout))
        self.health_rules = HealthRules(s.breaker_failures, s.breaker_cooldown,
                                        s.endpoint_disable_after_days * 86400)
        self.schedule = list(s.retry_schedule)
        threads = s.delivery_threads
        self.lanes = Lanes(s.endpoint_concurrency,
                           slow_threads=max(1, threads - max(1, threads // 4)))
        self._answer_ms: dict[str, float] = {}  # per endpoint, weighted average
        self.slow: frozenset[str] = frozenset()
        self._results: stdqueue.Queue[Result | None] = stdqueue.Queue()
        self._cond = threading.Condition()
        self.outstanding = 0  # claimed by this process and not yet recorded
        self.generation = 0   # bumped whenever a batch is recorded
        self._threads = [threading.Thread(target=self._send_loop, daemon=True,
                                          name=f"hookline-send-{i}")
                         for i in range(s.delivery_threads)]
        self._threads.append(threading.Thread(target=self._record_loop, daemon=True,
                                              name="hookline-record"))
        for t in self._threads:
            t.start()

    def room(self) -> int:
        return max(0, self.capacity - self.outstanding)

    def submit(self, batch: list[Claimed]) -> None:
        with self._cond:
            self.outstanding += len(batch)
        self.lanes.add(batch)

    def fail(self, c: Claimed, error: str) -> None:
        """Record a failed attempt for a claim that cannot be sent."""
        with self._cond:
            self.outstanding += 1
        self._results.put(Result(c.id, c.endpoint_id, c.token, datetime.now(UTC), 0,
                                 ok=False, error=error, occurred_at=c.occurred_at))

    def _send_loop(self) -> None:
        while (c := self.lanes.take()) is not None:
            with tracing.delivery_span(c.traceparent, c.id, c.endpoint_id) as span:
                try:
                    result = attempt(c, self.pools, self.max_retry_after)
                except BaseException as exc:  # never lose the slot, whatever happened
                    log.exception("delivery attempt crashed", extra={"delivery_id": c.id})
                    result = Result(c.id, c.endpoint_id, c.token, datetime.now(UTC), 0,
                                    ok=False, error=f"internal error: {type(exc).__name__}",
                                    occurred_at=c.occurred_at)
                tracing.delivery_result(span, result.status_code, result.error)
            self.lanes.done(c.endpoint_id)
            DELIVERY_SECONDS.observe(result.duration_ms / 1000)
            self._results.put(result)

    def _record_loop(self) -> None:
        while True:
            first = self._results.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < RECORD_BATCH_MAX:
                try:
                    item = self._results.get_nowait()
                except stdqueue.Empty:
                    break
                if item is None:
                    self._results.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._write(batch)
            self._settled(len(batch))

    def _settled(self, n: int) -> None:
        with self._cond:
            self.outstanding -= n
            self.generation += 1
            self._cond.notify_all()

    def _write(self, batch: list[Result]) -> None:
        try:
            recorded = run_with_retries(partial(self._record, batch), _not_refused,
                                        RECORD_SCHEDULE)
        except psycopg.DataError as exc:
            # One result PostgreSQL refuses must not sink the others, nor go
            # unrecorded (its delivery would be sent again after every lease).
            log.error("a batch of %d attempts was refused, recording one by one: %s",
                      len(batch), exc, extra={"error": repr(exc), "count": len(batch)})
            recorded = self._record_each(batch)
        except Exception as exc:
            # The claims' leases run out and the deliveries go again.
            log.error("could not record %d attempts: %s", len(batch), exc,
                      extra={"error": repr(exc), "count": len(batch)})
            return
        _account(batch, recorded)
        for endpoint_id in recorded.stopped:
            self._release(self.lanes.drop(endpoint_id))
        self._observe(batch)

    def _observe(self, batch: list[Result]) -> None:
        """Follow each endpoint's answer times; mark the slow ones."""
        for r in batch:
            before = self._answer_ms.get(r.endpoint_id)
            self._answer_ms[r.endpoint_id] = avg = (
                r.duration_ms if before is None
                else before + SLOW_WEIGHT * (r.duration_ms - before))
            was = r.endpoint_id in self.slow
            if was == (avg >= (SLOW_MS / 2 if was else SLOW_MS)):
                continue
            # Replaced, never changed in place: the dispatch thread reads it.
            self.slow = self.slow - {r.endpoint_id} if was else self.slow | {r.endpoint_id}
            log.info("endpoint %s is %s (answers in %.0f ms on average)", r.endpoint_id,
                     "no longer slow" if was else "slow", avg,
                     extra={"endpoint_id": r.endpoint_id, "answer_ms": round(avg)})
            self._release(self.lanes.set_slow(r.endpoint_id, not was, keep=self.lanes.cap))

    def claim_slow(self) -> tuple[list[str], int]:
        """The endpoints to claim as slow, and how many of each may be in flight
        (none more while the slow ones hold half of what this process may claim)."""
        slow = list(self.slow)
        if not slow:
            return slow, 0
        full = self.lanes.slow_load() >= self.capacity // 2
        return slow, 0 if full else self.lanes.cap

    def _record(self, batch: list[Result]) -> attempts.Recorded:
        with self.rt.pool.connection() as conn:
            return attempts.record(conn, batch, self.schedule, self.health_rules)

    def _record_each(self, batch: list[Result]) -> attempts.Recorded:
        """Record results one at a time; one refused again is recorded as a plain
        failed attempt that says why."""
        total = attempts.Recorded({}, {}, set())
        for r in batch:
            try:
                try:
                    part = self._record([r])
                except psycopg.DataError as exc:
                    part = self._record([attempts.unrecordable(r, exc)])
            except Exception as exc:
                # Its claim's lease runs out and it goes again.
                log.error("could not record attempt of %s: %s", r.delivery_id, exc,
                          extra={"delivery_id": r.delivery_id, "error": repr(exc)})
                continue
            total.statuses.update(part.statuses)
            total.disabled.update(part.disabled)
            total.stopped |= part.stopped
        return total

    def _release(self, claimed: list[Claimed]) -> None:
        """Claims queued for an endpoint that may not be sent to now go back
        (else they would go out despite the pause, or wait for their lease)."""
        if not claimed:
            return
        try:
            with self.rt.pool.connection() as conn:
                attempts.release(conn, claimed)
        except Exception as exc:
            log.warning("could not release %d claims: %s", len(claimed), exc,
                        extra={"error": repr(exc)})
        self._settled(len(claimed))

    def wait_change(self, seen: int, timeout: float) -> None:
        """Sleep until a batch is recorded after generation ``seen``, or the timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self.generation != seen, timeout)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything this process claimed is sent and recorded."""
        with self._cond:
            return self._cond.wait_for(lambda: self.outstanding == 0, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Give back what is not sent yet, let sends in flight finish and be recorded."""
        deadline = time.monotonic() + timeout
        self._release(self.lanes.close())
        self.flush(timeout)
        self._results.put(None)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.pools.close()


def _not_refused(exc: Exception) -> bool:
    """A record worth trying again: not one PostgreSQL refuses the data of."""
    return not isinstance(exc, psycopg.DataError)


def _account(batch: list[Result], recorded: attempts.Recorded) -> None:
    for r in batch:
        DELIVERIES.labels(recorded.statuses.get(r.delivery_id, "stale")).inc()
        if r.delivery_id in recorded.statuses and not r.ok:
            log.info("delivery %s attempt failed: %s", r.delivery_id, r.error,
                     extra={"delivery_id": r.delivery_id, "endpoint_id": r.endpoint_id,
                            "status_code": r.status_code,
                            "status": recorded.statuses[r.delivery_id]})
    for endpoint_id, reason in recorded.disabled.items():
        log.warning("endpoint %s disabled: %s", endpoint_id, reason,
                    extra={"endpoint_id": endpoint_id, "reason": reason})


_dispatcher: Dispatcher | None = None
_dispatcher_key: tuple[int, int] | None = None
_dispatcher_lock = threading.Lock()


def dispatcher_for(rt: runtime.Runtime) -> Dispatcher:
    """This process's Dispatcher for ``rt`` (a forked child or a new runtime gets a new one)."""
    global _dispatcher, _dispatcher_key
    key = (os.getpid(), id(rt))
    with _dispatcher_lock:
        if _dispatcher_key != key:
            old, _dispatcher = _dispatcher, None
            if old is not None and _dispatcher_key and _dispatcher_key[0] == os.getpid():
                old.close(timeout=5)
            _dispatcher, _dispatcher_key = Dispatcher(rt), key
        assert _dispatcher is not None
        return _dispatcher


def close_dispatcher(timeout: float = 30.0) -> None:
    global _dispatcher, _dispatcher_key
    with _dispatcher_lock:
        if _dispatcher is not None and _dispatcher_key and _dispatcher_key[0] == os.getpid():
            _dispatcher.close(timeout)
        _dispatcher = _dispatcher_key = None


def dispatch(rt: runtime.Runtime, budget: float = DISPATCH_BUDGET_SECONDS,
             on_saturated: Callable[[], object] | None = None) -> tuple[int, bool]:
    """Claim due deliveries into the Dispatcher's lanes until nothing is due and
    nothing is in flight (idle) or the budget is spent. Returns (claimed, idle)."""
    dispatcher = dispatcher_for(rt)
    dispatcher.pools.evict_idle()
    deadline = time.monotonic() + budget
    claimed = 0
    with rt.pool.connection() as conn:
        while time.monotonic() < deadline:
            seen = dispatcher.generation
            room = dispatcher.room()
            if room == 0:
                if on_saturated is not None:
                    on_saturated()  # this process has all it can take: ask for help
                dispatcher.wait_change(seen, IDLE_POLL_SECONDS)
                continue
            want = min(room, CLAIM_MAX)
            # Read before claiming: an empty claim proves nothing is due only if
            # everything this process held was recorded before the claim's snapshot.
            # Read after, a batch recorded during the claim (which saw the endpoint
            # still at its cap) made a busy outbox look idle.
            settled = dispatcher.outstanding == 0
            got = claim_into(conn, dispatcher, want)
            claimed += got
            if got == want:
                continue  # there may be more due right now
            if got == 0 and settled:
                return claimed, True
            # Results can make more due (ordered endpoints, breaker probes) and
            # free room; new deliveries can arrive any time.
            dispatcher.wait_change(seen, IDLE_POLL_SECONDS)
    return claimed, False


def claim_into(conn: psycopg.Connection, dispatcher: Dispatcher, limit: int) -> int:
    batch = claims.claim(conn, limit, dispatcher.claim_rules, *dispatcher.claim_slow())
    secrets = secretbox.box(runtime.get().settings.secret_keys)
    sendable: list[Claimed] = []
    for c in batch:
        try:
            c.secrets = [secrets.open(s) for s in c.secrets]
        except secretbox.SecretBoxError as exc:
            # The claim has committed: raising here would strand the whole batch,
            # other endpoints' deliveries too, until the lease ran out, every round.
            dispatcher.fail(c, f"cannot sign: {exc}")
            continue
        except ValueError as exc:  # binascii.Error and the cipher's: a mangled stored value
            dispatcher.fail(c, f"cannot sign: the stored endpoint secret is corrupt ({exc})")
            continue
        sendable.append(c)
    dispatcher.submit(sendable)
    return len(batch)


# PostgreSQL away: nothing to do but wait; the tick kicks a dispatch once it is back.
_DB_DOWN = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout)


@shared_task(name=queues.TASK_DISPATCH, ignore_result=True)
def dispatch_task() -> int:
    try:
        return _dispatch_task()
    except _DB_DOWN as exc:
        log.warning("fan-out dispatch stopped, database unavailable: %s", exc,
                    extra={"error": repr(exc)})
        return 0


def _dispatch_task() -> int:
    rt = runtime.get()
    client = rt.redis
    client.delete(KICK_KEY)  # from now on, new work kicks a new dispatch
    me = uuid.uuid4().hex
    total = 0
    started = time.monotonic()
    while True:
        now = time.time()
        client.zremrangebyscore(RUNNING_KEY, "-inf", now)
        client.zadd(RUNNING_KEY, {me: now + DISPATCH_BUDGET_SECONDS + 5})
        try:
            claimed, idle = dispatch(rt, on_saturated=lambda: kick_dispatch(force=True))
        finally:
            client.zrem(RUNNING_KEY, me)
        total += claimed
        if not idle or time.monotonic() - started > 2 * DISPATCH_BUDGET_SECONDS:
            kick_dispatch(force=True)  # work remains: a fresh task carries on
            return total
        # A drain that saw us running did not kick; now that we are not, look
        # once more so its deliveries do not wait for the next tick.
        dispatcher = dispatcher_for(rt)
        with rt.pool.connection() as conn:
            if not claim_into(conn, dispatcher, max(1, min(dispatcher.room(), CLAIM_MAX))):
                return total


@shared_task(name=queues.TASK_FANOUT_TICK, ignore_result=True)
def fanout_tick() -> None:
    """Once a second: retries that fell due get a dispatch."""
    rt = runtime.get()
    try:
        with rt.pool.connection() as conn:
            due = claims.due_exists(conn)
    except _DB_DOWN as exc:
        log.warning("fan-out tick skipped, database unavailable: %s", exc,
                    extra={"error": repr(exc)})
        return
    if due:
        kick_dispatch()
