"""The Celery application: explicit task names, explicit queues, one visibility timeout."""

from __future__ import annotations

import faulthandler
import signal

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from shared import config, redis_urls, runtime
from workers import (  # noqa: F401  (hooks and heartbeat connect signals)
    heartbeat,
    hooks,
    kombu_fix,
    prefork_fix,
    queues,
)

kombu_fix.install()
prefork_fix.install()

# The broker redelivers a task not acknowledged within this time. Every time
# limit, countdown and ETA in hookline stays well below it (a test checks), so
# no task can run twice because it ran long. Long retry schedules live in
# PostgreSQL, not in broker ETAs.
VISIBILITY_TIMEOUT = 3600
# A drain must finish (or be killed) long before its lease or the broker gives up on it.
TASK_SOFT_TIME_LIMIT = 240
TASK_TIME_LIMIT = 300
MAX_COUNTDOWN = 60
TICK_SECONDS = 1.0
# Retention runs often in short rounds, so it keeps pace with any ingest rate.
PURGE_SECONDS = 600.0


def broker_url(settings: config.Settings) -> str:
    return _broker(settings)[0]


def _broker(settings: config.Settings) -> tuple[str, dict]:
    """kombu's URL and transport options (a Sentinel group's master name)."""
    url = settings.broker_url or settings.redis_url or "redis://127.0.0.1:6379/0"
    if url.startswith("unix://"):
        # kombu names a Redis unix socket differently from redis-py.
        path, _, query = url[len("unix://"):].partition("?")
        return f"redis+socket://{path}" + (f"?{query}" if query else ""), {}
    # A Cluster REDIS_URL without HOOKLINE_BROKER_URL was refused by config.load.
    return redis_urls.kombu_broker(url)


def make_app(settings: config.Settings | None = None) -> Celery:
    settings = settings or config.load()
    url, transport = _broker(settings)
    app = Celery("hookline", broker=url, include=["workers.tasks", "workers.fanout"])
    app.conf.update(
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT, **transport},
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue=queues.DRAIN,
        task_routes={
            queues.TASK_DRAIN: {"queue": queues.DRAIN},
            queues.TASK_TICK: {"queue": queues.PERIODIC},
            queues.TASK_DISPATCH: {"queue": queues.FANOUT},
            queues.TASK_FANOUT_TICK: {"queue": queues.PERIODIC},
            queues.TASK_PURGE: {"queue": queues.PERIODIC},
        },
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT,
        task_time_limit=TASK_TIME_LIMIT,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        timezone="UTC",
        enable_utc=True,
        beat_schedule={
            "tick": {
                "task": queues.TASK_TICK,
                "schedule": TICK_SECONDS,
                "options": {"queue": queues.PERIODIC, "expires": 10},
            },
            # Retries that fell due get a dispatch (new deliveries are kicked at once).
            "fanout-tick": {
                "task": queues.TASK_FANOUT_TICK,
                "schedule": TICK_SECONDS,
                "options": {"queue": queues.PERIODIC, "expires": 10},
            },
            "purge": {
                "task": queues.TASK_PURGE,
                "schedule": PURGE_SECONDS,
                "options": {"queue": queues.PERIODIC, "expires": PURGE_SECONDS / 2},
            },
        },
    )
    app.steps["consumer"].add(heartbeat.Heartbeat)
    return app


app = make_app()
_senders: dict[str, Celery] = {}


def sender_app() -> Celery:
    """The app to send tasks with: the one whose broker is this process's runtime's.

    The module-level app reads the environment at import; a process whose runtime
    was configured otherwise (tests, embedded services) must not silently send
    to whatever broker that environment happened to name.
    """
    settings = runtime.get().settings
    url = broker_url(settings)
    if url == app.conf.broker_url:
        return app
    if url not in _senders:
        _senders[url] = make_app(settings)
    return _senders[url]


@worker_process_init.connect
def _fresh_runtime(**_: object) -> None:
    # Each forked pool process opens its own Redis and PostgreSQL connections.
    runtime.reset()
    # `kill -USR2 <pool process>` writes every thread's stack to the worker's log: how
    # to see what a pool process that will not finish is doing (Celery's own SIGUSR1
    # dump covers the main process only).
    faulthandler.register(signal.SIGUSR2, all_threads=True)


@worker_process_shutdown.connect
def _close_runtime(**_: object) -> None:
    from workers import fanout

    # Let sends in flight finish and be recorded (else they go again after their lease).
    fanout.close_sender(timeout=10)
    runtime.reset()
