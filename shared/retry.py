"""One way to try something again (Svix's ``run_with_retries`` is the model)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def run_with_retries(fun: Callable[[], T], should_retry: Callable[[Exception], bool],
                     schedule: Sequence[float],
                     on_retry: Callable[[int, Exception], None] | None = None) -> T:
    """``fun()``, tried again after each pause of ``schedule`` (seconds) while what it
    raised is worth another try: at most len(schedule) + 1 tries. The last exception,
    or one not worth retrying, propagates. ``on_retry(n, exc)`` runs before the pause
    that follows the n-th failed try."""
    for n, pause in enumerate(schedule, start=1):
        try:
            return fun()
        except Exception as exc:
            if not should_retry(exc):
                raise
            if on_retry is not None:
                on_retry(n, exc)
        time.sleep(pause)
    return fun()
