"""GET /v1/openapi.json: complete (every /v1 route), well formed, served without the token,
and true to what the routes answer."""

from __future__ import annotations

import re

import pytest
from flask import Blueprint

from ingest import openapi
from ingest.app import create_app
from tests.helpers import drain_all, enqueue, receipt

AUTH = {"Authorization": "Bearer test-api-token"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture
def app(rt):
    return create_app(rt=rt, send_drain=lambda: None)


@pytest.fixture
def doc(app) -> dict:
    resp = app.test_client().get("/v1/openapi.json")  # no token: public on purpose
    assert resp.status_code == 200
    return resp.get_json()


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_v1_rule_is_in_the_document(app, doc):
    rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/v1/")]
    assert len(rules) >= 4
    for rule in rules:
        path = _openapi_path(rule.rule)
        assert path in doc["paths"], rule.rule
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], (rule.rule, method)
    assert openapi.unmatched(app) == []  # no registration names a route that does not exist


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def test_the_document_is_well_formed(doc):
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["title"] == "hookline" and doc["info"]["version"]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    operation_ids = []
    for path, operations in doc["paths"].items():
        assert path.startswith("/v1/")
        variables = set(re.findall(r"{(\w+)}", path))
        for method, op in operations.items():
            assert method in HTTP_METHODS
            assert op["summary"] and op["responses"]
            operation_ids.append(op["operationId"])
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == variables, (path, method)
            for code, response in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", code) and response["description"]
    assert len(operation_ids) == len(set(operation_ids))
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas


def test_protected_routes_say_so_and_the_document_does_not(doc):
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/v1/openapi.json"]["get"]["security"] == []
    message = doc["paths"]["/v1/messages/{message_id}"]["get"]
    assert "401" in message["responses"] and "security" not in message


def test_the_schemas_match_what_the_routes_answer(app, rt, doc):
    client = app.test_client()
    enqueue(rt, receipt("SENT", message_id="doc-1"))
    enqueue(rt, b"{nope")
    drain_all(rt)
    message = client.get("/v1/messages/doc-1", headers=AUTH).get_json()
    page = client.get("/v1/dead-letters", headers=AUTH).get_json()
    replayed = client.post(f"/v1/dead-letters/{page['items'][0]['id']}/replay",
                           headers=AUTH).get_json()
    for schema, body in ((openapi.MessageSchema, message),
                         (openapi.DeadLetterPageSchema, page),
                         (openapi.ReplayAcceptedSchema, replayed)):
        assert schema().validate(body) == {}, (schema, body)
        assert set(body) == set(schema().fields), schema
    assert set(page["items"][0]) == set(openapi.DeadLetterSchema().fields)
    documented = doc["components"]["schemas"]["Message"]["properties"]
    assert set(documented) == set(message)


def test_another_blueprint_registers_with_one_call(rt):
    bp = Blueprint("extra", __name__, url_prefix="/v1")

    @bp.get("/widgets/<int:widget_id>")
    def widget(widget_id: int):
        """One widget."""
        return {"id": widget_id}

    @bp.delete("/widgets/<int:widget_id>")
    def drop_widget(widget_id: int):
        """Remove a widget."""
        return "", 204

    app = create_app(rt=rt, send_drain=lambda: None)
    app.register_blueprint(bp)
    openapi.register("GET", "/v1/widgets/<int:widget_id>", "A widget",
                     response=openapi.ReplayAcceptedSchema, errors=(404,))
    try:
        doc = app.test_client().get("/v1/openapi.json").get_json()
    finally:
        openapi._OPERATIONS.pop(("GET", "/v1/widgets/<int:widget_id>"))
    ops = doc["paths"]["/v1/widgets/{widget_id}"]
    assert ops["get"]["summary"] == "A widget" and "404" in ops["get"]["responses"]
    assert ops["get"]["parameters"][0]["schema"] == {"type": "integer"}
    # Not registered, still listed, from its docstring.
    assert ops["delete"]["summary"] == "Remove a widget."
