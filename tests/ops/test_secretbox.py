"""Endpoint secrets are sealed at rest and still sign deliveries."""

from __future__ import annotations

import pytest

from shared.secretbox import PREFIX, SecretBox, SecretBoxError


def test_seal_and_open_round_trip_with_a_fresh_nonce():
    box = SecretBox("k" * 20)
    a, b = box.seal("whsec_abc"), box.seal("whsec_abc")
    assert a.startswith(PREFIX) and a != b and "whsec_abc" not in a
    assert box.open(a) == box.open(b) == "whsec_abc"


def test_wrong_key_or_missing_key_is_a_clear_error():
    sealed = SecretBox("k" * 20).seal("whsec_abc")
    with pytest.raises(SecretBoxError, match="not in HOOKLINE_SECRET_KEYS"):
        SecretBox("other-key-123456789").open(sealed)
    with pytest.raises(SecretBoxError, match="not set"):
        SecretBox(None).open(sealed)


def test_without_a_key_values_pass_through():
    assert SecretBox(None).seal("whsec_x") == "whsec_x"
    assert SecretBox("k" * 20).open("whsec_x") == "whsec_x"  # stored before a key existed


def test_endpoint_secret_is_not_readable_in_the_database(make_rt):
    from ingest.app import create_app

    rt = make_rt(HOOKLINE_ALLOW_PRIVATE_ENDPOINTS="true")
    client = create_app(rt=rt, send_drain=lambda: None).test_client()
    resp = client.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook",
                                              "event_types": ["*"]},
                       headers={"Authorization": "Bearer test-api-token"})
    assert resp.status_code == 201, resp.get_json()
    secret = resp.get_json()["secret"]
    with rt.pool.connection() as conn:
        (stored,) = conn.execute("SELECT secret FROM endpoints").fetchone()
    assert stored.startswith(PREFIX) and secret not in stored
    assert SecretBox(rt.settings.secret_key).open(stored) == secret
