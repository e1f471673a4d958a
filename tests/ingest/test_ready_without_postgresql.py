"""A real `hookline ingest` with PostgreSQL unreachable stays ready and keeps answering
callbacks 202 (issue 22, defect 5): its readiness is what the callback path needs."""

from __future__ import annotations

import httpx

from shared.inbox_shards import LEGACY_INBOX
from tests.helpers import receipt
from tests.procs import CALLBACK_AUTH, free_port, hookline, ingest_args, stop, wait_http


def test_ingest_stays_ready_and_answers_202_with_postgresql_unreachable(base_env, rt, tmp_path):
    port = free_port()
    # Nothing listens there: every PostgreSQL connection is refused.
    env = {**base_env, "DATABASE_URL": f"postgresql://hookline@127.0.0.1:{free_port()}/none"}
    proc = hookline(ingest_args(port, 1), env, tmp_path / "ingest.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz")  # the readiness probe's path (deploy/k8s/ingest.yaml)
        for i in range(20):
            r = httpx.post(f"{base}/callbacks/kaleyra-rcs", content=receipt("SENT", f"pg-{i}"),
                           headers=CALLBACK_AUTH)
            assert r.status_code == 202, r.text
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["checks"] == {"redis": "ok"}
        full = httpx.get(f"{base}/readyz/full", timeout=10)
        assert full.status_code == 503 and full.json()["checks"]["postgresql"].startswith("error")
    finally:
        stop(proc)
    assert rt.redis.llen(LEGACY_INBOX) == 20  # every 202 is in the inbox
