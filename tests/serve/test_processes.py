"""Several processes on one store (``serve --workers N``, replicas): a reload reaches
all of them, and an event posted to one changes the next answer of every other."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from shopformer.artifact import make_model  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402
from shopformer.ingest.api import ingest  # noqa: E402
from shopformer.serve import ServeSettings  # noqa: E402
from shopformer.serve.recommender import RecommendationService  # noqa: E402
from shopformer.store import EventStore, StoreConfig, import_folder  # noqa: E402

SEQUENCES = "u1 a b c\nu2 a b d\nu3 b c d\nu4 e f g\nu5 e f h\nu6 f g h\n"


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("procs")
    (root / "seq.txt").write_text(SEQUENCES)
    data = root / "data"
    ingest(root / "seq.txt", "sequence", data)
    train_run(make_model("itemknn", {"shrink": "0"}), data, DataConfig(), root / "knn", fit_on="all")
    train_run(make_model("popular", {}), data, DataConfig(), root / "pop", fit_on="all")
    return {"data": data, "knn": root / "knn", "pop": root / "pop"}


@pytest.fixture
def url(shop, tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, shop["data"])
    return url


def process(url: str, **kw) -> RecommendationService:
    return RecommendationService(ServeSettings(store_url=url, cache_ttl_s=600, **kw), EventStore(StoreConfig(url)))


def test_a_published_reload_reaches_the_other_process(shop, url):
    a, b = process(url), process(url)
    try:
        assert not b.sync()  # nothing published yet
        a.reload(shop["knn"], publish=True)
        assert b.sync() and b.require().version == a.require().version
        assert not b.sync()  # already serving it
        a.reload(shop["pop"], publish=True)
        assert b.sync() and b.require().name == "popular"
        b.reload(shop["knn"])  # a load that is not published stays local
        assert a.require().name == "popular" and not a.sync()
    finally:
        a.store.close()
        b.store.close()


@pytest.mark.parametrize("check", [True, False])
def test_an_event_stored_by_another_process_changes_the_next_answer(shop, url, check):
    a, b = process(url, cache_check=check), process(url, cache_check=check)
    try:
        for svc in (a, b):
            svc.reload(shop["knn"])
        before, n = b.recommend_user(b.require(), "u1", 3, True, None)
        assert n == 3 and before.item_ids[0] == "d"
        # another process stores an event of u1: b has u1's history cached
        a.store.add_events([{"user_id": "u1", "item_id": "e", "event_type": "view", "event_id": "x1"}])
        after, n_after = b.recommend_user(b.require(), "u1", 3, True, None)
        if check:  # the cached entry no longer matches u1's newest event: read again
            assert n_after == 4 and "e" not in after.item_ids and set(after.item_ids) & {"f", "g", "h"}
        else:  # without the check, the cache answers until its TTL
            assert n_after == 3 and after.item_ids == before.item_ids
    finally:
        a.store.close()
        b.store.close()


def test_reload_through_one_app_reaches_another_app(shop, url):
    import time

    from fastapi.testclient import TestClient

    from shopformer.serve import create_app

    def app(run):
        return TestClient(create_app(ServeSettings(store_url=url, run=run, api_key="k", sync_s=0.1)),
                          headers={"X-API-Key": "k"})

    with app(shop["knn"]) as a, app(shop["knn"]) as b:
        assert b.get("/health").json()["model"]["name"] == "itemknn"
        r = a.post("/v1/admin/reload", json={"run": str(shop["pop"])}, headers={"X-API-Key": "k"})
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 10
        while b.get("/health").json()["model"]["name"] != "popular" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.get("/health").json()["model"]["name"] == "popular"
        assert 'shopformer_model_info{name="popular"' in b.get("/metrics").text
