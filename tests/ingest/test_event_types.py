"""GET /v1/event-types and the document's webhooks: each schema accepts the payloads the
real pipeline builds from the provider fixtures, and refuses a wrong one."""

from __future__ import annotations

import jsonschema
import pytest

from ingest.app import create_app
from shared.model import EVENT_TYPES
from tests.consent_support import EXPECTED, FIXTURES
from tests.helpers import drain_all, enqueue

AUTH = {"Authorization": "Bearer test-api-token"}


@pytest.fixture
def client(frt):
    app = create_app(rt=frt, send_drain=lambda: None)
    return app.test_client()


def _catalogue(client) -> dict[str, dict]:
    resp = client.get("/v1/event-types", headers=AUTH)
    assert resp.status_code == 200, resp.get_json()
    return {item["type"]: item["schema"] for item in resp.get_json()["items"]}


def _real_payloads(client, rt) -> list[dict]:
    """Every fixture callback through the real drain to an endpoint subscribed to all;
    the bodies of the deliveries the outbox holds, as the API shows them."""
    created = client.post("/v1/endpoints", json={"url": "http://127.0.0.1:9/hook",
                                                 "event_types": ["*"]}, headers=AUTH)
    assert created.status_code == 201, created.get_json()
    for rel, exp in EXPECTED.items():
        enqueue(rt, (FIXTURES / rel).read_bytes(), source=exp["source"], event=exp["url_event"])
    drain_all(rt)
    url, payloads = f"/v1/endpoints/{created.get_json()['id']}/deliveries?limit=500", []
    while url:
        page = client.get(url, headers=AUTH).get_json()
        for d in page["items"]:
            payloads.append(client.get(f"/v1/deliveries/{d['id']}", headers=AUTH)
                            .get_json()["payload"])
        nxt = page["next_after"]
        url = nxt and f"/v1/endpoints/{created.get_json()['id']}/deliveries?limit=500&after={nxt}"
    return payloads


def test_the_catalogue_lists_every_event_type_with_a_valid_json_schema(client):
    catalogue = _catalogue(client)
    assert set(catalogue) == EVENT_TYPES
    for schema in catalogue.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_document_describes_every_webhook_with_the_same_schema(client):
    doc = client.get("/v1/openapi.json").get_json()
    webhooks = doc["webhooks"]
    catalogue = _catalogue(client)
    assert set(webhooks) == EVENT_TYPES
    for name, hook in webhooks.items():
        body = hook["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == catalogue[name]


def test_real_payloads_of_every_type_validate_against_their_schema(client, frt):
    catalogue = _catalogue(client)
    payloads = _real_payloads(client, frt)
    seen = {p["type"] for p in payloads}
    # Every type the fixtures' expectations name is produced, so each schema is checked
    # against at least one real body.
    assert seen == {t for exp in EXPECTED.values() for t in exp["types"]} == EVENT_TYPES
    for payload in payloads:
        jsonschema.validate(payload, catalogue[payload["type"]],
                            cls=jsonschema.Draft202012Validator,
                            format_checker=jsonschema.FormatChecker())


def test_a_schema_refuses_a_payload_of_another_type(client, frt):
    catalogue = _catalogue(client)
    delivered = next(p for p in _real_payloads(client, frt) if p["type"] == "message.delivered")
    relabelled = {**delivered, "type": "message.read"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(relabelled, catalogue["message.read"])
    missing = {**delivered, "data": {k: v for k, v in delivered["data"].items()
                                     if k != "event_id"}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(missing, catalogue["message.delivered"])
