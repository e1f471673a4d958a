"""`hookline tenants create | list | keys` against PostgreSQL."""

from __future__ import annotations

import orjson
import pytest

from hookline import cli
from shared.db import keys


@pytest.fixture
def run(rt, base_env, monkeypatch, capsys):
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)

    def run(*argv: str):
        assert cli.main(["tenants", *argv]) == 0
        return orjson.loads(capsys.readouterr().out)

    return run


def test_onboarding_from_the_shell(run, rt, capsys):
    made = run("create", "Acme", "--sender", "kaleyra-rcs:acme_agent:rcs")
    assert made["senders"] == [{"source": "kaleyra-rcs", "sender": "acme_agent",
                                "channel": "rcs"}]
    assert [t["id"] for t in run("list")] == [made["id"]]
    with pytest.raises(SystemExit, match="another tenant"):
        cli.main(["tenants", "create", "Bravo", "--sender", "kaleyra-rcs:acme_agent"])
    with pytest.raises(SystemExit):
        cli.main(["tenants", "create", "Bravo", "--sender", "no-colon"])
    capsys.readouterr()

    key = run("keys", made["id"], "--create", "cb", "--kind", "callback")
    assert key["kind"] == "callback" and key["key"].startswith("hk_")
    assert [k["id"] for k in run("keys", made["id"])] == [key["id"]]
    assert run("keys", made["id"], "--revoke", key["id"]) == {"revoked": key["id"]}
    assert run("keys", made["id"])[0]["revoked_at"] is not None

    op = run("keys", "operator", "--create", "ops")
    assert op["kind"] == "operator"
    with rt.pool.connection() as conn:
        assert keys.authenticate(conn, op["key"]).operator
    with pytest.raises(SystemExit, match="no tenant"):
        cli.main(["tenants", "keys", "tn_none"])
