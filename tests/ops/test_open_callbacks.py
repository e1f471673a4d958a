"""`hookline ingest` refuses to serve callbacks anyone could forge (issue 22, defect 4)."""

from __future__ import annotations

import subprocess

import httpx
import pytest

from ingest.callbacks import open_sources
from shared import config
from shared.providers import SOURCES
from tests.procs import HOOKLINE, ROOT, free_port, hookline, ingest_args, stop, wait_http


def _ingest_exit(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*HOOKLINE, *ingest_args(free_port(), 1)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_every_source_is_open_without_a_credential():
    assert open_sources(config.load({})) == sorted(SOURCES)


@pytest.mark.parametrize("env", [
    {"HOOKLINE_CALLBACK_TOKEN": "t"},
    {f"HOOKLINE_ALLOWED_IPS_{config.source_env_suffix(s)}": "10.0.0.0/8" for s in SOURCES},
    {f"HOOKLINE_CALLBACK_TOKEN_{config.source_env_suffix(s)}": "t" for s in SOURCES},
])
def test_a_token_or_an_allow_list_closes_a_source(env):
    assert open_sources(config.load(env)) == []


def test_one_guarded_source_leaves_the_others_open():
    left = open_sources(config.load({"HOOKLINE_CALLBACK_TOKEN_KALEYRA_RCS": "t"}))
    assert "kaleyra-rcs" not in left and left == sorted(SOURCES - {"kaleyra-rcs"})


def test_ingest_refuses_to_start_with_open_callbacks(base_env):
    env = {k: v for k, v in base_env.items() if k != "HOOKLINE_CALLBACK_TOKEN"}
    done = _ingest_exit(env)
    assert done.returncode != 0
    assert "HOOKLINE_CALLBACK_TOKEN" in done.stderr and "HOOKLINE_CALLBACKS_OPEN" in done.stderr
    # A token for one source only: the message names the sources still open.
    done = _ingest_exit({**env, "HOOKLINE_CALLBACK_TOKEN_KALEYRA_RCS": "t"})
    assert done.returncode != 0 and "comapi" in done.stderr
    assert "kaleyra-rcs," not in done.stderr and not done.stderr.rstrip().endswith("kaleyra-rcs")


def test_callbacks_open_true_lets_ingest_serve_them_without_a_token(base_env, rt, tmp_path):
    from tests.helpers import receipt

    port = free_port()
    env = {**base_env, "HOOKLINE_CALLBACKS_OPEN": "true", "HOOKLINE_CALLBACK_TOKEN": ""}
    proc = hookline(ingest_args(port, 1), env, tmp_path / "ingest.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        r = httpx.post(f"http://127.0.0.1:{port}/callbacks/kaleyra-rcs", content=receipt("SENT"))
        assert r.status_code == 202
    finally:
        stop(proc)
    assert "callbacks are open" in (tmp_path / "ingest.log").read_text()
