import pytest

from shared import config


@pytest.mark.parametrize("env,name", [
    ({"HOOKLINE_MAX_BODY_BYTES": "lots"}, "HOOKLINE_MAX_BODY_BYTES"),
    ({"HOOKLINE_MAX_BODY_BYTES": "0"}, "HOOKLINE_MAX_BODY_BYTES"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ({"HOOKLINE_RETRY_SCHEDULE": "1,x"}, "HOOKLINE_RETRY_SCHEDULE"),
    ({"HOOKLINE_ALLOW_PRIVATE_ENDPOINTS": "maybe"}, "HOOKLINE_ALLOW_PRIVATE_ENDPOINTS"),
    ({"HOOKLINE_ALLOWED_IPS_COMAPI": "10.0.0.0/33"}, "HOOKLINE_ALLOWED_IPS_COMAPI"),
    ({"HOOKLINE_LOG_FORMAT": "xml"}, "HOOKLINE_LOG_FORMAT"),
    ({"HOOKLINE_BATCH_SIZE": "5001"}, "HOOKLINE_BATCH_SIZE"),
    ({"HOOKLINE_BATCH_BYTES": "1000"}, "HOOKLINE_BATCH_BYTES"),
])
def test_bad_values_fail_naming_the_variable(env, name):
    with pytest.raises(config.ConfigError, match=name):
        config.load(env)


def test_defaults():
    s = config.load({})
    assert s.max_body_bytes == 262144
    assert s.callback_token_for("comapi") is None
    assert s.retry_schedule[0] == 5 and s.retry_schedule[-1] == 86400
    assert s.batch_size == 500 and s.batch_bytes == 2 * 1024 * 1024
    assert config.load({"HOOKLINE_BATCH_SIZE": "5000"}).batch_size == 5000


def test_per_source_callback_token():
    s = config.load({"HOOKLINE_CALLBACK_TOKEN": "a", "HOOKLINE_CALLBACK_TOKEN_KALEYRA_IO": "b"})
    assert s.callback_token_for("kaleyra-io") == "b"
    assert s.callback_token_for("comapi") == "a"


def test_cli_fails_at_start_naming_the_variable(monkeypatch, capsys):
    from hookline import cli

    monkeypatch.setenv("HOOKLINE_MAX_BODY_BYTES", "-3")
    with pytest.raises(SystemExit) as exc:
        cli.main(["migrate"])
    assert "HOOKLINE_MAX_BODY_BYTES" in str(exc.value)



def test_secrets_stay_out_of_the_settings_repr():
    s = config.load({"DATABASE_URL": "postgresql://u:pg-pass@db/x", "REDIS_URL": "redis://:r-pass@r",
                     "HOOKLINE_API_TOKEN": "api-secret", "HOOKLINE_CALLBACK_TOKEN": "cb-secret",
                     "HOOKLINE_CALLBACK_TOKEN_COMAPI": "cb2-secret",
                     "HOOKLINE_SECRET_KEY": "key-secret-0123456789"})
    assert s.api_token == "api-secret"
    for secret in ("pg-pass", "r-pass", "api-secret", "cb-secret", "cb2-secret", "key-secret"):
        assert secret not in repr(s)
