"""`hookline status` and `hookline replay` as an operator runs them, on real services."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from shared import inbox, status
from shared.config import ConfigError
from shared.db import endpoints
from tests.helpers import drain_all, enqueue, receipt
from tests.procs import HOOKLINE, ROOT


def hookline(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([*HOOKLINE, *args], env=env, capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture
def busy(rt):
    """Queued callbacks, a live lease, dead letters from two sources, an endpoint that
    fails with pending and dead deliveries."""
    with rt.pool.connection() as conn:
        ep = endpoints.create(conn, url="https://user:pw@hooks.example.com/in",
                              event_types=["*"], secret="whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ=")
    for i in range(3):
        enqueue(rt, receipt("SENT", message_id=f"st-{i}"))
    enqueue(rt, b"{broken", source="kaleyra-rcs")
    enqueue(rt, b"[]", source="comapi")
    drain_all(rt)
    with rt.pool.connection() as conn:
        conn.execute("UPDATE endpoints SET consecutive_failures = 4, failing_since = now() "
                     "WHERE id = %s", (ep["id"],))
        conn.execute("UPDATE deliveries SET status = 'dead' WHERE id = (SELECT min(id) "
                     "FROM deliveries)")
    enqueue(rt, receipt("READ", message_id="st-0"))
    enqueue(rt, receipt("READ", message_id="st-1"))
    lease = rt.inbox.lease(1)
    assert lease is not None
    return ep


def test_status_json_against_real_services(busy, base_env):
    doc = json.loads(hookline(base_env, "status", "--json").stdout)
    assert doc["errors"] == {}
    assert doc["inbox"]["queued"] == 1 and doc["inbox"]["leases"] == 1
    assert doc["inbox"]["retry"] == 0
    assert doc["inbox"]["oldest_lease_age_seconds"] >= 0
    assert doc["dead_letters"]["unreplayed"] == 2
    assert doc["dead_letters"]["by_source"] == {"comapi": 1, "kaleyra-rcs": 1}
    assert doc["deliveries"] == {"pending": 2, "dead": 1}
    [ep] = doc["endpoints"]
    assert ep["id"] == busy["id"] and ep["consecutive_failures"] == 4
    assert ep["url"] == "https://user:***@hooks.example.com/in"  # no credentials shown


def test_status_table_against_real_services(busy, base_env):
    out = hookline(base_env, "status").stdout
    assert "Inbox" in out and "Dead letters (not replayed)" in out
    assert "  queued                 1" in out
    assert "  leased batches         1" in out
    assert "  comapi                 1" in out
    assert "Endpoints: 1 (1 failing, 0 disabled)" in out
    assert busy["id"] in out and "failing" in out
    assert "user:pw" not in out


def test_status_reads_a_running_dev_through_its_data_dir(rt, base_env, tmp_path):
    enqueue(rt, receipt("SENT"))
    data_dir = tmp_path / "dev"
    data_dir.mkdir()
    (data_dir / "services.json").write_text(json.dumps({
        "DATABASE_URL": base_env["DATABASE_URL"], "REDIS_URL": base_env["REDIS_URL"],
        "pid": os.getpid()}))
    # No service variables at all: only the data dir says where to look.
    env = {k: v for k, v in base_env.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    doc = json.loads(hookline(env, "status", "--json", "--data-dir", str(data_dir)).stdout)
    assert doc["errors"] == {} and doc["inbox"]["queued"] == 1
    missing = hookline(env, "status", "--data-dir", str(tmp_path / "nope"), check=False)
    assert missing.returncode != 0 and "no running `hookline dev`" in missing.stderr


def test_a_stale_services_file_is_refused(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / "services.json").write_text(json.dumps(
        {"DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://x", "pid": dead.pid}))
    with pytest.raises(ConfigError, match="is not running"):
        status.service_env(str(tmp_path), {})


def test_status_names_an_unreachable_service(base_env):
    env = {**base_env, "REDIS_URL": "redis://127.0.0.1:1/0"}
    out = hookline(env, "status", "--json", check=False)
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    assert "redis" in doc["errors"] and doc["inbox"] is None
    assert doc["dead_letters"] is not None  # PostgreSQL still answered


def _letters(rt) -> list[dict]:
    with rt.pool.connection() as conn:
        rows = conn.execute("SELECT id, source, replayed_at, replay_ingest_id, received_at "
                            "FROM dead_letters ORDER BY id").fetchall()
    return [dict(zip(("id", "source", "replayed_at", "replay_ingest_id", "received_at"), r,
                     strict=True)) for r in rows]


def test_replay_dry_run_counts_and_replay_requeues(rt, base_env):
    for i in range(4):
        enqueue(rt, receipt("SENT", message_id=f"rp-{i}")[:-1])  # missing closing brace
    enqueue(rt, b"not json", source="comapi")
    drain_all(rt)
    assert len(_letters(rt)) == 5

    out = hookline(base_env, "replay", "--dry-run", "--source", "kaleyra-rcs")
    assert out.stdout.strip() == "4 dead letters would be replayed"
    assert hookline(base_env, "replay", "--dry-run", "--limit", "2").stdout.startswith("2 ")
    assert hookline(base_env, "replay", "--dry-run", "--reason", "INVALID JSON",
                    "--until", "2000-01-01T00:00:00Z").stdout.startswith("0 ")
    assert rt.redis.llen(inbox.INBOX) == 0  # a dry run queues nothing

    out = hookline(base_env, "replay", "--source", "kaleyra-rcs", "--limit", "3")
    assert out.stdout.strip() == "3 dead letters replayed"
    assert "replay [" in out.stderr and "3/3" in out.stderr  # the progress bar
    letters = _letters(rt)
    assert [bool(d["replayed_at"]) for d in letters] == [True, True, True, False, False]
    assert rt.redis.llen(inbox.INBOX) == 3
    # Replayed unchanged, they fail again as new dead letters, which a second run takes
    # (and the one it had not reached), but never the ones already replayed.
    drain_all(rt)
    out = hookline(base_env, "replay", "--source", "kaleyra-rcs")
    assert out.stdout.strip() == "4 dead letters replayed"
    assert hookline(base_env, "replay", "--source", "kaleyra-rcs",
                    "--dry-run").stdout.startswith("0 ")


def test_replay_applies_what_now_parses(rt, base_env):
    since = datetime.now(UTC) - timedelta(minutes=1)
    enqueue(rt, receipt("DELIVERED", message_id="fixed")[:-1])
    drain_all(rt)
    with rt.pool.connection() as conn:  # the cause is fixed: the stored body is now valid
        conn.execute("UPDATE dead_letters SET body = %s", (receipt("DELIVERED", "fixed"),))
    out = hookline(base_env, "replay", "--since", since.isoformat())
    assert out.stdout.strip() == "1 dead letters replayed"
    drain_all(rt)
    with rt.pool.connection() as conn:
        assert conn.execute("SELECT status FROM messages WHERE message_id = 'fixed'"
                            ).fetchone()[0] == "delivered"
        [row] = conn.execute("SELECT replay_ingest_id FROM dead_letters").fetchall()
        ingest_id = conn.execute("SELECT ingest_id FROM events WHERE message_id = 'fixed'"
                                 ).fetchone()[0]
    assert row[0] == ingest_id


def test_replay_progress_bar_reaches_the_total():
    import io

    from shared.replay import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(3, stream)
    for done in (1, 2, 3):
        bar(done)
    bar.close(3)
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "replay [" + "#" * 30 + "] 3/3 (100%)"


def test_flower_needs_basic_auth_off_loopback(monkeypatch):
    from hookline import cli
    from workers.celery_app import app

    started: list[list[str]] = []
    monkeypatch.setattr(app, "start", lambda argv: started.append(argv))
    monkeypatch.delenv("HOOKLINE_FLOWER_BASIC_AUTH", raising=False)
    with pytest.raises(SystemExit, match="HOOKLINE_FLOWER_BASIC_AUTH is not set"):
        cli.main(["flower", "--address", "0.0.0.0"])
    cli.main(["flower", "--address", "127.0.0.1"])  # local only: allowed, as in hookline dev
    monkeypatch.setenv("HOOKLINE_FLOWER_BASIC_AUTH", "admin")
    with pytest.raises(SystemExit, match="user:password"):
        cli.main(["flower"])
    monkeypatch.setenv("HOOKLINE_FLOWER_BASIC_AUTH", "admin:s3cret,ops:other")
    cli.main(["flower"])
    assert started[0] == ["flower", "--port=5555", "--address=127.0.0.1"]
    assert "--basic-auth=admin:s3cret,ops:other" in started[1]


def _github_slug(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def test_operations_doc_has_a_runbook_for_every_alert():
    import yaml

    text = (ROOT / "docs" / "operations.md").read_text()
    slugs = [_github_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)]
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            anchor = rule["annotations"]["runbook"].split("#", 1)[1]
            # The first heading with that slug, so the link lands on the runbook.
            assert anchor in slugs, anchor
            assert slugs.index(anchor) > slugs.index("runbooks"), anchor
    assert "benchmarks.md" in text  # the events/s per worker figure lives there
