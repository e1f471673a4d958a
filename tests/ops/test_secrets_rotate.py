"""The key ring and `hookline secrets rotate`, against real PostgreSQL and Redis."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hookline import cli
from shared import rekey
from shared.db import endpoints
from shared.secretbox import LEGACY_PREFIX, PREFIX, SecretBox, SecretBoxError, key_id
from tests.console.console_support import client_for, sign_in
from tests.fanout.fanout_helpers import AUTH, create_endpoint, deliver, verify
from tests.helpers import drain_all, enqueue, receipt

OLD, NEW = "old-key-0123456789", "new-key-0123456789"


def ring(keys: str) -> dict[str, str]:
    """Settings with this ring instead of the fixtures' HOOKLINE_SECRET_KEY."""
    return {"HOOKLINE_SECRET_KEY": "", "HOOKLINE_SECRET_KEYS": keys}


def legacy_seal(key: str, secret: str) -> str:
    """A value as hookline sealed it before key ids (hlenc1)."""
    nonce = os.urandom(12)
    sealed = AESGCM(hashlib.sha256(key.encode()).digest()).encrypt(
        nonce, secret.encode(), b"hookline endpoint secret v1")
    return LEGACY_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


# --- the ring ---------------------------------------------------------------------------

def test_the_newest_key_seals_and_every_key_opens():
    old_sealed = SecretBox([OLD]).seal("whsec_a")
    box = SecretBox([NEW, OLD])
    new_sealed = box.seal("whsec_b")
    assert new_sealed.startswith(f"{PREFIX}{key_id(NEW)}:")
    assert box.open(old_sealed) == "whsec_a" and box.open(new_sealed) == "whsec_b"
    with pytest.raises(SecretBoxError, match=f"key {key_id(NEW)}, which is not in"):
        SecretBox([OLD]).open(new_sealed)


def test_values_sealed_before_key_ids_are_tried_under_each_key():
    stored = legacy_seal(OLD, "whsec_legacy")
    assert SecretBox([NEW, OLD]).open(stored) == "whsec_legacy"
    with pytest.raises(SecretBoxError, match="any key"):
        SecretBox([NEW]).open(stored)


def test_reseal_moves_a_value_to_the_newest_key_once():
    box = SecretBox([NEW, OLD])
    for stored in (SecretBox([OLD]).seal("whsec_x"), legacy_seal(OLD, "whsec_x"), "whsec_x"):
        assert not box.current(stored)
        again = box.reseal(stored)
        assert box.current(again) and box.open(again) == "whsec_x"
        assert box.reseal(again) == again  # nothing to do the second time
    assert SecretBox(None).current("whsec_plain")


def test_key_ids_tell_nothing_and_differ():
    assert key_id(NEW) != key_id(OLD) and len(key_id(NEW)) == 8
    assert key_id(NEW) not in hashlib.sha256(NEW.encode()).hexdigest()


# --- rotation of the stored secrets ------------------------------------------------------

def stored_secrets(rt) -> dict[str, tuple[str, str | None]]:
    with rt.pool.connection() as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT id, secret, previous_secret FROM endpoints")}


@pytest.fixture
def old_endpoints(fast_rt, receiver):
    """Three endpoints sealed under OLD (one with a previous secret, one stored before
    key ids); returns each endpoint's current secret."""
    rt = fast_rt(HOOKLINE_SECRET_KEY=OLD)
    api = client_for(rt)
    made = {}
    for i in range(3):
        ep = create_endpoint(api, receiver.url(f"/ep{i}"))
        made[ep["id"]] = ep["secret"]
    first = next(iter(made))
    rotated = api.post(f"/v1/endpoints/{first}/rotate-secret", headers=AUTH).get_json()
    made[first] = rotated["secret"]
    last = list(made)[-1]
    with rt.pool.connection() as conn:
        conn.execute("UPDATE endpoints SET secret = %s WHERE id = %s",
                     (legacy_seal(OLD, made[last]), last))
    return made


def test_rotate_reseals_every_secret_and_is_idempotent(fast_rt, old_endpoints, receiver):
    rt = fast_rt(**ring(f"{NEW},{OLD}"))
    box = SecretBox([NEW, OLD])
    done = rekey.rotate(rt.settings.database_url, box, batch=2)  # two pages
    assert (done.examined, done.resealed, done.current, done.complete) == (3, 3, 0, True)
    for secret, previous in stored_secrets(rt).values():
        assert box.current(secret) and (previous is None or box.current(previous))
    again = rekey.rotate(rt.settings.database_url, box)
    assert (again.resealed, again.current) == (0, 3)

    # The old key can leave the ring: every delivery still signs with the right secret.
    rt = fast_rt(**ring(NEW))
    enqueue(rt, receipt("SENT"))
    drain_all(rt)
    deliver(rt, until=lambda: len(receiver.requests()) >= 3)
    by_path = {f"/ep{i}": secret for i, secret in enumerate(old_endpoints.values())}
    for req in receiver.requests():
        verify(req, by_path[req.path])


def test_a_secret_changed_meanwhile_is_not_overwritten(fast_rt, old_endpoints):
    rt = fast_rt(**ring(f"{NEW},{OLD}"))
    endpoint_id, was = next(iter(stored_secrets(rt).items()))
    with rt.pool.connection() as conn:
        conn.execute("UPDATE endpoints SET secret = 'rotated-meanwhile' WHERE id = %s",
                     (endpoint_id,))
        assert not endpoints.reseal(conn, endpoint_id, was, ("stale", None))
    assert stored_secrets(rt)[endpoint_id][0] == "rotated-meanwhile"


def test_a_secret_no_key_opens_is_reported_and_the_rest_rotated(fast_rt, old_endpoints):
    rt = fast_rt(**ring(NEW))  # OLD already gone: nothing under it opens
    done = rekey.rotate(rt.settings.database_url, SecretBox([NEW]))
    assert len(done.failed) == 3 and not done.complete
    assert all("not in HOOKLINE_SECRET_KEYS" in why or "any key" in why
               for why in done.failed.values())


def test_the_command(fast_rt, old_endpoints, base_env, monkeypatch, capsys):
    for name, value in {**base_env, **ring(f"{NEW},{OLD}")}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["secrets", "rotate"]) == 0
    assert "3 endpoints: 3 sealed again under key" in capsys.readouterr().out
    assert cli.main(["secrets", "rotate"]) == 0
    assert "0 sealed again" in capsys.readouterr().out
    monkeypatch.delenv("HOOKLINE_SECRET_KEYS")
    with pytest.raises(SystemExit, match="no key to seal under"):
        cli.main(["secrets", "rotate"])


# --- console sessions --------------------------------------------------------------------

def carry_session(old_client, new_client) -> None:
    cookie = old_client.get_cookie("hookline_console", path="/console")
    new_client.set_cookie(cookie.key, cookie.value, path="/console")


def test_rotating_the_ring_keeps_console_sessions(make_rt):
    old = sign_in(client_for(make_rt(**ring(OLD))))
    rotated = client_for(make_rt(**ring(f"{NEW},{OLD}")))
    carry_session(old, rotated)
    assert rotated.get("/console/").status_code == 200  # still signed in
    # Once the old key leaves the ring, a cookie signed with it no longer is.
    gone = client_for(make_rt(**ring(NEW)))
    carry_session(old, gone)
    assert gone.get("/console/").status_code == 302
    # The session used under the rotated ring was renewed under the new key: it stays.
    after = client_for(make_rt(**ring(NEW)))
    carry_session(rotated, after)
    assert after.get("/console/").status_code == 200


def test_a_session_key_of_its_own_ignores_the_ring(make_rt):
    session = "console-session-key-0123"
    old = sign_in(client_for(make_rt(**ring(OLD),
                                     HOOKLINE_CONSOLE_SESSION_KEY=session)))
    new = client_for(make_rt(**ring(NEW), HOOKLINE_CONSOLE_SESSION_KEY=session))
    carry_session(old, new)
    assert new.get("/console/").status_code == 200
