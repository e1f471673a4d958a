"""Console pages and actions against real PostgreSQL and Redis: each page renders with
data, each action goes through the /v1 rules, and what a payload carries is escaped."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import orjson
import pytest

from shared import inbox
from shared.model import Consent, ConsentScope
from tests.consent_support import FIXTURES, apply, consent_event
from tests.console.console_support import client_for, post, sign_in
from tests.fanout.fanout_helpers import apply_receipts, deliver, delivery_rows
from tests.helpers import drain_all, enqueue, receipt
from tests.receiver import Reply

XSS = "<script>alert('x')</script>"
DR = "kaleyra-rcs/dr_error.json"


@pytest.fixture
def console(frt):
    return sign_in(client_for(frt))


def html(resp) -> str:
    assert resp.status_code == 200, resp.get_data(as_text=True)[:2000]
    return resp.get_data(as_text=True)


def create(console, receiver_url: str, **fields: object) -> str:
    """Create an endpoint through the console form; its id (from the secret page)."""
    form = {"url": receiver_url, "event_types": ["*"], **fields}
    page = html(post(console, "/console/endpoints", **form))
    assert "shown <b>this once</b>" in page
    return re.search(r"Endpoint (ep_\w+) created", page).group(1)


def test_overview_shows_the_inbox_rates_and_failing_endpoints(console, frt, receiver):
    apply_receipts(frt, "SENT", "DELIVERED")
    enqueue(frt, b"{not json")
    drain_all(frt)
    ep = create(console, receiver.url("/down"))
    receiver.default("/down", Reply(status=500))
    apply_receipts(frt, "READ", message_id="m2")
    deliver(frt)
    enqueue(frt, receipt("READ"))  # left queued: inbox depth 1
    page = html(console.get("/console/"))
    assert 'hx-get="/console/overview/panel"' in page and 'hx-trigger="every 5s"' in page
    panel = html(console.get("/console/overview/panel", headers={"HX-Request": "true"}))
    assert re.search(r"<b>1</b><span>inbox depth</span>", panel)
    assert re.search(r"<b>1</b><span>dead letters, last hour</span>", panel)
    assert re.search(r"<b>3</b><span>events, last hour</span>", panel)
    assert ep in panel  # failing now
    assert '<script type="application/json" id="series">' in panel


def test_overview_counts_match_the_events_received(console, frt):
    for i in range(5):
        enqueue(frt, receipt("SENT", message_id=f"c{i}"))
    drain_all(frt)
    panel = html(console.get("/console/overview/panel"))
    assert re.search(r"<b>5</b><span>events, last hour</span>", panel)
    d = inbox.depths(frt.redis, 5)
    assert re.search(rf"<b>{d.inbox}</b><span>inbox depth</span>", panel)


def test_message_lookup_with_history_and_deliveries(console, frt, receiver):
    receiver.script("/hook", Reply(status=503, body=b"busy " + XSS.encode()), Reply())
    create(console, receiver.url("/hook"), **{"event_types": ["message.sent"]})
    apply_receipts(frt, "SENT", "DELIVERED")
    deliver(frt, until=lambda: delivery_rows(frt, _only_endpoint(frt))[0][1] == "succeeded")
    page = html(console.get("/console/messages?message_id=msg-1"))
    assert "delivered" in page and "kaleyra-rcs" in page
    assert "msg-1-SENT" in page and "msg-1-DELIVERED" in page
    assert "message.sent" in page and "2 attempt(s)" in page
    assert XSS not in page and "&lt;script&gt;alert(" in page  # the 503's answer, escaped
    missing = html(console.get("/console/messages?message_id=nope"))
    assert "No message nope" in missing


def _only_endpoint(rt) -> str:
    with rt.pool.connection() as conn:
        return conn.execute("SELECT id FROM endpoints").fetchone()[0]


def test_message_lookup_shows_the_providers_failure_reason(console, frt):
    doc = orjson.loads((FIXTURES / DR).read_bytes())
    doc["error"] = {"code": "E403", "message": XSS}
    enqueue(frt, orjson.dumps(doc), source="kaleyra-rcs")
    drain_all(frt)
    page = html(console.get(f"/console/messages?message_id={quote(doc['messageId'])}"))
    assert "E403" in page and XSS not in page
    assert page.count("&lt;script&gt;alert(") == 2  # the message's reason and its history's


def test_dead_letters_filter_view_and_escape(console, frt):
    enqueue(frt, XSS.encode())
    enqueue(frt, b'{"type": "NOPE"}', source="comapi")
    drain_all(frt)
    page = html(console.get("/console/dead-letters"))
    assert page.count('href="/console/dead-letters/') >= 2
    assert XSS not in page and "&lt;script&gt;" in page
    only = html(console.get("/console/dead-letters?source=comapi"))
    assert "comapi" in only and "&lt;script&gt;" not in only
    assert "No dead letters match" in html(console.get("/console/dead-letters?reason=zzz"))
    future = quote((datetime.now(UTC) + timedelta(hours=1)).isoformat())
    assert "No dead letters match" in html(console.get(f"/console/dead-letters?since={future}"))
    detail = html(console.get("/console/dead-letters/1"))
    assert XSS not in detail and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in detail
    assert console.get("/console/dead-letters/999").status_code == 404


def test_replay_as_is_fails_again_and_shows_the_new_dead_letter(console, frt):
    enqueue(frt, b'{"broken": ')
    drain_all(frt)
    resp = post(console, "/console/dead-letters/1/replay")
    assert resp.status_code == 302
    assert "replayed as" in html(console.get(resp.headers["Location"]))
    page = html(console.get("/console/dead-letters/1"))
    assert "queued, not applied yet" in page
    drain_all(frt)
    page = html(console.get("/console/dead-letters/1"))
    assert "failed again" in page and 'href="/console/dead-letters/2"' in page


def test_edit_and_replay_applies_the_fixed_copy(console, frt):
    broken = receipt("DELIVERED")[:-1]
    enqueue(frt, broken)
    drain_all(frt)
    # Browsers send a textarea's line breaks as CRLF.
    fixed = receipt("DELIVERED").decode().replace(",", ",\r\n")
    assert post(console, "/console/dead-letters/1/replay", body=fixed).status_code == 302
    drain_all(frt)
    page = html(console.get("/console/dead-letters/1"))
    assert "applied" in page and 'href="/console/messages?message_id=msg-1' in page
    assert "delivered" in html(console.get("/console/messages?message_id=msg-1"))


def test_replay_a_filtered_selection(console, frt):
    enqueue(frt, b"{a", source="comapi")
    enqueue(frt, b"{b", source="kaleyra-rcs")
    enqueue(frt, b"{c", source="comapi")
    drain_all(frt)
    resp = post(console, "/console/dead-letters/replay", source="comapi")
    assert resp.status_code == 302 and "source=comapi" in resp.headers["Location"]
    assert "replayed 2 dead letter(s)" in html(console.get(resp.headers["Location"]))
    with frt.pool.connection() as conn:
        replayed = conn.execute("SELECT source FROM dead_letters WHERE replayed_at IS NOT NULL "
                                "ORDER BY id").fetchall()
    assert replayed == [("comapi",), ("comapi",)]
    assert inbox.depths(frt.redis, 5).inbox == 2


def test_create_shows_the_secret_once_and_uses_the_v1_rules(console, frt, receiver):
    page = html(post(console, "/console/endpoints", url=receiver.url(),
                     event_types=["message.read"], filter_source="kaleyra-rcs, comapi",
                     description=XSS, ordered="on"))
    secret = re.search(r'<pre class="secret" id="secret">(whsec_[^<]+)</pre>', page).group(1)
    ep = re.search(r"Endpoint (ep_\w+) created", page).group(1)
    detail = html(console.get(f"/console/endpoints/{ep}"))
    assert secret not in detail and "whsec_" not in detail
    assert XSS not in detail and "&lt;script&gt;" in detail
    assert "kaleyra-rcs, comapi" in detail and "message.read" in detail
    listing = html(console.get("/console/endpoints"))
    assert ep in listing and "whsec_" not in listing and XSS not in listing
    # The same validation as POST /v1/endpoints: a bad URL or type is refused with its reason.
    bad = post(console, "/console/endpoints", url="ftp://x", event_types=["*"])
    assert bad.status_code == 400 and "url: refused" in bad.get_data(as_text=True)
    bad = post(console, "/console/endpoints", url=receiver.url())
    assert bad.status_code == 400 and "event_types: must be" in bad.get_data(as_text=True)


def test_edit_disable_enable_rotate(console, frt, receiver):
    ep = create(console, receiver.url())
    assert "Save" in html(console.get(f"/console/endpoints/{ep}/edit"))
    resp = post(console, f"/console/endpoints/{ep}/edit", url=receiver.url("/v2"),
                event_types=["message.read", "message.failed"], description="CRM")
    assert resp.status_code == 302
    page = html(console.get(f"/console/endpoints/{ep}"))
    assert "/v2" in page and "message.read, message.failed" in page and "endpoint saved" in page
    assert post(console, f"/console/endpoints/{ep}/edit", url="nope",
                event_types=["*"]).status_code == 400

    post(console, f"/console/endpoints/{ep}/disable")
    page = html(console.get(f"/console/endpoints/{ep}"))
    assert "disabled through the API" in page and ">Enable<" in page
    post(console, f"/console/endpoints/{ep}/enable")
    page = html(console.get(f"/console/endpoints/{ep}"))
    assert "endpoint enabled" in page and ">Disable<" in page

    with frt.pool.connection() as conn:
        before = conn.execute("SELECT secret FROM endpoints WHERE id = %s", (ep,)).fetchone()
    page = html(post(console, f"/console/endpoints/{ep}/rotate"))
    assert "rotated" in page and re.search(r'id="secret">whsec_', page)
    with frt.pool.connection() as conn:
        after = conn.execute("SELECT secret, previous_secret FROM endpoints WHERE id = %s",
                             (ep,)).fetchone()
    assert after[1] == before[0] and after[0] != before[0]
    assert "rotated" not in html(console.get(f"/console/endpoints/{ep}"))


def test_deliveries_attempts_retry_and_replay_window(console, frt, receiver):
    receiver.script("/hook", Reply(status=500, body=XSS.encode()))
    ep = create(console, receiver.url("/hook"), **{"event_types": ["message.sent"]})
    apply_receipts(frt, "SENT")
    deliver(frt, until=lambda: receiver.requests("/hook"))
    deliver(frt)
    ((delivery_id, status, attempts, _),) = delivery_rows(frt, ep)
    assert status == "failed" and attempts == 1
    listing = html(console.get(f"/console/endpoints/{ep}"))
    assert delivery_id in listing and "failed" in listing
    assert delivery_id in html(console.get(f"/console/endpoints/{ep}?status=failed"))
    assert delivery_id not in html(console.get(f"/console/endpoints/{ep}?status=succeeded"))
    page = html(console.get(f"/console/deliveries/{delivery_id}"))
    assert "HTTP 500" in page and " ms" in page and f"webhook-id: {delivery_id}" in page
    assert "&#34;type&#34;: &#34;message.sent&#34;" in page  # the request body
    assert XSS not in page and "&lt;script&gt;" in page  # the response excerpt

    resp = post(console, f"/console/deliveries/{delivery_id}/retry")
    assert resp.status_code == 302
    assert "queued to send again" in html(console.get(resp.headers["Location"]))
    deliver(frt, until=lambda: delivery_rows(frt, ep)[0][1] == "succeeded")
    assert "HTTP 200" in html(console.get(f"/console/deliveries/{delivery_id}"))

    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    resp = post(console, f"/console/endpoints/{ep}/replay", since=since,
                status=["succeeded"])
    assert "queued 1 deliveries again" in html(console.get(resp.headers["Location"]))
    assert delivery_rows(frt, ep)[0][1] == "pending"
    resp = post(console, f"/console/endpoints/{ep}/replay", since="yesterday")
    assert "since: not an ISO-8601 timestamp" in html(console.get(resp.headers["Location"]))
    resp = post(console, "/console/deliveries/msg_nope/retry")
    assert "no delivery" in html(console.get(resp.headers["Location"].replace(
        "msg_nope", delivery_id)))


def test_endpoint_health_in_the_list(console, frt, receiver):
    receiver.default("/down", Reply(status=500, body=b"boom"))
    ep = create(console, receiver.url("/down"))
    apply_receipts(frt, "SENT")
    deliver(frt, until=lambda: receiver.requests("/down"))
    deliver(frt)
    listing = html(console.get("/console/endpoints"))
    row = listing[listing.index(ep):]
    assert "failing" in row[:2000] and "0 %" in row[:2000]
    assert console.get("/console/endpoints/ep_nope").status_code == 404


def opt_out(rt, n: int) -> None:
    apply(rt, [consent_event(Consent.OPT_OUT, i, f"stop{i}", msisdn=f"+4477009000{i:02d}")
               for i in range(n)])


def test_consent_lookup_and_suppression_list(console, frt):
    apply(frt, [consent_event(Consent.OPT_OUT, 0, "all", sender="*", scope=ConsentScope.ALL)])
    apply(frt, [consent_event(Consent.OPT_IN, 10, "start", sender="agent_1", keyword=True)])
    page = html(console.get("/console/consent?channel=rcs&sender=agent_2&msisdn=%2B447700900001"))
    assert "may not send" in page and "an opt-out from every sender" in page
    page = html(console.get("/console/consent?channel=rcs&sender=agent_1&msisdn=%2B447700900001"))
    assert "may send" in page and "opted_in" in page and "START" in page
    assert "+447700900001" in html(console.get("/console/consent"))
    assert "Nobody is opted out" in html(console.get("/console/consent?s_channel=sms"))


def test_suppression_csv_is_streamed_page_by_page(console, frt, monkeypatch):
    from ingest.console import views_consent

    monkeypatch.setattr(views_consent, "CSV_PAGE", 2)
    opt_out(frt, 5)
    resp = console.get("/console/consent/suppression.csv")
    assert resp.status_code == 200 and resp.is_streamed
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    assert rows[0][:3] == ["channel", "sender", "msisdn"]
    assert sorted(r[2] for r in rows[1:]) == [f"+4477009000{i:02d}" for i in range(5)]
    only = console.get("/console/consent/suppression.csv?s_msisdn=%2B447700900003")
    assert len(list(csv.reader(io.StringIO(only.get_data(as_text=True))))) == 2


def test_csv_cells_cannot_become_formulas():
    from ingest.console.views_consent import _cell

    assert _cell("=cmd|' /c calc'!A1") == "'=cmd|' /c calc'!A1"
    assert _cell("+447700900001") == "+447700900001"
    assert _cell("@SUM(1)") == "'@SUM(1)" and _cell(None) == ""
