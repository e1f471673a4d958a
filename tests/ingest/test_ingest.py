"""The ingest path: fast unit tests on fakeredis (the only place fakeredis is used)."""

from __future__ import annotations

import io

import fakeredis
import pytest
import redis
from prometheus_client import REGISTRY
from werkzeug.test import create_environ

from ingest import metrics as ingest_metrics
from ingest.app import create_app
from shared import config, inbox
from shared.envelope import decode
from shared.runtime import Runtime
from tests.helpers import receipt
from tests.procs import wait_for


class Sent:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def make_client(client: redis.Redis | None = None, send_drain=None, **env: str):
    settings = config.load({"REDIS_URL": "redis://fake", **env})
    rt = Runtime(settings)
    rt._redis = client or fakeredis.FakeRedis()
    sent = Sent()
    app = create_app(rt=rt, send_drain=send_drain or sent)
    return app.test_client(), rt._redis, sent


@pytest.fixture
def ingest():
    return make_client()


def queued(r: redis.Redis) -> list[bytes]:
    return r.lrange(inbox.INBOX, 0, -1)


def _status(client, environ: dict) -> str:
    """The one status line the app answers a hand-built WSGI environ with."""
    status: list[str] = []
    client.application.wsgi_app(environ, lambda s, h, *a: status.append(s))
    [line] = status
    return line


def test_202_pushes_the_raw_body_in_an_envelope(ingest):
    client, r, _ = ingest
    body = receipt("SENT")
    resp = client.post("/callbacks/kaleyra-rcs", data=body,
                       headers={"Content-Type": "application/json", "Cookie": "x=1"})
    assert resp.status_code == 202
    [raw] = queued(r)
    env = decode(raw)
    assert env.id == resp.get_json()["id"]
    assert env.body == body and env.source == "kaleyra-rcs" and env.event is None
    assert env.headers["content-type"] == "application/json" and "cookie" not in env.headers
    assert env.remote_addr == "127.0.0.1" and env.received_at > 0


def test_event_from_the_url_travels_in_the_envelope(ingest):
    client, r, _ = ingest
    assert client.post("/callbacks/kaleyra-rcs/SENT", data=b"{}").status_code == 202
    assert decode(queued(r)[0]).event == "SENT"


@pytest.mark.parametrize("event", ["%00", "sms:message%00", "x" * 101, "-x", "a%20b", "%C3%A9"])
def test_an_event_that_is_no_plain_name_is_400_and_not_queued(ingest, event):
    # A NUL could not even be stored in a dead letter: it looped in the retry list.
    client, r, _ = ingest
    resp = client.post(f"/callbacks/kaleyra-io/{event}", data=b"{}")
    assert resp.status_code == 400 and "event must be" in resp.get_json()["error"]
    assert queued(r) == []


@pytest.mark.parametrize("event", ["sms:message:status", "x" * 100, "v1.2_a-B"])
def test_plain_event_names_are_queued(ingest, event):
    client, r, _ = ingest
    assert client.post(f"/callbacks/kaleyra-io/{event}", data=b"{}").status_code == 202
    assert decode(queued(r)[0]).event == event


def test_ingest_does_not_parse_json(ingest):
    client, r, _ = ingest
    resp = client.post("/callbacks/kaleyra-rcs", data=b'{"type": "SENT",,,')
    assert resp.status_code == 202
    assert decode(queued(r)[0]).body == b'{"type": "SENT",,,'


def test_unknown_source_is_404_json(ingest):
    client, r, _ = ingest
    resp = client.post("/callbacks/nobody", data=b"{}")
    assert resp.status_code == 404 and "unknown source" in resp.get_json()["error"]
    assert queued(r) == []


def test_empty_body_is_400(ingest):
    client, r, _ = ingest
    assert client.post("/callbacks/kaleyra-rcs", data=b"").status_code == 400
    assert queued(r) == []


def test_body_over_the_limit_is_413():
    client, r, _ = make_client(HOOKLINE_MAX_BODY_BYTES="100")
    assert client.post("/callbacks/kaleyra-rcs", data=b"x" * 100).status_code == 202
    resp = client.post("/callbacks/kaleyra-rcs", data=b"x" * 101)
    assert resp.status_code == 413
    assert len(queued(r)) == 1


def test_chunked_body_over_the_limit_is_413_without_reading_it_all():
    client, r, _ = make_client(HOOKLINE_MAX_BODY_BYTES="100")

    class Endless(io.RawIOBase):
        given = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buf) -> int:
            buf[:] = b"x" * len(buf)
            self.given += len(buf)
            return len(buf)

    stream = Endless()
    environ = create_environ("/callbacks/kaleyra-rcs", method="POST")
    environ.pop("CONTENT_LENGTH", None)
    environ.update({"wsgi.input": stream, "wsgi.input_terminated": True,
                    "HTTP_TRANSFER_ENCODING": "chunked"})
    assert _status(client, environ) == "413 REQUEST ENTITY TOO LARGE"
    assert queued(r) == []
    assert stream.given <= 101


@pytest.mark.parametrize("how", ["missing", "wrong", "wrong-case", "prefix"])
def test_callback_token_required_when_configured(how):
    client, r, _ = make_client(HOOKLINE_CALLBACK_TOKEN="s3cret-Token")
    token = {"missing": None, "wrong": "nope", "wrong-case": "S3CRET-TOKEN",
             "prefix": "s3cret"}[how]
    url = "/callbacks/kaleyra-rcs" + (f"?token={token}" if token else "")
    resp = client.post(url, data=b"{}")
    assert resp.status_code == 401
    assert queued(r) == []


def test_callback_token_accepted_as_query_or_bearer():
    client, r, _ = make_client(HOOKLINE_CALLBACK_TOKEN="s3cret-Token")
    assert client.post("/callbacks/kaleyra-rcs?token=s3cret-Token", data=b"{}").status_code == 202
    resp = client.post("/callbacks/kaleyra-rcs", data=b"{}",
                       headers={"Authorization": "Bearer s3cret-Token"})
    assert resp.status_code == 202
    assert len(queued(r)) == 2


def test_per_source_token_overrides_the_global_one():
    client, _, _ = make_client(HOOKLINE_CALLBACK_TOKEN="global",
                               HOOKLINE_CALLBACK_TOKEN_KALEYRA_RCS="rcs-only")
    assert client.post("/callbacks/kaleyra-rcs?token=global", data=b"{}").status_code == 401
    assert client.post("/callbacks/kaleyra-rcs?token=rcs-only", data=b"{}").status_code == 202


def test_redis_down_is_503_with_retry_after_and_nothing_written():
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    client, _, sent = make_client(dead)
    resp = client.post("/callbacks/kaleyra-rcs", data=receipt("SENT"))
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "5"
    assert sent.count == 0


def test_a_burst_kicks_one_drain(ingest):
    client, r, sent = ingest
    for _ in range(20):
        assert client.post("/callbacks/kaleyra-rcs", data=b"{}").status_code == 202
    assert sent.count == 1
    inbox.clear_kick(r)  # the drain started; it works until it finds the inbox empty
    client.post("/callbacks/kaleyra-rcs", data=b"{}")
    assert sent.count == 1  # so a callback with company in the inbox kicks nothing
    r.delete(inbox.INBOX)  # the drain leased everything
    client.post("/callbacks/kaleyra-rcs", data=b"{}")
    assert sent.count == 2


def test_a_push_into_an_empty_inbox_leaves_a_queued_drain_alone(ingest):
    client, r, sent = ingest
    inbox.claim_kick(r)  # a drain is queued and has not started
    client.post("/callbacks/kaleyra-rcs", data=b"{}")
    assert sent.count == 0 and r.llen(inbox.INBOX) == 1


def test_kick_failure_still_answers_202_and_frees_the_flag():
    def broken() -> None:
        raise ConnectionError("broker away")

    client, r, _ = make_client(send_drain=broken)
    assert client.post("/callbacks/kaleyra-rcs", data=b"{}").status_code == 202
    assert not r.exists(inbox.KICK)


def test_invented_sources_are_counted_under_one_label(ingest):
    client, _, _ = ingest
    for i in range(3):
        assert client.post(f"/callbacks/made-up-{i}", data=b"{}").status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert "made-up" not in text
    assert 'hookline_ingest_requests_total{code="404",source="unknown"}' in text


class _KickFlagFails(fakeredis.FakeRedis):
    def set(self, *args, **kwargs):
        raise redis.ConnectionError("Redis went away after the LPUSH")


def test_a_queued_callback_is_202_even_if_redis_fails_before_the_kick_flag():
    client, r, sent = make_client(_KickFlagFails())
    resp = client.post("/callbacks/kaleyra-rcs", data=b"{}")
    assert resp.status_code == 202  # queued: a 503 would make the provider send it twice
    assert r.llen(inbox.INBOX) == 1 and sent.count == 0


def test_healthz_and_metrics(ingest):
    client, _, _ = ingest
    assert client.get("/healthz").get_json() == {"status": "ok"}
    client.post("/callbacks/kaleyra-rcs", data=b"{}")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'hookline_ingest_requests_total{code="202",source="kaleyra-rcs"}' in text


def test_allow_list_refuses_other_addresses():
    client, r, _ = make_client(HOOKLINE_ALLOWED_IPS_KALEYRA_RCS="10.0.0.0/8")
    assert client.post("/callbacks/kaleyra-rcs", data=b"{}").status_code == 403
    assert queued(r) == []
    resp = client.post("/callbacks/kaleyra-rcs", data=b"{}",
                       environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert resp.status_code == 202
    assert len(queued(r)) == 1


def test_forwarded_for_is_trusted_only_for_configured_hops():
    client, r, _ = make_client(HOOKLINE_TRUSTED_PROXY_HOPS="1")
    client.post("/callbacks/kaleyra-rcs", data=b"{}",
                headers={"X-Forwarded-For": "1.1.1.1, 203.0.113.9"})
    assert decode(queued(r)[0]).remote_addr == "203.0.113.9"
    client2, r2, _ = make_client()
    client2.post("/callbacks/kaleyra-rcs", data=b"{}", headers={"X-Forwarded-For": "1.1.1.1"})
    assert decode(queued(r2)[0]).remote_addr == "127.0.0.1"


def test_requests_reach_the_metrics_within_a_second_without_a_scrape(ingest):
    # Noted on the request path, added to the metrics by the process's thread
    # (ingest/metrics.py); /metrics is not asked, so only the thread can do it.
    client, _, _ = ingest
    labels = {"source": "comapi", "code": "202"}

    def counted() -> float:
        return REGISTRY.get_sample_value("hookline_ingest_requests_total", labels) or 0.0

    def observed() -> float:
        return REGISTRY.get_sample_value("hookline_ingest_ack_seconds_count") or 0.0

    client.get("/metrics")  # what earlier tests noted is counted now, not during this one
    before, seen = counted(), observed()
    for _ in range(3):
        assert client.post("/callbacks/comapi", data=b"{}").status_code == 202
    # The counter is written before the histogram: wait for both.
    wait_for(lambda: (counted(), observed()) == (before + 3, seen + 3),
             timeout=ingest_metrics.FLUSH_SECONDS + 5)


def test_a_body_shorter_than_its_declared_length_is_400_and_not_queued(ingest):
    # The client went away mid-body: a truncated callback must not be queued as if whole.
    client, r, _ = ingest
    environ = create_environ("/callbacks/kaleyra-rcs", method="POST")
    environ.update({"CONTENT_LENGTH": "100", "wsgi.input": io.BytesIO(b'{"type": "DELI')})
    assert _status(client, environ) == "400 BAD REQUEST"
    assert queued(r) == []
    text = client.get("/metrics").get_data(as_text=True)
    assert 'hookline_ingest_requests_total{code="400",source="kaleyra-rcs"}' in text


@pytest.mark.parametrize("declared,status", [
    ("1" + "0" * 5000, "413 REQUEST ENTITY TOO LARGE"),  # int() would refuse it: not a 500
    ("9" * 19, "413 REQUEST ENTITY TOO LARGE"),
    ("0" * 30 + "8", "202 ACCEPTED"),  # leading zeros: still 8
])
def test_odd_declared_lengths(ingest, declared, status):
    client, _, _ = ingest
    environ = create_environ("/callbacks/kaleyra-rcs", method="POST")
    environ.update({"CONTENT_LENGTH": declared, "wsgi.input": io.BytesIO(b'{"a": 1}')})
    assert _status(client, environ) == status


def test_a_declared_length_is_read_exactly(ingest):
    client, r, _ = ingest
    environ = create_environ("/callbacks/kaleyra-rcs", method="POST")
    stream = io.BytesIO(b'{"a": 1}' + b"NEXT REQUEST")
    environ.update({"CONTENT_LENGTH": "8", "wsgi.input": stream})
    assert _status(client, environ) == "202 ACCEPTED"
    assert [decode(raw).body for raw in r.lrange(inbox.INBOX, 0, -1)] == [b'{"a": 1}']
    assert stream.read() == b"NEXT REQUEST"  # not a byte past the body
