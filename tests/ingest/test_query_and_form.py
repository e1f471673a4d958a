"""GET (query string) and form-urlencoded callbacks: authenticated like JSON, 202,
kept without the token, applied as a flat field set, end to end to /v1.

The field set is constructed from seed 004's ``sms:message:status`` fields (the
JSON form of Kaleyra.io's SMS delivery report), which the push sends as query or
form fields ("GET or POST", developers.kaleyra.io/docs/sms-callback); no published
sample of the query string itself was found (tests/fixtures/SOURCES.md).
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

import orjson
import pytest

from ingest.app import create_app
from ingest.callbacks import without_token
from tests.helpers import drain_all

TOKEN = "s3cret-Token"
AUTH = {"Authorization": "Bearer test-api-token"}
URL = "/callbacks/kaleyra-io/sms:message:status"
FIELDS = {
    "id": "a9e9c1b2-0001-4c8e-9d21-5f3a7c1e2b40:1",
    "mobile": "919900012345",
    "status": "UNDELIV",
    "status_trace": "ABSENT-SUB",
    "sender": "KLRHXA",
    "custom": "order-77",
    "deliv_time": "2021-04-09 16:27:51",
}


@pytest.fixture
def stack(make_rt):
    rt = make_rt(HOOKLINE_CALLBACK_TOKEN=TOKEN)
    return rt, create_app(rt=rt, send_drain=lambda: None).test_client()


def _stored(rt) -> list[dict]:
    with rt.pool.connection() as conn:
        return [r[0] for r in conn.execute("SELECT raw FROM events ORDER BY id")]


def _check_applied(rt, client) -> None:
    drain_all(rt)
    (raw,) = _stored(rt)
    assert raw == FIELDS  # the fields, and no token
    doc = client.get(f"/v1/messages/{FIELDS['id']}", headers=AUTH).get_json()
    assert (doc["status"], doc["msisdn"], doc["sender"]) == ("failed", "919900012345", "KLRHXA")
    assert (doc["failure_reason"], doc["failure_code"]) == ("UNDELIV: ABSENT-SUB", "ABSENT-SUB")


def test_a_get_delivery_report_is_queued_and_applied_without_its_token(stack, caplog):
    rt, client = stack
    caplog.set_level(logging.DEBUG)
    query = urlencode({**FIELDS, "token": TOKEN})
    resp = client.get(f"{URL}?{query}")
    assert resp.status_code == 202, resp.get_data()
    _check_applied(rt, client)
    assert TOKEN not in caplog.text


def test_a_form_post_is_applied_like_json(stack):
    rt, client = stack
    resp = client.post(f"{URL}?token={TOKEN}", data=urlencode(FIELDS),
                       content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 202
    _check_applied(rt, client)


def test_a_token_field_in_a_form_body_is_not_kept(stack):
    rt, client = stack
    body = urlencode({"token": TOKEN, **FIELDS, "to%6ben": "x"})
    resp = client.post(URL, data=body, content_type="application/x-www-form-urlencoded",
                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 202
    drain_all(rt)
    (raw,) = _stored(rt)
    assert "token" not in raw and TOKEN not in orjson.dumps(raw).decode()


@pytest.mark.parametrize(("query", "status"), [
    ("", 401), (f"token=nope&{urlencode(FIELDS)}", 401), (f"token={TOKEN}", 400),
])
def test_a_get_needs_the_token_and_some_fields(stack, query, status):
    _, client = stack
    assert client.get(f"{URL}?{query}").status_code == status


def test_a_get_callback_whose_fields_are_not_a_receipt_is_a_dead_letter(stack):
    rt, client = stack
    assert client.get(f"{URL}?token={TOKEN}&hello=world").status_code == 202
    drain_all(rt)
    with rt.pool.connection() as conn:
        reason, body = conn.execute("SELECT reason, body FROM dead_letters").fetchone()
    assert "id: Missing data for required field" in reason
    assert bytes(body) == b"hello=world"


@pytest.mark.parametrize(("fields", "kept"), [
    (b"a=1&token=x&b=2", b"a=1&b=2"),
    (b"token=x", b""),
    (b"t%6Fken=x&a=1", b"a=1"),
    (b"tokens=1&a=token", b"tokens=1&a=token"),
])
def test_without_token(fields, kept):
    assert without_token(fields) == kept


# --- body limits per source ---------------------------------------------------------------


def test_a_dotdigital_batch_over_the_default_limit_is_taken_and_kaleyras_is_not(make_rt):
    rt = make_rt()
    client = create_app(rt=rt, send_drain=lambda: None).test_client()
    body = b"[" + b",".join([b'{"name":"message.sent","pad":"' + b"x" * 1000 + b'"}'] * 300) + b"]"
    assert 262144 < len(body) < 1024 * 1024
    assert client.post("/callbacks/comapi", data=body).status_code == 202
    assert client.post("/callbacks/kaleyra-io/sms:message:status", data=body).status_code == 413


def test_an_explicit_global_limit_is_every_sources(make_rt):
    rt = make_rt(HOOKLINE_MAX_BODY_BYTES="65536")
    client = create_app(rt=rt, send_drain=lambda: None).test_client()
    assert client.post("/callbacks/comapi", data=b"[" + b" " * 70000 + b"]").status_code == 413


def test_a_source_limit_overrides_its_provider_default(make_rt):
    rt = make_rt(HOOKLINE_MAX_BODY_BYTES_COMAPI="1000")
    client = create_app(rt=rt, send_drain=lambda: None).test_client()
    resp = client.post("/callbacks/comapi", data=b"[" + b" " * 2000 + b"]")
    assert resp.status_code == 413 and "1000 bytes" in resp.get_json()["error"]


# --- verification handshakes --------------------------------------------------------------


def test_a_verification_request_is_answered_and_not_queued(make_rt):
    """Constructed: the shape issue 21 describes (a POST with a validation key and a
    challenge); no provider's published sample was found."""
    rt = make_rt(HOOKLINE_VERIFY_KEY_COMAPI="v-key-1")
    client = create_app(rt=rt, send_drain=lambda: None).test_client()
    body = orjson.dumps({"validationKey": "v-key-1", "challenge": "ch-123"})
    resp = client.post("/callbacks/comapi", data=body)
    assert resp.status_code == 200 and resp.get_json() == {"challenge": "ch-123"}
    wrong = orjson.dumps({"validationKey": "nope", "challenge": "ch-123"})
    assert client.post("/callbacks/comapi", data=wrong).status_code == 403
    assert drain_all(rt) == 0
    with rt.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0


def test_without_a_verify_key_a_challenge_body_is_an_ordinary_callback(make_rt):
    rt = make_rt()
    client = create_app(rt=rt, send_drain=lambda: None).test_client()
    body = orjson.dumps({"validationKey": "v", "challenge": "c"})
    assert client.post("/callbacks/comapi", data=body).status_code == 202
    drain_all(rt)
    with rt.pool.connection() as conn:
        (reason,) = conn.execute("SELECT reason FROM dead_letters").fetchone()
    assert "challenge" in reason and "validationKey" in reason  # it names what it saw
