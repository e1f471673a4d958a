"""The `hookline` command."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from hookline import __version__, tenants_cli
from shared import config, heartbeat, lifetime, logs

# Each command imports what it runs inside its function, on purpose. At module level
# those imports would add 0.5-0.8 s to every command (granian, psycopg, redis, the data
# layer; measured 8 Dec on the shared 2-core machine) and the worker's Celery app 0.5 s
# more. That app also reads the environment when imported (a configuration error would
# be a traceback, not the message below), and cmd_worker must import it only after
# PROMETHEUS_MULTIPROC_DIR is set.

if TYPE_CHECKING:
    from shared.runtime import Runtime

log = logging.getLogger("hookline")


def _settings() -> config.Settings:
    try:
        return config.load()
    except config.ConfigError as exc:
        sys.exit(f"hookline: configuration error: {exc}")


def cmd_migrate(args: argparse.Namespace) -> int:
    from shared.db.migrate import migrate

    settings = _settings()
    if args.wait:
        return _wait_for_migrations(settings.require_database(), args.timeout)
    try:
        applied = migrate(settings.require_database())
    except config.ConfigError as exc:
        sys.exit(f"hookline: configuration error: {exc}")
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def _wait_for_migrations(url: str, timeout: float) -> int:
    """An init container's wait: until the migrate Job has applied every migration this
    image ships (or ``timeout`` passes). Applies nothing itself."""
    import time

    import psycopg

    from shared.db.migrate import pending

    deadline = time.monotonic() + timeout
    while True:
        try:
            left = pending(url)
            if not left:
                print("database is up to date")
                return 0
            said = f"waiting for migrations {', '.join(left)}"
        except psycopg.Error as exc:
            said = f"waiting for PostgreSQL: {str(exc).strip().splitlines()[0]}"
        if time.monotonic() >= deadline:
            print(f"hookline migrate --wait: gave up after {timeout:g}s, {said}",
                  file=sys.stderr)
            return 1
        print(said, flush=True)
        time.sleep(2)


def cmd_ingest(args: argparse.Namespace) -> int:
    from granian import Granian

    from ingest.callbacks import open_sources
    from shared.promdir import multiprocess_dir

    settings = _settings()  # fail now, naming the variable, rather than in every worker
    unguarded = open_sources(settings)
    if unguarded and not settings.callbacks_open:
        sys.exit(f"hookline ingest: configuration error: callbacks from {', '.join(unguarded)} "
                 "would be accepted from anyone (no token, signature or address allow-list): "
                 "set HOOKLINE_CALLBACK_TOKEN (or a per-source token, signature or "
                 "HOOKLINE_ALLOWED_IPS_<SOURCE>), or HOOKLINE_CALLBACKS_OPEN=true to accept "
                 "them anyway")
    if unguarded:
        log.warning("callbacks are open (HOOKLINE_CALLBACKS_OPEN=true)",
                    extra={"sources": unguarded})
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


def cmd_worker_alive(args: argparse.Namespace) -> int:
    from pathlib import Path

    path = Path(args.file) if args.file else heartbeat.heartbeat_file()
    age = heartbeat.age(path)
    if age is None or age > args.max_age:
        said = "no heartbeat" if age is None else f"the last heartbeat is {age:.0f}s old"
        print(f"hookline worker-alive: {said} ({path}; limit {args.max_age:g}s)",
              file=sys.stderr)
        return 1
    print(f"alive: heartbeat {age:.1f}s ago")
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
        if args.id is not None:
            return _replay_one(rt, args.id, args.force)
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


def _replay_one(rt: Runtime, letter_id: int, force: bool) -> int:
    from shared import replay

    try:
        ingest_id = replay.replay(rt, letter_id, force=force)
    except replay.AlreadyReplayed as exc:
        sys.exit(f"hookline replay: {exc}; --force replays it again")
    if ingest_id is None:
        sys.exit(f"hookline replay: no dead letter {letter_id}")
    print(f"dead letter {letter_id} replayed as {ingest_id}")
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


def cmd_purge(args: argparse.Namespace) -> int:
    """Retention once, now, to the end: what the scheduler's purge does every 10 minutes
    in budgeted rounds (an operator freeing disk, or checking what retention keeps)."""
    from datetime import UTC, datetime, timedelta

    import psycopg

    from shared import status
    from shared.db import partitions, retention

    try:
        settings = config.load(status.service_env(args.data_dir))
        url = settings.require_database()
    except config.ConfigError as exc:
        sys.exit(f"hookline purge: {exc}")
    cutoff = datetime.now(UTC) - timedelta(days=settings.retention_days)
    print(f"retention: {settings.retention_days} days after receipt "
          f"(cutoff {cutoff:%Y-%m-%d %H:%M} UTC)")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            partitions.ensure(conn, interval_days=settings.partition_interval_days)
            while True:
                out = retention.purge(conn, cutoff)
                if out.skipped:
                    sys.exit("hookline purge: another purge holds the lock (the scheduler's); "
                             "try again in a minute")
                print(f"dropped {len(out.dropped)} partitions (about {out.dropped_rows} rows),"
                      f" deleted {sum(out.deleted.values())} rows"
                      + (f"; kept {', '.join(out.kept)}" if out.kept else ""))
                if out.finished:
                    break
    except psycopg.Error as exc:
        sys.exit(f"hookline purge: {str(exc).strip().splitlines()[0]}")
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
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("migrate", help="apply SQL migrations (idempotent)")
    s.add_argument("--wait", action="store_true",
                   help="apply nothing: wait until another process has applied them all")
    s.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                   help="with --wait: give up (exit 1) after this long")
    s.set_defaults(func=cmd_migrate)

    s = sub.add_parser("ingest", help="run the production HTTP server (granian, WSGI)")
    s.add_argument("--host", default="0.0.0.0", help="address to listen on (default: %(default)s)")
    s.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)),
                   help="port to listen on (default: $PORT, else 8000)")
    s.add_argument("--workers", type=int, default=2,
                   help="server processes (default: %(default)s; one per container when "
                        "replicas scale out behind a load balancer)")
    s.add_argument("--threads", type=int, default=4,
                   help="blocking threads per worker (default: %(default)s)")
    s.add_argument("--workers-kill-timeout", type=int, default=5, metavar="SECONDS",
                   help="on SIGTERM/SIGINT, SIGKILL workers still serving after this long")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("worker", help="run a Celery worker on every hookline queue")
    s.add_argument("--concurrency", type=int, default=2,
                   help="Celery pool processes (default: %(default)s)")
    s.add_argument("--hostname", default=None,
                   help="Celery node name, e.g. w1@%%h (default: Celery's, celery@<host>)")
    s.add_argument("--loglevel", default=None, help="default: HOOKLINE_LOG_LEVEL, else info")
    s.add_argument("--metrics-port", type=int, default=9101,
                   help="Prometheus /metrics for this worker (0 turns it off)")
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("worker-alive", help="liveness probe: exit 1 when this host's worker "
                       "heartbeat (HOOKLINE_WORKER_HEARTBEAT_FILE) is stale")
    s.add_argument("--max-age", type=float, default=heartbeat.MAX_AGE_SECONDS, metavar="SECONDS",
                   help="how old the heartbeat may be before the worker counts as dead")
    s.add_argument("--file", default=None, help="the heartbeat file (default: the setting)")
    s.set_defaults(func=cmd_worker_alive)

    s = sub.add_parser("scheduler", help="run Celery beat (exactly one per deployment)")
    s.add_argument("--loglevel", default="info", help="default: %(default)s")
    s.add_argument("--schedule", default=None,
                   help="beat schedule file (default: celerybeat-schedule in the working "
                        "directory)")
    s.set_defaults(func=cmd_scheduler)

    s = sub.add_parser("flower", help="run Flower (basic auth from HOOKLINE_FLOWER_BASIC_AUTH)")
    s.add_argument("--port", type=int, default=5555, help="default: %(default)s")
    s.add_argument("--address", default="0.0.0.0",
                   help="address to listen on (default: %(default)s; anything but loopback "
                        "needs HOOKLINE_FLOWER_BASIC_AUTH)")
    s.set_defaults(func=cmd_flower)

    s = sub.add_parser(
        "dev", help="run everything locally, on embedded PostgreSQL and Redis",
        description="Ingest, a worker, the scheduler and Flower on this machine, on embedded "
                    "PostgreSQL and Redis (the dev extra) unless DATABASE_URL / REDIS_URL are "
                    "set. Logs are text, each line led by the process it comes from; "
                    "endpoints on loopback and private addresses are allowed (the "
                    "production defaults stay JSON and refusing; the variables "
                    "HOOKLINE_LOG_FORMAT and HOOKLINE_ALLOW_PRIVATE_ENDPOINTS override).")
    s.add_argument("--port", type=int, default=8000,
                   help="ingest's port on 127.0.0.1 (default: %(default)s)")
    s.add_argument("--data-dir", default=".hookline",
                   help="where the embedded servers, the API token and the secret key are "
                        "kept (default: %(default)s)")
    s.add_argument("--concurrency", type=int, default=2,
                   help="the worker's pool processes (default: %(default)s)")
    s.add_argument("--no-flower", action="store_true", help="do not start Flower")
    s.add_argument("--flower-port", type=int, default=5555,
                   help="Flower's port on 127.0.0.1 (default: %(default)s)")
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

    s = sub.add_parser("purge", help="run retention once, now (HOOKLINE_RETENTION_DAYS)")
    _data_dir_arg(s)
    s.set_defaults(func=cmd_purge)
    s = sub.add_parser("secrets", help="endpoint secrets at rest: rotate to the newest key")
    s.add_argument("action", choices=["rotate"],
                   help="rotate: seal every stored secret again under the newest key of "
                        "HOOKLINE_SECRET_KEYS (safe while hookline runs; run it again "
                        "until it reports nothing left)")
    s.add_argument("--batch", type=int, default=500, help="endpoints per transaction")
    _data_dir_arg(s)
    s.set_defaults(func=cmd_secrets)

    s = sub.add_parser("replay", help="replay dead letters not replayed yet")
    s.add_argument("--source", default=None, help="only this source (e.g. kaleyra-rcs)")
    s.add_argument("--reason", default=None, help="a case-insensitive part of the reason")
    s.add_argument("--since", default=None, help="received at or after (ISO-8601)")
    s.add_argument("--until", default=None, help="received before (ISO-8601)")
    s.add_argument("--limit", type=int, default=None, help="at most this many")
    s.add_argument("--dry-run", action="store_true", help="only count them")
    s.add_argument("--id", type=int, default=None,
                   help="replay this one dead letter (refused if it was replayed already)")
    s.add_argument("--force", action="store_true",
                   help="with --id: replay it even if it was replayed already")
    _data_dir_arg(s)
    s.set_defaults(func=cmd_replay)

    tenants_cli.add_parsers(sub, _data_dir_arg)


def log_format(command: str, environ: Mapping[str, str]) -> str:
    """HOOKLINE_LOG_FORMAT, else JSON in production and text for `hookline dev`, which a
    person reads."""
    return environ.get("HOOKLINE_LOG_FORMAT", "text" if command == "dev" else "json")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        logs.setup(log_format(args.command, os.environ))
    except config.ConfigError as exc:
        sys.exit(f"hookline: configuration error: {exc}")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
