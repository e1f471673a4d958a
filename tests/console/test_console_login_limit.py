"""The sign-in limit holds under concurrent guesses (real Redis, real password hashing)."""

from __future__ import annotations

import threading

from werkzeug.security import generate_password_hash

from tests.console.console_support import client_for, csrf_of


def test_concurrent_guesses_get_no_more_than_the_limit(make_rt):
    from ingest.console.auth import MAX_FAILURES

    rt = make_rt(HOOKLINE_CONSOLE_USERS=f"alice:{generate_password_hash('w')}",
                 HOOKLINE_SECRET_KEY="a-console-secret-key-0123")
    clients = [client_for(rt) for _ in range(3 * MAX_FAILURES)]
    tokens = [csrf_of(c) for c in clients]
    start = threading.Barrier(len(clients))
    codes: list[int] = []

    def guess(client, token):
        start.wait()
        resp = client.post("/console/login", data={"csrf_token": token, "username": "alice",
                                                   "password": "guess"})
        codes.append(resp.status_code)

    threads = [threading.Thread(target=guess, args=ct) for ct in zip(clients, tokens, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes.count(401) <= MAX_FAILURES, codes
    assert codes.count(429) >= 2 * MAX_FAILURES
