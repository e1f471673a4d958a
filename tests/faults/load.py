"""A bounded load generator: a few threads POSTing callbacks to ingest on loopback.

Bounded twice: by a number of callbacks and by a deadline. Every answer goes
into the ledger; only 202s become promises to check.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from datetime import timedelta

import httpx
import orjson

from tests.faults.ledger import Expect, Ledger
from tests.helpers import T0
from tests.procs import CALLBACK_AUTH

SOURCE = "kaleyra-rcs"
KINDS = ("SENT", "DELIVERED", "READ", "ERROR")


class Traffic:
    """Kaleyra RCS receipts for a pool of messages in shuffled order, with exact
    re-posts (a provider retrying) and bodies that are not JSON (dead letters)."""

    def __init__(self, prefix: str, messages: int = 40, dup_every: int = 17,
                 bad_every: int = 53, seed: int = 0) -> None:
        self.prefix = prefix
        self.messages = messages
        self.dup_every = dup_every
        self.bad_every = bad_every
        self._rand = random.Random(seed)
        self._lock = threading.Lock()
        self._n = itertools.count()
        self._sent: list[tuple[bytes, Expect]] = []

    def receipt(self, n: int) -> tuple[bytes, Expect]:
        mid = f"{self.prefix}-m{n % self.messages}"
        kind = self._rand.choice(KINDS)
        event_id = f"{self.prefix}-e{n}"
        body = orjson.dumps({
            "type": kind, "eventId": event_id, "from": "917673908652", "to": "mmx_traffic",
            "sentAt": (T0 + timedelta(milliseconds=self._rand.randrange(10**6)))
            .isoformat().replace("+00:00", "Z"),
            "messageId": mid,
        })
        return body, Expect(SOURCE, f"e:{event_id}", mid)

    def __call__(self) -> tuple[bytes, Expect]:
        with self._lock:
            n = next(self._n)
            if n and n % self.dup_every == 0:
                return self._rand.choice(self._sent)
            if n % self.bad_every == self.bad_every - 1:
                return f'{{"type": "SENT", "n": {n},'.encode(), Expect(SOURCE)
            made = self.receipt(n)
            self._sent.append(made)
            return made


class Load:
    """POST ``total`` callbacks at about ``rate`` per second from ``threads`` threads."""

    def __init__(self, base: str, ledger: Ledger, make: Callable[[], tuple[bytes, Expect]],
                 rate: float = 300, seconds: float = 5, threads: int = 4,
                 path: str = f"/callbacks/{SOURCE}") -> None:
        self.url = base + path
        self.ledger = ledger
        self.make = make
        self.total = int(rate * seconds)
        self.rate = rate
        self.deadline = time.monotonic() + seconds * 3 + 10  # bounded even if ingest stalls
        self._threads = [threading.Thread(target=self._run, args=(i, threads), daemon=True)
                         for i in range(threads)]
        self._stop = threading.Event()
        self.started = 0.0

    def start(self) -> Load:
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> Load:
        for t in self._threads:
            t.join(timeout=max(1.0, self.deadline - time.monotonic() + 5))
        return self

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _run(self, index: int, threads: int) -> None:
        with httpx.Client(timeout=10) as client:
            for i in range(index, self.total, threads):
                if self._stop.is_set() or time.monotonic() > self.deadline:
                    return
                pause = self.started + i / self.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                body, expect = self.make()
                self._post(client, body, expect)

    def _post(self, client: httpx.Client, body: bytes, expect: Expect) -> None:
        try:
            r = client.post(self.url, content=body,
                            headers={"Content-Type": "application/json", **CALLBACK_AUTH})
        except httpx.HTTPError as exc:
            self.ledger.record(type(exc).__name__, None, expect)
            return
        ingest_id = r.json().get("id") if r.status_code == 202 else None
        code: int | str = r.status_code
        if code == 503 and "retry-after" not in r.headers:
            code = "503 without Retry-After"  # a provider may give up on it
        self.ledger.record(code, ingest_id, expect)
