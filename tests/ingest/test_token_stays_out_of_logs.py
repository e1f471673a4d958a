"""`?token=` never reaches a log line: through the real server (`hookline ingest`, granian)
with a callback token set and every callback logged (issue 22, tests that did not prove
what they claimed: the old test used Flask's test client)."""

from __future__ import annotations

import httpx

from tests.helpers import receipt
from tests.procs import free_port, hookline, ingest_args, stop, wait_for, wait_http

TOKEN = "cb-Qu3ry-token-secret"
WRONG = "wrong-Qu3ry-guess"


def test_query_tokens_never_reach_the_server_log(base_env, rt, tmp_path):
    port = free_port()
    log = tmp_path / "ingest.log"
    env = {**base_env, "HOOKLINE_CALLBACK_TOKEN": TOKEN, "HOOKLINE_LOG_LEVEL": "debug",
           "HOOKLINE_MAX_BODY_BYTES": "2000"}
    proc = hookline(ingest_args(port, 1), env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz")
        answers = [httpx.post(f"{base}{path}", content=body).status_code for path, body in (
            (f"/callbacks/kaleyra-rcs?token={TOKEN}", receipt("SENT", "q-1")),
            (f"/callbacks/kaleyra-rcs?token={WRONG}", receipt("SENT", "q-2")),
            (f"/callbacks/kaleyra-rcs/nope?token={TOKEN}&x=1", b"{not json"),
            (f"/callbacks/nobody?token={TOKEN}", b"{}"),
            (f"/callbacks/kaleyra-rcs?token={TOKEN}", b"x" * 5000),
        )]
        assert answers == [202, 401, 202, 404, 413]
        # The capture works: each accepted callback is logged at debug, with its id.
        wait_for(lambda: log.read_text().count("ingest.callbacks: queued") >= 2, timeout=10)
    finally:
        stop(proc)
    text = log.read_text()
    assert TOKEN not in text and WRONG not in text and "token=" not in text
