"""The `hookline` command."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from shared import config, lifetime, logs

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

    from shared.promdir import multiprocess_dir

    _settings()  # fail now, naming the variable, rather than in every worker
    # Read by hookline.wsgi in each worker (shared.lifetime.server_worker): the workers
    # take signals from this process only, and die with it rather than keep the port.
    os.environ[lifetime.PARENT_ENV] = str(os.getpid())
    # Every server process counts into its own file; /metrics adds them all up.
    with multiprocess_dir("ingest"):
        Granian(
            "hookline.wsgi:app", address=args.host, port=args.port, interface="wsgi",
            workers=args.workers, blocking_threads=args.threads, backlog=2048,
            # A worker's graceful stop has no limit of its own (it goes on serving kept-alive
            # connections that keep sending): bound it, then granian SIGKILLs the worker.
            workers_kill_timeout=args.workers_kill_timeout,
            log_access=False,
            log_dictconfig=logs.granian_config(os.environ.get("HOOKLINE_LOG_FORMAT", "json")),
        ).serve()
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from shared.promdir import multiprocess_dir
    from workers import queues

    _settings()
    loglevel = args.loglevel or logging.getLevelName(logs.env_level())
    argv = [
        "worker", "--loglevel", loglevel, "-Q", ",".join(queues.ALL),
        "--concurrency", str(args.concurrency), "--events", "-O", "fair",
    ]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    with contextlib.ExitStack() as stack:
        if args.metrics_port:
            # Before the Celery app (and so prometheus_client) is imported: the
            # pool processes count into files the main process serves.
            stack.enter_context(multiprocess_dir("worker"))
        from workers import hooks
        from workers.celery_app import app

        hooks.metrics_port = args.metrics_port
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
    auth = (config.secret(os.environ, "HOOKLINE_FLOWER_BASIC_AUTH") or "").strip()
    if auth:
        if not all(":" in pair for pair in auth.split(",")):
            sys.exit("hookline: configuration error: HOOKLINE_FLOWER_BASIC_AUTH must be "
                     "user:password (several separated by commas)")
        argv.append(f"--basic-auth={auth}")
    elif not _loopback(args.address):
        # Flower can revoke tasks and shut workers down: never open to the network.
        sys.exit("hookline: configuration error: HOOKLINE_FLOWER_BASIC_AUTH is not set; "
                 f"refusing to serve Flower on {args.address} without it "
                 "(use --address 127.0.0.1 for a local Flower)")
    app.start(argv)
    return 0


def _loopback(address: str) -> bool:
    import ipaddress

    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def cmd_status(args: argparse.Namespace) -> int:
    from shared import status

    try:
        settings = config.load(status.service_env(args.data_dir))
    except config.ConfigError as exc:
        sys.exit(f"hookline: configuration error: {exc}")
    doc = status.gather(settings)
    print(status.to_json(doc) if args.json else status.render(doc))
    return 1 if doc["errors"] else 0


def cmd_replay(args: argparse.Namespace) -> int:
    import psycopg
    import redis

    from shared import replay, runtime, status, timeutil

    try:
        settings = config.load(status.service_env(args.data_dir))
        since = timeutil.parse_timestamp(args.since) if args.since else None
        until = timeutil.parse_timestamp(args.until) if args.until else None
    except (config.ConfigError, ValueError) as exc:
        sys.exit(f"hookline replay: {exc}")
    sel = replay.Selection(args.source, args.reason, since, until, args.limit)
    rt = runtime.Runtime(settings)
    try:
        total = replay.count(rt, sel)
        if args.dry_run or not total:
            print(f"{total} dead letters {'would be' if args.dry_run else 'were'} replayed")
            return 0
        bar = replay.ProgressBar(total)
        done = replay.replay_matching(rt, sel, bar)
        bar.close(done)
        print(f"{done} dead letters replayed")
    except (psycopg.Error, redis.RedisError) as exc:
        sys.exit(f"hookline replay: {str(exc).strip().splitlines()[0]}")
    finally:
        rt.close()
    return 0


def cmd_partitions(args: argparse.Namespace) -> int:
    import time
    from datetime import UTC, datetime, timedelta

    import psycopg

    from shared import status
    from shared.db import convert, events, partitions

    try:
        settings = config.load(status.service_env(args.data_dir))
        url = settings.require_database()
    except config.ConfigError as exc:
        sys.exit(f"hookline partitions: {exc}")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            if args.ensure:
                made = partitions.ensure(conn, interval_days=settings.partition_interval_days,
                                         ahead_days=args.ahead)
                print(f"made {len(made)} partitions")
            if args.convert:
                cutoff = datetime.now(UTC) - timedelta(days=settings.retention_days)
                while not (step := convert.step(conn, cutoff, settings.partition_interval_days,
                                                events.DEDUPE_DAYS)).finished:
                    if step.skipped:
                        print("another conversion holds the lock (the scheduler's); waiting")
                        time.sleep(5)
                        continue
                    print(f"moved {step.events} legacy events; {convert.remaining(conn)} left")
                print("conversion finished")
            for t in partitions.report(conn):
                print(f"{t.parent:24} {t.partitions:4} partitions  {t.oldest or '-'} .. "
                      f"{t.newest or '-'}  default: {t.default_rows} rows")
            left = convert.remaining(conn)
            if left is not None:
                print(f"converting: {left} legacy events left to move")
    except psycopg.Error as exc:
        sys.exit(f"hookline partitions: {str(exc).strip().splitlines()[0]}")
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    from shared import rekey, secretbox, status

    try:
        settings = config.load(status.service_env(args.data_dir))
        box = secretbox.box(settings.secret_keys)
        done = rekey.rotate(settings.require_database(), box, args.batch)
    except (config.ConfigError, secretbox.SecretBoxError) as exc:
        sys.exit(f"hookline: configuration error: {exc}")
    print(f"{done.examined} endpoints: {done.resealed} sealed again under key "
          f"{box.newest_id}, {done.current} were already")
    for endpoint_id, why in done.failed.items():
        print(f"{endpoint_id}: {why}", file=sys.stderr)
    if done.changed:
        print(f"{done.changed} changed while this ran (rotated through the API): run it "
              "again", file=sys.stderr)
    return 0 if done.complete else 1


def cmd_dev(args: argparse.Namespace) -> int:
    from hookline.devrunner import run_dev

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
    s.add_argument("--threads", type=int, default=4, help="blocking threads per worker")
    s.add_argument("--workers-kill-timeout", type=int, default=5, metavar="SECONDS",
                   help="on SIGTERM/SIGINT, SIGKILL workers still serving after this long")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("worker", help="run a Celery worker on every hookline queue")
    s.add_argument("--concurrency", type=int, default=2)
    s.add_argument("--hostname", default=None)
    s.add_argument("--loglevel", default=None, help="default: HOOKLINE_LOG_LEVEL, else info")
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
    _admin_parsers(sub)
    return p


def _data_dir_arg(s: argparse.ArgumentParser) -> None:
    s.add_argument("--data-dir", default=None,
                   help="use the services of the `hookline dev` running with this --data-dir")


def _admin_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("status", help="inbox, leases, dead letters, deliveries, endpoints")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    _data_dir_arg(s)
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("partitions", help="time partitions: what exists, make ahead, convert")
    s.add_argument("--ensure", action="store_true", help="make the partitions due now")
    s.add_argument("--ahead", type=int, default=3, metavar="DAYS",
                   help="with --ensure: make partitions this many days ahead")
    s.add_argument("--convert", action="store_true",
                   help="move the rows from before migration 010 across, to the end")
    _data_dir_arg(s)
    s.set_defaults(func=cmd_partitions)

    s = sub.add_parser("secrets", help="endpoint secrets at rest: rotate to the newest key")
    s.add_argument("action", choices=["rotate"],
                   help="rotate: seal every stored secret again under the newest key of "
                        "HOOKLINE_SECRET_KEYS (safe while hookline runs; run it again "
                        "until it reports nothing left)")
    s.add_argument("--batch", type=int, default=500, help="endpoints per transaction")
    _data_dir_arg(s)
    s.set_defaults(func=cmd_secrets)

    s = sub.add_parser("replay", help="replay dead letters not replayed yet")
    s.add_argument("--source", default=None)
    s.add_argument("--reason", default=None, help="a case-insensitive part of the reason")
    s.add_argument("--since", default=None, help="received at or after (ISO-8601)")
    s.add_argument("--until", default=None, help="received before (ISO-8601)")
    s.add_argument("--limit", type=int, default=None, help="at most this many")
    s.add_argument("--dry-run", action="store_true", help="only count them")
    _data_dir_arg(s)
    s.set_defaults(func=cmd_replay)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        logs.setup(os.environ.get("HOOKLINE_LOG_FORMAT", "json"))
    except config.ConfigError as exc:
        sys.exit(f"hookline: configuration error: {exc}")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
