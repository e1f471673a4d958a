"""Graceful shutdown with real processes: SIGTERM lets ingest answer the requests in
flight and lets a worker finish its leased batches, leaving no lease and losing nothing."""

from __future__ import annotations

import random
import signal
import socket
import time

from shared import inbox
from shared.envelope import Envelope, new_id
from tests.helpers import drain_all, receipt, send_drains
from tests.procs import CALLBACK_TOKEN, free_port, hookline, ingest_args, wait_for, wait_http

CALLBACKS = 3000


def _events(rt) -> int:
    with rt.pool.connection() as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def test_sigterm_during_a_drain_leaves_no_lease_and_loses_nothing(make_rt, base_env, tmp_path):
    # Small batches: many leases taken and released while the signal arrives.
    rt = make_rt(HOOKLINE_BATCH_SIZE="10")
    pipe = rt.redis.pipeline(transaction=False)
    for i in range(CALLBACKS):
        env = Envelope(id=new_id(), source="kaleyra-rcs", event=None, received_at=time.time(),
                       body=receipt("DELIVERED", message_id=f"sd-{i}"))
        pipe.lpush(inbox.INBOX, env.encode())
    pipe.execute()
    proc = hookline(["worker", "--concurrency", "2", "--metrics-port", "0"],
                    {**base_env, "HOOKLINE_BATCH_SIZE": "10"}, tmp_path / "worker.log")
    try:
        send_drains(rt, 2)
        # Mid-drain: batches are leased and some have committed.
        wait_for(lambda: rt.redis.zcard(inbox.LEASES) and _events(rt) > 0, timeout=60,
                 interval=0.01)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        took = time.monotonic() - stopped_at
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Warm shutdown" in (tmp_path / "worker.log").read_text()
    assert took < 30  # a batch and Celery's own shutdown, not a lease timeout
    assert rt.redis.zcard(inbox.LEASES) == 0
    assert not list(rt.redis.scan_iter(match=inbox.LEASE_PREFIX + "*"))
    # Every callback is either committed once or still queued: none lost, none doubled.
    queued = rt.redis.llen(inbox.INBOX) + rt.redis.llen(inbox.RETRY)
    assert queued > 0  # it stopped leasing when told, rather than working on for seconds
    assert _events(rt) + queued == CALLBACKS
    drain_all(rt)
    assert _events(rt) == CALLBACKS
    with rt.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == CALLBACKS


def _warm_shutdown_seconds(rt, base_env, log_path, name: str) -> float:
    """Start a worker, flood it with tiny tasks, SIGTERM it at some moment of the
    flood; how long it takes to exit."""
    proc = hookline(["worker", "--concurrency", "2", "--metrics-port", "0",
                     "--hostname", f"{name}@shutdown"], base_env, log_path)
    try:
        send_drains(rt, 3000)  # an empty inbox: each drain takes about a millisecond
        wait_for(lambda: " ready." in log_path.read_text(), timeout=30)
        time.sleep(0.3 + random.random() * 0.5)
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text()[-3000:]
        return time.monotonic() - stopped_at
    finally:
        if proc.poll() is None:
            proc.kill()


def test_warm_shutdown_under_a_flood_of_tasks_takes_seconds_not_thirty(rt, base_env, tmp_path):
    # A task written to a pool process just before the signal used to leave the
    # process waiting 30 s for the main process to read its result (see
    # workers/prefork_fix.py): half of such shutdowns measured 31.8 s, so four
    # in a row catch it 15 times in 16. Fixed, each takes about 2 s.
    took = [_warm_shutdown_seconds(rt, base_env, tmp_path / f"worker-{i}.log", f"flood{i}")
            for i in range(4)]
    assert max(took) < 15, took


def test_sigterm_lets_ingest_answer_requests_in_flight(base_env, rt, tmp_path):
    port = free_port()
    proc = hookline(ingest_args(port, 2), base_env, tmp_path / "ingest.log")
    body = receipt("SENT", message_id="in-flight")
    head = (b"POST /callbacks/kaleyra-rcs HTTP/1.1\r\nHost: hookline\r\n"
            b"Authorization: Bearer %s\r\n" % CALLBACK_TOKEN.encode() +
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        # Requests whose bodies are still arriving when the signal comes.
        socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
        for s in socks:
            s.sendall(head + body[:10])
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        answers = []
        for s in socks:
            s.sendall(body[10:])
            answers.append(s.recv(4096))
            s.close()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all(a.startswith(b"HTTP/1.1 202") for a in answers), answers
    assert rt.redis.llen(inbox.INBOX) == 4
    # And the listener is closed: nothing new is accepted after the signal.
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        refused = False
    except OSError:
        refused = True
    assert refused
