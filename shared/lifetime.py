"""Child processes that do not outlive their parent.

A supervisor killed outright (SIGKILL, OOM) runs no clean-up, so its children would be
re-parented to init and keep their ports. On Linux the kernel can instead signal a child
when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere this is a no-op.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
# Set by `hookline ingest` for its granian workers: the pid they must not outlive.
PARENT_ENV = "HOOKLINE_SERVER_PID"


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)  # the running process's libc
    except OSError:
        return None


# Loaded now, not in die_with_parent: that runs between fork and exec, where loading
# a library (or searching for one) is not safe.
_LIBC = _libc() if sys.platform == "linux" else None


def die_with_parent(sig: int = signal.SIGTERM, parent: int | None = None) -> None:
    """Have the kernel send ``sig`` to this process when its parent exits.

    ``parent`` is the pid the caller expects as its parent: when it has died already
    (before the prctl call, so the kernel will never signal), ``sig`` is sent now.
    Meant for a Popen ``preexec_fn`` (the setting survives exec) or a worker's start.
    The kernel sends it when the *thread* that forked the child ends: start such
    children from the main thread (hookline dev and the tests do)."""
    try:
        if _LIBC is None or _LIBC.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return
    except AttributeError:  # a libc without prctl
        return
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)


def child_dies_with_me(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A Popen ``preexec_fn``: the child gets ``sig`` when this process dies."""
    return functools.partial(die_with_parent, sig, os.getpid())


def server_worker() -> None:
    """In a worker process of `hookline ingest`: take signals from the server process
    only, and die with it. A no-op elsewhere (no ``PARENT_ENV``)."""
    parent = os.environ.get(PARENT_ENV)
    if not (parent and parent.isdigit()) or int(parent) == os.getpid():
        return
    # A process group of its own, so a terminal's Ctrl-C (SIGINT to the foreground group)
    # reaches the server process alone, which stops each worker with one SIGTERM. A granian
    # worker that gets both at once (the group's SIGINT, then its server's SIGTERM a
    # millisecond later) can hang in its shutdown for good.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    # SIGKILL, not SIGTERM: with the server gone nobody would bound the worker's
    # graceful stop, and it keeps the listening socket open until it ends.
    die_with_parent(signal.SIGKILL, int(parent))
