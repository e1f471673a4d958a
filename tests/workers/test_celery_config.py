"""Task names, queues and time limits: guards against the Redis-broker traps."""

from __future__ import annotations

import ast
from pathlib import Path

from hookline import cli
from workers import celery_app, producer, queues, tasks

ROOT = Path(__file__).resolve().parents[2]


def test_every_task_has_an_explicit_name_and_queue():
    app = celery_app.app
    app.loader.import_default_modules()
    ours = {n: t for n, t in app.tasks.items() if n.startswith("hookline.")}
    assert set(ours) >= {queues.TASK_DRAIN, queues.TASK_TICK}
    routes = app.conf.task_routes
    for name in ours:
        assert name in routes, f"{name} has no explicit route"
        assert routes[name]["queue"] in queues.ALL


def test_every_queue_has_a_consumer_in_hookline_worker(monkeypatch):
    captured = {}
    monkeypatch.setattr(celery_app.app, "worker_main", lambda argv: captured.update(argv=argv))
    cli.main(["worker"])
    argv = captured["argv"]
    consumed = set(argv[argv.index("-Q") + 1].split(","))
    assert consumed == set(queues.ALL)
    assert "--events" in argv


def test_time_limits_are_safely_below_the_visibility_timeout():
    conf = celery_app.app.conf
    vt = conf.broker_transport_options["visibility_timeout"]
    assert conf.task_time_limit <= vt / 2
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert vt / 10 >= celery_app.MAX_COUNTDOWN
    assert conf.task_soft_time_limit > tasks.DRAIN_BUDGET_SECONDS
    for entry in conf.beat_schedule.values():
        assert entry["options"]["expires"] < vt


def test_reliability_settings():
    conf = celery_app.app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1


def _countdowns(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in ("countdown", "eta"):
            yield node


def test_no_literal_countdown_or_eta_beyond_the_visibility_timeout():
    vt = producer.VISIBILITY_TIMEOUT
    for path in (ROOT / "workers").rglob("*.py"):
        for kw in _countdowns(ast.parse(path.read_text())):
            if isinstance(kw.value, ast.Constant):
                assert kw.arg == "countdown" and kw.value.value <= vt / 10, path
            else:
                # A computed countdown must be capped by MAX_COUNTDOWN.
                assert "MAX_COUNTDOWN" in ast.unparse(kw.value), (path, ast.unparse(kw.value))


def test_unix_socket_redis_url_becomes_a_kombu_socket_url():
    from shared import config

    s = config.load({"REDIS_URL": "unix:///tmp/x/redis.sock"})
    assert producer.broker_url(s) == "redis+socket:///tmp/x/redis.sock"


# --- Guards against the broker's visibility timeout (issue 6) -----------------------------
# A task the broker has handed out but that is not acknowledged within the visibility
# timeout is handed out again: a second run. Every way a task can stay unacknowledged
# that long must be ruled out: time limits, countdowns and ETAs (a worker holds an ETA
# task unacknowledged until it is due), retry delays, and beat entries left to pile up.

_SCANNED = ("workers", "shared", "ingest")
_DELAY_KWARGS = ("countdown", "eta", "default_retry_delay", "retry_backoff_max")
_LIMIT_KWARGS = ("time_limit", "soft_time_limit")


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _sources():
    for folder in _SCANNED:
        for path in (ROOT / folder).rglob("*.py"):
            yield path, ast.parse(path.read_text())


def _seconds(value: ast.expr) -> float | None:
    try:
        return float(ast.literal_eval(value))
    except (ValueError, TypeError, SyntaxError):
        return None


def test_countdown_plus_time_limit_fits_inside_the_visibility_timeout():
    # The worst case: held until due, then running to the hard limit, then acknowledged.
    worst = celery_app.MAX_COUNTDOWN + celery_app.TASK_TIME_LIMIT
    assert worst < producer.VISIBILITY_TIMEOUT / 2


def test_no_delay_or_time_limit_anywhere_escapes_the_cap():
    """countdown=, eta=, retry delays and per-task time limits in any call or task
    decorator under workers/, shared/ and ingest/: literals safely small, computed
    values capped by MAX_COUNTDOWN; an ETA is a datetime, so it must be computed
    from a capped countdown."""
    vt = producer.VISIBILITY_TIMEOUT
    problems = []
    for path, tree in _sources():
        for call in _calls(tree):
            for kw in call.keywords:
                where = f"{path.relative_to(ROOT)}:{kw.value.lineno} {kw.arg}="
                if kw.arg in _DELAY_KWARGS:
                    literal = _seconds(kw.value)
                    if kw.arg == "eta" or literal is None:
                        if "MAX_COUNTDOWN" not in ast.unparse(kw.value):
                            problems.append(where + ast.unparse(kw.value))
                    elif literal > vt / 10:
                        problems.append(where + str(literal))
                elif kw.arg in _LIMIT_KWARGS:
                    literal = _seconds(kw.value)
                    if literal is None or literal > vt / 2:
                        problems.append(where + ast.unparse(kw.value))
    assert problems == []


def test_every_registered_task_finishes_inside_the_visibility_timeout():
    app = celery_app.app
    app.loader.import_default_modules()
    vt = producer.VISIBILITY_TIMEOUT
    for name, task in app.tasks.items():
        if not name.startswith("hookline."):
            continue
        hard = task.time_limit or app.conf.task_time_limit
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        assert hard and hard <= vt / 2, (name, hard)
        assert soft and soft < hard, (name, soft, hard)
        # Celery's own default (180 s) applies should any task ever call retry().
        assert (task.default_retry_delay or 0) <= vt / 10, name


def test_beat_entries_expire_before_they_can_pile_up_or_be_redelivered():
    """While workers are down (or blocked, e.g. PostgreSQL away) beat keeps sending;
    an entry without expires piles up and runs in a burst later."""
    vt = producer.VISIBILITY_TIMEOUT
    for name, entry in celery_app.app.conf.beat_schedule.items():
        schedule = entry["schedule"]
        every = schedule if isinstance(schedule, int | float) else \
            schedule.run_every.total_seconds()
        expires = entry.get("options", {}).get("expires")
        assert expires is not None, f"beat entry {name} has no expires"
        assert 0 < expires < vt / 10, (name, expires)
        assert every < vt, (name, every)
        assert entry["options"].get("queue") in queues.ALL, name


def test_drain_budget_and_database_waits_fit_inside_a_lease():
    """A batch is leased for HOOKLINE_LEASE_SECONDS. A drain that is still waiting
    for PostgreSQL when its lease runs out has its batch reclaimed and processed a
    second time (harmless, but it must be the exception, not the rule)."""
    import inspect

    from shared import config
    from shared.db import pool

    pool_wait = inspect.signature(pool.make_pool).parameters["timeout"].default
    settings = config.Settings()
    assert pool_wait + tasks.DRAIN_BUDGET_SECONDS < settings.lease_seconds
    assert settings.lease_seconds < producer.VISIBILITY_TIMEOUT
    # A drain killed by its hard time limit loses its lease, never its batch.
    assert celery_app.TASK_TIME_LIMIT < producer.VISIBILITY_TIMEOUT


def test_the_guard_catches_a_long_countdown(tmp_path, monkeypatch):
    """The scan itself can fail: a file with a long literal countdown trips it."""
    bad = tmp_path / "workers" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("def f(t):\n    t.apply_async(countdown=7200)\n    t.retry(eta=later())\n")
    for name in ("shared", "ingest"):
        (tmp_path / name).mkdir()
    import sys

    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    try:
        test_no_delay_or_time_limit_anywhere_escapes_the_cap()
    except AssertionError as exc:
        assert "countdown=7200" in str(exc) and "eta=later()" in str(exc)
    else:
        raise AssertionError("a 2-hour countdown passed the guard")
