"""Console test helpers: a signed-in test client and the CSRF token of a page."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from ingest.app import create_app
from shared.runtime import Runtime

TOKEN = "test-api-token"
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def client_for(rt: Runtime) -> FlaskClient:
    app = create_app(rt=rt, send_drain=lambda: None)
    app.extensions["hookline.kick_fanout"] = lambda: None
    return app.test_client()


def csrf_of(client: FlaskClient, path: str = "/console/login") -> str:
    page = client.get(path).get_data(as_text=True)
    return _CSRF.search(page).group(1)


def sign_in(client: FlaskClient, password: str = TOKEN, username: str = "") -> FlaskClient:
    token = csrf_of(client)
    resp = client.post("/console/login", data={"csrf_token": token, "username": username,
                                              "password": password})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return client


def post(client: FlaskClient, path: str, **form: object):
    """A console form POST with the page's CSRF token."""
    return client.post(path, data={"csrf_token": csrf_of(client, "/console/"), **form})
