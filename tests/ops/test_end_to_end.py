"""Real processes: `hookline dev` on its embedded default, and the production
entry points (ingest, worker, scheduler) against the test services."""

from __future__ import annotations

import os
import re
import time

import httpx
import psutil
import pytest

from tests.helpers import receipt
from tests.procs import (
    CALLBACK_TOKEN,
    free_port,
    hookline,
    running_stack,
    stop,
    wait_for,
    wait_http,
)


def post_reverse_with_duplicates(base: str, message_id: str, token: str,
                                 callback_token: str = CALLBACK_TOKEN) -> float:
    bodies = [receipt(k, message_id=message_id, offset=o)
              for k, o in (("READ", 9), ("DELIVERED", 4), ("SENT", 1), ("ERROR", 0))]
    started = time.monotonic()
    for body in bodies + bodies:
        r = httpx.post(f"{base}/callbacks/kaleyra-rcs", content=body,
                       headers={"Authorization": f"Bearer {callback_token}"})
        assert r.status_code == 202, r.text

    def state():
        r = httpx.get(f"{base}/v1/messages/{message_id}",
                      headers={"Authorization": f"Bearer {token}"})
        return r.json() if r.status_code == 200 and len(r.json()["events"]) == 4 else None

    doc = wait_for(state, timeout=20)
    elapsed = time.monotonic() - started
    assert doc["status"] == "read"
    assert doc["sent_at"] and doc["delivered_at"] and doc["read_at"] and doc["failed_at"]
    return elapsed


def test_hookline_dev_on_the_embedded_default(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL") and not k.startswith("HOOKLINE_")}
    port = free_port()
    proc = hookline(["dev", "--data-dir", str(tmp_path / "data"), "--port", str(port),
                     "--no-flower"], env, tmp_path / "dev.log", cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz", timeout=60)
        banner = (tmp_path / "dev.log").read_text()
        token = re.search(r"Bearer (\S+)\)", banner).group(1)
        # Callbacks are guarded here too: the banner prints each URL with its token.
        callback_token = re.search(r"/callbacks/kaleyra-rcs\?token=(\S+)", banner).group(1)
        assert callback_token == (tmp_path / "data" / "callback-token").read_text().strip()
        assert httpx.post(f"{base}/callbacks/kaleyra-rcs",
                          content=receipt("SENT", "dev-msg")).status_code == 401
        assert "unix://" in banner  # embedded Redis on a unix socket
        assert f"http://127.0.0.1:{port}/console/" in banner
        # Plain http on loopback: the console cookie must come back, so it is not Secure here.
        assert "Secure" not in httpx.get(f"{base}/console/login").headers["set-cookie"]
        children = psutil.Process(proc.pid).children(recursive=True)
        post_reverse_with_duplicates(base, "dev-msg", token, callback_token)
    finally:
        stop(proc)
    assert proc.returncode == 0, (tmp_path / "dev.log").read_text()[-3000:]
    time.sleep(0.5)
    alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], alive
    data_dir = str(tmp_path / "data")
    servers = [p for p in psutil.process_iter(["cmdline"])
               if data_dir in " ".join(p.info["cmdline"] or [])]
    assert servers == [], servers  # embedded PostgreSQL and Redis stopped too


@pytest.fixture(scope="module")
def stack(base_env, tmp_path_factory):
    """ingest + worker + scheduler as in production, on the test services."""
    with running_stack(base_env, tmp_path_factory.mktemp("stack")) as base:
        yield base


def test_production_processes_apply_callbacks_promptly(stack):
    # Warm up (worker start), then time one message from first POST to committed state.
    post_reverse_with_duplicates(stack, "warm-up", "test-api-token")
    elapsed = post_reverse_with_duplicates(stack, "e2e-msg", "test-api-token")
    # Eight POSTs and polling included: the drain is kicked, not waiting for a timer.
    assert elapsed < 5, elapsed


def test_ingest_metrics_and_health(stack):
    assert httpx.get(f"{stack}/healthz").json() == {"status": "ok"}
    assert "hookline_ingest_requests_total" in httpx.get(f"{stack}/metrics").text
