"""OpenTelemetry traces: on when OTEL_EXPORTER_OTLP_ENDPOINT is set, else off and free.

One callback's trace: ingest's ``callback`` span (a child of the request's own
``traceparent``, if any) goes into the envelope in Redis beside the raw body. The
drain's ``drain.batch`` span starts a trace of its own and *links* to each
callback's span (a batch has many parents; OpenTelemetry's messaging conventions
link them). The batch's ``traceparent`` is stored with each delivery it writes, so
each ``webhook.deliver`` span is the batch span's child, and the webhook carries
that span's ``traceparent`` to the customer.

Off (the default) OpenTelemetry is never imported: the API alone takes 30 ms to
import and the SDK with the OTLP exporter 110 ms, and each hook below costs one
test of a module global (docs/benchmarks.md). That is the measured reason for
the imports inside ``configure``: the packages are the ``otel`` extra.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from shared.config import MAX_BATCH_SIZE, ConfigError

log = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
TRACEPARENT = "traceparent"

R = TypeVar("R")

# The tracer and the W3C propagator once configure() turned tracing on; None when off.
_tracer: Any = None
_propagator: Any = None
_provider: Any = None
_api: Any = None  # opentelemetry.trace, once on
_OFF: contextlib.nullcontext = contextlib.nullcontext()
_NO_HEADERS: dict[str, str] = {}


def enabled() -> bool:
    return _tracer is not None


def configure(service: str, env: Mapping[str, str] | None = None,
              exporter: Any = None, batch: bool = False) -> bool:
    """Turn tracing on for this process when ``env`` names an OTLP endpoint (or a test
    passes its ``exporter``, which gets each span as it ends unless ``batch``, as the
    OTLP exporter does); once per process. True when on."""
    global _tracer, _propagator, _provider, _api
    if _tracer is not None:
        return True
    env = os.environ if env is None else env
    if exporter is None and not any(env.get(v, "").strip() for v in ENDPOINT_VARIABLES):
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanLimits, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import (
            TraceContextTextMapPropagator,
        )
    except ImportError as exc:
        raise ConfigError("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not "
                          f"installed ({exc}): pip install 'hookline[otel]'") from None
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter, batch = OTLPSpanExporter(), True
    processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    # A batch span links to every callback of its lease (128 by default).
    provider = TracerProvider(
        resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or service}),
        span_limits=SpanLimits(max_links=MAX_BATCH_SIZE))
    provider.add_span_processor(processor)
    _provider, _propagator, _api = provider, TraceContextTextMapPropagator(), trace
    _tracer = provider.get_tracer("hookline")
    log.info("tracing on: spans go to %s", env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "a test",
             extra={"service": service})
    return True


def shutdown() -> None:
    """Flush what is still buffered and turn tracing off (tests; a process's exit)."""
    global _tracer, _propagator, _provider, _api
    if _provider is not None:
        _provider.shutdown()
    _tracer = _propagator = _provider = _api = None


def _context(traceparent: str | None) -> Any:
    return _propagator.extract({TRACEPARENT: traceparent}) if traceparent else None


def _span_context(traceparent: str) -> Any:
    return _api.get_current_span(_context(traceparent)).get_span_context()


def _traceparent(ctx: Any) -> str:
    # What the W3C propagator's inject writes, without its carrier and context lookups.
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def current_traceparent() -> str | None:
    """The current span's ``traceparent``; None when tracing is off or no span is open."""
    if _tracer is None:
        return None
    ctx = _api.get_current_span().get_span_context()
    return _traceparent(ctx) if ctx.is_valid else None


def around_callback(source: str, environ: Mapping[str, Any],
                    call: Callable[[str | None], R], status: Callable[[R], int]) -> R:
    """``call(traceparent)`` inside the callback's span; ``status(result)`` is its HTTP
    status. The request's own ``traceparent`` header (a proxy's), if any, is the parent.
    The span is not made the current one: nothing below it on the hot path opens one."""
    incoming = environ.get("HTTP_TRACEPARENT")
    span = _tracer.start_span("callback", context=_context(incoming) if incoming else None,
                              kind=_api.SpanKind.SERVER,
                              attributes={"hookline.source": source})
    try:
        result = call(_traceparent(span.get_span_context()))
        code = status(result)
        span.set_attribute("http.response.status_code", code)
        if code >= 500:
            span.set_status(_api.StatusCode.ERROR)
        return result
    finally:
        span.end()


def batch_span(size: int) -> contextlib.AbstractContextManager[Any]:
    """The drain's span for one leased batch (a new trace; see link_callbacks)."""
    if _tracer is None:
        return _OFF
    return _tracer.start_as_current_span("drain.batch", kind=_api.SpanKind.CONSUMER,
                                         attributes={"hookline.batch.size": size})


def link_callbacks(span: Any, traceparents: Iterable[str | None]) -> None:
    """Link the batch span to the span of each callback it holds."""
    if span is None:
        return
    for tp in traceparents:
        if tp:
            span.add_link(_span_context(tp))


def delivery_span(traceparent: str | None, delivery_id: str, endpoint_id: str
                  ) -> contextlib.AbstractContextManager[Any]:
    """One delivery attempt, a child of the batch that wrote the delivery."""
    if _tracer is None:
        return _OFF
    return _tracer.start_as_current_span(
        "webhook.deliver", context=_context(traceparent), kind=_api.SpanKind.CLIENT,
        attributes={"hookline.delivery_id": delivery_id, "hookline.endpoint_id": endpoint_id})


def delivery_result(span: Any, status_code: int, error: str | None) -> None:
    if span is None:
        return
    if status_code:
        span.set_attribute("http.response.status_code", status_code)
    if error:
        span.set_status(_api.StatusCode.ERROR, error)


def headers() -> dict[str, str]:
    """``traceparent`` of the current span, for an outgoing request; empty when off."""
    if _tracer is None:
        return _NO_HEADERS
    tp = current_traceparent()
    return {TRACEPARENT: tp} if tp else _NO_HEADERS


@contextlib.contextmanager
def in_memory(service: str = "hookline-test") -> Iterator[Any]:
    """Tracing on into the SDK's in-memory exporter for the block (tests, benchmarks)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    shutdown()
    configure(service, exporter=exporter)
    try:
        yield exporter
    finally:
        shutdown()
