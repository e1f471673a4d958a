"""Prometheus helpers shared by ingest and workers."""

from __future__ import annotations

import bisect
from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import Histogram


def observe_many(histogram: Histogram, values: Iterable[float]) -> None:
    """Histogram.observe for a whole batch: one write per bucket, not one per value.

    In multi-process mode every write goes to a memory-mapped file; a batch of
    500 envelopes would otherwise cost 500 x (sum + bucket) writes. Uses the
    histogram's internals, so it falls back to observe() if they change.
    """
    values = list(values)
    if not values:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for v in values:
            histogram.observe(v)
        return
    counts = Tally(bisect.bisect_left(bounds, v) for v in values)
    total.inc(sum(values))
    for index, n in counts.items():
        buckets[index].inc(n)
