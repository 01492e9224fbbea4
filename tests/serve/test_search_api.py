"""The search routes over a tiny shop: answers, filters and facets, bad input, catalog
upserts and deletes searchable on return, suggestions from search events,
personalization by the served model, and search events joining the history."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("tantivy")

from fastapi.testclient import TestClient  # noqa: E402

from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.store import EventStore, StoreConfig, import_folder  # noqa: E402

from test_api import AUTH, KEY, shop, store_url  # noqa: E402, F401 - fixtures


def make(store_url, run, tmp_path, **kw) -> TestClient:  # noqa: F811
    settings = ServeSettings(store_url=store_url, run=run, api_key=KEY, search_dir=tmp_path / "search",
                             search_semantic=False, **kw)
    return TestClient(create_app(settings), headers={"X-API-Key": KEY})


@pytest.fixture
def client(shop, store_url, tmp_path):  # noqa: F811
    with make(store_url, shop["run1"], tmp_path) as c:
        assert c.app.state.search.wait(60)
        yield c


def ids(body) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def test_search_answers_with_scores_and_facets(client):
    r = client.get("/v1/search", params={"q": "cups"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert ids(body) == ["c"] and body["strategy"] == "lexical"
    item = body["items"][0]
    assert item["title"] == "Cup" and item["lexical"] > 0 and item["score"] > 0
    assert body["facets"]["categories"][0] == {"value": "cups", "count": 1} or {"value": "cups", "count": 1} in body["facets"]["categories"]
    assert body["facets"]["price"] == [{"min": 3.0, "max": 3.0, "count": 1}]


def test_filters_and_typos(client):
    body = client.get("/v1/search", params={"q": "hose fork gloves", "available_only": "true"}).json()
    assert set(ids(body)) == {"f", "g"}
    body = client.get("/v1/search", params=[("q", "hose fork gloves cup"), ("category", "garden"), ("max_price", "6.5")]).json()
    assert ids(body) == ["f"]
    body = client.get("/v1/search", params={"q": "glovez"}).json()
    assert ids(body) == ["g"] and body["corrected_query"] == "gloves"


@pytest.mark.parametrize("params", [
    {"q": ""}, {"q": "x" * 10_240}, {"q": "cup", "k": "0"}, {"q": "cup", "k": "1000"},
    {"q": "cup", "min_price": "inf"}, {"q": "cup", "max_price": "nan"}, {"q": "cup", "min_price": "-1"},
    {"q": "cup", "min_price": "5", "max_price": "1"}, {"q": "cup", "categroy": "garden"}, {},
])
def test_bad_input_is_a_4xx_naming_it(client, params):
    r = client.get("/v1/search", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][0] == "query"


@pytest.mark.parametrize("q", ['" ( ) : * ~ ^ AND', "cup AND (bowl", "title:cup^5", "*", "the", "🙂"])
def test_query_syntax_is_never_an_error(client, q):
    r = client.get("/v1/search", params={"q": q})
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["items"], list)


def test_upsert_and_delete_are_searchable_on_return(client):
    assert ids(client.get("/v1/search", params={"q": "teapot"}).json()) == []
    r = client.put("/v1/catalog/items", headers=AUTH,
                   json=[{"item_id": "t", "title": "Teapot", "categories": ["kitchen"], "price": 9}])
    assert r.status_code == 200, r.text
    assert ids(client.get("/v1/search", params={"q": "teapot"}).json()) == ["t"]
    r = client.put("/v1/catalog/items", headers=AUTH, json=[{"item_id": "t", "title": "Teapot", "available": False}])
    assert ids(client.get("/v1/search", params={"q": "teapot", "available_only": "true"}).json()) == []
    r = client.delete("/v1/catalog/items/t", headers=AUTH)
    assert r.status_code == 200 and r.json() == {"deleted": 1}
    assert ids(client.get("/v1/search", params={"q": "teapot"}).json()) == []
    assert client.get("/v1/items/t").status_code == 404  # neither in the catalog nor known to the model
    assert client.delete("/v1/catalog/items/t", headers=AUTH).json() == {"deleted": 0}
    assert client.delete("/v1/catalog/items/a", headers={"X-API-Key": ""}).status_code == 401  # writes need the key


def test_suggestions_from_search_events_and_catalog(client):
    for q in ("garden fork", "garden fork", "garden gloves"):
        assert client.post("/v1/events", headers=AUTH, json={"user_id": "s1", "type": "search", "query": q}).status_code == 201
    body = client.get("/v1/search/suggest", params={"q": "garden"}).json()
    assert body["suggestions"][:2] == [{"text": "garden fork", "kind": "query", "count": 2},
                                       {"text": "garden gloves", "kind": "query", "count": 1}]
    body = client.get("/v1/search/suggest", params={"q": "glo"}).json()
    assert {"text": "gloves", "kind": "completion", "count": 1} in body["suggestions"]
    assert body["suggestions"][-1] == {"text": "Gloves", "kind": "product", "count": 0, "item_id": "g"}
    assert client.get("/v1/search/suggest", params={"q": "x", "bogus": "1"}).status_code == 422


def test_past_search_events_are_read_at_start(shop, store_url, tmp_path):  # noqa: F811
    with EventStore(StoreConfig(store_url)) as store:
        store.add_events([{"user_id": "s2", "event_type": "search", "query": "cup holder",
                           "timestamp": "2024-01-01T00:00:00Z"}])
    with make(store_url, shop["run1"], tmp_path) as c:
        assert c.app.state.search.wait(60)
        assert c.get("/v1/search/suggest", params={"q": "cup h"}).json()["suggestions"][0]["text"] == "cup holder"


def test_search_events_join_the_history(client):
    """A user whose only event is a search gets recommendations from what it found."""
    before = client.get("/v1/users/newbie/recommendations", params={"k": 3}).json()
    assert before["history_length"] == 0
    r = client.post("/v1/events", headers=AUTH, json={"user_id": "newbie", "type": "search", "query": "edger"})
    assert r.status_code == 201
    after = client.get("/v1/users/newbie/recommendations", params={"k": 3}).json()
    assert after["history_length"] == 1 and after["strategy"] == "history"
    assert set(ids(after)) <= set("efgh")  # the garden cluster, as for a view of the edger


def test_personalized_search(shop, store_url, tmp_path):  # noqa: F811
    """Two users who bought from different clusters get the same query ordered by their tastes."""
    with make(store_url, shop["run1"], tmp_path, search_personal_weight=5.0) as c:
        assert c.app.state.search.wait(60)
        q = {"q": "apron edger", "k": 2}
        kitchen = c.get("/v1/search", params={**q, "user_id": "u1"}).json()
        garden = c.get("/v1/search", params={**q, "user_id": "u4"}).json()
        assert kitchen["strategy"] == garden["strategy"] == "lexical+personal"
        assert ids(kitchen)[0] == "a" and ids(garden)[0] == "e"
        assert kitchen["model"]["name"] == "itemknn"
        anon = c.get("/v1/search", params={**q, "user_id": "nobody"}).json()
        assert anon["strategy"] == "lexical" and anon["model"] is None


def test_search_off(shop, store_url, tmp_path):  # noqa: F811
    with make(store_url, shop["run1"], tmp_path, search=False) as c:
        r = c.get("/v1/search", params={"q": "cup"})
        assert r.status_code == 503 and "off" in r.json()["detail"]


def test_search_config_file_is_used(shop, store_url, tmp_path):  # noqa: F811
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "search_config.json").write_text(json.dumps({"lexical": {"field_weights": {"title": 1.0}}}))
    with make(store_url, shop["run1"], tmp_path) as c:
        assert c.app.state.search.wait(60)
        assert c.app.state.search.require().config.lexical.field_weights == {"title": 1.0}
        assert ids(c.get("/v1/search", params={"q": "kitchen"}).json()) == []  # categories are not searched now


def test_catalog_writes_through_another_process_reach_this_index(shop, store_url, tmp_path):  # noqa: F811
    """Two servers on one store (as workers or replicas are): a product upserted or deleted
    through one is found (or gone) in the other's search within its sync period."""
    import time

    with make(store_url, shop["run1"], tmp_path / "a", sync_s=0.1) as a, \
            make(store_url, shop["run1"], tmp_path / "b", sync_s=0.1) as b:
        assert a.app.state.search.wait(60) and b.app.state.search.wait(60)

        def found_in_b(q: str) -> list[str]:
            deadline = time.monotonic() + 10
            while True:
                got = ids(b.get("/v1/search", params={"q": q}).json())
                if got or time.monotonic() > deadline:
                    return got
                time.sleep(0.05)

        assert a.put("/v1/catalog/items", headers=AUTH, json=[{"item_id": "t", "title": "Teapot"}]).status_code == 200
        assert found_in_b("teapot") == ["t"]
        assert a.delete("/v1/catalog/items/t", headers=AUTH).status_code == 200
        deadline = time.monotonic() + 10
        while ids(b.get("/v1/search", params={"q": "teapot"}).json()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ids(b.get("/v1/search", params={"q": "teapot"}).json()) == []


def test_search_settings_from_the_environment(tmp_path):
    env = {"SHOPFORMER_SEARCH": "0", "SHOPFORMER_SEARCH_DIR": str(tmp_path), "SHOPFORMER_SEARCH_SEMANTIC": "false",
           "SHOPFORMER_SEARCH_PERSONAL_WEIGHT": "0.5", "SHOPFORMER_SEARCH_IN_HISTORY": "0"}
    s = ServeSettings.from_env(env)
    assert (s.search, s.search_dir, s.search_semantic, s.search_personal_weight, s.search_in_history) == (
        False, tmp_path, False, 0.5, False)
    d = ServeSettings.from_env({})
    assert d.search and d.search_semantic and d.search_personal_weight is None and d.search_lexical == "tantivy"
    with pytest.raises(ValueError, match="SHOPFORMER_SEARCH_LEXICAL"):
        ServeSettings.from_env({"SHOPFORMER_SEARCH_LEXICAL": "lucene"})
    with pytest.raises(ValueError, match="PostgreSQL store"):
        ServeSettings.from_env({"SHOPFORMER_SEARCH_LEXICAL": "postgres"})
    with pytest.raises(ValueError, match="SHOPFORMER_SEARCH_PERSONAL_WEIGHT"):
        ServeSettings.from_env({"SHOPFORMER_SEARCH_PERSONAL_WEIGHT": "much"})


def test_search_dir_defaults_beside_a_sqlite_store():
    from shopformer.serve.search import search_dir

    assert str(search_dir(ServeSettings(store_url="sqlite:///x/shop.db"))) == "x/shop.db.search"
    assert str(search_dir(ServeSettings(store_url="postgresql://h/db"))) == "shopformer-search"


def test_search_on_postgresql_full_text(shop, tmp_path):  # noqa: F811
    """SHOPFORMER_SEARCH_LEXICAL=postgres: the lexical index lives in the store's database."""
    import os

    from shopformer.store.engine import scratch_database

    url = os.environ.get("SHOPFORMER_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set SHOPFORMER_TEST_POSTGRES_URL to run the PostgreSQL search test")
    with scratch_database(url, "shopformer_search") as db_url:
        with EventStore(StoreConfig(db_url)) as store:
            import_folder(store, shop["data"])
        with make(db_url, shop["run1"], tmp_path, search_lexical="postgres") as c:
            assert c.app.state.search.wait(60)
            assert type(c.app.state.search.require().lexical).__name__ == "PostgresLexicalIndex"
            assert ids(c.get("/v1/search", params={"q": "cups"}).json()) == ["c"]
            c.put("/v1/catalog/items", headers=AUTH, json=[{"item_id": "t", "title": "Teapot"}])
            assert ids(c.get("/v1/search", params={"q": "teapot"}).json()) == ["t"]


def test_a_refused_non_finite_number_in_a_body_is_a_422(client):
    """The 422 echoes the refused input: NaN and infinity must not turn it into a 500."""
    for raw in ('[{"item_id": "c", "title": "Rake", "price": NaN}]', '[{"item_id": "c", "price": Infinity}]'):
        r = client.put("/v1/catalog/items", headers={**AUTH, "Content-Type": "application/json"}, content=raw)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", 0, "price"]
    assert ids(client.get("/v1/search", params={"q": "rake"}).json()) == []  # nothing written
