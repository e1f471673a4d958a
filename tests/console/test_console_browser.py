"""The console in a real headless Chromium (Playwright), against real processes:
ingest + worker + scheduler on the test services, and a local webhook receiver.

Set HOOKLINE_CONSOLE_SCREENSHOTS=docs/console to refresh the README's screenshots.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import FIXTURES, receipt
from tests.procs import CALLBACK_AUTH, running_stack
from tests.receiver import Reply

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium at /usr/bin/chromium "
                                       "(apt-get install chromium)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

TOKEN = "test-api-token"
XSS = "<script>window.__xss = 1</script>"


@pytest.fixture
def stack(rt, base_env, tmp_path) -> Iterator[str]:  # rt: start from empty services
    env = {**base_env, "HOOKLINE_ALLOW_PRIVATE_ENDPOINTS": "true",
           "HOOKLINE_RETRY_SCHEDULE": "0.5,0.5,0.5",
           "HOOKLINE_CONSOLE_SECURE_COOKIE": "false"}  # plain http, as `hookline dev`
    with running_stack(env, tmp_path) as base:
        yield base


@pytest.fixture
def page(tmp_path):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--headless", "--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        pg = context.new_page()
        pg.csp_errors = []
        pg.on("console", lambda m: pg.csp_errors.append(m.text)
              if "Content Security Policy" in m.text else None)
        yield pg
        browser.close()


def shots(tmp_path: Path) -> Callable[[object, str], None]:
    out = Path(os.environ.get("HOOKLINE_CONSOLE_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)

    def shot(page, name: str) -> None:
        page.screenshot(path=str(out / f"{name}.png"), full_page=True)

    return shot


def reload_until(page, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not seen within {timeout}s on {page.url}")
        time.sleep(0.3)
        page.reload()


def post_callback(base: str, body: bytes, path: str = "kaleyra-rcs") -> None:
    assert httpx.post(f"{base}/callbacks/{path}", content=body,
                      headers=CALLBACK_AUTH).status_code == 202


def test_operator_flow_in_a_real_browser(stack, receiver, page, tmp_path):
    shot = shots(tmp_path)
    expect = sync_api.expect

    # Sign in (every page redirects to the login first).
    page.goto(f"{stack}/console/endpoints")
    assert "/console/login" in page.url
    shot(page, "login")
    page.fill("input[name=password]", TOKEN)
    page.click("text=Sign in")
    expect(page.locator("h1")).to_contain_text("Endpoints")

    # Traffic for the charts, then a broken callback carrying a script.
    for i in range(20):
        post_callback(stack, receipt("SENT", message_id=f"warm-{i}"))
    broken = receipt("DELIVERED", message_id="e2e-1")[:-1] + XSS.encode()
    post_callback(stack, broken)

    # It shows under dead letters; its raw body is text, not a script.
    page.goto(f"{stack}/console/dead-letters")
    reload_until(page, lambda: page.locator("td.reason", has_text="invalid JSON").count() > 0)
    page.locator("tr", has_text="invalid JSON").locator("a").first.click()
    expect(page.locator("#raw-body")).to_contain_text(XSS)
    assert page.evaluate("window.__xss") is None
    shot(page, "dead_letter")

    # Fix the body and replay it; the replay's outcome links to the message.
    page.fill("textarea[name=body]", receipt("DELIVERED", message_id="e2e-1").decode())
    page.click("text=Replay the edited body")
    expect(page.locator(".flash.ok")).to_contain_text("with the edited body")
    reload_until(page, lambda: page.locator("#outcome .s-applied").count() > 0)
    shot(page, "dead_letter_replayed")
    page.goto(f"{stack}/console/dead-letters")
    shot(page, "dead_letters")
    page.go_back()
    page.click("#outcome a:has-text('message e2e-1')")
    expect(page.locator("h2").first).to_contain_text("delivered")

    # Create an endpoint against the local receiver; its first answer is a 500 whose
    # body carries a script, then it succeeds.
    receiver.script("/hook", Reply(status=500, body=XSS.encode()))
    page.goto(f"{stack}/console/endpoints/new")
    shot(page, "endpoint_new")
    page.fill("input[name=url]", receiver.url("/hook"))
    page.fill("input[name=description]", "CRM " + XSS)
    page.click("button:has-text('Create')")
    expect(page.locator("#secret")).to_contain_text("whsec_")
    shot(page, "endpoint_secret")
    page.click("text=Go to the endpoint")
    endpoint_url = page.url

    # A new receipt for the message makes a delivery; watch it succeed on the retry.
    post_callback(stack, receipt("READ", message_id="e2e-1", offset=5))
    reload_until(page, lambda: page.locator("td .s-succeeded").count() > 0)
    receiver.wait(2, "/hook")
    expect(page.locator("h1")).to_contain_text("ep_")
    assert page.evaluate("window.__xss") is None
    shot(page, "endpoint")
    page.locator("td a[href*='/console/deliveries/']").first.click()
    expect(page.locator("h1")).to_contain_text("succeeded")
    expect(page.locator(".attempt pre.excerpt-body").first).to_contain_text(XSS)
    assert page.evaluate("window.__xss") is None
    shot(page, "delivery")

    # The message now shows the READ and the delivery it caused.
    page.goto(f"{stack}/console/messages?message_id=e2e-1")
    expect(page.locator("h2").first).to_contain_text("read")
    expect(page.locator(".delivery").first).to_contain_text("succeeded")
    shot(page, "message")

    page.goto(f"{stack}/console/endpoints")
    expect(page.locator("table")).to_contain_text(endpoint_url.rsplit("/", 1)[1])
    shot(page, "endpoints")

    # Consent: an opt-out through a real callback, then the party's decision.
    rel = "kaleyra-io/flat/sms_unsubscription__sender.json"
    post_callback(stack, (FIXTURES / rel).read_bytes(), "kaleyra-io/sms:unsubscription")
    page.goto(f"{stack}/console/consent?channel=sms&sender=Demo12&msisdn=917002088xxx")
    reload_until(page, lambda: page.locator("text=may not send").count() > 0)
    expect(page.locator("table").first).to_contain_text("opted_out")
    shot(page, "consent")

    # The overview refreshes itself (htmx) and draws both charts (uPlot).
    page.goto(f"{stack}/console/")
    expect(page.locator("#chart-rate canvas")).to_have_count(1)
    expect(page.locator("#chart-dead canvas")).to_have_count(1)
    stamp = page.locator("#panel p.small").inner_text()
    expect(page.locator("#panel p.small")).not_to_have_text(stamp, timeout=12000)
    assert re.search(r"\d+\s+events, last hour", page.locator("#panel").inner_text())
    shot(page, "overview")
    assert page.csp_errors == []
