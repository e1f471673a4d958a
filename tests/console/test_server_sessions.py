"""Console sessions live in Redis: sign-out ends them everywhere, a copied cookie included
(issue 22, defect 6; real PostgreSQL and Redis)."""

from __future__ import annotations

from ingest.console import sessions
from tests.console.console_support import client_for, csrf_of, sign_in


def _copy(client, other):
    cookie = client.get_cookie("hookline_console", path="/console")
    other.set_cookie(cookie.key, cookie.value, path="/console")
    return other


def test_a_copied_cookie_stops_working_after_sign_out(rt):
    client = sign_in(client_for(rt))
    thief = _copy(client, client_for(rt))
    assert thief.get("/console/").status_code == 200  # the copy works while signed in
    out = client.post("/console/logout", data={"csrf_token": csrf_of(client, "/console/")})
    assert out.status_code == 302
    assert client.get("/console/").status_code == 302
    # The copy still carries a validly signed cookie naming the user: the server says no.
    assert thief.get("/console/").status_code == 302
    assert thief.get("/console/", headers={"HX-Request": "true"}).status_code == 401
    assert list(rt.redis.scan_iter(sessions.KEY + "*")) == []


def test_sign_out_ends_only_that_session(rt):
    first, second = sign_in(client_for(rt)), sign_in(client_for(rt))
    first.post("/console/logout", data={"csrf_token": csrf_of(first, "/console/")})
    assert first.get("/console/").status_code == 302
    assert second.get("/console/").status_code == 200


def test_a_session_gone_from_redis_is_signed_out(rt):
    client = sign_in(client_for(rt))
    [key] = rt.redis.scan_iter(sessions.KEY + "*")
    assert rt.redis.ttl(key) > 11 * 3600  # ends on the server SESSION_HOURS after sign-in
    rt.redis.delete(key)
    assert client.get("/console/").status_code == 302


def test_signing_in_again_ends_the_session_the_cookie_had(rt):
    client = sign_in(client_for(rt))
    copy = _copy(client, client_for(rt))
    sign_in(client)
    assert client.get("/console/").status_code == 200
    assert copy.get("/console/").status_code == 302
