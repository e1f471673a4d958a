"""What tracing costs an ingest request: instructions per request (callgrind) with
tracing off, as production runs without OTEL_EXPORTER_OTLP_ENDPOINT, and on.

    python deploy/bench/tracing_cost.py [--requests 1000]

The same set-up as ingest_instructions.py (one process, WSGI calls with the Kaleyra
receipts, real Redis, Prometheus in multi-process mode; two runs of W and W + N
requests per mode, the difference over N). On, spans go through the SDK's
BatchSpanProcessor, as in production, to an exporter that drops them: the cost
measured is the request's (span, context in the envelope, processor queue), not the
OTLP encoding and the POST to a collector, which the processor's thread does apart
from requests (counted here too, since callgrind counts every thread).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from common import cli, require_valgrind

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# on-unsampled: on, with the sampler dropping every trace (OTEL_TRACES_SAMPLER=always_off):
# what sampling leaves of the cost.
MODES = ("off", "on", "on-unsampled")


def _child(mode: str, n: int) -> None:
    sys.path[:0] = [str(ROOT), str(HERE)]
    import ingest_instructions

    if mode == "on-unsampled":
        os.environ["OTEL_TRACES_SAMPLER"] = "always_off"
    if mode != "off":
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        from shared import tracing

        class Drop(SpanExporter):
            def export(self, spans):
                return SpanExportResult.SUCCESS

        tracing.configure("bench", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "unused"},
                          exporter=Drop(), batch=True)
    ingest_instructions._child("hookline", n)


def run(requests: int = 1000) -> dict[str, dict]:
    require_valgrind()
    import ingest_instructions

    return ingest_instructions.measure(MODES, requests, script=__file__)


def report(res: dict[str, dict]) -> list[str]:
    off, on = res["off"]["per_request"], res["on"]["per_request"]
    unsampled = res["on-unsampled"]["per_request"]
    return [
        f"ingest instructions per request (callgrind, {res['off']['requests']} requests): "
        f"tracing off {off:,.0f}, on {on:,.0f} (+{on - off:,.0f}, {on / off - 1:+.0%}), "
        f"on but not sampled {unsampled:,.0f} (+{unsampled - off:,.0f}, "
        f"{unsampled / off - 1:+.0%})",
    ]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], int(sys.argv[3]))
        return
    cli(run, report, requests=1000)


if __name__ == "__main__":
    main()
