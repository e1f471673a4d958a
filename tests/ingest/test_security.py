"""Security of the edges: callback signatures, tokens, secrets kept out of logs and
listings, bodies over the limit never read in full (issue 6).

Token checks for missing, wrong and wrong-case values are in tests/ingest/test_ingest.py
(callback token in the query string) and tests/ingest/test_api.py (API token); these add
the Bearer header forms, the per-source override and non-ASCII input.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import socket
import threading
import time

import fakeredis
import orjson
import pytest

from ingest import auth, signatures
from ingest.app import create_app
from shared import config, inbox
from shared.config import ConfigError, SignatureSpec
from shared.runtime import Runtime
from tests.helpers import drain_all, receipt

SECRET = "sig-s3cret-Value"
SIGNED = {"HOOKLINE_SIGNATURE_SECRET_COMAPI": SECRET,
          "HOOKLINE_SIGNATURE_HEADER_COMAPI": "X-Comapi-Signature"}


def client_for(**env: str):
    settings = config.load({"REDIS_URL": "redis://fake", **env})
    rt = Runtime(settings)
    rt._redis = fakeredis.FakeRedis()
    return create_app(rt=rt, send_drain=lambda: None).test_client(), rt._redis


def spec(algorithm: str = "sha256", encoding: str = "hex") -> SignatureSpec:
    return SignatureSpec("X-Comapi-Signature", algorithm, encoding, SECRET)


# --- callback signatures -------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_signed_source_accepts_the_right_signature_only(algorithm, encoding):
    client, r = client_for(**SIGNED, HOOKLINE_SIGNATURE_ALGORITHM_COMAPI=algorithm,
                           HOOKLINE_SIGNATURE_ENCODING_COMAPI=encoding)
    body = b'{"name": "message.delivered", "eventId": "e1"}'
    good = signatures.sign(spec(algorithm, encoding), body)
    other = signatures.sign(spec(algorithm, encoding), body + b" ")
    cases = {
        "missing": ({}, 401),
        "wrong": ({"X-Comapi-Signature": other}, 401),
        "malformed": ({"X-Comapi-Signature": "not a signature!"}, 401),
        "empty": ({"X-Comapi-Signature": ""}, 401),
        "other algorithm": ({"X-Comapi-Signature": signatures.sign(
            spec("sha1" if algorithm == "sha256" else "sha256", encoding), body)}, 401),
        "right": ({"X-Comapi-Signature": good}, 202),
        "right, header name in another case": ({"x-comapi-SIGNATURE": good}, 202),
        "right, with an algorithm prefix": ({"X-Comapi-Signature": f"{algorithm}={good}"}, 202),
    }
    for name, (headers, status) in cases.items():
        resp = client.post("/callbacks/comapi", data=body, headers=headers)
        assert resp.status_code == status, name
    assert r.llen(inbox.INBOX) == 3  # the three right ones, nothing else


def test_signature_covers_the_raw_bytes_not_the_json():
    client, r = client_for(**SIGNED)
    body = b'{"a": 1}'
    sig = signatures.sign(spec(), body)
    # The same JSON with other spacing is another body: it must not pass.
    resp = client.post("/callbacks/comapi", data=b'{"a":1}', headers={"X-Comapi-Signature": sig})
    assert resp.status_code == 401 and "X-Comapi-Signature" in resp.get_json()["error"]
    assert r.llen(inbox.INBOX) == 0


def test_unsigned_sources_are_unaffected():
    client, _ = client_for(**SIGNED)
    assert client.post("/callbacks/kaleyra-rcs", data=receipt("SENT")).status_code == 202


def test_signature_is_checked_after_the_token_and_the_size():
    client, _ = client_for(**SIGNED, HOOKLINE_CALLBACK_TOKEN="tok", HOOKLINE_MAX_BODY_BYTES="10")
    body = b"x" * 11
    sig = {"X-Comapi-Signature": signatures.sign(spec(), body)}
    assert client.post("/callbacks/comapi", data=body, headers=sig).status_code == 401
    assert client.post("/callbacks/comapi?token=tok", data=body, headers=sig).status_code == 413


def test_signature_comparison_is_constant_time(monkeypatch):
    # A digest is 20 or 32 bytes: no clock shows an early exit there (the token test
    # below does, on a long token). What this shows is the comparison itself: every
    # verdict, a malformed value's included, is compare_digest of the whole expected
    # digest with the whole decoded value, never a prefix or a parse failure's shortcut.
    compared = []
    real = hmac.compare_digest

    def spy(a, b):
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signatures.hmac, "compare_digest", spy)
    body = b"{}"
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()
    good = signatures.sign(spec(), body)
    wrong_last = good[:-2] + ("00" if good[-2:] != "00" else "11")
    for value, presented, verdict in ((good, digest, True),
                                      (wrong_last, bytes.fromhex(wrong_last), False),
                                      ("sha256=" + good, digest, True),
                                      ("zz", b"", False)):
        compared.clear()
        assert signatures.verify(spec(), {"X-Comapi-Signature": value}, body) is verdict
        assert compared == [(digest, presented)], value


@pytest.mark.parametrize("env,needle", [
    ({"HOOKLINE_SIGNATURE_SECRET_NOBODY": SECRET}, "HOOKLINE_SIGNATURE_SECRET_NOBODY"),
    ({"HOOKLINE_SIGNATURE_HEADER_COMAPI": "X-Sig"}, "HOOKLINE_SIGNATURE_SECRET_COMAPI"),
    ({"HOOKLINE_SIGNATURE_SECRET_COMAPI": SECRET}, "HOOKLINE_SIGNATURE_HEADER_COMAPI"),
    ({**SIGNED, "HOOKLINE_SIGNATURE_ALGORITHM_COMAPI": "md5"},
     "HOOKLINE_SIGNATURE_ALGORITHM_COMAPI"),
    ({**SIGNED, "HOOKLINE_SIGNATURE_ENCODING_COMAPI": "base32"},
     "HOOKLINE_SIGNATURE_ENCODING_COMAPI"),
    ({"HOOKLINE_SIGNATURE_SECRETS_COMAPI": SECRET}, "HOOKLINE_SIGNATURE_SECRETS_COMAPI"),
])
def test_signature_configuration_errors_name_the_variable(env, needle):
    with pytest.raises(ConfigError) as err:
        config.load(env)
    assert needle in str(err.value) and SECRET not in str(err.value)


def test_signature_secret_never_appears_in_a_repr():
    settings = config.load(SIGNED)
    assert SECRET not in repr(settings) and SECRET not in repr(settings.signature_for("comapi"))


# --- tokens --------------------------------------------------------------------------------

@pytest.mark.parametrize("header,status", [
    (None, 401),
    ("Bearer wrong-token", 401),
    ("Bearer S3CRET-TOKEN", 401),           # right letters, wrong case
    ("Bearer s3cret-token", 401),
    ("Bearer s3cret-Token-and-more", 401),  # the right one as a prefix
    ("Basic s3cret-Token", 401),
    ("Bearer s3cret-Token", 202),
    ("bearer s3cret-Token", 202),           # the scheme is case-insensitive (RFC 7235)
])
def test_callback_token_as_bearer_header(header, status):
    client, r = client_for(HOOKLINE_CALLBACK_TOKEN="s3cret-Token")
    headers = {"Authorization": header} if header else {}
    assert client.post("/callbacks/kaleyra-rcs", data=b"{}", headers=headers).status_code \
        == status
    assert r.llen(inbox.INBOX) == (1 if status == 202 else 0)


@pytest.mark.parametrize("token,status", [("RCS-ONLY", 401), ("rcs-only ", 202),
                                          ("rcs-onl", 401), ("rcs-only", 202)])
def test_per_source_token_is_case_sensitive(token, status):
    client, _ = client_for(HOOKLINE_CALLBACK_TOKEN_KALEYRA_RCS="rcs-only")
    resp = client.post("/callbacks/kaleyra-rcs", data=b"{}",
                       headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == status  # surrounding spaces are not part of a bearer token


@pytest.mark.parametrize("presented", ["t\u00f6ken", "\u0000", "x" * 10000])
def test_odd_tokens_are_401_not_500(presented):
    client, _ = client_for(HOOKLINE_CALLBACK_TOKEN="token", HOOKLINE_API_TOKEN="token")
    assert client.post("/callbacks/kaleyra-rcs", query_string={"token": presented},
                       data=b"{}").status_code == 401
    assert not auth.token_ok("token", presented)


def _fastest(check, expected: str, presented: str, runs: int = 25) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        check(expected, presented)
        best = min(best, time.perf_counter() - started)
    return best


def test_token_comparison_is_constant_time():
    # A wrong guess costs the same whether its first or its last byte is wrong. A token
    # of megabytes makes the comparison itself the bulk of the time: an early-exit
    # comparison (==) answers a first-byte miss in a fraction of a last-byte miss's
    # time (measured: about 0.6 of it), compare_digest in about the same (0.9 to 1.1).
    n = 4_000_000
    secret = "a" * n
    first, last = "b" + "a" * (n - 1), "a" * (n - 1) + "b"
    assert not auth.token_ok(secret, first) and not auth.token_ok(secret, last)
    assert auth.token_ok(secret, "a" * n)
    ratios = []
    for _ in range(3):  # the best of three rounds: a busy machine only slows one arm
        ratios.append(_fastest(auth.token_ok, secret, first) /
                      _fastest(auth.token_ok, secret, last))
        if ratios[-1] > 0.8:
            break
    assert max(ratios) > 0.8, f"a first-byte miss answers faster: {ratios}"

    def early_exit(expected: str, presented: str) -> bool:  # the check can fail
        return expected.encode() == presented.encode()

    assert min(_fastest(early_exit, secret, first) / _fastest(early_exit, secret, last)
               for _ in range(3)) < 0.8


# --- bodies over the limit -----------------------------------------------------------------

def _raw_post(port: int, head: bytes, chunks: list[bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(head)
        for c in chunks:
            try:
                s.sendall(c)
            except OSError:
                break
        s.settimeout(5)
        return s.recv(4096)


@pytest.fixture
def served():
    """The ingest app behind a real HTTP server, counting the body bytes it reads."""
    from werkzeug.serving import make_server

    client, r = client_for(HOOKLINE_MAX_BODY_BYTES="1000")
    app = client.application
    read = {"bytes": 0}

    def counting(environ, start_response):
        stream = environ["wsgi.input"]

        class Counted:
            def read(self, n=-1):
                data = stream.read(n)
                read["bytes"] += len(data)
                return data

            def readline(self, n=-1):
                data = stream.readline(n)
                read["bytes"] += len(data)
                return data

        environ["wsgi.input"] = Counted()
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, counting, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, read, r
    server.shutdown()


def test_declared_length_over_the_limit_is_refused_unread(served):
    port, read, r = served
    head = (b"POST /callbacks/kaleyra-rcs HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 50000000\r\nConnection: close\r\n\r\n")
    answer = _raw_post(port, head, [b"x" * 4096])
    assert answer.startswith(b"HTTP/1.1 413")
    assert read["bytes"] == 0 and r.llen(inbox.INBOX) == 0


def test_chunked_body_over_the_limit_is_refused_after_limit_plus_one(served):
    port, read, r = served
    head = (b"POST /callbacks/kaleyra-rcs HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    chunk = b"x" * 500
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 200  # 100 kB offered
    answer = _raw_post(port, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413")
    assert read["bytes"] <= 1001 and r.llen(inbox.INBOX) == 0


# --- no secret in logs or listings ---------------------------------------------------------

def test_no_secret_reaches_logs_or_api_listings(make_rt, caplog, capsys):
    api_token, cb_token = "api-Tok3n-secret", "cb-Tok3n-secret"
    rt = make_rt(HOOKLINE_ALLOW_PRIVATE_ENDPOINTS="true", HOOKLINE_API_TOKEN=api_token,
                 HOOKLINE_CALLBACK_TOKEN=cb_token, **SIGNED,
                 HOOKLINE_SIGNATURE_ALGORITHM_COMAPI="sha1",
                 HOOKLINE_SIGNATURE_ENCODING_COMAPI="base64")
    client = create_app(rt=rt, send_drain=lambda: None).test_client()
    auth_h = {"Authorization": f"Bearer {api_token}"}
    caplog.set_level(logging.DEBUG)
    created = client.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook",
                                                 "event_types": ["*"]}, headers=auth_h)
    assert created.status_code == 201
    endpoint_secret = created.get_json()["secret"]
    rotated = client.post(f"/v1/endpoints/{created.get_json()['id']}/rotate-secret",
                          headers=auth_h).get_json()["secret"]
    # Callbacks: good and bad tokens, good and bad signatures, a dead letter.
    body = receipt("SENT")
    client.post(f"/callbacks/kaleyra-rcs?token={cb_token}", data=body)
    client.post("/callbacks/kaleyra-rcs?token=wrong", data=body)
    client.post("/callbacks/kaleyra-rcs", data=b"{not json",
                headers={"Authorization": f"Bearer {cb_token}"})
    comapi = orjson.dumps({"name": "message.delivered"})
    client.post(f"/callbacks/comapi?token={cb_token}", data=comapi,
                headers={"X-Comapi-Signature": "bad"})
    client.post(f"/callbacks/comapi?token={cb_token}", data=comapi, headers={
        "X-Comapi-Signature": signatures.sign(spec("sha1", "base64"), comapi)})
    client.get("/v1/messages/x", headers={"Authorization": "Bearer wrong"})
    drain_all(rt)
    endpoint_id = created.get_json()["id"]
    listings = [client.get(path, headers=auth_h).get_data(as_text=True) for path in (
        "/v1/endpoints", f"/v1/endpoints/{endpoint_id}", f"/v1/endpoints/{endpoint_id}/deliveries",
        "/v1/dead-letters")]
    assert '"items"' in listings[0] and endpoint_id in listings[0]
    assert "dead letter" in caplog.text  # the capture works: the bad body was logged
    out = capsys.readouterr()
    logged = "\n".join([caplog.text, out.out, out.err, *listings])
    for secret in (api_token, cb_token, SECRET, endpoint_secret, rotated):
        assert secret not in logged, f"{secret[:6]}... leaked"
