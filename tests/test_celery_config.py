"""Task names, queues and time limits: guards against the Redis-broker traps."""

from __future__ import annotations

import ast
from pathlib import Path

from shared import cli
from workers import celery_app, queues, tasks

ROOT = Path(__file__).resolve().parents[1]


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
    vt = celery_app.VISIBILITY_TIMEOUT
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
    assert celery_app.broker_url(s) == "redis+socket:///tmp/x/redis.sock"
