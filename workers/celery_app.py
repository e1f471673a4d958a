"""The Celery application: explicit task names, explicit queues, one visibility timeout."""

from __future__ import annotations

import faulthandler
import signal

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from shared import config, runtime

# hooks and heartbeat are imported for the worker signals they connect.
from workers import (  # noqa: F401
    fanout,
    heartbeat,
    hooks,
    kombu_fix,
    prefork_fix,
    producer,
    queues,
)

kombu_fix.install()
prefork_fix.install()

# Every time limit, countdown and ETA stays well below the broker's visibility
# timeout (workers.producer.VISIBILITY_TIMEOUT; a test checks), so no task can run
# twice because it ran long.
# A drain must finish (or be killed) long before its lease or the broker gives up on it.
TASK_SOFT_TIME_LIMIT = 240
TASK_TIME_LIMIT = 300
MAX_COUNTDOWN = 60
TICK_SECONDS = 1.0
# Retention runs often in short rounds, so it keeps pace with any ingest rate.
PURGE_SECONDS = 600.0


def make_app(settings: config.Settings | None = None) -> Celery:
    """The worker's app: the producer's configuration, the tasks, the worker's
    limits and the scheduler's timetable."""
    app = producer.make_app(settings or config.load(),
                            include=["workers.tasks", "workers.fanout"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT,
        task_time_limit=TASK_TIME_LIMIT,
        worker_prefetch_multiplier=1,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
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
# Tasks sent from a worker process go out on the connections of the app it runs.
producer.adopt(app)


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
    # Let sends in flight finish and be recorded (else they go again after their lease).
    fanout.close_dispatcher(timeout=10)
    runtime.reset()
