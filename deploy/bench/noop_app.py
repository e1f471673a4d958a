"""A Celery app whose one task does nothing but count: the per-task ceiling."""

from __future__ import annotations

import os

import redis
from celery import Celery

TASK = "bench.noop"
QUEUE = "bench-noop"
COUNTER = "bench:noop:count"


def make(url: str) -> Celery:
    if url.startswith("unix://"):
        url = "redis+socket://" + url[len("unix://"):]
    app = Celery("bench", broker=url)
    app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_ignore_result=True)
    return app


_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
app = make(_url)
_r = None


@app.task(name=TASK)
def noop() -> None:
    global _r
    if _r is None:
        _r = redis.Redis.from_url(_url)
    _r.incr(COUNTER)
