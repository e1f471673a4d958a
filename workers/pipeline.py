"""From leased envelopes to committed PostgreSQL state.

A batch is decoded (bad input becomes a dead letter with its reason) and
applied in one transaction. If the transaction fails for a reason that is not
the database being away, each envelope is retried on its own so one poison
callback cannot hold back the rest of its batch; the poison one goes to the
retry list and, after ``max_attempts``, becomes a dead letter with its error.

A batch's statements are bounded below its lease (``time_bounds``) and its lease is
renewed while it is worked (workers.lease_renewal). A statement cancelled at its bound is
a stall, not the envelopes' fault and not a crash: the batch goes to the retry list
(one envelope per lease there, so only the one that meets the lock waits again) and
no attempt is counted.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg
import psycopg.errors
from psycopg_pool import PoolTimeout

from shared import consent, providers, tracing
from shared.config import Settings
from shared.db import events
from shared.db.apply import Applied, TimeBounds, apply_batch, bound
from shared.db.dead_letters import DeadLetter
from shared.db.events import Incoming, Stored
from shared.envelope import Envelope, EnvelopeError, decode
from shared.inbox import ERRORS, Lease
from shared.model import NormalisedEvent
from shared.notifications import Notification
from shared.providers import ParseError
from shared.providers.common import form_fields, is_form
from shared.retry import run_with_retries
from shared.runtime import Runtime
from shared.timeutil import from_epoch
from workers import lease_renewal, metrics

log = logging.getLogger(__name__)

# The database being unreachable is nobody's envelope's fault: the batch goes
# back to the inbox untouched and the drain backs off.
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
)
# A statement that ran into its bound (time_bounds): a lock held elsewhere, an I/O
# stall. Caught before INFRA_ERRORS, which they belong to in psycopg's hierarchy.
STALL_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.errors.QueryCanceled,
    psycopg.errors.LockNotAvailable,
    psycopg.errors.IdleInTransactionSessionTimeout,
)
# Lost a race with a concurrent batch: simply try the same batch again.
RACE_ERRORS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
RACE_RETRIES = 3
RACE_PAUSE_SECONDS = 0.05
# \u0000 as an escape, not a literal backslash before "u0000" ("\\u0000" in JSON):
# an odd run of backslashes.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


class BatchRejected(Exception):
    """PostgreSQL refused the data itself; its envelopes are isolated and retried."""


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached; the batch was returned to the inbox."""


class LeaseLost(Exception):
    """The heartbeat found the lease reclaimed: the batch rolls back, uncommitted."""


def time_bounds(lease_seconds: int) -> TimeBounds:
    """A statement gets a quarter of the lease, a lock wait a sixth, an idle
    transaction a quarter: a batch that stalls errs long before its lease could lapse
    (the heartbeat renews it every quarter), and a worker frozen mid-transaction
    (SIGSTOP, a VM paused) has its transaction ended by PostgreSQL, so it cannot
    commit after its lease was reclaimed."""
    ms = lease_seconds * 1000
    return TimeBounds(statement_ms=ms // 4, lock_ms=ms // 6, idle_ms=ms // 4)


@dataclass(slots=True)
class Decoded:
    raw: bytes
    envelope: Envelope | None
    incoming: list[Incoming] = field(default_factory=list)
    letter: DeadLetter | None = None
    # A batch's elements that cannot be applied, each its own dead letter; the
    # envelope's other elements apply (a batch body is a JSON array of events).
    # A shared empty tuple, not a list per envelope: nearly every body is no batch.
    part_letters: Sequence[DeadLetter] = ()
    # A parser crash (a bug, not bad input): retried, then dead-lettered.
    error: str | None = None

    @property
    def ingest_id(self) -> str:
        return self.envelope.id if self.envelope else _raw_id(self.raw)


@dataclass(slots=True)
class Outcome:
    applied: list[Stored] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    enqueued: int = 0  # outbox rows written
    dead_letters: int = 0
    requeued: int = 0
    latencies: list[float] = field(default_factory=list)
    # (source, type, outcome) -> events, for workers.metrics; counted per batch.
    tally: Counter = field(default_factory=Counter)
    # Envelopes committed (applied or duplicate), for the per-batch log line.
    ingest_ids: list[str] = field(default_factory=list)
    # Envelopes sent to the retry list uncounted: their batch stalled or lost its lease.
    stalled: int = 0


def _raw_id(raw: bytes) -> str:
    return "corrupt-" + hashlib.sha256(raw).hexdigest()[:24]


def _letter(env: Envelope, reason: str, attempts: int = 1) -> DeadLetter:
    return DeadLetter(
        ingest_id=env.id, source=env.source, event=env.event, reason=reason, body=env.body,
        headers=env.headers, remote_addr=env.remote_addr,
        received_at=from_epoch(env.received_at), attempts=attempts, tenant_id=env.tenant_id,
    )


def load_json(body: bytes) -> Any:
    """Decode a body or raise ParseError saying what a person should fix."""
    if not body.strip():
        raise ParseError("empty body")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc}") from None
    # PostgreSQL's jsonb cannot hold U+0000; better a clear dead letter than a
    # batch that fails at commit.
    if b"\\u0000" in body and _NUL_ESCAPE.search(body):
        raise ParseError("JSON contains \\u0000, which PostgreSQL cannot store")
    return doc


def load_body(env: Envelope) -> Any:
    """A form (a form POST, or a GET's query string) as its flat field set, else JSON."""
    if not is_form(env.headers.get("content-type")):
        return load_json(env.body)
    try:
        fields = form_fields(env.body)
    except ValueError as exc:
        raise ParseError(f"invalid form fields: {exc}") from None
    if not fields:
        raise ParseError("empty form: no fields")
    if any("\x00" in k or "\x00" in v for k, v in fields.items()):
        raise ParseError("form field contains U+0000, which PostgreSQL cannot store")
    return fields


def decode_one(raw: bytes, settings: Settings | None = None) -> Decoded:
    try:
        env = decode(raw)
    except EnvelopeError as exc:
        letter = DeadLetter(
            ingest_id=_raw_id(raw), source="unknown", event=None, reason=str(exc), body=raw,
            headers={}, remote_addr=None, received_at=from_epoch(time.time()),
        )
        return Decoded(raw, None, letter=letter)
    try:
        content_type = env.headers.get("content-type")
        # Inlined is_form's quick test: JSON, on the drain's hot path, costs no call.
        doc = (load_json(env.body) if not content_type or "form" not in content_type
               else load_body(env))
        if doc.__class__ is list:
            parts = _parse_parts(env, doc)
        else:  # one event's body: no per-part bookkeeping for it
            found = providers.parse(env.source, env.event, doc)
            parts = None
    except ParseError as exc:
        return Decoded(raw, env, letter=_letter(env, exc.reason))
    except Exception as exc:
        log.exception("parser crashed on %s", env.id, extra={"ingest_id": env.id})
        return Decoded(raw, env, error=f"{type(exc).__name__}: {exc}"[:1000])
    received = from_epoch(env.received_at)
    if parts is None:  # _received's loop, inlined for the one-body case
        for e in found:
            e.ingest_id = env.id
            if e.data.get("occurred_at_estimated"):
                e.occurred_at = received  # as in _received: the receipt time
            if settings is not None:
                consent.apply_keywords(e, settings.opt_in_keywords, settings.opt_out_keywords)
        return Decoded(raw, env, incoming=[Incoming(e, doc, received, env.tenant_id)
                                           for e in found])
    incoming: list[Incoming] = []
    letters: list[DeadLetter] = []
    for index, element, events_or_error in parts:
        if isinstance(events_or_error, ParseError):
            letters.append(_part_letter(env, index, len(parts), element,
                                        events_or_error.reason))
            continue
        incoming += _received(env, element, events_or_error, received, settings)
    return Decoded(raw, env, incoming=incoming, part_letters=letters)


def _received(env: Envelope, element: Any, found: list[NormalisedEvent], received: datetime,
              settings: Settings | None) -> list[Incoming]:
    """The events parsed from one body (or one batch element), ready to insert."""
    for e in found:
        e.ingest_id = env.id
        if e.data.get("occurred_at_estimated"):
            # The callback carries no time: its receipt time, not the parse
            # time, so processing it again gives the same event.
            e.occurred_at = received
        if settings is not None:
            consent.apply_keywords(e, settings.opt_in_keywords, settings.opt_out_keywords)
    return [Incoming(e, element, received, env.tenant_id) for e in found]


Part = tuple[int, Any, "list[NormalisedEvent] | ParseError"]


def _parse_parts(env: Envelope, doc: Any) -> list[Part]:
    """(position, element, its events or why not) for each element of a batch (a JSON
    array of events); a body that is not an array is one element, whose ParseError is
    the envelope's own."""
    if not isinstance(doc, list):
        return [(0, doc, providers.parse(env.source, env.event, doc))]
    if not doc:
        raise ParseError("empty batch: a JSON array with no events")
    parts: list[Part] = []
    for index, element in enumerate(doc):
        try:
            parts.append((index, element, providers.parse(env.source, env.event, element)))
        except ParseError as exc:
            parts.append((index, element, exc))
    return parts


def _part_letter(env: Envelope, index: int, size: int, element: Any, reason: str) -> DeadLetter:
    """One batch element's dead letter: its own id (the envelope's and its position, so a
    redelivered envelope does not double it) and its own bytes."""
    letter = _letter(env, f"batch element {index} of {size}: {reason}")
    letter.ingest_id = f"{env.id}#{index}"
    try:
        letter.body = orjson.dumps(element)
    except TypeError:  # an integer beyond 64 bits: kept readable all the same
        letter.body = repr(element).encode()
    return letter


def _apply(rt: Runtime, lease: Lease, decoded: list[Decoded],
           rows: events.Rows | None = None) -> Applied:
    """``rows``: the events of ``decoded``, encoded already (parse_lease)."""
    if rows is None:
        rows = events.rows(_incoming(decoded))
    letters = [d.letter for d in decoded if d.letter is not None]
    letters += [p for d in decoded for p in d.part_letters]
    bounds = time_bounds(rt.settings.lease_seconds)

    def once() -> Applied:
        with rt.pool.connection() as conn, conn.transaction():
            bound(conn, bounds)
            applied = apply_batch(conn, rows, letters)
            if lease.lost:
                # Its envelopes are the retry list's now: committing too would
                # race whatever becomes of them there (a dead letter).
                raise LeaseLost(lease.id)
            return applied

    try:
        # A moment between tries for what it raced (a partition being made) to be done.
        return run_with_retries(once, _raced, [RACE_PAUSE_SECONDS * n
                                               for n in range(1, RACE_RETRIES)],
                                on_retry=_retrying)
    except psycopg.errors.ProgramLimitExceeded as exc:
        # psycopg files class 54 under OperationalError, but it is the data's
        # fault (e.g. a 10 kB random eventId: "index row requires 10032 bytes"),
        # not an outage. Taken for one, it would stall the inbox behind it forever.
        raise BatchRejected(str(exc)) from exc


def _raced(exc: Exception) -> bool:
    return isinstance(exc, (*RACE_ERRORS, psycopg.errors.CheckViolation)) and _lost_race(exc)


def _retrying(attempt: int, exc: Exception) -> None:
    log.warning("batch lost a race, retrying", extra={"attempt": attempt})


def _lost_race(exc: Exception) -> bool:
    """A deadlock or serialisation failure, or a row routed to a default partition just
    as a partition for its time was attached (shared.db.partitions.ensure): the insert
    then fails that partition's new constraint, and the same batch again goes to the
    new partition."""
    return isinstance(exc, RACE_ERRORS) or "violates partition constraint" in str(exc)


def _account(out: Outcome, decoded: list[Decoded], applied: Applied) -> None:
    now = time.time()
    out.applied += applied.stored
    out.notifications += applied.notifications
    out.enqueued += applied.enqueued
    letters: list[DeadLetter] = []
    for d in decoded:  # an envelope's own letter, or its batch elements' (never both)
        if d.letter is not None:
            letters.append(d.letter)
        elif d.part_letters:
            letters += d.part_letters
    out.dead_letters += len(letters)
    out.latencies += [now - d.envelope.received_at for d in decoded if d.envelope]
    _tally(out, decoded, applied)
    for letter in letters:
        log.warning(
            "dead letter %s: %s", letter.ingest_id, letter.reason,
            extra={"ingest_id": letter.ingest_id, "source": letter.source},
        )


def _tally(out: Outcome, decoded: list[Decoded], applied: Applied) -> None:
    # Counted by key, not by object identity, so it holds however apply_batch
    # builds its result: what was offered and not stored new was a duplicate.
    new = Counter((s.event.source, s.event.type) for s in applied.stored)
    offered = Counter((i.event.source, i.event.type) for d in decoded for i in d.incoming)
    for (source, type_), n in offered.items():
        fresh = min(n, new[(source, type_)])
        if fresh:
            out.tally[(source, type_, metrics.APPLIED)] += fresh
        if n > fresh:
            out.tally[(source, type_, metrics.DUPLICATE)] += n - fresh
    for d in decoded:
        for part in d.part_letters:
            out.tally[(part.source, metrics.NO_TYPE, metrics.DEAD_LETTER)] += 1
        if d.letter is not None:
            out.tally[(d.letter.source, metrics.NO_TYPE, metrics.DEAD_LETTER)] += 1
        else:
            out.ingest_ids.append(d.ingest_id)


def _incoming(decoded: list[Decoded]) -> list[Incoming]:
    return [i for d in decoded for i in d.incoming]


@dataclass(slots=True)
class Parsed:
    """A leased batch, parsed, with the events insert's rows of the envelopes that
    did not crash the parser encoded (those are applied together); None if they
    could not be encoded."""

    decoded: list[Decoded]
    rows: events.Rows | None


def parse_lease(rt: Runtime, lease: Lease) -> Parsed:
    """CPU only, no PostgreSQL: workers.ahead runs it while a batch commits."""
    decoded = [
        (lease.from_retry and _check_attempts(rt, raw)) or decode_one(raw, rt.settings)
        for raw in lease.items
    ]
    try:
        rows = events.rows(_incoming([d for d in decoded if d.error is None]))
    except Exception:
        # An event the encoder refuses (e.g. an integer beyond 64 bits in its data):
        # encoded again inside _apply, where a failure isolates the batch's envelopes
        # and only the culprit is retried and dead-lettered. Raised here, it would
        # leave the lease to expire and fail the same way forever.
        rows = None
    return Parsed(decoded, rows)


def process_lease(rt: Runtime, lease: Lease, parsed: Parsed | None = None) -> Outcome:
    """Apply a leased batch and release it. Raises DatabaseUnavailable after
    returning the batch to the inbox when PostgreSQL cannot be reached.
    ``parsed`` is parse_lease(rt, lease), when the caller parsed the batch ahead."""
    out = Outcome()
    lease_renewal.watch(rt.inbox, lease)
    with tracing.batch_span(len(lease.items)) as span:
        try:
            return _process_lease(rt, lease, out, parsed, span)
        finally:
            lease_renewal.forget(lease)
            _report(lease, out)


def _report(lease: Lease, out: Outcome) -> None:
    """One log line and one metrics update per batch, never per envelope."""
    metrics.record_batch(len(lease.items), out.tally, out.latencies, out.stalled)
    if out.ingest_ids or out.dead_letters:
        log.info(
            "batch %s: %d new events, %d envelopes committed, %d dead letters, %d requeued",
            lease.id, len(out.applied), len(out.ingest_ids), out.dead_letters, out.requeued,
            extra={"lease": lease.id, "ingest_ids": out.ingest_ids,
                   "new_events": len(out.applied), "dead_letters": out.dead_letters,
                   "requeued": out.requeued},
        )


def _process_lease(
    rt: Runtime, lease: Lease, out: Outcome, parsed: Parsed | None, span: object = None
) -> Outcome:
    if parsed is None:
        parsed = parse_lease(rt, lease)
    tracing.link_callbacks(span, (d.envelope.trace for d in parsed.decoded if d.envelope))
    crashed = [d for d in parsed.decoded if d.error is not None]
    good = [d for d in parsed.decoded if d.error is None]
    try:
        crashed += _apply_or_isolate(rt, lease, good, parsed.rows, out)
    except STALL_ERRORS as exc:
        return _stalled(rt, lease, good, exc, out)
    except LeaseLost:
        return _lost(rt, lease, out)
    except INFRA_ERRORS as exc:
        raise _give_back(rt, lease, exc) from exc
    for d in crashed:
        _remember_error(rt, d, d.error or "unknown error")
    out.requeued += len(crashed)
    rt.inbox.release(lease, requeue=[d.raw for d in crashed])
    if lease.from_retry:
        done = {id(d) for d in crashed}
        rt.inbox.forget_attempts([d.ingest_id for d in good if id(d) not in done])
    return out


def _apply_or_isolate(rt: Runtime, lease: Lease, good: list[Decoded],
                      rows: events.Rows | None, out: Outcome) -> list[Decoded]:
    """The batch in one transaction, else each envelope on its own; those that fail."""
    try:
        _account(out, good, _apply(rt, lease, good, rows))
        return []
    except (*INFRA_ERRORS, LeaseLost):
        raise
    except Exception as exc:
        log.warning("batch failed, isolating its envelopes", extra={"error": repr(exc)})
        return _isolate(rt, lease, good, out)


def _stalled(rt: Runtime, lease: Lease, good: list[Decoded], exc: BaseException,
             out: Outcome) -> Outcome:
    """A statement hit its bound. Everything goes to the retry list (what committed in
    isolation is a duplicate there); no attempt is counted for it."""
    log.warning("batch %s stalled in PostgreSQL, retrying its %d envelopes: %s", lease.id,
                len(lease.items), exc, extra={"lease": lease.id, "error": repr(exc)})
    if lease.from_retry:
        # Taken back before the envelopes are on the retry list again: another drain may
        # lease and count them the moment they are, and that count must not find ours.
        rt.inbox.unbump_attempts([d.ingest_id for d in good])
    rt.inbox.release(lease, requeue=lease.items)
    out.stalled += len(lease.items)
    return out


def _lost(rt: Runtime, lease: Lease, out: Outcome) -> Outcome:
    """The lease was reclaimed while this worker was alive (Redis unreachable for the
    heartbeat, a frozen process): the envelopes are on the retry list already. A lease
    that lapsed under a live worker is no crash, so this one's attempt is taken back
    in advance of the count their next lease makes."""
    log.warning("batch %s lost its lease; rolled back, its envelopes are retried",
                lease.id, extra={"lease": lease.id})
    rt.inbox.unbump_attempts([_envelope_id(raw) for raw in lease.items])
    out.stalled += len(lease.items)
    return out


def _check_attempts(rt: Runtime, raw: bytes) -> Decoded | None:
    """Count an attempt before the envelope is even parsed, so a worker that dies
    parsing it counts too (counted after parsing, such a callback killed a worker
    every lease period forever); past the limit it is a dead letter, unparsed."""
    ingest_id = _envelope_id(raw)
    attempts = rt.inbox.bump_attempts(ingest_id)
    if attempts <= rt.settings.max_attempts:
        return None
    try:
        env = decode(raw)  # the header line only: the body is what may kill the worker
    except EnvelopeError:
        return None  # a corrupt envelope becomes a dead letter without parsing anyway
    last = rt.redis.hget(ERRORS, ingest_id)
    why = last.decode(errors="replace") if last else "the worker died while processing it"
    reason = f"processing failed {attempts - 1} times: {why}"
    return Decoded(raw, env, letter=_letter(env, reason, attempts - 1))


def _isolate(rt: Runtime, lease: Lease, decoded: list[Decoded], out: Outcome) -> list[Decoded]:
    """Apply each envelope on its own; returns those that still fail."""
    failed: list[Decoded] = []
    for d in decoded:
        try:
            _account(out, [d], _apply(rt, lease, [d]))
        except (*INFRA_ERRORS, LeaseLost):
            raise
        except Exception as exc:
            d.error = f"{type(exc).__name__}: {exc}"[:1000]
            failed.append(d)
    return failed


def _give_back(rt: Runtime, lease: Lease, exc: BaseException) -> DatabaseUnavailable:
    """PostgreSQL is away: the batch goes back untouched. A retried envelope's attempt,
    counted before processing, is taken back: the outage is not its fault, and
    counting it would turn good callbacks into dead letters during a long outage."""
    rt.inbox.release(lease, requeue=lease.items, to_inbox=True)
    if lease.from_retry:
        rt.inbox.unbump_attempts([_envelope_id(raw) for raw in lease.items])
    return DatabaseUnavailable(str(exc))


def _envelope_id(raw: bytes) -> str:
    try:
        return decode(raw).id
    except EnvelopeError:
        return _raw_id(raw)


def _remember_error(rt: Runtime, d: Decoded, text: str) -> None:
    rt.redis.hset(ERRORS, d.ingest_id, text)
    log.error("envelope %s failed: %s", d.ingest_id, text, extra={"ingest_id": d.ingest_id})
