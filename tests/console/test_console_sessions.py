"""Console sessions end: a removed user, a changed password, a rotated token, and 12 hours
after sign-in however busy the session (real PostgreSQL and Redis)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from itsdangerous import TimestampSigner
from werkzeug.security import generate_password_hash

from ingest.app import create_app
from ingest.console import auth
from shared import config
from tests.console.console_support import client_for, sign_in

KEY = "a-console-secret-key-0123"


def _carry(client, other):
    cookie = client.get_cookie("hookline_console", path="/console")
    other.set_cookie(cookie.key, cookie.value, path="/console")
    return other


def test_removed_user_loses_the_session(make_rt):
    alice = f"alice:{generate_password_hash('w')}"
    bob = f"bob:{generate_password_hash('b')}"
    client = sign_in(client_for(make_rt(HOOKLINE_SECRET_KEY=KEY,
                                        HOOKLINE_CONSOLE_USERS=f"{alice},{bob}")), "w", "alice")
    assert client.get("/console/").status_code == 200
    later = create_app(rt=make_rt(HOOKLINE_SECRET_KEY=KEY, HOOKLINE_CONSOLE_USERS=bob),
                       send_drain=lambda: None).test_client()
    assert _carry(client, later).get("/console/").status_code == 302


def test_changed_password_ends_the_session(make_rt):
    client = sign_in(client_for(make_rt(
        HOOKLINE_SECRET_KEY=KEY,
        HOOKLINE_CONSOLE_USERS=f"alice:{generate_password_hash('w')}")), "w", "alice")
    later = create_app(rt=make_rt(HOOKLINE_SECRET_KEY=KEY,
                                  HOOKLINE_CONSOLE_USERS=f"alice:{generate_password_hash('x')}"),
                       send_drain=lambda: None).test_client()
    assert _carry(client, later).get("/console/").status_code == 302


def test_rotated_api_token_ends_the_session(make_rt):
    client = sign_in(client_for(make_rt(HOOKLINE_SECRET_KEY=KEY)))
    later = create_app(rt=make_rt(HOOKLINE_SECRET_KEY=KEY, HOOKLINE_API_TOKEN="a-new-token"),
                       send_drain=lambda: None).test_client()
    assert _carry(client, later).get("/console/").status_code == 302


def test_a_session_in_use_still_ends_after_its_hours(rt, monkeypatch):
    now = [1_800_000_000]
    # The cookie's own timestamp and the console's clock, both moved on.
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: now[0])
    monkeypatch.setattr(auth, "time", SimpleNamespace(time=lambda: now[0]))
    client = sign_in(client_for(rt))
    for _ in range(3):  # an open overview tab polls all day
        now[0] += 11 * 3600
        client.get("/console/overview/panel")
    assert client.get("/console/").status_code == 302


def test_no_user_may_take_the_token_sign_ins_name():
    # Else that user's session would be checked against the API token, not its password.
    users = f"api-token:{generate_password_hash('w')}"
    with pytest.raises(config.ConfigError, match="api-token"):
        config.load({"HOOKLINE_CONSOLE_USERS": users, "HOOKLINE_SECRET_KEY": KEY})
