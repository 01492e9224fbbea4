"""The storefront in a real browser (Debian's Chromium through Playwright) against the
real app on loopback: a shopper's journey, phone width, keyboard use. Screenshots and
the measured latencies (first render; a click to updated recommendations) go to the
``artifacts`` folder (printed), the latencies also to ``storefront_timings.json``.

Targets (issue 18): first render < 300 ms on loopback, a click to updated
recommendations < 200 ms. They are measured and written down; the assertions allow 3x
(a shared CI machine), so a real regression still fails."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from conftest import PHONE

RENDER_TARGET_MS = 300
UPDATE_TARGET_MS = 200
SLACK = 3
U1_HISTORY = ("Linen Apron", "Stoneware Bowl", "Espresso Cup")

#: first render of a page: the server's own time in the route (Server-Timing), time to
#: first byte, DOM ready, first contentful paint (ms from navigation start)
RENDER_JS = """async () => {
  for (let i = 0; i < 40 && !performance.getEntriesByName('first-contentful-paint').length; i++)
    await new Promise(r => setTimeout(r, 25));
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByName('first-contentful-paint')[0];
  const app = (nav.serverTiming || []).find(e => e.name === 'app');
  return {server_app: app ? app.duration : null, ttfb: nav.responseStart, dom_ready: nav.domContentLoadedEventEnd,
          first_paint: fcp ? fcp.startTime : null};
}"""

#: an observer of our own (not the page's): from the click on ``selector`` (capture
#: phase) to the frame after #recs was replaced
WATCH_JS = """(selector) => {
  window.__clickToUpdate = undefined;
  const old = document.getElementById('recs');
  let t0 = null;
  document.querySelector(selector).addEventListener('click', () => { t0 = performance.now(); }, {capture: true, once: true});
  const obs = new MutationObserver(() => {
    if (t0 !== null && document.getElementById('recs') && document.getElementById('recs') !== old) {
      obs.disconnect();
      requestAnimationFrame(() => { window.__clickToUpdate = performance.now() - t0; });
    }
  });
  obs.observe(document.getElementById('main'), {childList: true, subtree: true});
}"""


def recs_items(page) -> list[str]:
    return [i for i in (page.get_attribute("#recs", "data-items") or "").split(",") if i]


def render(page, name: str, timings: dict) -> dict:
    found = page.evaluate(RENDER_JS)
    timings.setdefault("first_render_ms", {})[name] = {k: round(v, 1) if v is not None else None for k, v in found.items()}
    return found


def click_and_wait_update(page, selector: str, timings: dict, name: str) -> float:
    page.evaluate(WATCH_JS, selector)
    page.click(selector)
    page.wait_for_function("() => window.__clickToUpdate !== undefined", timeout=5000)
    ms = page.evaluate("window.__clickToUpdate")
    timings.setdefault("click_to_updated_recs_ms", {})[name] = round(ms, 1)
    # the page's own measure: its POST sent to the new list in the DOM
    timings.setdefault("event_round_trip_ms", {})[name] = round(page.evaluate("window.sfTimings.at(-1).ms"), 1)
    return ms


def wait_status(page, text: str) -> str:
    page.wait_for_function("t => document.getElementById('sf-status').textContent.includes(t)", arg=text, timeout=5000)
    return page.inner_text("#sf-status")


def unlabelled_controls(page) -> list[str]:
    """Visible inputs without a label and buttons/links without text."""
    return page.evaluate("""() => {
      const bad = [];
      document.querySelectorAll('input:not([type=hidden]), select, textarea').forEach(el => {
        if (!(el.labels && el.labels.length) && !el.getAttribute('aria-label')) bad.push(el.outerHTML.slice(0, 80));
      });
      document.querySelectorAll('button, a[href]').forEach(el => {
        if (!el.textContent.trim() && !el.getAttribute('aria-label')) bad.push(el.outerHTML.slice(0, 80));
      });
      return bad;
    }""")


def test_shopping_journey(live_server, page, page_errors, artifacts: Path):
    timings: dict = {"targets_ms": {"first_render": RENDER_TARGET_MS, "click_to_updated_recs": UPDATE_TARGET_MS}}
    # home as a guest: the picks for a new visitor
    page.goto(live_server + "/")
    render(page, "home_guest_first_visit", timings)
    page.reload()
    render(page, "home_guest", timings)
    assert page.inner_text("#recs-h") == "Popular right now"
    assert page.locator("#recs .card").count() == 8
    assert unlabelled_controls(page) == []

    # pick a customer: their history drives the list (and is left out of it)
    page.fill("#sf-customer", "u1")
    page.click("text=Switch")
    page.wait_for_selector("#recs .basis:has-text(\"From u1's history\")")
    render(page, "home_customer", timings)
    before = recs_items(page)
    assert before[0] == "k4" and not {"k1", "k2", "k3"} & set(before)
    assert page.inner_text("#recs-h") == "Recommended for you"

    # "why this?": the history events with their shares, co-purchase counts, attributes, the sentence
    first = page.locator("#recs .card").first
    first.locator("summary").click()
    why = first.locator(".why-body")
    assert why.is_visible()
    text = why.inner_text()
    assert "Because you bought" in text and "Serving Dish" in first.inner_text()
    assert any(title in text for title in U1_HISTORY)
    assert re.search(r"\b\d{1,3}%", text), text
    assert re.search(r"\d customers? bought \w", text), text
    page.screenshot(path=str(artifacts / "storefront-home-why.png"), full_page=False)

    # open a product from the list: a click event, and the list changes from it
    page.click('#recs .card[data-item="o1"] .card-link')
    page.wait_for_selector("h1:has-text('Desk Lamp')")
    render(page, "product", timings)
    status = wait_status(page, "Recommendations")
    assert "Stored 1 click event for customer u1" in status and "updated" in status
    after_click = recs_items(page)
    assert "o2" in after_click and "o2" not in before and "o1" not in after_click
    assert page.locator("#recs .card.is-new").count() >= 1
    together = page.locator("#together")
    assert together.locator("h2").inner_text() == "Frequently bought together"
    assert re.search(r"\d customers bought both", together.inner_text())
    assert page.locator("#similar .card").count() >= 1

    # add a product bought together to the cart: the list changes again
    shown = recs_items(page)
    added = together.locator(".card").first.get_attribute("data-item")
    assert added in shown
    ms = click_and_wait_update(page, "#together .card:first-child .quick-add button", timings, "add_to_cart_together")
    assert page.inner_text("#cart-count") == "1"
    assert added not in recs_items(page) and recs_items(page) != shown
    wait_status(page, "Stored 1 add_to_cart event")
    assert ms < SLACK * UPDATE_TARGET_MS

    # add the product itself
    ms = click_and_wait_update(page, ".add-to-cart button", timings, "add_to_cart_product")
    assert page.inner_text("#cart-count") == "2"
    assert ms < SLACK * UPDATE_TARGET_MS
    page.screenshot(path=str(artifacts / "storefront-product.png"), full_page=True)

    # search with autocomplete: type, pick the completion with the keyboard
    page.click("#sf-q")
    page.keyboard.type("gar", delay=30)
    page.wait_for_selector('#sf-suggest[data-query="gar"] li[role=option]')  # the answer for all three letters
    options = page.locator("#sf-suggest li[role=option]").all_inner_texts()
    assert options[0] == "garden" and any("Garden Hose" in o for o in options)
    assert page.get_attribute("#sf-q", "aria-expanded") == "true"
    page.keyboard.press("ArrowDown")
    assert page.get_attribute("#sf-q", "aria-activedescendant") == "sf-opt-0"
    page.keyboard.press("Enter")
    page.wait_for_selector("h1:has-text('Results for')")
    render(page, "search", timings)
    assert "garden" in page.inner_text("h1")
    wait_status(page, "Stored 1 search event")
    results = page.locator(".results .card")
    assert results.count() >= 4
    page.click(".facets a:has-text('Verde')")
    page.wait_for_selector(".facets a.on:has-text('Verde')")
    assert sorted(page.locator(".results .card").evaluate_all("els => els.map(e => e.dataset.item)")) == ["g4", "g5"]
    page.screenshot(path=str(artifacts / "storefront-search.png"), full_page=True)

    # the cart: buy what is in it
    page.click(".sf-cart")
    page.wait_for_selector("h1:has-text('Your cart')")
    render(page, "cart", timings)
    assert page.locator(".cart-line").count() == 2
    shown = recs_items(page)
    ms = click_and_wait_update(page, ".checkout button", timings, "purchase")
    page.wait_for_selector("text=your purchase is recorded")
    assert page.inner_text("#cart-count") == "0"
    wait_status(page, "Stored 2 purchase events")

    # an uploaded image shows; the others are placeholders with initials
    page.goto(live_server + "/p/o3")
    page.wait_for_function("() => { const i = document.querySelector('.product img.thumb-img'); return i && i.complete && i.naturalWidth > 0; }")
    assert page.locator(".product .ph-under").count() == 1
    page.goto(live_server + "/p/o4")
    assert page.locator(".product img").count() == 0 and page.inner_text(".product .ph") == "PT"

    assert page_errors == []
    renders = {k: v["first_paint"] for k, v in timings["first_render_ms"].items()}
    # the browser's very first navigation also starts its renderer: reported on its own
    pages = {k: v for k, v in renders.items() if k != "home_guest_first_visit"}
    updates = timings["click_to_updated_recs_ms"]
    timings["summary"] = {
        "first_visit_of_a_new_browser_ms": renders["home_guest_first_visit"],
        "first_render_ms_max": max(pages.values()), "first_render_ms_median": statistics.median(pages.values()),
        "click_to_updated_recs_ms_max": max(updates.values()),
        "click_to_updated_recs_ms_median": statistics.median(updates.values()),
    }
    timings["summary"]["targets_met"] = (timings["summary"]["first_render_ms_max"] < RENDER_TARGET_MS
                                         and timings["summary"]["click_to_updated_recs_ms_max"] < UPDATE_TARGET_MS)
    (artifacts / "storefront_timings.json").write_text(json.dumps(timings, indent=2))
    print("\nstorefront timings:", json.dumps(timings["summary"]), f"\n(details: {artifacts / 'storefront_timings.json'})")
    assert all(v is not None and v < SLACK * RENDER_TARGET_MS for v in renders.values()), renders


def test_phone_width_and_keyboard(live_server, browser, artifacts: Path):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    errors: list[str] = []
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(live_server + "/")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert page.locator("#sf-q").is_visible() and page.locator(".sf-cart").is_visible()
        # two product columns fit side by side
        boxes = [page.locator("#recs .card").nth(i).bounding_box() for i in range(2)]
        assert boxes[0]["y"] == boxes[1]["y"] and boxes[1]["x"] + boxes[1]["width"] <= PHONE["width"]
        page.screenshot(path=str(artifacts / "storefront-phone-home.png"), full_page=False)
        # keyboard: the first Tab reaches the skip link, which moves focus to the content
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        # "why this?" opens from the keyboard
        summary = page.locator("#recs .card summary").first
        summary.focus()
        page.keyboard.press("Enter")
        assert page.locator("#recs .card details").first.get_attribute("open") is not None
        page.goto(live_server + "/p/k2")
        wait_status(page, "Recommendations")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.screenshot(path=str(artifacts / "storefront-phone-product.png"), full_page=True)
        assert errors == []
    finally:
        context.close()
