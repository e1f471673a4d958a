"""`hookline secrets rotate`: every stored endpoint secret sealed again under the newest
key of HOOKLINE_SECRET_KEYS.

Safe on a live system: a page of endpoints at a time, each in a short transaction of
its own, and each row written only if it still holds what was read (shared.db.endpoints
.reseal), so a secret rotated through the API meanwhile is never overwritten with the
old one. Idempotent: a secret already under the newest key is not written, so a second
run (or one interrupted and run again) changes only what is left.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg

from shared.db import endpoints
from shared.secretbox import SecretBox, SecretBoxError

log = logging.getLogger(__name__)

BATCH = 500


@dataclass
class Rotation:
    examined: int = 0
    resealed: int = 0
    current: int = 0          # under the newest key already
    changed: int = 0          # rotated through the API while this ran: run again
    failed: dict[str, str] = field(default_factory=dict)  # endpoint id -> why

    @property
    def complete(self) -> bool:
        return not self.failed and not self.changed


def rotate(database_url: str, box: SecretBox, batch: int = BATCH) -> Rotation:
    if not box.sealing:
        raise SecretBoxError("HOOKLINE_SECRET_KEYS is not set: no key to seal under")
    out = Rotation()
    after: str | None = None
    with psycopg.connect(database_url, autocommit=True) as conn:
        while page := endpoints.sealed_secrets(conn, after, batch):
            with conn.transaction():
                for endpoint_id, secret, previous in page:
                    _one(conn, box, out, endpoint_id, (secret, previous))
            after = page[-1][0]
            log.info("secrets rotate: %d endpoints examined, %d sealed again", out.examined,
                     out.resealed, extra={"examined": out.examined, "resealed": out.resealed})
    return out


def _one(conn: psycopg.Connection, box: SecretBox, out: Rotation, endpoint_id: str,
         was: tuple[str, str | None]) -> None:
    out.examined += 1
    secret, previous = was
    if box.current(secret) and (previous is None or box.current(previous)):
        out.current += 1
        return
    try:
        now = (box.reseal(secret), None if previous is None else box.reseal(previous))
    except SecretBoxError as exc:
        out.failed[endpoint_id] = str(exc)
        return
    if endpoints.reseal(conn, endpoint_id, was, now):
        out.resealed += 1
    else:
        out.changed += 1
