"""Drains that die: a forked process runs real drain code and is killed where a fault
would kill a worker. What survives it (the lease, the retry list, the attempt count,
PostgreSQL) is then whatever the real code left behind."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable

from shared import config, runtime
from shared.runtime import Runtime

DIED = 9  # the exit code of a child killed on purpose


def die(*_: object, **__: object) -> None:
    os._exit(DIED)


def in_child(env: dict[str, str], body: Callable[[Runtime], object],
             timeout: float = 60.0) -> int:
    """Run ``body`` on a fresh Runtime in a forked process; its exit code."""
    child = multiprocessing.get_context("fork").Process(target=_run, args=(env, body))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        raise AssertionError(f"the child was still running after {timeout} s")
    return child.exitcode


def _run(env: dict[str, str], body: Callable[[Runtime], object]) -> None:
    rt = Runtime(config.load(env))
    runtime.install(rt)
    body(rt)
    rt.close()
