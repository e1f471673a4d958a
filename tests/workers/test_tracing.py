"""One callback's trace, end to end against real Redis and PostgreSQL: ingest's span,
its context in the envelope, the drain's batch span linking to it, the delivery
attempt as the batch's child, and the webhook's traceparent (shared.tracing)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared import inbox, tracing
from shared.envelope import decode
from tests.fanout.fanout_helpers import client_for, create_endpoint, deliver
from tests.helpers import drain_all, receipt

# A proxy in front of ingest that traces: the callback span is its child.
PROXY_TRACE = "0af7651916cd43dd8460a0b67b4c4a3c"
PROXY_PARENT = f"00-{PROXY_TRACE}-b7ad6b7169203331-01"


@pytest.fixture
def spans():
    with tracing.in_memory() as exporter:
        yield exporter


def by_name(exporter, name: str) -> list:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def ids(traceparent: str) -> tuple[int, int]:
    """(trace id, span id) of a traceparent (its flags aside)."""
    _, trace_id, span_id, _ = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)


def span_ids(span) -> tuple[int, int]:
    return span.context.trace_id, span.context.span_id


def post(api, body: bytes, **headers: str):
    resp = api.post("/callbacks/kaleyra-rcs", data=body, headers=headers)
    assert resp.status_code == 202, resp.get_data()
    return resp


def test_a_callback_traced_from_its_post_to_the_webhook(spans, frt, receiver):
    api = client_for(frt)
    create_endpoint(api, receiver.url())
    post(api, receipt("SENT", message_id="m-1"), traceparent=PROXY_PARENT)
    post(api, receipt("SENT", message_id="m-2"))
    callbacks = by_name(spans, "callback")
    assert len(callbacks) == 2
    first = next(s for s in callbacks if s.parent is not None)
    assert first.parent.span_id == int(PROXY_PARENT.split("-")[2], 16)
    assert first.context.trace_id == int(PROXY_TRACE, 16)
    assert first.attributes["http.response.status_code"] == 202

    # The span's context travels in the envelope, beside the raw body.
    stored = {ids(decode(raw).trace) for raw in frt.redis.lrange(inbox.INBOX, 0, -1)}
    assert stored == {span_ids(s) for s in callbacks}

    drain_all(frt)
    (batch,) = by_name(spans, "drain.batch")
    assert batch.parent is None  # a trace of its own ...
    linked = {(link.context.trace_id, link.context.span_id) for link in batch.links}
    assert linked == {span_ids(s) for s in callbacks}  # ... linked to each callback

    deliver(frt, until=lambda: len(receiver.requests()) >= 2)
    deliver(frt)
    attempts = by_name(spans, "webhook.deliver")
    assert len(attempts) == 2
    for span in attempts:
        assert span.parent.span_id == batch.context.span_id
        assert span.context.trace_id == batch.context.trace_id
        assert span.attributes["http.response.status_code"] == 200
    sent = {ids(r.headers["traceparent"]) for r in receiver.requests()}
    assert sent == {span_ids(s) for s in attempts}


def test_a_failed_attempt_is_an_error_span(spans, frt, receiver):
    from tests.receiver import Reply

    receiver.default("/hook", Reply(status=500))
    api = client_for(frt)
    create_endpoint(api, receiver.url())
    post(api, receipt("SENT"))
    drain_all(frt)
    deliver(frt, until=lambda: by_name(spans, "webhook.deliver"))
    span = by_name(spans, "webhook.deliver")[0]
    assert span.attributes["http.response.status_code"] == 500
    assert span.status.status_code.name == "ERROR"


def test_off_nothing_is_traced_or_stored(frt, receiver):
    assert not tracing.enabled()
    api = client_for(frt)
    create_endpoint(api, receiver.url())
    post(api, receipt("SENT"), traceparent=PROXY_PARENT)
    assert decode(frt.redis.lindex(inbox.INBOX, 0)).trace is None
    drain_all(frt)
    with frt.pool.connection() as conn:
        assert conn.execute("SELECT traceparent FROM deliveries").fetchall() == [(None,)]
    deliver(frt, until=lambda: receiver.requests())
    assert "traceparent" not in receiver.requests()[0].headers


def test_off_imports_no_tracing_sdk():
    """Off costs no import: the ingest app, the drain and the sender load without the
    trace SDK or the exporter. (redis-py itself imports OpenTelemetry's API and metrics
    SDK whenever they are installed, tracing or not: the otel extra's cost at start.)"""
    code = (
        "import sys\n"
        "import hookline.app, workers.pipeline, workers.fanout, workers.hooks\n"
        "from shared import tracing\n"
        "assert not tracing.configure('x', env={})\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(\n"
        "    ('opentelemetry.sdk.trace', 'opentelemetry.exporter')))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": "."})


def test_on_without_the_packages_is_a_clear_error(monkeypatch):
    from shared.config import ConfigError

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigError, match=r"hookline\[otel\]"):
        tracing.configure("x", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not tracing.enabled()


def test_an_envelope_without_a_trace_is_byte_for_byte_as_before():
    from shared.envelope import Envelope

    env = Envelope(id="i", source="s", event=None, received_at=1.0, body=b"{}")
    assert b'"tp"' not in env.encode()
    env.trace = PROXY_PARENT
    assert decode(env.encode()).trace == PROXY_PARENT
