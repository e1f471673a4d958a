"""The /v1 contract: every error is RFC 9457 problem details naming the bad inputs, and
nothing PostgreSQL cannot store gets past the request's validation."""

from __future__ import annotations

import pytest

from ingest import endpoints_api
from ingest.app import create_app
from ingest.problems import MEDIA_TYPE, Invalid

AUTH = {"Authorization": "Bearer test-api-token"}
PROBLEM_KEYS = {"type", "title", "status", "detail", "errors"}


@pytest.fixture
def app(frt):
    return create_app(rt=frt, send_drain=lambda: None)


@pytest.fixture
def client(app):
    return app.test_client()


def problem(resp, status: int) -> dict:
    doc = resp.get_json(force=True)
    assert resp.status_code == status, doc
    assert resp.mimetype == MEDIA_TYPE, resp.headers
    assert set(doc) >= PROBLEM_KEYS, doc
    assert doc["status"] == status and doc["type"].startswith("urn:hookline:problem:")
    return doc


def names(doc: dict) -> set[tuple[str, str]]:
    return {(e["in"], e["name"]) for e in doc["errors"]}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_auth_failures_are_problems(client, headers):
    doc = problem(client.get("/v1/event-types", headers=headers), 401)
    assert doc["type"] == "urn:hookline:problem:unauthorized"


def test_an_auth_failure_comes_before_validation(client):
    # A caller without the token learns nothing about which inputs are wrong.
    problem(client.get("/v1/events?limit=ten"), 401)


def test_not_found_method_not_allowed_and_conflict_are_problems(client, frt):
    assert problem(client.get("/v1/endpoints/ep_nope", headers=AUTH), 404)["errors"] == []
    problem(client.get("/v1/nowhere", headers=AUTH), 404)
    resp = client.put("/v1/event-types", headers=AUTH)
    problem(resp, 405)
    assert "GET" in resp.headers["Allow"]


def test_an_unhandled_error_is_a_500_problem_that_leaks_nothing(app):
    def boom():
        raise RuntimeError("secret internals")

    app.add_url_rule("/v1/boom", "boom", boom)
    doc = problem(app.test_client().get("/v1/boom", headers=AUTH), 500)
    assert "secret" not in str(doc)


def test_a_bad_body_names_every_bad_field(client):
    resp = client.post("/v1/endpoints", headers=AUTH, json={
        "url": "ftp://x", "event_types": ["message.nope"], "colour": "red", "ordered": 1})
    assert names(problem(resp, 400)) == {("body", "url"), ("body", "event_types.0"),
                                         ("body", "colour"), ("body", "ordered")}


def test_a_body_that_is_not_an_object_is_a_problem(client):
    for data in ("[1]", "nope", ""):
        resp = client.post("/v1/endpoints", headers={**AUTH, "Content-Type": "application/json"},
                           data=data)
        assert names(problem(resp, 400)) == {("body", "")}


@pytest.mark.parametrize("url,where", [
    ("/v1/endpoints?after=ep_%00", ("query", "after")),
    ("/v1/events?source=a%00b", ("query", "source")),
    ("/v1/messages/m%00", ("path", "message_id")),
    ("/v1/subscriptions/rcs/a%00/1", ("path", "sender")),
    ("/v1/deliveries/d%00", ("path", "delivery_id")),
    ("/v1/dead-letters/99999999999999999999/replay", ("path", "letter_id")),
])
def test_input_postgresql_cannot_store_is_a_400_before_any_query(client, url, where):
    method = client.post if url.endswith("/replay") else client.get
    assert names(problem(method(url, headers=AUTH), 400)) == {where}


@pytest.mark.parametrize("raw", [
    b'{"url": "http://127.0.0.1:9/x", "event_types": ["*"], "description": "a\\u0000b"}',
    b'{"url": "http://127.0.0.1:9/x", "event_types": ["*"], "description": "a\\ud800b"}',
    b'{"url": "http://127.0.0.1:9/x", "event_types": ["*"], "filter": {"source": ["\\u0000"]}}',
])
def test_a_nul_or_lone_surrogate_in_a_body_is_a_400(client, raw):
    resp = client.post("/v1/endpoints", data=raw,
                       headers={**AUTH, "Content-Type": "application/json"})
    problem(resp, 400)
    assert client.get("/v1/endpoints", headers=AUTH).get_json()["items"] == []


def test_delete_answers_204_without_a_body_and_the_document_says_so(client):
    ep = client.post("/v1/endpoints", headers=AUTH, json={
        "url": "http://127.0.0.1:9/x", "event_types": ["*"]}).get_json()
    resp = client.delete(f"/v1/endpoints/{ep['id']}", headers=AUTH)
    assert resp.status_code == 204 and resp.data == b""
    op = client.get("/v1/openapi.json").get_json()["paths"]["/v1/endpoints/{endpoint_id}"]
    assert "content" not in op["delete"]["responses"]["204"]


def test_every_error_the_document_lists_is_a_problem_and_every_input_is_described(client):
    doc = client.get("/v1/openapi.json").get_json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert "Not described" not in op.get("description", ""), (method, path)
            for code, answer in op["responses"].items():
                if int(code) >= 400:
                    assert list(answer["content"]) == [MEDIA_TYPE], (method, path, code)
            if path != "/v1/openapi.json":
                assert "401" in op["responses"], (method, path)


def test_the_consent_routes_describe_their_parameters_and_answers(client):
    paths = client.get("/v1/openapi.json").get_json()["paths"]
    listed = {p["name"] for p in paths["/v1/subscriptions"]["get"]["parameters"]}
    assert {"channel", "sender", "msisdn", "status", "limit", "after"} <= listed
    answer = paths["/v1/subscriptions/{channel}/{sender}/{msisdn}"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"] != {"type": "object"}


def test_every_list_pages_with_after_and_next_after(client):
    paths = client.get("/v1/openapi.json").get_json()["paths"]
    lists = [p for p, ops in paths.items() if "get" in ops and any(
        q["name"] == "limit" for q in ops["get"].get("parameters", []))]
    assert len(lists) == 7, lists  # with /v1/tenants
    for path in lists:
        params = {q["name"] for q in paths[path]["get"]["parameters"]}
        assert "after" in params and "before" not in params, path


def test_the_console_creates_through_the_same_schema(app):
    # The console calls endpoints_api.create with its form as the body: the same rules.
    with app.test_request_context(), pytest.raises(Invalid) as refused:
        endpoints_api.create({"url": "http://127.0.0.1:9/x", "event_types": ["*"],
                              "description": "a\x00b"})
    assert refused.value.errors == [{"in": "body", "name": "description",
                                     "detail": refused.value.errors[0]["detail"]}]
    with app.test_request_context(), pytest.raises(Invalid) as refused:
        endpoints_api.create({"url": "http://127.0.0.1:9/x", "event_types": ["nope"]})
    assert "event_types" in refused.value.description
