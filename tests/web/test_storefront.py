"""The storefront without a browser: pages, events, access with keys (login cookie,
scopes), CSRF, cookies, the setting that turns it off. (The browser journey is in
test_storefront_browser.py.)"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from conftest import shop_settings  # noqa: E402
from shopformer.serve import create_app  # noqa: E402
from shopformer.store import EventStore, StoreConfig  # noqa: E402
from shopformer.store.access import create_key, key_id_of, revoke_key  # noqa: E402
from shopformer.web.access import safe_next  # noqa: E402
from shopformer.web.cards import image_url, initials  # noqa: E402
from shopformer.web.visitor import MAX_TRAIL, Visitor  # noqa: E402

SAME = {"Origin": "http://testserver"}
ENV_KEY = "storefront-env-key"


def client(settings) -> TestClient:
    c = TestClient(create_app(settings), base_url="http://testserver")
    c.__enter__()
    assert c.app.state.search is None or c.app.state.search.wait(60)
    return c


@pytest.fixture
def open_shop(web_shop, tmp_path):
    c = client(shop_settings(web_shop, tmp_path))
    yield c
    c.__exit__(None, None, None)


def items(html: str, panel: str = "recs") -> list[str]:
    found = re.search(rf'id="{panel}"[^>]*data-items="([^"]*)"', html)
    assert found, f"no #{panel} panel"
    return [i for i in found.group(1).split(",") if i]


def cards_in(html: str, panel: str) -> list[str]:
    section = html.split(f'id="{panel}"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'class="card[^"]*" data-item="([^"]+)"', section)


def test_pages_render_with_security_headers(open_shop):
    home = open_shop.get("/")
    assert home.status_code == 200 and "Popular right now" in home.text
    assert "script-src 'self'" in home.headers["content-security-policy"]
    assert home.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in home.text and " style=" not in home.text  # nothing inline: the CSP allows none
    assert open_shop.get("/p/nope").status_code == 404
    assert open_shop.get("/static/storefront.js").status_code == 200
    assert open_shop.get("/shop/suggest", params={"q": "gar"}).json()["suggestions"][0] == {
        "text": "garden", "kind": "completion", "item_id": None}


def test_product_page_counts_what_was_bought_together(open_shop):
    # k1's buyers: u1 (k1 k2 k3), u2 (k1 k2 k4), u7 (k1 k3 k4): k2, k3, k4 with 2 each; k5 none
    page = open_shop.get("/p/k1").text
    assert "Frequently bought together" in page
    assert sorted(cards_in(page, "together")) == ["k2", "k3", "k4"]
    assert page.split('id="together"', 1)[1].split("</section>")[0].count("2 customers bought both") == 3
    assert "k1" not in cards_in(page, "similar") and cards_in(page, "similar")
    assert 'data-event="view"' in page and 'data-event="click"' in open_shop.get("/p/k1?via=rec").text


def test_search_page_has_results_and_facets(open_shop):
    page = open_shop.get("/search", params={"q": "garden"}).text
    assert "Results for “garden”" in page and 'data-event="search"' in page
    found = re.findall(r'class="card[^"]*" data-item="([^"]+)"', page.split('class="results"', 1)[1].split("</section>")[0])
    assert {"g3", "g5"} <= set(found)
    assert "Brand" in page and "Verde" in page and "In stock only" in page
    verde = open_shop.get("/search", params={"q": "garden", "brand": "Verde"}).text
    found = re.findall(r'class="card[^"]*" data-item="([^"]+)"', verde.split('class="results"', 1)[1].split("</section>")[0])
    assert sorted(found) == ["g4", "g5"] and 'aria-current="true" class="on">Verde' in verde


def test_an_event_changes_the_next_list_and_is_stored(open_shop):
    before = items(open_shop.get("/").text)
    r = open_shop.post("/shop/events", json={"type": "view", "item_id": "o1"},
                       headers={**SAME, "X-Shown-Items": ",".join(before)})
    body = r.json()
    assert r.status_code == 200 and body["stored"] == 1 and body["changed"] is True
    assert body["items"][:4] != before[:4] and "o2" in body["items"] and "o1" not in body["items"]
    assert 'class="card is-new"' in body["recs_html"]
    visitor = open_shop.cookies["sf_visitor"]
    events = open_shop.app.state.service.store.user_events(visitor)
    assert events["item_id"].to_list() == ["o1"] and events["event_type"].to_list() == ["view"]
    assert items(open_shop.get("/").text) == body["items"]  # the next page load shows the same list
    # a search is stored with its query and joins the trail as the product it finds first
    r = open_shop.post("/shop/events", json={"type": "search", "query": "watering"}, headers=SAME)
    assert r.json()["stored"] == 1 and "g4" not in r.json()["items"]
    assert open_shop.post("/shop/events", json={"type": "view"}, headers=SAME).status_code == 422
    assert open_shop.post("/shop/events", json={"type": "rate", "item_id": "k1"}, headers=SAME).status_code == 422


def test_cart_and_purchase(open_shop):
    for item in ("k1", "k5", "k1"):
        assert open_shop.post("/shop/events", json={"type": "add_to_cart", "item_id": item}, headers=SAME).status_code == 200
    cart = open_shop.get("/cart").text
    assert "× 2" in cart and "Chef Knife" in cart and "69.00" in cart  # 2 x 12 + 45
    r = open_shop.post("/shop/events", json={"type": "purchase"}, headers=SAME)
    assert r.json()["stored"] == 2 and r.json()["cart_count"] == 0
    events = open_shop.app.state.service.store.user_events(open_shop.cookies["sf_visitor"])
    assert events.filter(events["event_type"] == "purchase")["item_id"].sort().to_list() == ["k1", "k5"]
    assert open_shop.post("/shop/events", json={"type": "purchase"}, headers=SAME).status_code == 422  # empty cart


def test_form_posts_work_without_script(open_shop):
    r = open_shop.post("/shop/events", data={"type": "add_to_cart", "item_id": "g2"}, follow_redirects=False,
                       headers={**SAME, "Referer": "http://testserver/p/g2"})
    assert r.status_code == 303 and r.headers["location"] == "/p/g2"
    assert "Hand Fork" in open_shop.get("/cart").text


@pytest.mark.parametrize("headers", [{}, {"Origin": "http://evil.example"}, {"Referer": "http://evil.example/x"},
                                     {"Origin": "null"}])
def test_posts_from_elsewhere_are_refused(open_shop, headers):
    for path, kw in (("/shop/events", {"json": {"type": "view", "item_id": "k1"}}),
                     ("/shop/customer", {"data": {"customer": "u1"}}), ("/login", {"data": {"key": "x"}}),
                     ("/logout", {})):
        r = open_shop.post(path, headers=headers, follow_redirects=False, **kw)
        assert r.status_code == 403 and "cross-site" in r.json()["detail"], path
    assert open_shop.app.state.service.store.user_events("u1").height == 3  # nothing stored


def test_open_demo_lets_anyone_pick_a_customer(open_shop):
    r = open_shop.post("/shop/customer", data={"customer": "u1"}, headers=SAME, follow_redirects=False)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    home = open_shop.get("/").text
    assert "From u1's history" in home and items(home)[0] == "k4"
    r = open_shop.post("/shop/events", json={"type": "view", "item_id": "g1"}, headers=SAME)
    assert "customer u1" in r.json()["message"]
    assert open_shop.app.state.service.store.user_events("u1")["item_id"].to_list()[-1] == "g1"  # the newest


# -- with keys -------------------------------------------------------------------------
@pytest.fixture
def keyed_shop(web_shop, tmp_path):
    settings = shop_settings(web_shop, tmp_path, api_key=ENV_KEY, allow_unauthenticated_writes=False)
    with EventStore(StoreConfig(settings.store_url)) as store:
        _, reader = create_key(store, "storefront reader", ["read"])
    c = client(settings)
    yield c, reader
    c.__exit__(None, None, None)


def test_with_keys_a_guest_browses_open_data_only(keyed_shop):
    shop, _ = keyed_shop
    home = shop.get("/").text
    assert "sign in with an API key" in home and 'id="sf-customer"' not in home
    r = shop.post("/shop/customer", data={"customer": "u1"}, headers=SAME)
    assert r.status_code == 403 and "'read' scope" in r.json()["detail"]
    r = shop.post("/shop/events", json={"type": "view", "item_id": "o1"}, headers=SAME)
    assert r.json()["stored"] == 0 and "Not stored" in r.json()["message"]
    assert "o2" in r.json()["items"]  # the guest's own list still follows what they touched
    assert shop.app.state.service.store.user_events(shop.cookies.get("sf_visitor") or "none").height == 0
    shop.cookies.set("sf_customer", "u1")  # a hand-made cookie does not unlock a customer's data
    assert "From u1" not in shop.get("/").text


def test_login_checks_the_key_and_keeps_it_out_of_pages(keyed_shop):
    shop, reader = keyed_shop
    r = shop.post("/login", data={"key": "sf_wrong", "next": "/"}, headers=SAME)
    assert r.status_code == 401 and "not valid" in r.text and "sf_key" not in r.headers.get("set-cookie", "")
    r = shop.post("/login", data={"key": reader, "next": "/p/k1"}, headers=SAME, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/p/k1"
    assert "HttpOnly" in r.headers["set-cookie"] and "SameSite=strict" in r.headers["set-cookie"]
    shop.post("/shop/customer", data={"customer": "u1"}, headers=SAME)
    pages = [shop.get(p).text for p in ("/", "/p/k1", "/cart", "/search?q=cup", "/login")]
    answer = shop.post("/shop/events", json={"type": "view", "item_id": "o1"}, headers=SAME)
    assert all(reader not in text for text in pages + [answer.text])
    assert "From u1's history" in pages[0] and "signed in (read)" in pages[0]
    assert answer.json()["stored"] == 0 and "lacks the &#39;write&#39; scope" not in answer.text
    assert "lacks the 'write' scope" in answer.json()["message"]


def test_a_write_key_stores_events_and_a_revoked_key_stops_at_once(keyed_shop):
    shop, reader = keyed_shop
    shop.post("/login", data={"key": ENV_KEY}, headers=SAME)
    shop.post("/shop/customer", data={"customer": "u1"}, headers=SAME)
    r = shop.post("/shop/events", json={"type": "add_to_cart", "item_id": "o3"}, headers=SAME)
    assert r.json()["stored"] == 1 and "customer u1" in r.json()["message"]
    stored = shop.app.state.service.store.user_events("u1", limit=1).row(0, named=True)
    assert stored["item_id"] == "o3" and stored["event_type"] == "add_to_cart" and "storefront" in stored["context"]
    # sign in with the read key, then revoke it: the next page is a guest's
    shop.post("/login", data={"key": reader}, headers=SAME)
    assert "signed in (read)" in shop.get("/").text
    with EventStore(StoreConfig(shop.app.state.settings.store_url)) as store:
        revoke_key(store, key_id_of(reader))
    shop.app.state.keyring.refresh(force=True)
    home = shop.get("/").text
    assert "no longer valid" in home and "From u1" not in home
    r = shop.post("/logout", headers=SAME, follow_redirects=False)
    assert r.status_code == 303 and 'sf_key=""' in r.headers["set-cookie"]


def test_secure_cookies_over_https(web_shop, tmp_path):
    settings = shop_settings(web_shop, tmp_path, search=False)
    with TestClient(create_app(settings), base_url="https://shop.example") as c:
        r = c.post("/shop/customer", data={"customer": "u1"}, headers={"Origin": "https://shop.example"},
                   follow_redirects=False)
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


def test_the_storefront_can_be_turned_off(web_shop, tmp_path):
    with TestClient(create_app(shop_settings(web_shop, tmp_path, storefront=False, search=False))) as c:
        assert c.get("/").status_code == 404 and c.get("/v1/items/k1").status_code == 200


# -- small parts -----------------------------------------------------------------------
def test_visitor_cookies_round_trip_any_id():
    odd = ["a,b", "x|y", "é*2", "50%", "plain"]
    v = Visitor()
    for item in odd + [f"i{n}" for n in range(MAX_TRAIL)]:
        v.touch(item)
    v.add("a,b")
    v.add("a,b")
    v.add("x|y*3")

    class Fake:
        url = type("U", (), {"scheme": "http"})()

    from starlette.responses import Response

    response = Response()
    v.save(Fake(), response)
    jar = {}
    for header in response.headers.getlist("set-cookie"):
        name, value = header.split(";", 1)[0].split("=", 1)
        jar[name] = value.strip('"')
    back = Visitor.of(type("R", (), {"cookies": jar})())
    assert back.trail == [f"i{n}" for n in range(MAX_TRAIL)]
    assert back.cart == {"a,b": 2, "x|y*3": 1}
    v2 = Visitor()
    for item in odd:
        v2.touch(item)
    response = Response()
    v2.save(Fake(), response)
    jar = {h.split(";", 1)[0].split("=", 1)[0]: h.split(";", 1)[0].split("=", 1)[1].strip('"')
           for h in response.headers.getlist("set-cookie")}
    assert Visitor.of(type("R", (), {"cookies": jar})()).trail == odd


def test_cards_and_redirects():
    assert initials("Linen Apron", "k1") == "LA" and initials(None, "sku-9") == "S9" and initials("", "") == "?"
    assert image_url("javascript:alert(1)") is None and image_url("//evil.example/x.png") is None
    assert image_url("https://cdn.example/x.png") == "https://cdn.example/x.png" and image_url("/img/a.png") == "/img/a.png"
    assert [safe_next(t) for t in ("/p/k1?x=1", "//evil.example", "https://evil.example", "/\\evil", None)] == [
        "/p/k1?x=1", "/", "/", "/", "/"]
