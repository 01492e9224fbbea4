"""The storefront's panels are answers like the API's: each one logged as an impression
with its request id (issue 19), its links and add-to-cart buttons carry that id, and the
events they lead to are attributed to it. The warm-up's renders log nothing."""

from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("httpx")

from conftest import shop_settings  # noqa: E402
from test_storefront import SAME, client, items  # noqa: E402


@pytest.fixture
def shop(web_shop, tmp_path):
    c = client(shop_settings(web_shop, tmp_path))
    yield c
    c.__exit__(None, None, None)


def stored(shop) -> list[dict]:
    shop.app.state.feedback.flush()
    return shop.app.state.service.store.impressions().to_dicts()


def rid_of(html: str, panel: str) -> str:
    section = html.split(f'id="{panel}"', 1)[1].split("</section>", 1)[0]
    found = set(re.findall(r"[?&](?:amp;)?rid=([0-9a-f]{32})", section))
    assert len(found) == 1, f"one answer per panel, found {found}"
    return found.pop()


def test_warm_up_logs_nothing_and_each_panel_is_one_impression(shop):
    assert stored(shop) == []  # the app's warm-up rendered pages, but nobody saw them
    shop.post("/shop/customer", data={"customer": "u1"}, headers=SAME)
    page = shop.get("/p/k1").text
    rows = {r["placement"]: r for r in stored(shop)}
    assert set(rows) == {"storefront_recs", "storefront_similar", "storefront_together"}
    recs = rows["storefront_recs"]
    assert recs["item_ids"] == items(page) and recs["user_id"] == "u1" and recs["route"] == "user_recommendations"
    assert recs["request_id"] == rid_of(page, "recs") and recs["model_name"]
    assert rows["storefront_similar"]["request_id"] == rid_of(page, "similar")
    assert rows["storefront_together"]["item_ids"] and rows["storefront_together"]["route"] == "together"


def test_a_followed_link_and_its_add_to_cart_are_attributed_to_the_answer(shop):
    shop.post("/shop/customer", data={"customer": "u1"}, headers=SAME)
    home = shop.get("/").text
    rid, first = rid_of(home, "recs"), items(home)[0]
    product = shop.get(f"/p/{first}", params={"via": "rec", "rid": rid}).text
    assert f'data-rid="{rid}"' in product and f'name="request_id" value="{rid}"' in product
    for kind in ("click", "add_to_cart"):  # what the page's script and its button post
        assert shop.post("/shop/events", json={"type": kind, "item_id": first, "request_id": rid},
                         headers=SAME).json()["stored"] == 1
    events = shop.app.state.service.store.user_events("u1", limit=2).to_dicts()
    assert {e["event_type"] for e in events} == {"click", "add_to_cart"}
    assert all(json.loads(e["context"])["request_id"] == rid for e in events)
    metrics = shop.get("/metrics").text
    for kind in ("click", "add_to_cart"):
        assert re.search(rf'shopformer_attributed_events_total\{{event_type="{kind}",[^}}]*placement="storefront_recs"[^}}]*\}} 1\.0',
                         metrics), kind


def test_a_request_id_edited_by_hand_loses_its_attribution_not_its_event(shop):
    shop.post("/shop/customer", data={"customer": "u1"}, headers=SAME)
    page = shop.get("/p/k2", params={"via": "rec", "rid": "<script>"}).text
    assert "data-rid" not in page and "&lt;script&gt;" not in page
    r = shop.post("/shop/events", json={"type": "click", "item_id": "k2", "request_id": "nope nope"}, headers=SAME)
    assert r.json()["stored"] == 1
    event = shop.app.state.service.store.user_events("u1", limit=1).row(0, named=True)
    assert "request_id" not in json.loads(event["context"])


def results(html: str) -> list[str]:
    section = html.split('class="results"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'class="card[^"]*" data-item="([^"]+)"', section)


def test_search_results_are_logged_and_ranked_through_the_business_rules(shop):
    from shopformer.store.rules import add_rule, check_rule

    store = shop.app.state.service.store
    plain = shop.get("/search", params={"q": "garden"}).text
    found = results(plain)
    assert len(found) >= 2
    add_rule(store, check_rule("exclude", {"items": [found[0]]}))
    shop.app.state.service.rules.sync()
    ruled = shop.get("/search", params={"q": "garden"}).text
    after = results(ruled)
    assert found[0] not in after and after[0] == found[1]
    row = [r for r in stored(shop) if r["placement"] == "storefront_search"][-1]
    assert row["route"] == "search" and row["item_ids"][:len(after)] == after
