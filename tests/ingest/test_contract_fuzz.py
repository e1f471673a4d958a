"""An outside client: schemathesis reads /v1/openapi.json from a real ingest process and
sends what the document allows (and what it does not); no answer is a 5xx or
contradicts the document (status, content type, body schema, headers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.procs import free_port, hookline, ingest_args, stop, wait_http

AUTH = {"Authorization": "Bearer test-api-token"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
# Bounded: every operation, both modes, in about a minute on two shared cores.
EXAMPLES = 20


@pytest.fixture(scope="module")
def server(base_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[str]:
    port = free_port()
    env = {**base_env, "HOOKLINE_ALLOW_PRIVATE_ENDPOINTS": "true", "HOOKLINE_CONSOLE": "0"}
    log = Path(tmp_path_factory.mktemp("contract")) / "ingest.log"
    proc = hookline(ingest_args(port, 1), env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/healthz")
        # Something in the lists, so their items are checked against the document too.
        httpx.post(f"{base}/v1/endpoints", headers=AUTH, timeout=10,
                   json={"url": "http://127.0.0.1:9/hook", "event_types": ["*"]})
        yield base
    finally:
        stop(proc)
        if proc.returncode not in (0, -15):
            print(log.read_text())


def _operations(base: str) -> list:
    schema = schemathesis.openapi.from_url(f"{base}/v1/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_answer_contradicts_the_document(server, mode):
    operations = _operations(server)
    assert len(operations) >= 18
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            case.call_and_validate(base_url=server, headers=AUTH, checks=CHECKS, timeout=10)

        run()
