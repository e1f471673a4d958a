"""Every console page with two tenants: a tenant's console (its api key, or a portal
link) shows only its data, and its actions on another tenant's things change nothing;
the operator's pages are 403 to it; the operator filters by tenant."""

from __future__ import annotations

from urllib.parse import urlsplit

from ingest.console import portal
from tests.console.console_support import csrf_of, sign_in
from tests.fanout.fanout_helpers import AUTH
from tests.tenants.support import SENDER_A, SENDER_B, one


def tenant_client(api, key: str):
    return sign_in(api.application.test_client(), password=key)


def form_post(client, path: str, **form: object):
    return client.post(path, data={"csrf_token": csrf_of(client, "/console/endpoints"),
                                   **form})


def page(client, path: str) -> tuple[int, str]:
    r = client.get(path)
    return r.status_code, r.get_data(as_text=True)


def test_a_tenant_s_console_shows_only_its_own(world):
    rt, api, a, b, eps, deliveries = world
    for me, other, mine, theirs, my_sender, their_sender in (
            (a, b, "msg-a", "msg-b", SENDER_A, SENDER_B),
            (b, a, "msg-b", "msg-a", SENDER_B, SENDER_A)):
        c = tenant_client(api, me.api_key)
        assert c.get("/console/").status_code == 302  # the overview is everyone's
        code, html = page(c, f"/console/endpoints?tenant={other.id}")  # ignored
        assert code == 200 and eps[me.id]["id"] in html and eps[other.id]["id"] not in html
        assert f"tenant {me.id}" in html and "Dead letters" not in html
        assert page(c, f"/console/endpoints/{eps[me.id]['id']}")[0] == 200
        assert page(c, f"/console/endpoints/{eps[other.id]['id']}")[0] == 404
        assert page(c, f"/console/endpoints/{eps[other.id]['id']}/edit")[0] == 404
        assert page(c, f"/console/deliveries/{deliveries[other.id]}")[0] == 404
        assert page(c, f"/console/deliveries/{deliveries[me.id]}")[0] == 200
        code, html = page(c, f"/console/messages?message_id={mine}")
        assert code == 200 and "delivered" in html.lower()
        code, html = page(c, f"/console/messages?message_id={theirs}")
        assert code == 200 and "delivered" not in html.lower()
        code, html = page(c, "/console/consent")
        assert my_sender in html and their_sender not in html
        code, csv = page(c, "/console/consent/suppression.csv")
        assert my_sender in csv and their_sender not in csv
        msisdn = one(rt, "SELECT msisdn FROM subscriptions WHERE tenant_id = %s", other.id)
        code, html = page(c, f"/console/consent?channel=rcs&sender={their_sender}"
                             f"&msisdn={msisdn}")
        assert code == 200 and "opted_out" not in html.replace(their_sender, "")
        for path in ("/console/dead-letters", "/console/dead-letters/1",
                     "/console/overview/panel"):
            assert page(c, path)[0] == 403, path
        assert form_post(c, "/console/dead-letters/1/replay").status_code == 403


def test_a_tenant_s_console_actions_on_another_s_change_nothing(world):
    rt, api, a, b, eps, deliveries = world
    c = tenant_client(api, a.api_key)
    ep = eps[b.id]["id"]
    form_post(c, f"/console/endpoints/{ep}/edit", url="http://127.0.0.1:9/stolen",
              event_types="*")
    form_post(c, f"/console/endpoints/{ep}/disable")
    form_post(c, f"/console/endpoints/{ep}/rotate")
    form_post(c, f"/console/endpoints/{ep}/replay", since="2000-01-01T00:00:00Z")
    form_post(c, f"/console/deliveries/{deliveries[b.id]}/retry")
    row = api.get(f"/v1/endpoints/{ep}", headers=AUTH).get_json()
    assert row["url"] == "http://127.0.0.1:9/hook" and row["enabled"]
    assert row["previous_secret_signs_until"] is None
    assert one(rt, "SELECT requeued_at FROM deliveries WHERE id = %s", deliveries[b.id]) is None
    # Its own it may change.
    form_post(c, f"/console/endpoints/{eps[a.id]['id']}/disable")
    assert not api.get(f"/v1/endpoints/{eps[a.id]['id']}", headers=AUTH).get_json()["enabled"]


def test_revoking_the_key_ends_its_console_session(world):
    _, api, a, _, _, _ = world
    c = tenant_client(api, a.api_key)
    assert c.get("/console/endpoints").status_code == 200
    (key,) = [k for k in api.get(f"/v1/tenants/{a.id}/keys", headers=AUTH).get_json()["items"]
              if k["kind"] == "api"]
    assert api.delete(f"/v1/tenants/{a.id}/keys/{key['id']}", headers=AUTH).status_code == 204
    assert c.get("/console/endpoints").status_code == 302  # to the sign-in page


def test_a_portal_link_opens_the_tenant_s_console_until_it_expires(world):
    rt, api, a, b, eps, _ = world
    r = api.post(f"/v1/tenants/{b.id}/portal-links", headers=AUTH, json={})
    assert r.status_code == 201, r.get_json()
    link = r.get_json()
    assert link["expires_at"]
    c = api.application.test_client()
    path = urlsplit(link["url"]).path
    assert c.get(path).status_code == 302
    _, html = page(c, "/console/endpoints")
    assert eps[b.id]["id"] in html and eps[a.id]["id"] not in html
    assert page(c, "/console/dead-letters")[0] == 403
    # Forged, altered or expired links open nothing.
    stranger = api.application.test_client()
    assert stranger.get(path[:-3] + "xyz").status_code == 403
    with api.application.app_context():
        old, _ = portal.link_token(rt.settings, b.id, -1)
    assert stranger.get(f"/console/portal/{old}").status_code == 403
    assert stranger.get("/console/endpoints").status_code == 302
    # A tenant's key cannot make one.
    assert api.post(f"/v1/tenants/{b.id}/portal-links", headers={
        "Authorization": f"Bearer {b.api_key}"}, json={}).status_code == 403


def test_the_operator_sees_all_and_filters_by_tenant(world):
    _, api, a, b, eps, _ = world
    c = sign_in(api.application.test_client())
    _, html = page(c, "/console/endpoints")
    assert eps[a.id]["id"] in html and eps[b.id]["id"] in html and "All tenants" in html
    _, html = page(c, f"/console/endpoints?tenant={a.id}")
    assert eps[a.id]["id"] in html and eps[b.id]["id"] not in html
    _, html = page(c, f"/console/consent?tenant={b.id}")
    assert SENDER_B in html and SENDER_A not in html
    assert page(c, "/console/dead-letters")[0] == 200
