"""Console sign-in, session cookie, CSRF and headers, against real PostgreSQL and Redis."""

from __future__ import annotations

import pytest
from werkzeug.security import generate_password_hash

from ingest.app import create_app
from shared import config
from tests.console.console_support import client_for, csrf_of, post, sign_in

PAGES = ["/console/", "/console/overview/panel", "/console/messages?message_id=x",
         "/console/dead-letters", "/console/dead-letters/1", "/console/endpoints",
         "/console/endpoints/new", "/console/endpoints/ep_x", "/console/endpoints/ep_x/edit",
         "/console/deliveries/msg_x", "/console/consent", "/console/consent/suppression.csv"]
ACTIONS = ["/console/dead-letters/1/replay", "/console/dead-letters/replay", "/console/endpoints",
           "/console/endpoints/ep_x/edit", "/console/endpoints/ep_x/disable",
           "/console/endpoints/ep_x/enable", "/console/endpoints/ep_x/rotate",
           "/console/endpoints/ep_x/replay", "/console/deliveries/msg_x/retry"]


@pytest.fixture
def client(rt):
    return client_for(rt)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_needs_sign_in(client, path):
    resp = client.get(path)
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/console/login?next=")
    # htmx partials get a 401 rather than a login page swapped into the panel.
    assert client.get(path, headers={"HX-Request": "true"}).status_code == 401


@pytest.mark.parametrize("path", ACTIONS)
def test_every_action_needs_sign_in(client, path):
    # With a valid CSRF token for the anonymous session: still not signed in.
    resp = client.post(path, data={"csrf_token": csrf_of(client)})
    assert resp.status_code == 302 and "/console/login" in resp.headers["Location"]


@pytest.mark.parametrize("path", ACTIONS)
def test_posts_without_the_csrf_token_are_refused(client, path):
    sign_in(client)
    assert client.post(path).status_code == 403
    assert client.post(path, data={"csrf_token": "wrong"}).status_code == 403
    assert client.post(path, headers={"X-CSRF-Token": "wrong"}).status_code == 403


def test_csrf_header_is_accepted_for_htmx(client):
    sign_in(client)
    token = csrf_of(client, "/console/")
    resp = client.post("/console/endpoints/ep_nope/disable", headers={"X-CSRF-Token": token})
    assert resp.status_code == 302  # past the guard: the endpoint is unknown, a message says so


def test_login_needs_its_csrf_token(client):
    resp = client.post("/console/login", data={"password": "test-api-token"})
    assert resp.status_code == 403


def test_sign_in_with_the_api_token_and_out(client):
    assert client.get("/console/").status_code == 302
    sign_in(client)
    page = client.get("/console/")
    assert page.status_code == 200 and b"Overview" in page.data
    token = csrf_of(client, "/console/")
    assert client.post("/console/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/console/").status_code == 302


def test_wrong_token_is_refused(client):
    token = csrf_of(client)
    resp = client.post("/console/login", data={"csrf_token": token, "password": "nope"})
    assert resp.status_code == 401 and b"wrong name, password or token" in resp.data
    assert client.get("/console/").status_code == 302


def test_console_users_sign_in_with_their_password(make_rt):
    users = f"alice:{generate_password_hash('wonderland')},bob:{generate_password_hash('b')}"
    rt = make_rt(HOOKLINE_CONSOLE_USERS=users)
    client = client_for(rt)
    token = csrf_of(client)
    for user, password in (("alice", "nope"), ("carol", "wonderland"), ("bob", "wonderland")):
        resp = client.post("/console/login", data={"csrf_token": token, "username": user,
                                                   "password": password})
        assert resp.status_code == 401, user
    sign_in(client, "wonderland", "alice")
    assert b"alice" in client.get("/console/").data


def test_failed_sign_ins_are_rate_limited(client, rt):
    token = csrf_of(client)
    for _ in range(10):
        client.post("/console/login", data={"csrf_token": token, "password": "nope"})
    resp = client.post("/console/login", data={"csrf_token": token, "password": "test-api-token"})
    assert resp.status_code == 429
    rt.redis.flushdb()
    sign_in(client)


def test_next_goes_back_inside_the_console_only(client):
    for target, expected in (("/console/endpoints", "/console/endpoints"),
                             ("https://evil.example/", "/console/"), ("//evil", "/console/")):
        token = csrf_of(client)  # signing in starts a new session, with a new token
        resp = client.post("/console/login", data={"csrf_token": token, "next": target,
                                                   "password": "test-api-token"})
        assert resp.headers["Location"] == expected


def test_session_cookie_flags(make_rt):
    rt = make_rt(HOOKLINE_CONSOLE_SECURE_COOKIE="false")  # as `hookline dev` runs
    resp = client_for(rt).get("/console/login")
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    secure = client_for(rt).get("/console/login", base_url="https://localhost")
    assert "Secure" in secure.headers["Set-Cookie"]


def test_the_cookie_is_secure_by_default_whatever_the_proxy_says(rt):
    # Plain http seen by ingest (TLS ended at a proxy that sends no X-Forwarded-Proto).
    assert "Secure" in client_for(rt).get("/console/login").headers["Set-Cookie"]


def test_secure_cookie_behind_a_trusted_proxy(make_rt):
    rt = make_rt(HOOKLINE_TRUSTED_PROXY_HOPS="1", HOOKLINE_CONSOLE_SECURE_COOKIE="false")
    client = client_for(rt)
    resp = client.get("/console/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in resp.headers["Set-Cookie"]
    untrusted = client_for(make_rt(HOOKLINE_CONSOLE_SECURE_COOKIE="false")).get("/console/login",
                                          headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in untrusted.headers["Set-Cookie"]


def test_security_headers(client):
    sign_in(client)
    for path in ("/console/login", "/console/", "/console/static/console.js"):
        h = client.get(path).headers
        assert "default-src 'self'" in h["Content-Security-Policy"], path
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
        assert "unsafe-inline" not in h["Content-Security-Policy"]
        assert h["X-Frame-Options"] == "DENY" and h["Referrer-Policy"] == "same-origin"
    assert client.get("/console/").headers["Cache-Control"] == "no-store"


def test_pages_have_no_inline_script(client):
    sign_in(client)
    for path in ("/console/login", "/console/", "/console/endpoints/new", "/console/consent"):
        html = client.get(path).get_data(as_text=True)
        for tag in html.split("<script")[1:]:
            head = tag.split(">", 1)[0]
            assert "src=" in head or 'type="application/json"' in head, (path, head)


def test_callbacks_and_v1_set_no_session_cookie(client):
    assert "Set-Cookie" not in client.post("/callbacks/kaleyra-rcs", data=b"{}").headers
    resp = client.get("/v1/dead-letters", headers={"Authorization": "Bearer test-api-token"})
    assert "Set-Cookie" not in resp.headers


def test_console_off_is_404(make_rt):
    client = client_for(make_rt(HOOKLINE_CONSOLE="0"))
    for path in ("/console/", "/console/login", "/console/static/console.js"):
        assert client.get(path).status_code == 404


def test_session_key_comes_from_the_secret_key_then_the_token():
    from ingest.console.auth import session_key

    a = session_key(config.load({"HOOKLINE_SECRET_KEY": "k" * 16, "HOOKLINE_API_TOKEN": "t"}))
    b = session_key(config.load({"HOOKLINE_SECRET_KEY": "k" * 16, "HOOKLINE_API_TOKEN": "u"}))
    c = session_key(config.load({"HOOKLINE_API_TOKEN": "t"}))
    assert a == b and a != c and c == session_key(config.load({"HOOKLINE_API_TOKEN": "t"}))
    assert session_key(config.load({})) != session_key(config.load({}))  # random: no sign-in


def test_a_session_from_another_key_is_not_signed_in(make_rt):
    client = sign_in(client_for(make_rt()))
    other = create_app(rt=make_rt(HOOKLINE_SECRET_KEY="another-secret-key-0123"),
                       send_drain=lambda: None).test_client()
    cookie = client.get_cookie("hookline_console", path="/console")
    other.set_cookie(cookie.key, cookie.value, path="/console")
    assert other.get("/console/").status_code == 302


@pytest.mark.parametrize("value,message", [
    ("alice", "name:hash"), ("alice:plain", "name:hash"), (":scrypt:1$a$b", "name:hash"),
    ("a:pbkdf2:sha256:1$s$h,a:pbkdf2:sha256:1$s$h", "twice"),
])
def test_console_users_validation(value, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load({"HOOKLINE_CONSOLE_USERS": value, "HOOKLINE_API_TOKEN": "t"})


def test_console_users_need_a_signing_key():
    users = f"alice:{generate_password_hash('x')}"
    with pytest.raises(config.ConfigError, match="HOOKLINE_SECRET_KEY"):
        config.load({"HOOKLINE_CONSOLE_USERS": users})
    assert config.load({"HOOKLINE_CONSOLE_USERS": users,
                        "HOOKLINE_SECRET_KEY": "s" * 16}).console_users["alice"]


def test_console_switch_validation():
    assert config.load({}).console_enabled
    assert not config.load({"HOOKLINE_CONSOLE": "0"}).console_enabled
    with pytest.raises(config.ConfigError, match="HOOKLINE_CONSOLE"):
        config.load({"HOOKLINE_CONSOLE": "maybe"})


def test_post_helper_works(client):
    sign_in(client)
    assert post(client, "/console/dead-letters/999/replay").status_code == 404
