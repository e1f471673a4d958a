"""Provider format modules: fixtures, edge cases and fuzzing. Pure unit tests, no database.

Fixture layout (shared with the ingest / integration tests):

- ``fixtures/<source>/<name>.json``: valid callbacks; ``fixtures/expected.json``
  maps each relative path to the normalised fields it must produce.
- ``fixtures/kaleyra-io/flat/<event with ':' as '_'>__<variant>.json``: flat
  Kaleyra.io bodies whose event comes from the URL; ``url_event()`` recovers it.
- ``fixtures/<source>/broken/<name>.txt``: sample text as published, which is
  not JSON (these must become dead letters).
"""

from __future__ import annotations

import copy
import json
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.model import (
    EVENT_TYPES,
    STATUS_EVENT_TYPE,
    Consent,
    ConsentScope,
    NormalisedEvent,
)
from shared.providers import SOURCES, ParseError, UnsupportedEvent, parse
from shared.providers.kaleyra_io import EVENTS as KALEYRA_IO_EVENTS
from tests.helpers import FIXTURES

EXPECTED: dict[str, dict[str, Any]] = json.loads((FIXTURES / "expected.json").read_text())
BROKEN = sorted(p.relative_to(FIXTURES).as_posix() for p in FIXTURES.glob("*/broken/*.txt"))
INBOUND_KEYS = {"text", "response", "location", "media", "carrier_id", "user"}


def url_event(rel: str) -> str | None:
    """The URL event of a flat kaleyra-io fixture, from its file name."""
    parts = rel.split("/")
    if parts[:2] == ["kaleyra-io", "flat"]:
        return Path(rel).stem.split("__")[0].replace("_", ":")
    return None


def load_fixture(rel: str) -> Any:
    return orjson.loads((FIXTURES / rel).read_bytes())


def parse_fixture(rel: str) -> list[NormalisedEvent]:
    return parse(rel.split("/")[0], url_event(rel), load_fixture(rel))


def parse_one(source: str, doc: Any, event: str | None = None) -> NormalisedEvent:
    events = parse(source, event, doc)
    assert len(events) == 1
    return events[0]


# --- every fixture ------------------------------------------------------------------------


def test_every_valid_fixture_has_an_expectation() -> None:
    on_disk = {
        p.relative_to(FIXTURES).as_posix()
        for p in FIXTURES.rglob("*.json")
        if p.name != "expected.json" and "broken" not in p.parts
    }
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_fixture_parses_to_expected(rel: str) -> None:
    want = EXPECTED[rel]
    assert url_event(rel) == want["url_event"]
    events = parse_fixture(rel)
    assert [e.type for e in events] == want["types"]
    event = events[0]
    got = {
        "source": event.source,
        "channel": event.channel,
        "status": event.status,
        "provider_status": event.provider_status,
        "message_id": event.message_id,
        "sender": event.sender,
        "msisdn": event.msisdn,
        "consent": event.consent.value if event.consent else None,
        "consent_scope": event.consent_scope.value,
        "dedupe_key": event.dedupe_key,
        "failure_reason": event.failure_reason,
        "failure_code": event.failure_code,
    }
    # Only failing fixtures that give a reason or code list them: null everywhere else.
    assert got == {k: want.get(k) for k in got}


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_fixture_events_are_well_formed(rel: str) -> None:
    for event in parse_fixture(rel):
        assert event.type in EVENT_TYPES
        assert event.occurred_at.utcoffset() == UTC.utcoffset(None)
        if event.status is not None:
            assert event.type == STATUS_EVENT_TYPE[event.status].value
        if event.type == "message.inbound":
            assert set(event.data) >= INBOUND_KEYS
            assert event.consent is None  # keywords are the apply layer's business
        orjson.dumps(event.to_dict())  # storable as JSON


def test_there_are_broken_fixtures() -> None:
    assert set(BROKEN) >= {
        "kaleyra-rcs/broken/mo_flat_user_message_stop.txt",
        "kaleyra-io/broken/sms_message_status.txt",
        "kaleyra-io/broken/voice_message_out.txt",
    }


@pytest.mark.parametrize("rel", BROKEN)
def test_broken_fixture_is_not_json(rel: str) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads((FIXTURES / rel).read_bytes())


# --- Kaleyra RCS MO -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "follow_up", "event_type", "consent", "text"),
    [
        ("unsubscribe", "user_message_stop", "subscription.opted_out", Consent.OPT_OUT, "STOP"),
        ("subscribe", "user_message_start", "subscription.opted_in", Consent.OPT_IN, "START"),
    ],
)
def test_rcs_envelope_followed_pairs(
    change: str, follow_up: str, event_type: str, consent: Consent, text: str
) -> None:
    (first,) = parse_fixture(f"kaleyra-rcs/mo_envelope_{change}.json")
    (second,) = parse_fixture(f"kaleyra-rcs/mo_envelope_{follow_up}.json")
    assert (first.type, first.consent) == (event_type, consent)
    assert (second.type, second.consent) == ("message.inbound", None)
    assert second.data["text"] == text
    assert first.sender == second.sender == "kio_rcs"
    assert first.dedupe_key != second.dedupe_key
    assert first.occurred_at < second.occurred_at
    assert first.data["carrier_id"] == second.data["carrier_id"] == "VZ"


@pytest.mark.parametrize(
    ("name", "kind", "mo_type", "postback"),
    [
        ("response_reply", "REPLY", "REPLY", "flight_offer"),
        ("response_dial", "ACTION", "DIAL", "postback_data_1234"),
        ("response_open_url", "ACTION", "OPEN_URL", "one_way_trip"),
        ("response_view_location", "ACTION", "VIEW_LOCATION", "View in Maps"),
        ("response_ask_location", "ACTION", "ASK_LOCATION", "Ask location"),
        ("response_calendar_event", "ACTION", "CREATE_CALENDAR_EVENT", "postback_data_1234"),
    ],
)
def test_rcs_suggestion_responses(name: str, kind: str, mo_type: str, postback: str) -> None:
    (event,) = parse_fixture(f"kaleyra-rcs/mo_envelope_{name}.json")
    response = event.data["response"]
    assert (response["type"], response["mo_type"], response["postback_data"]) == (
        kind, mo_type, postback,
    )
    assert response["text"]
    assert event.data["text"] is None


def test_rcs_location() -> None:
    (event,) = parse_fixture("kaleyra-rcs/mo_envelope_location.json")
    assert event.data["location"] == {"latitude": 28.658577, "longitude": 77.4736007}
    assert event.data["carrier_id"] == "ATT"


def test_rcs_flat_and_envelope_read_alike() -> None:
    flat = load_fixture("kaleyra-rcs/mo_flat_user_message_stop.json")
    wrapped = {"code": "4007", "message": "MO", "data": flat, "error": {}}
    a, b = parse_one("kaleyra-rcs", flat), parse_one("kaleyra-rcs", wrapped)
    assert (a.type, a.msisdn, a.sender, a.data["text"]) == (b.type, b.msisdn, b.sender, "STOP")
    assert b.data["code"] == "4007"


def test_rcs_receipts_still_go_to_the_receipt_module() -> None:
    event = parse_one("kaleyra-rcs", load_fixture("kaleyra-rcs/dr_error.json"))
    assert (event.type, event.status) == ("message.failed", "failed")


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.pop("from"), "from"),
        (lambda d: d.update(sentAt="yesterday"), "sentAt"),
        (lambda d: d.pop("userMessage"), "userMessage"),
        (lambda d: d["userMessage"].pop("text"), "text"),
        (lambda d: d.update(sentAt="9999-12-31T23:59:59-01:00"), "out of range"),
        (lambda d: d.update({"from": 10**5000}), "from"),
    ],
)
def test_rcs_schema_violations_are_readable(mutate: Any, needle: str) -> None:
    doc = load_fixture("kaleyra-rcs/mo_flat_user_message_stop.json")
    mutate(doc)
    with pytest.raises(ParseError) as err:
        parse("kaleyra-rcs", None, doc)
    assert needle in err.value.reason


def test_rcs_bad_location_is_a_parse_error() -> None:
    doc = load_fixture("kaleyra-rcs/mo_envelope_location.json")
    doc["data"]["userMessage"]["location"]["latitude"] = 123.0
    with pytest.raises(ParseError, match="latitude"):
        parse("kaleyra-rcs", None, doc)


# --- Comapi -------------------------------------------------------------------------------


def test_comapi_failed_keeps_reason_and_channel_details() -> None:
    (event,) = parse_fixture("comapi/message_failed__sms_rejected.json")
    assert event.data["reason"] == "Channel reported the message was undeliverable"
    assert event.data["details"]["sms"]["details"]["reason"] == "Rejected by operator"
    (email,) = parse_fixture("comapi/message_failed__email.json")
    assert email.data["reason"] == "Not delivering to unsubscribed address"


def test_comapi_occurred_at_prefers_the_event_time() -> None:
    (sent,) = parse_fixture("comapi/message_sent__sms.json")
    assert sent.occurred_at.isoformat() == "2017-08-31T09:26:14.799000+00:00"  # updatedOn
    (delivered,) = parse_fixture("comapi/message_delivered__sms.json")
    assert delivered.occurred_at.isoformat() == "2017-08-31T09:27:21+00:00"  # statustimeutc


def test_comapi_dedupes_on_event_id() -> None:
    doc = load_fixture("comapi/message_read__rcs.json")
    assert parse_one("comapi", doc).dedupe_key == f"e:{doc['eventId']}"
    del doc["eventId"]
    assert parse_one("comapi", doc).dedupe_key == f"m:{doc['payload']['id']}:message.read"


def test_comapi_inbound_media() -> None:
    (pdf,) = parse_fixture("comapi/message_inbound__rcs_pdf.json")
    assert pdf.data["text"] is None
    assert pdf.data["media"][0]["type"] == "application/pdf"
    assert pdf.data["media"][0]["filename"] == "ClaimsForm.pdf"
    (image,) = parse_fixture("comapi/message_inbound__fbmessenger_image.json")
    assert image.data["media"][0]["type"] == "image"


def test_comapi_receipt_without_message_id_is_a_parse_error() -> None:
    doc = load_fixture("comapi/message_sent__sms.json")
    del doc["payload"]["id"]
    with pytest.raises(ParseError, match=r"payload.*id"):
        parse("comapi", None, doc)


def test_comapi_clicks_never_dedupe_on_the_message() -> None:
    doc = load_fixture("comapi/interaction_click__modelled.json")
    del doc["eventId"]
    event = parse_one("comapi", doc)
    assert event.dedupe_key.startswith("h:")
    assert event.data["url"] == "https://example.com/offers/summer"


# --- Kaleyra.io ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ("DELIVRD", "delivered"),
        ("ACCEPTD", "sent"),
        ("ENROUTE", "sent"),
        ("SENT", "sent"),
        ("UNDELIV", "failed"),
        ("REJECTD", "failed"),
        ("FAILED", "failed"),
        ("EXPIRED", "expired"),
        ("DELETED", "deleted"),
        ("UNKNOWN", "unknown"),
        ("WHATEVER", "unknown"),
    ],
)
def test_sms_status_mapping(value: str, status: str) -> None:
    doc = load_fixture("kaleyra-io/flat/sms_message_status__delivrd.json")
    doc["status"] = value
    event = parse_one("kaleyra-io", doc, "sms:message:status")
    assert (event.status, event.type, event.provider_status) == (
        status, STATUS_EVENT_TYPE[status].value, value,
    )


def test_wrapped_status_placeholder_is_kept_raw() -> None:
    doc = load_fixture("kaleyra-io/whatsapp_message_status__read.json")
    doc["payload"]["status"] = "sent|delivered|read|failed|deleted"
    event = parse_one("kaleyra-io", doc)
    assert (event.status, event.type) == ("unknown", "message.unknown")
    assert event.provider_status == "sent|delivered|read|failed|deleted"


@pytest.mark.parametrize(
    ("rel", "scope", "sender", "category"),
    [
        ("kaleyra-io/flat/sms_unsubscription__sender.json", ConsentScope.SENDER, "Demo12", None),
        ("kaleyra-io/flat/whatsapp_unsubscription__category.json", ConsentScope.CATEGORY, None,
         "WUC"),
        ("kaleyra-io/flat/rcs_unsubscription__all.json", ConsentScope.ALL, "*", None),
        ("kaleyra-io/flat/voice_unsubscription__all.json", ConsentScope.ALL, "*", None),
    ],
)
def test_unsubscription_scopes(
    rel: str, scope: ConsentScope, sender: str | None, category: str | None
) -> None:
    (event,) = parse_fixture(rel)
    assert event.type == "subscription.opted_out"
    assert event.consent is Consent.OPT_OUT
    assert (event.consent_scope, event.sender, event.data.get("category")) == (
        scope, sender, category,
    )
    assert event.channel == url_event(rel).split(":")[0]
    assert event.msisdn == load_fixture(rel)["receiver"]


def test_unsubscription_all_without_value_still_means_every_sender() -> None:
    doc = load_fixture("kaleyra-io/flat/rcs_unsubscription__all.json")
    del doc["value"]
    event = parse_one("kaleyra-io", doc, "rcs:unsubscription")
    assert (event.consent_scope, event.sender) == (ConsentScope.ALL, "*")


def test_unsubscription_ids_are_qualified_by_event() -> None:
    doc = load_fixture("kaleyra-io/flat/rcs_unsubscription__all.json")
    rcs = parse_one("kaleyra-io", doc, "rcs:unsubscription")
    voice = parse_one("kaleyra-io", doc, "voice:unsubscription")
    assert rcs.dedupe_key != voice.dedupe_key


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"type": "sender", "value": ""}, ParseError),
        ({"type": "everyone"}, ParseError),
        ({"receiver": None}, ParseError),
        ({"status": "Unsubscriber deleted successfully"}, UnsupportedEvent),
    ],
)
def test_unsubscription_rejects(change: dict[str, Any], error: type[Exception]) -> None:
    doc = load_fixture("kaleyra-io/flat/sms_unsubscription__sender.json")
    doc.update(change)
    with pytest.raises(error):
        parse("kaleyra-io", "sms:unsubscription", doc)


@pytest.mark.parametrize("rel", [r for r in sorted(EXPECTED) if url_event(r)])
def test_flat_payload_without_url_event_says_so(rel: str) -> None:
    with pytest.raises(ParseError) as err:
        parse("kaleyra-io", None, load_fixture(rel))
    assert "/callbacks/kaleyra-io/<event>" in err.value.reason
    assert "URL" in err.value.reason


def test_kaleyra_io_events_read_alike_in_either_shape() -> None:
    wrapped = load_fixture("kaleyra-io/whatsapp_message_status__read.json")
    a = parse_one("kaleyra-io", wrapped, "whatsapp:message:status")
    b = parse_one("kaleyra-io", wrapped["payload"], "whatsapp:message:status")
    assert (a.type, a.message_id, a.msisdn, a.dedupe_key) == (
        b.type, b.message_id, b.msisdn, b.dedupe_key,
    )


def test_voice_numbers_are_taken_as_strings() -> None:
    doc = load_fixture("kaleyra-io/flat/voice_message_out__answer.json")
    assert isinstance(doc["from"], int)
    event = parse_one("kaleyra-io", doc, "voice:message:out")
    assert (event.sender, event.msisdn, event.data["bridge"]) == (
        "918919521234", "918867131234", "918068281234",
    )


def test_inbound_without_a_time_is_flagged_estimated() -> None:
    (event,) = parse_fixture("kaleyra-io/whatsapp_message_in__text.json")
    assert event.data["occurred_at_estimated"] is True
    assert event.data["user"]["username"] == "username"


def test_wrapped_inbound_media() -> None:
    (event,) = parse_fixture("kaleyra-io/rcs_message_in__image.json")
    assert event.data["media"] == [{
        "url": "https://domin-name.com/your_image_path.png",
        "type": "image",
        "caption": "some caption for image",
        "filename": None,
    }]


# --- unsupported --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "event", "doc"),
    [
        ("kaleyra-rcs", None, {"type": "BOGUS", "from": "1", "to": "a", "sentAt": "2025-01-01"}),
        ("kaleyra-rcs", None, {"code": "1", "data": {"type": "BOGUS"}, "error": {}}),
        ("kaleyra-rcs", None, {
            "type": "USER_MESSAGE", "from": "1", "to": "a", "sentAt": "2025-06-18T13:37:40Z",
            "messageId": "m", "userMessage": {"type": "FILE", "file": {}},
        }),
        ("comapi", None, {"eventId": "e", "name": "message.bogus", "payload": {}}),
        ("kaleyra-io", None, {"event": "bogus:event", "payload": {}}),
        ("kaleyra-io", "bogus", {"id": "1"}),
        ("kaleyra-io", None, {
            "event": "whatsapp:message:in",
            "payload": {
                "id": "m", "recipient": {"from": "91"},
                "message": {"type": "contacts", "payload": {}},
            },
        }),
        ("nowhere", None, {}),
    ],
)
def test_unknown_types_are_unsupported(source: str, event: str | None, doc: Any) -> None:
    with pytest.raises(UnsupportedEvent) as err:
        parse(source, event, doc)
    assert err.value.reason.startswith("unsupported")
    if source != "nowhere":
        assert err.value.reason.startswith("unsupported event type")


# --- fuzzing: nothing but ParseError may escape --------------------------------------------

KNOWN_KEYS = sorted({
    "type", "event", "payload", "name", "code", "data", "error", "from", "to", "sentAt",
    "messageId", "eventId", "userMessage", "text", "response", "location", "status", "id",
    "receiver", "value", "details", "channelStatus", "channel", "channelData", "updatedOn",
    "timestamp", "message", "recipient", "channels", "mobile", "mid", "identity",
})
URL_EVENTS: list[str | None] = [None, *sorted(KALEYRA_IO_EVENTS), "bogus"]
SOURCE_LIST = sorted(SOURCES)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, 2**64 + 1, -(2**70), 10**30])
    # Beyond str()'s 4300-digit limit; built lazily because the strategy's repr prints it.
    | st.integers(4301, 4400).map(lambda digits: 10**digits)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from([
        "", "2025-06-18T13:37:40.631Z", "9999-12-31T23:59:59-01:00", "2021-04-09 16:27:51",
        "USER_MESSAGE", "SUBSCRIBE", "TEXT", "RESPONSE", "LOCATION", "message.failed",
        "sms:message:status", "whatsapp:message:in", "all", "sender", "category", "DELIVRD",
    ])
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_only_parse_errors(source: str, event: str | None, doc: Any) -> None:
    try:
        result = parse(source, event, doc)
    except ParseError as exc:
        assert isinstance(exc.reason, str)
        assert exc.reason
        return
    assert isinstance(result, list)
    for item in result:
        assert isinstance(item, NormalisedEvent)
        assert item.type in EVENT_TYPES
        assert item.occurred_at.tzinfo is not None


@FUZZ
@given(doc=json_values, source=st.sampled_from(SOURCE_LIST), event=st.sampled_from(URL_EVENTS))
def test_fuzz_arbitrary_json(doc: Any, source: str, event: str | None) -> None:
    assert_only_parse_errors(source, event, doc)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a member of a dict or list inside ``value``."""
    children: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    out: list[tuple[Any, ...]] = []
    for key, child in children:
        out.append((*prefix, key))
        out += _paths(child, (*prefix, key))
    return out


def _mutate(doc: Any, path: tuple[Any, ...], drop: bool, replacement: Any) -> Any:
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return doc


NASTY: list[Any] = [
    None, True, 0, -1, 2**64, 10**4301, 1e308, float("nan"), "", "x",
    "9999-12-31T23:59:59-01:00", [], [None], {}, {"x": None},
]


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_every_single_point_mutation_only_raises_parse_errors(rel: str) -> None:
    """Deterministic companion to the fuzz: each member dropped, or replaced by each NASTY."""
    doc = load_fixture(rel)
    source = rel.split("/")[0]
    for path in _paths(doc):
        variants = [_mutate(doc, path, True, None)]
        variants += [_mutate(doc, path, False, value) for value in NASTY]
        for variant in variants:
            for event in {url_event(rel), None, "bogus"}:
                assert_only_parse_errors(source, event, variant)


@st.composite
def mutated_fixtures(draw: st.DrawFn) -> tuple[str, str | None, Any]:
    """A valid fixture with one to three members dropped or replaced by random JSON."""
    rel = draw(st.sampled_from(sorted(EXPECTED)))
    doc = load_fixture(rel)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)  # again: the last mutation may have reshaped the document
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        doc = _mutate(doc, path, draw(st.booleans()), draw(json_values))
    event = draw(st.sampled_from([url_event(rel), *URL_EVENTS]))
    return rel.split("/")[0], event, doc


@FUZZ
@given(case=mutated_fixtures())
def test_fuzz_mutated_fixtures(case: tuple[str, str | None, Any]) -> None:
    source, event, doc = case
    assert_only_parse_errors(source, event, doc)


@FUZZ
@given(case=mutated_fixtures(), other=st.sampled_from(SOURCE_LIST))
def test_fuzz_fixtures_on_the_wrong_source(case: tuple[str, str | None, Any], other: str) -> None:
    _, event, doc = case
    assert_only_parse_errors(other, event, doc)
