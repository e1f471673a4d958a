"""The Celery producer: sends hookline's tasks to the broker the given settings name.

It depends on the configuration and the queue table only, so whatever sends a task
(ingest through the composition root, the drain, the dispatch, the purge) imports
this, not the worker's Celery app with its signal handlers, tasks and metrics.
"""

from __future__ import annotations

import threading

from celery import Celery

from shared import config, redis_urls
from workers import queues

# The broker redelivers a task not acknowledged within this time. Every time
# limit, countdown and ETA in hookline stays well below it (a test checks), so
# no task can run twice because it ran long. Long retry schedules live in
# PostgreSQL, not in broker ETAs.
VISIBILITY_TIMEOUT = 3600

_apps: dict[str, Celery] = {}
_apps_lock = threading.Lock()


def broker(settings: config.Settings) -> tuple[str, dict]:
    """kombu's URL and transport options (a Sentinel group's master name)."""
    url = settings.broker_url or settings.redis_url or "redis://127.0.0.1:6379/0"
    if url.startswith("unix://"):
        # kombu names a Redis unix socket differently from redis-py.
        path, _, query = url[len("unix://"):].partition("?")
        return f"redis+socket://{path}" + (f"?{query}" if query else ""), {}
    # A Cluster REDIS_URL without HOOKLINE_BROKER_URL was refused by config.load.
    return redis_urls.kombu_broker(url)


def broker_url(settings: config.Settings) -> str:
    return broker(settings)[0]


def make_app(settings: config.Settings, **kwargs: object) -> Celery:
    """A Celery app on the settings' broker, configured for sending: every task
    routed to its queue, results ignored, a sent event for each."""
    url, transport = broker(settings)
    app = Celery("hookline", broker=url, **kwargs)
    app.conf.update(
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT, **transport},
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_default_queue=queues.DRAIN,
        task_routes={
            queues.TASK_DRAIN: {"queue": queues.DRAIN},
            queues.TASK_TICK: {"queue": queues.PERIODIC},
            queues.TASK_DISPATCH: {"queue": queues.FANOUT},
            queues.TASK_FANOUT_TICK: {"queue": queues.PERIODIC},
            queues.TASK_PURGE: {"queue": queues.PERIODIC},
        },
        task_send_sent_event=True,
        timezone="UTC",
        enable_utc=True,
    )
    return app


def adopt(app: Celery) -> None:
    """Send through ``app`` whenever the settings name its broker: a worker process
    sends on the connections of the app it runs, as it always has."""
    with _apps_lock:
        _apps[app.conf.broker_url] = app


def app_for(settings: config.Settings) -> Celery:
    """The app to send with: the one on the broker ``settings`` name. Callers pass
    their runtime's settings: a process configured otherwise than its environment
    (tests, embedded services) must not send to the broker the environment names."""
    url = broker_url(settings)
    with _apps_lock:
        if url not in _apps:
            _apps[url] = make_app(settings)
        return _apps[url]


def send_drain(settings: config.Settings) -> None:
    app_for(settings).send_task(queues.TASK_DRAIN, queue=queues.DRAIN)


def send_dispatch(settings: config.Settings) -> None:
    app_for(settings).send_task(queues.TASK_DISPATCH, queue=queues.FANOUT)


def send_purge(settings: config.Settings) -> None:
    app_for(settings).send_task(queues.TASK_PURGE, queue=queues.PERIODIC)
