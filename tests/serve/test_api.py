"""End-to-end tests of the HTTP API over a tiny shop: ingest -> train -> store -> HTTP."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from shopformer.artifact import make_model  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402
from shopformer.ingest.api import ingest  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.store import EventStore, StoreConfig, import_folder  # noqa: E402

KEY = "s3cret-key"
AUTH = {"X-API-Key": KEY}

# Two clusters: a-d ("kitchen") and e-h ("garden"); h is unavailable.
SEQUENCES = """\
u1 a b c
u2 a b d
u3 b c d
u4 e f g
u5 e f h
u6 f g h
u7 a c d
"""
CATALOG = """\
item_id,title,price,categories,available
a,Apron,1,kitchen,true
b,Bowl,2,kitchen,true
c,Cup,3,kitchen|cups,true
d,Dish,4,kitchen,true
e,Edger,5,garden,true
f,Fork,6,garden,true
g,Gloves,7,garden,true
h,Hose,8,garden,false
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shop")
    (root / "seq.txt").write_text(SEQUENCES)
    (root / "catalog.csv").write_text(CATALOG)
    data = root / "data"
    ingest(root / "seq.txt", "sequence", data, catalog=root / "catalog.csv")
    cfg = DataConfig()
    train_run(make_model("itemknn", {"shrink": "0"}), data, cfg, root / "run1", fit_on="all")
    train_run(make_model("ease", {}), data, cfg, root / "run2", fit_on="all")
    return {"data": data, "run1": root / "run1", "run2": root / "run2"}


@pytest.fixture
def store_url(shop, tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        res = import_folder(store, shop["data"])
        assert res.events.inserted == 21 and res.products == 8
    return url


def make_client(store_url: str, run: Path | None, **kw) -> TestClient:
    settings = ServeSettings(store_url=store_url, run=run, api_key=kw.pop("api_key", KEY), cache_ttl_s=60, **kw)
    # the key by default: reading customers' data needs one (tests of refusals send their own header)
    return TestClient(create_app(settings), headers={"X-API-Key": settings.api_key} if settings.api_key else None)


@pytest.fixture
def client(shop, store_url):
    with make_client(store_url, shop["run1"]) as c:
        yield c


def ids(body: dict) -> list[str]:
    return [x["item_id"] for x in body["items"]]


def event(user: str, item: str, type_: str = "view", **kw) -> dict:
    return {"user_id": user, "item_id": item, "type": type_, **kw}


# -- schema and operations -------------------------------------------------------------
def test_openapi_lists_every_route(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {
        "/v1/users/{user_id}/recommendations", "/v1/recommendations/session",
        "/v1/items/{item_id}/similar", "/v1/items/{item_id}", "/v1/users/{user_id}",
        "/v1/events", "/v1/events:batch", "/v1/catalog/items", "/v1/admin/reload",
        "/health", "/metrics",
    } <= set(paths)
    assert set(paths["/v1/catalog/items"]) == {"put"}
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]
    assert paths["/v1/events"]["post"]["security"] == [{"APIKeyHeader": []}]


def test_health_and_metrics(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["store"] == "ok"
    assert h["model"]["name"] == "itemknn" and h["model"]["version"].startswith("run1-")
    client.get("/v1/users/u1/recommendations")
    client.get("/v1/users/u1/recommendations")
    text = client.get("/metrics").text
    assert 'shopformer_http_requests_total{method="GET",route="/v1/users/{user_id}/recommendations",status="200"} 2.0' in text
    assert 'shopformer_http_request_duration_seconds_bucket{le="0.005",method="GET",route="/health"}' in text
    assert 'shopformer_model_info{name="itemknn"' in text
    assert 'shopformer_history_cache_total{result="hit"} 1.0' in text


# -- recommendations -------------------------------------------------------------------
def test_known_user_gets_scored_items_without_history(client):
    body = client.get("/v1/users/u1/recommendations", params={"k": 3}).json()
    assert body["user_id"] == "u1" and body["known_user"] is True
    assert body["strategy"] == "history" and body["history_length"] == 3
    assert body["model"]["name"] == "itemknn" and body["model"]["version"].startswith("run1-")
    assert ids(body)[0] == "d" and not {"a", "b", "c"} & set(ids(body))
    assert body["items"][0]["title"] == "Dish"
    scores = [x["score"] for x in body["items"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3
    with_history = client.get("/v1/users/u1/recommendations", params={"k": 8, "exclude_history": "false"}).json()
    assert {"a", "b", "c"} <= set(ids(with_history))


def test_user_with_no_history_gets_popularity(client):
    body = client.get("/v1/users/nobody/recommendations", params={"k": 2}).json()
    assert body["strategy"] == "popularity" and body["history_length"] == 0
    assert body["known_user"] is False and len(body["items"]) == 2


def test_posted_event_changes_the_next_recommendation(client):
    def scored(body: dict) -> set[str]:
        return {x["item_id"] for x in body["items"] if x["score"] > 0}

    before = client.get("/v1/users/u1/recommendations", params={"k": 4}).json()
    assert scored(before) == {"d"}
    client.get("/v1/users/u1/recommendations", params={"k": 4})  # now cached
    r = client.post("/v1/events", json=event("u1", "e"), headers=AUTH)
    assert r.status_code == 201, r.text
    after = client.get("/v1/users/u1/recommendations", params={"k": 4}).json()
    assert after["history_length"] == 4
    assert "e" not in ids(after) and scored(after) == {"d", "f", "g", "h"}


def test_user_unknown_to_model_is_personalised_from_store_events(client):
    batch = [event("newbie", "e", timestamp="2024-05-01T10:00:00Z"), event("newbie", "f", timestamp="2024-05-01T10:01:00Z")]
    assert client.post("/v1/events:batch", json=batch, headers=AUTH).json() == {"inserted": 2, "duplicates": 0}
    body = client.get("/v1/users/newbie/recommendations", params={"k": 2}).json()
    assert body["known_user"] is False and body["strategy"] == "history" and body["history_length"] == 2
    assert set(ids(body)) <= {"g", "h"}


def test_session_recommendations_ignore_unknown_items(client):
    r = client.post("/v1/recommendations/session", json={"item_ids": ["e", "nope"], "k": 3})
    body = r.json()
    assert r.status_code == 200 and body["ignored_item_ids"] == ["nope"]
    assert body["history_length"] == 1 and "e" not in ids(body) and ids(body)[0] == "f"
    assert body["model"]["name"] == "itemknn" and "user_id" in body and body["user_id"] is None
    empty = client.post("/v1/recommendations/session", json={"item_ids": []}).json()
    assert empty["strategy"] == "popularity" and len(empty["items"]) == 8


def test_filters(client):
    garden = client.get("/v1/users/u1/recommendations", params={"k": 8, "category": "garden"}).json()
    assert set(ids(garden)) == {"e", "f", "g", "h"}
    avail = client.get("/v1/users/u1/recommendations", params={"k": 8, "category": "garden", "available_only": True}).json()
    assert set(ids(avail)) == {"e", "f", "g"}
    cheap = client.get("/v1/users/u4/recommendations", params={"k": 8, "min_price": 2, "max_price": 4.5}).json()
    assert set(ids(cheap)) == {"b", "c", "d"}
    session = client.post("/v1/recommendations/session", json={"item_ids": ["a"], "filters": {"category": "cups"}}).json()
    assert ids(session) == ["c"]
    similar = client.get("/v1/items/e/similar", params={"available_only": True}).json()
    assert "h" not in ids(similar) and "f" in ids(similar)
    bad = client.get("/v1/users/u1/recommendations", params={"min_price": 5, "max_price": 1})
    assert bad.status_code == 422 and "min_price" in bad.text


def test_similar_items(client):
    body = client.get("/v1/items/a/similar", params={"k": 2}).json()
    assert body["item_id"] == "a" and len(body["items"]) == 2 and "a" not in ids(body)
    assert body["model"]["version"].startswith("run1-") and all(x["score"] > 0 for x in body["items"])
    r = client.get("/v1/items/zzz/similar")
    assert r.status_code == 404 and "zzz" in r.json()["detail"]


@pytest.mark.parametrize("k", ["0", "-1", "501", "ten"])
def test_k_out_of_range_is_422(client, k):
    r = client.get("/v1/users/u1/recommendations", params={"k": k})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "k"]


# -- lookups ---------------------------------------------------------------------------
def test_item_and_user_lookup(client):
    item = client.get("/v1/items/c").json()
    assert item["known_to_model"] is True
    assert item["product"]["title"] == "Cup" and item["product"]["categories"] == ["kitchen", "cups"]
    assert client.get("/v1/items/zzz").status_code == 404
    user = client.get("/v1/users/u1").json()
    assert user["known_to_model"] is True and [e["item_id"] for e in user["events"]] == ["c", "b", "a"]
    assert client.get("/v1/users/u1", params={"limit": 1}).json()["events"][0]["item_id"] == "c"
    assert client.get("/v1/users/ghost").status_code == 404


# -- writes ----------------------------------------------------------------------------
def test_single_event_is_idempotent_with_event_id(client):
    e = event("u9", "a", "purchase", event_id="ev-1", value=2, context={"page": "home"})
    first = client.post("/v1/events", json=e, headers=AUTH)
    assert first.status_code == 201 and first.json() == {"status": "created", "event_id": "ev-1"}
    again = client.post("/v1/events", json=e, headers=AUTH)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    stored = client.get("/v1/users/u9").json()["events"]
    assert len(stored) == 1 and stored[0]["context"] == {"page": "home"} and stored[0]["type"] == "purchase"
    search = client.post("/v1/events", json={"user_id": 17, "type": "search", "query": "red cup"}, headers=AUTH)
    assert search.status_code == 201 and search.json()["event_id"].startswith("h-")


def test_an_event_is_checked_once_and_stored_before_the_answer(client, store_url, monkeypatch):
    from shopformer.serve import writes
    from shopformer.store import base, frames

    calls = []
    for module in (writes, base, frames):
        real = module.check_events
        monkeypatch.setattr(module, "check_events", lambda data, _real=real, **kw: calls.append(1) or _real(data, **kw))
    r = client.post("/v1/events", json=event("u8", "a", event_id="once-1"), headers=AUTH)
    assert r.status_code == 201 and calls == [1]
    with EventStore(StoreConfig(store_url)) as other:  # committed: another connection sees it
        assert "once-1" in other.user_events("u8")["event_id"].to_list()


def test_titles_follow_catalog_updates(client):
    assert client.get("/v1/users/u1/recommendations", params={"k": 1}).json()["items"][0]["title"] == "Dish"
    r = client.put("/v1/catalog/items", json=[{"item_id": "d", "title": "Dish v2", "price": 4, "categories": ["kitchen"]}],
                   headers=AUTH)
    assert r.status_code == 200
    body = client.get("/v1/users/u1/recommendations", params={"k": 1}).json()
    assert body["items"][0] == {"item_id": "d", "score": body["items"][0]["score"], "title": "Dish v2"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"item_id": "a", "type": "view"}, "user_id"),
        ({"user_id": "u1", "item_id": "a", "type": "teleport"}, "type"),
        ({"user_id": "u1", "type": "view"}, "item_id"),
        ({"user_id": "u1", "type": "search"}, "query"),
        ({"user_id": "u1", "item_id": "a", "type": "view", "timestamp": "yesterday"}, "timestamp"),
        ({"user_id": "u1", "item_id": "a", "type": "view", "usr": "x"}, "usr"),
        ({"user_id": "u\x00", "item_id": "a", "type": "view"}, "user_id"),
        ({"user_id": " ", "item_id": "a", "type": "view"}, "user_id"),
    ],
)
def test_malformed_event_is_422_naming_the_field(client, body, field):
    r = client.post("/v1/events", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert field in r.text


def test_bad_batch_row_refuses_everything(client):
    before = client.get("/v1/users/u1").json()["events"]
    batch = [event("u1", "e"), {"user_id": "u1", "type": "view"}, event("u1", "f")]
    r = client.post("/v1/events:batch", json=batch, headers=AUTH)
    assert r.status_code == 422
    locs = [d["loc"] for d in r.json()["detail"]]
    assert locs == [["body", 1, "item_id"]]
    assert client.get("/v1/users/u1").json()["events"] == before
    assert client.post("/v1/events:batch", json=[], headers=AUTH).status_code == 422
    assert client.post("/v1/events:batch", content=b"[{", headers={**AUTH, "Content-Type": "application/json"}).status_code == 422


def test_store_level_rejection_names_row_and_writes_nothing(store_url):
    # Rows that bypass the schema still meet the store's own rules before any write.
    from shopformer.serve.schemas import EventIn
    from shopformer.serve.writes import RowErrors, write_events

    good = EventIn(user_id="u1", item_id="a", type="view")
    bad = EventIn.model_construct(user_id=None, item_id="a", type="view", event_id=None, timestamp=None,
                                  session_id=None, query=None, value=None, context=None)
    with EventStore(StoreConfig(store_url)) as store:
        n = store.count_events()
        with pytest.raises(RowErrors) as info:
            write_events(store, [good, bad], batch=True)
        assert info.value.errors[0]["loc"] == ["body", 1, "user_id"]
        assert store.count_events() == n


def test_catalog_upsert(client):
    rows = [
        {"item_id": "a", "title": "Apron XL", "price": 1.5, "categories": ["kitchen"], "available": True},
        {"item_id": "new-1", "title": "Newcomer", "attributes": {"color": "red"}},
    ]
    r = client.put("/v1/catalog/items", json=rows, headers=AUTH)
    assert r.status_code == 200 and r.json() == {"upserted": 2, "placed_in_model": 0}  # itemknn cannot
    assert client.get("/v1/items/a").json()["product"]["title"] == "Apron XL"
    new = client.get("/v1/items/new-1").json()
    assert new["known_to_model"] is False and new["product"]["attributes"] == {"color": "red"}
    # the catalog view behind filters is refreshed at once
    client.put("/v1/catalog/items", json=[{"item_id": "d", "title": "Dish", "available": False}], headers=AUTH)
    recs = client.get("/v1/users/u1/recommendations", params={"available_only": True}).json()
    assert "d" not in ids(recs)
    bad = client.put("/v1/catalog/items", json=[{"item_id": "b", "title": "B2"}, {"item_id": "x", "price": -3}], headers=AUTH)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", 1, "price"]
    assert client.get("/v1/items/b").json()["product"]["title"] == "Bowl"


# -- auth ------------------------------------------------------------------------------
def test_writes_need_the_api_key(client):
    e = event("u1", "e")
    none = {"X-API-Key": ""}  # the client sends the key by default
    assert client.post("/v1/events", json=e, headers=none).status_code == 401
    assert client.post("/v1/events", json=e, headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.put("/v1/catalog/items", json=[{"item_id": "z"}], headers=none).status_code == 401
    assert client.post("/v1/admin/reload", headers=none).status_code == 401
    assert client.post("/v1/events:batch", json=[e], headers={"X-API-Key": ""}).status_code == 401
    assert client.get("/v1/users/u1").json()["events"][-1]["item_id"] == "a"  # nothing written


def test_writes_without_a_configured_key(shop, store_url):
    with make_client(store_url, shop["run1"], api_key=None) as c:
        r = c.post("/v1/events", json=event("u1", "e"), headers=AUTH)
        assert r.status_code == 503 and "SHOPFORMER_API_KEY" in r.json()["detail"]
    with make_client(store_url, shop["run1"], api_key=None, allow_unauthenticated_writes=True) as c:
        assert c.post("/v1/events", json=event("u1", "e")).status_code == 201


# -- reload ----------------------------------------------------------------------------
def test_reload_swaps_model_and_version(client, shop):
    v1 = client.get("/v1/items/a/similar").json()["model"]
    same = client.post("/v1/admin/reload", headers=AUTH).json()
    assert same["model"]["version"] == v1["version"] == same["previous"]["version"]
    r = client.post("/v1/admin/reload", json={"run": str(shop["run2"])}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["model"]["name"] == "ease" and r.json()["previous"]["name"] == "itemknn"
    body = client.get("/v1/users/u1/recommendations").json()
    assert body["model"]["name"] == "ease" and body["model"]["version"].startswith("run2-")
    assert body["model"]["version"] != v1["version"]
    bad = client.post("/v1/admin/reload", json={"run": str(shop["data"])}, headers=AUTH)
    assert bad.status_code == 400 and "still serving" in bad.json()["detail"]
    assert client.get("/health").json()["model"]["name"] == "ease"


def test_no_failed_request_during_reloads(client, shop):
    codes: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            codes.append(client.get("/v1/users/u2/recommendations", params={"k": 3}).status_code)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        for run in ("run2", "run1", "run2"):
            assert client.post("/v1/admin/reload", json={"run": str(shop[run])}, headers=AUTH).status_code == 200
    finally:
        stop.set()
        t.join()
    assert codes and set(codes) == {200}


def test_without_a_model(store_url):
    with make_client(store_url, None) as c:
        r = c.get("/v1/users/u1/recommendations")
        assert r.status_code == 503 and "SHOPFORMER_RUN" in r.json()["detail"]
        assert c.get("/health").json()["status"] == "degraded"
        assert c.post("/v1/events", json=event("u1", "e"), headers=AUTH).status_code == 201


def test_settings_from_env(tmp_path):
    s = ServeSettings.from_env({
        "SHOPFORMER_STORE_URL": "postgresql://me:pw@db/shop", "SHOPFORMER_RUN": str(tmp_path),
        "SHOPFORMER_API_KEY": "k", "SHOPFORMER_HISTORY_LIMIT": "50",
    })
    assert s.run == tmp_path and s.api_key == "k" and s.history_limit == 50 and s.writes_enabled
    assert "pw" not in repr(s) and "'k'" not in repr(s)
    assert not ServeSettings.from_env({}).writes_enabled
    with pytest.raises(ValueError, match="SHOPFORMER_HISTORY_LIMIT"):
        ServeSettings.from_env({"SHOPFORMER_HISTORY_LIMIT": "many"})


# -- new visitors -----------------------------------------------------------------------
def _recent_sales(c: TestClient) -> None:
    """g bought 3 times lately; a 5 times but 4 months earlier (imported events: no time)."""
    batch = [event(f"old{i}", "a", "purchase", timestamp="2024-01-01T10:00:00Z") for i in range(5)]
    batch += [event(f"new{i}", "g", "purchase", timestamp="2024-05-01T10:00:00Z") for i in range(3)]
    assert c.post("/v1/events:batch", json=batch, headers=AUTH).json()["inserted"] == 8


@pytest.mark.parametrize("source", ["popular", "trending"])
def test_new_visitors_get_the_stores_recent_counts(shop, store_url, source):
    with make_client(store_url, shop["run1"], new_visitors=source, new_visitor_days=30) as c:
        _recent_sales(c)
        body = c.get("/v1/users/nobody/recommendations", params={"k": 3}).json()
        assert body["strategy"] == ("trending" if source == "trending" else "popularity")
        assert ids(body)[0] == "g"  # 2 imported + 3 recent; "a"'s old sales are outside the window
        session = c.post("/v1/recommendations/session", json={"item_ids": []}).json()
        assert ids(session)[0] == "g" and session["strategy"] == body["strategy"]
        kitchen = c.get("/v1/users/nobody/recommendations", params={"k": 3, "category": "kitchen"}).json()
        assert set(ids(kitchen)) <= {"a", "b", "c", "d"} and len(kitchen["items"]) == 3
        known = c.get("/v1/users/u1/recommendations", params={"k": 2}).json()
        assert known["strategy"] == "history"  # a history is still personalised


def test_new_visitor_window_zero_counts_every_event(shop, store_url):
    with make_client(store_url, shop["run1"], new_visitors="popular", new_visitor_days=0) as c:
        _recent_sales(c)
        body = c.get("/v1/users/nobody/recommendations", params={"k": 2, "category": "kitchen"}).json()
        assert ids(body)[0] == "a"  # 3 imported + 5 old sales


def test_new_visitor_source_is_checked():
    with pytest.raises(ValueError, match="SHOPFORMER_NEW_VISITORS"):
        ServeSettings.from_env({"SHOPFORMER_NEW_VISITORS": "random"})
    assert ServeSettings.from_env({"SHOPFORMER_NEW_VISITORS": "Trending"}).new_visitors == "trending"
