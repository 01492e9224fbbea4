"""Serving a Transformer through the vector index: the flat FAISS index must give the
exact path's answers; the baselines keep exact dense scoring."""

from __future__ import annotations


import numpy as np
import pytest

pytest.importorskip("faiss")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from shopformer.artifact import make_model  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402
from shopformer.ingest.api import ingest  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.serve.recommender import RecommendationService  # noqa: E402
from shopformer.serve.schemas import Filters  # noqa: E402
from shopformer.store import EventStore, StoreConfig, import_folder  # noqa: E402

N_ITEMS = 40
SASREC = {"arch.d_model": "16", "arch.n_layers": "1", "arch.max_len": "10", "train.epochs": "3"}


pytestmark = pytest.mark.usefixtures("restore_threads")


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ishop")
    rng = np.random.default_rng(0)
    # Users walk through one of four "aisles" of ten items, with some noise.
    lines = []
    for u in range(60):
        aisle = u % 4
        items = [f"i{aisle * 10 + int(x)}" if rng.random() < 0.8 else f"i{int(rng.integers(N_ITEMS))}"
                 for x in rng.integers(0, 10, size=int(rng.integers(4, 9)))]
        lines.append(f"u{u} " + " ".join(items))
    (root / "seq.txt").write_text("\n".join(lines) + "\n")
    cats = ["food", "tools", "toys", "books"]
    (root / "catalog.csv").write_text(
        "item_id,title,price,categories,available\n"
        + "".join(f"i{i},Item {i},{i % 7 + 1},{cats[i // 10]},true\n" for i in range(N_ITEMS))
    )
    data = root / "data"
    ingest(root / "seq.txt", "sequence", data, catalog=root / "catalog.csv")
    train_run(make_model("sasrec", SASREC), data, DataConfig(), root / "sasrec", fit_on="all")
    train_run(make_model("itemknn", {}), data, DataConfig(), root / "itemknn", fit_on="all")
    url = f"sqlite:///{root / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, data)
    return {"root": root, "url": url, "users": [ln.split()[0] for ln in lines]}


def service(shop, run: str, index: str) -> RecommendationService:
    svc = RecommendationService(ServeSettings(store_url=shop["url"], index=index), EventStore(StoreConfig(shop["url"])))
    svc.reload(shop["root"] / run)
    return svc


@pytest.fixture(scope="module")
def pair(shop):
    exact, flat = service(shop, "sasrec", "exact"), service(shop, "sasrec", "faiss")
    yield exact, flat
    exact.store.close()
    flat.store.close()


def test_transformer_is_served_through_a_flat_index(pair):
    exact, flat = pair
    assert exact.require().vectors is None and exact.require().retrieval == "exact"
    assert flat.require().retrieval == "faiss-flat"
    import faiss

    assert faiss.omp_get_max_threads() == 1  # set when the index was built


@pytest.mark.parametrize("exclude_history", [True, False])
def test_flat_index_equals_exact_for_users(shop, pair, exclude_history):
    exact, flat = pair
    for user in shop["users"][:8] + ["nobody"]:
        a, n_a = exact.recommend_user(exact.require(), user, 10, exclude_history, None)
        b, n_b = flat.recommend_user(flat.require(), user, 10, exclude_history, None)
        assert n_a == n_b
        assert len(a.item_ids) == 10 and a.item_ids == b.item_ids, user
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


def test_flat_index_equals_exact_with_filters_and_sessions(pair):
    exact, flat = pair
    tools = Filters(category="tools", max_price=5)
    for items in (["i1", "i2", "i3"], ["i25", "zzz"], []):
        a = exact.recommend_items(exact.require(), items, 10, True, tools)
        b = flat.recommend_items(flat.require(), items, 10, True, tools)
        assert a[0].item_ids == b[0].item_ids and a[1:] == b[1:]
        assert all(10 <= int(i[1:]) < 20 for i in b[0].item_ids)  # category honoured


def test_flat_index_similar_items_equal_exact_cosine(pair):
    exact, flat = pair
    for item in ("i0", "i13", "i39"):
        for flt in (None, Filters(category="toys")):
            a = exact.similar(exact.require(), item, 10, flt)
            b = flat.similar(flat.require(), item, 10, flt)
            assert a.item_ids == b.item_ids and item not in b.item_ids
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
            assert all(-1.0001 <= s <= 1.0001 for s in b.scores)  # cosine


def test_baselines_keep_exact_scoring(shop):
    svc = service(shop, "itemknn", "faiss")
    try:
        assert svc.require().vectors is None and svc.require().retrieval == "exact"
        ranked, _ = svc.recommend_user(svc.require(), "u0", 5, True, None)
        assert len(ranked.item_ids) == 5
    finally:
        svc.store.close()


def test_http_reports_retrieval_and_reload_rebuilds(shop):
    settings = ServeSettings(store_url=shop["url"], run=shop["root"] / "itemknn", api_key="k")
    with TestClient(create_app(settings), headers={"X-API-Key": "k"}) as client:
        assert client.get("/v1/users/u0/recommendations").json()["model"]["retrieval"] == "exact"
        r = client.post("/v1/admin/reload", json={"run": str(shop["root"] / "sasrec")}, headers={"X-API-Key": "k"})
        assert r.status_code == 200 and r.json()["model"]["retrieval"] == "faiss-flat"
        body = client.get("/v1/items/i3/similar", params={"k": 5}).json()
        assert len(body["items"]) == 5 and body["model"]["retrieval"] == "faiss-flat"


def test_index_setting_from_env():
    assert ServeSettings.from_env({}).index == "faiss"
    assert ServeSettings.from_env({"SHOPFORMER_INDEX": "Exact"}).index == "exact"
    with pytest.raises(ValueError, match="SHOPFORMER_INDEX"):
        ServeSettings.from_env({"SHOPFORMER_INDEX": "annoy"})
    with pytest.raises(ValueError, match="index"):
        ServeSettings(index="hnsw")


def test_hnsw_index_with_filters_matches_exact_on_a_tiny_shop(shop, pair, monkeypatch):
    """HNSW (forced, FAISS selector and over-fetch paths, no exact shortcut) on 40 items
    explores the whole graph: same answers as exact."""
    from shopformer.retrieve.faiss_index import FaissIndexConfig
    from shopformer.serve import recommender

    build = recommender.build_vector_indexes
    monkeypatch.setattr(recommender, "build_vector_indexes",
                        lambda model, **kw: build(model, FaissIndexConfig(kind="hnsw", exact_below=0), **kw))
    exact, hnsw = pair[0], service(shop, "sasrec", "faiss")
    try:
        assert hnsw.require().retrieval == "faiss-hnsw"
        for user in shop["users"][:5]:
            for flt in (None, Filters(category="food")):
                a, _ = exact.recommend_user(exact.require(), user, 10, True, flt)
                b, _ = hnsw.recommend_user(hnsw.require(), user, 10, True, flt)
                assert a.item_ids == b.item_ids
        assert exact.similar(exact.require(), "i5", 10, None).item_ids == hnsw.similar(hnsw.require(), "i5", 10, None).item_ids
    finally:
        hnsw.store.close()


def test_indexes_share_the_item_tables_and_build_with_every_thread(shop, monkeypatch):
    """The users index keeps the model's own item table (no copy), the similar index
    the normalized table that similar items read their query from; FAISS builds with
    every CPU and the serving thread is then limited to one."""
    import faiss

    from shopformer.serve import retrieval

    during = []
    real_build = retrieval.FaissIndex.build

    def build(self, vectors, copy=True):
        during.append(faiss.omp_get_max_threads())
        return real_build(self, vectors, copy)

    monkeypatch.setattr(retrieval.FaissIndex, "build", build)
    svc = service(shop, "sasrec", "faiss")
    try:
        served = svc.require()
        table = served.run.model.module.item_table().detach().numpy()
        assert np.shares_memory(served.vectors.users.vectors(), table)
        assert np.shares_memory(served.vectors.unit, served.vectors.similar.vectors())
        assert during == [retrieval._all_cpus()] * 2
        assert faiss.omp_get_max_threads() == 1
    finally:
        svc.store.close()


def test_history_is_left_out_without_a_catalog_mask(shop, pair, monkeypatch):
    _, flat = pair
    served = flat.require()
    seen = []
    real = type(served.vectors.users).search

    def search(self, queries, k, allowed=None):
        seen.append((k, allowed))
        return real(self, queries, k, allowed)

    monkeypatch.setattr(type(served.vectors.users), "search", search)
    ranked, n = flat.recommend_user(served, shop["users"][0], 5, True, None)
    assert n > 0 and len(ranked.item_ids) == 5
    hist = set(served.run.items.decode(flat.history(served, shop["users"][0]).sequences.items))
    assert not hist & set(ranked.item_ids)
    assert len(seen) == 1 and seen[0][1] is None and seen[0][0] == 5 + len(hist)
    seen.clear()
    similar = flat.similar(served, "i3", 5, None)
    assert "i3" not in similar.item_ids and len(similar.item_ids) == 5
    assert seen == [(6, None)]


def test_titles_come_from_the_catalog_view(pair, monkeypatch):
    _, flat = pair
    served = flat.require()
    ranked, _ = flat.recommend_user(served, "u1", 5, True, None)
    flat._catalog_view(served)  # current (built at load; rebuilt here if it expired)

    def no_store_reads(*a, **kw):
        raise AssertionError("titles read from the store")

    monkeypatch.setattr(flat.store, "products", no_store_reads)
    titles = flat.titles(ranked.item_ids, served, ranked.idx)
    assert titles == {i: f"Item {i[1:]}" for i in ranked.item_ids}


def test_a_cached_history_keeps_its_user_vector(shop, pair, monkeypatch):
    _, flat = pair
    served = flat.require()
    user = shop["users"][1]
    calls = []
    real = type(served.run.model).user_vectors

    def counted(self, history):
        calls.append(history.n_interactions)
        return real(self, history)

    monkeypatch.setattr(type(served.run.model), "user_vectors", counted)
    flat.invalidate_users([user])
    first, n = flat.recommend_user(served, user, 10, True, None)
    again, _ = flat.recommend_user(served, user, 10, True, None)
    assert calls == [n] and again.item_ids == first.item_ids and again.scores == first.scores
    flat.invalidate_users([user])  # what posting an event of this user does
    flat.recommend_user(served, user, 10, True, None)
    assert calls == [n, n]


def test_an_event_posted_over_http_changes_the_transformers_next_answer(shop):
    settings = ServeSettings(store_url=shop["url"], run=shop["root"] / "sasrec", api_key="k")
    key = {"X-API-Key": "k"}

    def event(item: str, minute: int) -> dict:
        return {"user_id": "walker", "item_id": item, "event_type": "purchase",
                "timestamp": f"2024-06-01T10:{minute:02d}:00Z", "event_id": f"walker-{item}"}

    with TestClient(create_app(settings), headers={"X-API-Key": "k"}) as client:
        assert client.post("/v1/events", json=event("i1", 0), headers=key).status_code == 201
        first = client.get("/v1/users/walker/recommendations", params={"k": 5}).json()
        cached = client.get("/v1/users/walker/recommendations", params={"k": 5}).json()
        assert cached["items"] == first["items"] and first["history_length"] == 1
        assert client.post("/v1/events", json=event("i31", 1), headers=key).status_code == 201
        after = client.get("/v1/users/walker/recommendations", params={"k": 5}).json()
    assert after["history_length"] == 2
    assert "i31" not in {x["item_id"] for x in after["items"]}
    assert [x["score"] for x in after["items"]] != [x["score"] for x in first["items"]]
