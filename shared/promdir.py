"""The directory prometheus_client's multi-process mode keeps its per-process files in.

`hookline worker` (Celery prefork) and `hookline ingest` (granian workers) run
several processes that each count in their own files; /metrics adds them up.
prometheus_client decides at import time whether to use files, so the variable
must be set before any process of the command imports it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def multiprocess_dir(prefix: str) -> Iterator[str]:
    """Use PROMETHEUS_MULTIPROC_DIR when set (emptied first: files left by a previous
    run would be added to this one's counts), else a temporary directory removed at exit."""
    configured = os.environ.get(VARIABLE)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink(missing_ok=True)
        yield str(path)
        return
    path = Path(tempfile.mkdtemp(prefix=f"hookline-{prefix}-metrics-"))
    os.environ[VARIABLE] = str(path)
    try:
        yield str(path)
    finally:
        os.environ.pop(VARIABLE, None)
        shutil.rmtree(path, ignore_errors=True)
