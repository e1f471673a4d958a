"""Benchmark-only switches that undo hot-path optimisations at run time, to
measure before and after on the same code (drain_cpu.py in-process, and the
real worker processes through variants/sitecustomize.py).

* ``current``: hookline as it is;
* ``no-ahead``: the drain does not read the next batch ahead (workers.ahead);
* ``before``: also CPython's default garbage collector settings, marshmallow's
  validator pass for every field and marshmallow's own field loop
  (shared.providers.base).
"""

from __future__ import annotations

import gc
import sys

VARIANTS = ("current", "no-ahead", "before")
DEFAULT_GC = (700, 10, 10)
DEFAULT_SWITCH_INTERVAL = 0.005
_start = None


def set_variant(variant: str, worker_starting: bool = False) -> None:
    """Switch this process to ``variant``. ``worker_starting``: called from a pool
    process's worker_process_init, before hookline's own receivers tune the GC."""
    global _start
    from shared import providers
    from shared.providers.base import load_plan, prebuild_validation
    from workers import ahead, tasks

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    _start = _start or ahead.ReadAhead.start
    ahead.ReadAhead.start = _start if variant == "current" else (lambda self: None)
    sys.setswitchinterval(
        ahead.SWITCH_INTERVAL_SECONDS if variant == "current" else DEFAULT_SWITCH_INTERVAL)
    for schema in providers.schemas():
        schema._plan = None if variant == "before" else load_plan(schema)
        for f in schema.load_fields.values():
            if variant == "before":
                f.__dict__.pop("_validate", None)
            else:
                prebuild_validation(f)
    if worker_starting:
        if variant == "before":  # tasks._tune_gc runs next: make it change nothing
            gc.freeze = lambda: None
            tasks.GC_THRESHOLDS = DEFAULT_GC
        return
    gc.unfreeze()
    gc.set_threshold(*DEFAULT_GC)
    if variant != "before":
        tasks._tune_gc()
