"""Every secret variable has a *_FILE form (Docker and Kubernetes secrets), and the key
ring is read from HOOKLINE_SECRET_KEYS or HOOKLINE_SECRET_KEY."""

from __future__ import annotations

import pytest

from shared import config
from shared.config import ConfigError

KEY = "k" * 16


def write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name", config.SECRET_VARIABLES)
def test_each_secret_variable_reads_its_file(tmp_path, name):
    values = {"DATABASE_URL": "postgresql://u:pw@db/hookline", "REDIS_URL": "redis://:pw@r:6379/0",
              "HOOKLINE_BROKER_URL": "redis://:pw@r:6379/1",
              "HOOKLINE_CONSOLE_USERS": "ann:scrypt:32768:8:1$salt$hash"}
    value = values.get(name, "s3cret-value-0123456789")
    env = {f"{name}_FILE": write(tmp_path, "secret", value + "\n")}
    if name == "HOOKLINE_CONSOLE_USERS":
        env["HOOKLINE_API_TOKEN"] = "t"
    assert config.with_files(env)[name] == value  # the file's trailing newline dropped
    config.load(env)  # and the settings take it


def test_settings_hold_the_files_values(tmp_path):
    s = config.load({
        "DATABASE_URL_FILE": write(tmp_path, "db", "postgresql://u:pw@db/h\n"),
        "HOOKLINE_API_TOKEN_FILE": write(tmp_path, "api", "api-token\r\n"),
        "HOOKLINE_SECRET_KEYS_FILE": write(tmp_path, "keys", f"{'n' * 16},{KEY}\n"),
        "HOOKLINE_CONSOLE_SESSION_KEY_FILE": write(tmp_path, "session", "s" * 20),
        "HOOKLINE_CALLBACK_TOKEN_KALEYRA_RCS_FILE": write(tmp_path, "cb", "per-source"),
    })
    assert s.database_url == "postgresql://u:pw@db/h"
    assert s.api_token == "api-token"
    assert s.secret_keys == ("n" * 16, KEY) and s.secret_key == "n" * 16
    assert s.console_session_key == "s" * 20
    # Read as a per-source token, not as a source named "..._FILE".
    assert s.callback_tokens == {"KALEYRA_RCS": "per-source"}


def test_a_signature_secret_from_a_file(tmp_path):
    s = config.load({
        "HOOKLINE_SIGNATURE_SECRET_KALEYRA_RCS_FILE": write(tmp_path, "sig", "hmac-secret\n"),
        "HOOKLINE_SIGNATURE_HEADER_KALEYRA_RCS": "X-Signature",
    })
    assert s.signature_for("kaleyra-rcs").secret == "hmac-secret"


def test_a_verify_key_from_a_file(tmp_path):
    s = config.load({"HOOKLINE_VERIFY_KEY_COMAPI_FILE": write(tmp_path, "vk", "validation\n")})
    # Read as comapi's key, not as a source named "COMAPI_FILE" whose key is the path.
    assert s.verify_keys == {"COMAPI": "validation"}


def test_both_forms_set_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="HOOKLINE_API_TOKEN and HOOKLINE_API_TOKEN_FILE "
                                          "are both set"):
        config.load({"HOOKLINE_API_TOKEN": "a",
                     "HOOKLINE_API_TOKEN_FILE": write(tmp_path, "t", "b")})


def test_a_missing_or_empty_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="REDIS_URL_FILE: cannot read"):
        config.load({"REDIS_URL_FILE": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match=r"HOOKLINE_SECRET_KEY_FILE: .* is empty"):
        config.load({"HOOKLINE_SECRET_KEY_FILE": write(tmp_path, "empty", "\n")})


def test_a_blank_file_variable_is_unset_and_others_are_not_secrets(tmp_path):
    assert config.load({"HOOKLINE_API_TOKEN_FILE": ""}).api_token is None
    env = config.with_files({"HOOKLINE_LOG_FORMAT_FILE": "/x"})
    assert env == {"HOOKLINE_LOG_FORMAT_FILE": "/x"}  # not a secret: left alone


def test_secret_reads_one_variable(tmp_path, monkeypatch):
    path = write(tmp_path, "f", "admin:pw\n")
    assert config.secret({"HOOKLINE_FLOWER_BASIC_AUTH_FILE": path},
                         "HOOKLINE_FLOWER_BASIC_AUTH") == "admin:pw"
    assert config.secret({}, "HOOKLINE_FLOWER_BASIC_AUTH") is None


def test_key_ring_forms():
    assert config.load({"HOOKLINE_SECRET_KEY": KEY}).secret_keys == (KEY,)
    ring = config.load({"HOOKLINE_SECRET_KEYS": f" {'n' * 16} , {KEY} "})
    assert ring.secret_keys == ("n" * 16, KEY) and ring.secret_key == "n" * 16
    assert config.load({}).secret_keys == () and config.load({}).secret_key is None


@pytest.mark.parametrize(("env", "match"), [
    ({"HOOKLINE_SECRET_KEYS": KEY, "HOOKLINE_SECRET_KEY": KEY}, "both set"),
    ({"HOOKLINE_SECRET_KEYS": f"{KEY},short"}, r"at least 16 characters \(key 2\)"),
    ({"HOOKLINE_SECRET_KEYS": f"{KEY},"}, r"at least 16 characters \(key 2\)"),
    ({"HOOKLINE_SECRET_KEYS": f"{KEY},{KEY}"}, "lists a key twice"),
    ({"HOOKLINE_SECRET_KEY": "short"}, "HOOKLINE_SECRET_KEY must be at least 16"),
    ({"HOOKLINE_CONSOLE_SESSION_KEY": "short"}, "HOOKLINE_CONSOLE_SESSION_KEY must be"),
])
def test_bad_rings_are_refused(env, match):
    with pytest.raises(ConfigError, match=match):
        config.load(env)


def test_secrets_stay_out_of_the_settings_repr():
    s = repr(config.load({"HOOKLINE_SECRET_KEYS": f"{'n' * 16},{KEY}",
                          "HOOKLINE_CONSOLE_SESSION_KEY": "s" * 16}))
    assert "n" * 16 not in s and KEY not in s and "s" * 16 not in s
