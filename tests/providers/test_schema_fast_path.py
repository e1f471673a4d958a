"""BaseSchema's field loop (shared.providers.base) against marshmallow's own, on every
provider schema: the same result, or the same errors and valid data, for every seed
fixture, every object inside one, and generated objects made of the schemas' own
keys with arbitrary JSON values."""

from __future__ import annotations

import functools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError

from shared import providers
from shared.providers.base import BaseSchema
from tests.helpers import FIXTURES

SCHEMAS = providers.schemas()


def _outcome(schema: Schema, doc: Any) -> tuple[str, Any, Any]:
    try:
        return "ok", schema.load(doc), None
    except ValidationError as exc:
        return "error", exc.messages, exc.valid_data


def _both(schema: BaseSchema, doc: Any) -> tuple[tuple, tuple]:
    """The fast path, then marshmallow's own: its loop and its per-value And() of
    each field's validators (prebuild_validation's shortcut taken away)."""
    fast = _outcome(schema, doc)
    plan, schema._plan = schema._plan, None
    fields = [f for f in schema.load_fields.values() if "_validate" in f.__dict__]
    prebuilt = [f.__dict__.pop("_validate") for f in fields]
    try:
        slow = _outcome(schema, doc)
    finally:
        schema._plan = plan
        for f, validate in zip(fields, prebuilt, strict=True):
            f._validate = validate
    return fast, slow


def _objects(doc: Any) -> list[dict]:
    if isinstance(doc, dict):
        return [doc] + [o for v in doc.values() for o in _objects(v)]
    if isinstance(doc, list):
        return [o for v in doc for o in _objects(v)]
    return []


@functools.cache
def _fixture_objects() -> list[dict]:
    out: list[dict] = []
    for path in sorted(FIXTURES.rglob("*.json")):
        try:
            out += _objects(orjson.loads(path.read_bytes()))
        except orjson.JSONDecodeError:
            continue  # the seeds' broken samples: they never reach a schema
    return out


def test_every_provider_schema_takes_the_fast_path():
    assert len(SCHEMAS) >= 10
    assert all(s._plan is not None for s in SCHEMAS)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: type(s).__name__)
def test_fixture_objects_load_the_same(schema):
    objects = _fixture_objects()
    assert len(objects) > 100
    for doc in objects:
        fast, slow = _both(schema, doc)
        assert fast == slow, doc


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(["2024-03-01T10:00:00Z", "1709287200", "", "SENT", "READ", "sms"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)


@st.composite
def _schema_and_doc(draw):
    schema = draw(st.sampled_from(SCHEMAS))
    keys = [name for _, name, *_ in schema._plan] + ["unknown"]
    doc = draw(st.dictionaries(st.sampled_from(keys), _json, max_size=len(keys)))
    return schema, doc


@settings(max_examples=400, deadline=None)
@given(_schema_and_doc())
def test_generated_objects_load_the_same(case):
    schema, doc = case
    fast, slow = _both(schema, doc)
    assert fast == slow
