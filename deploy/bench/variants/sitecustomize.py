"""Benchmark-only: run a spawned `hookline worker` as one of undo.VARIANTS. Put this
directory first on PYTHONPATH and set BENCH_VARIANT. The switch is made when a
pool process starts, before hookline's own worker_process_init receivers, so
nothing is imported early. Nothing here is imported by hookline itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_VARIANT = os.environ.get("BENCH_VARIANT", "")

if _VARIANT:
    from celery.signals import worker_process_init

    @worker_process_init.connect(weak=False)
    def _switch(**_: object) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from undo import set_variant

        set_variant(_VARIANT, worker_starting=True)
        print(f"bench variant {_VARIANT} in pool process {os.getpid()}", file=sys.stderr)
