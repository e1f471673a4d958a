"""The `hookline` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from shared import config, logs

log = logging.getLogger("hookline")


def _settings() -> config.Settings:
    try:
        return config.load()
    except config.ConfigError as exc:
        sys.exit(f"hookline: configuration error: {exc}")


def cmd_migrate(args: argparse.Namespace) -> int:
    from shared.db.migrate import migrate

    settings = _settings()
    try:
        applied = migrate(settings.require_database())
    except config.ConfigError as exc:
        sys.exit(f"hookline: configuration error: {exc}")
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from granian import Granian

    _settings()  # fail now, naming the variable, rather than in every worker
    Granian(
        "ingest.wsgi:app", address=args.host, port=args.port, interface="wsgi",
        workers=args.workers, blocking_threads=args.threads, backlog=2048,
        log_access=False,
    ).serve()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers import queues

    _settings()
    from workers.celery_app import app

    argv = [
        "worker", "--loglevel", args.loglevel, "-Q", ",".join(queues.ALL),
        "--concurrency", str(args.concurrency), "--events", "-O", "fair",
    ]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    app.worker_main(argv)
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    _settings()
    from workers.celery_app import app

    argv = ["beat", "--loglevel", args.loglevel]
    if args.schedule:
        argv += ["--schedule", args.schedule]
    app.start(argv)
    return 0


def cmd_flower(args: argparse.Namespace) -> int:
    _settings()
    from workers.celery_app import app

    argv = ["flower", f"--port={args.port}", f"--address={args.address}"]
    auth = os.environ.get("HOOKLINE_FLOWER_BASIC_AUTH")
    if auth:
        argv.append(f"--basic-auth={auth}")
    app.start(argv)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    from shared.devrunner import run_dev

    return run_dev(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hookline", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="apply SQL migrations (idempotent)").set_defaults(
        func=cmd_migrate)

    s = sub.add_parser("ingest", help="run the production HTTP server (granian, WSGI)")
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--threads", type=int, default=8, help="blocking threads per worker")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("worker", help="run a Celery worker on every hookline queue")
    s.add_argument("--concurrency", type=int, default=2)
    s.add_argument("--hostname", default=None)
    s.add_argument("--loglevel", default="info")
    s.add_argument("--metrics-port", type=int, default=9101,
                   help="Prometheus /metrics for this worker (0 turns it off)")
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("scheduler", help="run Celery beat (exactly one per deployment)")
    s.add_argument("--loglevel", default="info")
    s.add_argument("--schedule", default=None, help="beat schedule file")
    s.set_defaults(func=cmd_scheduler)

    s = sub.add_parser("flower", help="run Flower (basic auth from HOOKLINE_FLOWER_BASIC_AUTH)")
    s.add_argument("--port", type=int, default=5555)
    s.add_argument("--address", default="0.0.0.0")
    s.set_defaults(func=cmd_flower)

    s = sub.add_parser("dev", help="run everything locally, on embedded PostgreSQL and Redis")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--data-dir", default=".hookline")
    s.add_argument("--concurrency", type=int, default=2)
    s.add_argument("--no-flower", action="store_true")
    s.add_argument("--flower-port", type=int, default=5555)
    s.set_defaults(func=cmd_dev)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(os.environ.get("HOOKLINE_LOG_FORMAT", "json"))
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
