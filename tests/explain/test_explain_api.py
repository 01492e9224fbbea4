"""explain=true on the recommendation routes: values checked by hand on a tiny shop."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from shopformer.artifact import make_model  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402
from shopformer.explain.rules import model_ranks  # noqa: E402
from shopformer.features.sequences import Sequences  # noqa: E402
from shopformer.ingest.api import ingest  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.store import EventStore, StoreConfig, import_folder  # noqa: E402

# The shop of tests/serve/test_api.py, with brands. Item-kNN (cosine, shrink 0): every
# kitchen item has 3 customers, and d has 2 in common with each of a, b, c.
SEQUENCES = "u1 a b c\nu2 a b d\nu3 b c d\nu4 e f g\nu5 e f h\nu6 f g h\nu7 a c d\n"
CATALOG = """\
item_id,title,price,categories,available,brand
a,Apron,1,kitchen,true,acme
b,Bowl,2,kitchen,true,acme
c,Cup,3,kitchen|cups,true,zeta
d,Dish,4,kitchen,true,acme
e,Edger,5,garden,true,gro
f,Fork,6,garden,true,gro
g,Gloves,7,garden,true,gro
h,Hose,8,garden,false,gro
"""
HISTORY_RULE = "excluded: already in history"


@pytest.fixture(scope="module", autouse=True)
def _restore_threads():
    """Serving sets torch (and FAISS) to one thread; give the session its threads back."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("xshop")
    (root / "seq.txt").write_text(SEQUENCES)
    (root / "catalog.csv").write_text(CATALOG)
    data = root / "data"
    ingest(root / "seq.txt", "sequence", data, catalog=root / "catalog.csv")
    train_run(make_model("itemknn", {"shrink": "0"}), data, DataConfig(), root / "knn", fit_on="all")
    sasrec = {"arch.d_model": "8", "arch.n_heads": "1", "arch.n_layers": "1", "arch.max_len": "5", "train.epochs": "2"}
    train_run(make_model("sasrec", sasrec), data, DataConfig(), root / "sasrec", fit_on="all")
    return {"data": data, "knn": root / "knn", "sasrec": root / "sasrec"}


def client_for(shop, tmp_path, run: str) -> TestClient:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, shop["data"])
    return TestClient(create_app(ServeSettings(store_url=url, run=shop[run], api_key="k", cache_ttl_s=60)),
                      headers={"X-API-Key": "k"})


@pytest.fixture
def client(shop, tmp_path):
    with client_for(shop, tmp_path, "knn") as c:
        yield c


def test_user_explanations_hold_the_measured_reasons(client):
    body = client.get("/v1/users/u1/recommendations", params={"k": 2, "explain": "true"}).json()
    dish, edger = body["items"]
    x = dish["explanation"]
    assert dish["item_id"] == "d" and x["item_id"] == "d" and x["score"] == pytest.approx(2.0)
    assert [(e["item_id"], e["title"]) for e in x["events"]] == [("c", "Cup"), ("b", "Bowl"), ("a", "Apron")]
    assert [e["attribution"] for e in x["events"]] == pytest.approx([2 / 3] * 3, abs=1e-5)
    assert [(c["item_id"], c["customers"]) for c in x["collaborative"]] == [("c", 2), ("b", 2), ("a", 2)]
    shared = {(s["field"], s["value"]) for s in x["content"]["shared"]}
    assert shared == {("categories", "kitchen"), ("brand", "acme")}
    assert x["rules"] == {"model_rank": 1, "final_rank": 1, "rules": [], "applied": [HISTORY_RULE]}
    assert x["sentence"].startswith("Because you bought Cup and Bowl; 2 customers who bought Cup also bought this")
    assert edger["explanation"]["rules"]["rules"] == [{"rule": HISTORY_RULE, "removed_above": 3}]


def test_without_explain_the_answer_is_unchanged(client):
    item = client.get("/v1/users/u1/recommendations", params={"k": 1}).json()["items"][0]
    assert item == {"item_id": "d", "score": item["score"], "title": "Dish"}


def test_filters_are_recorded_as_rules(client):
    body = client.get("/v1/users/u1/recommendations",
                      params={"k": 4, "category": "garden", "available_only": "true", "explain": "true"}).json()
    first = body["items"][0]
    assert first["item_id"] == "e"
    rules = first["explanation"]["rules"]
    # above e (score 0) the model had d, a, b, c: the history rule removed a, b, c; the
    # category filter all four; the availability filter none of them
    assert rules["model_rank"] == 5 and rules["final_rank"] == 1
    assert rules["rules"] == [{"rule": HISTORY_RULE, "removed_above": 3},
                              {"rule": "filtered: category=garden", "removed_above": 4}]
    assert rules["applied"] == [HISTORY_RULE, "filtered: available only", "filtered: category=garden"]
    assert "h" not in [x["item_id"] for x in body["items"]]


def test_session_and_popularity_explanations(client):
    body = client.post("/v1/recommendations/session", json={"item_ids": ["e"], "k": 1, "explain": True}).json()
    fork = body["items"][0]
    assert fork["item_id"] == "f"
    x = fork["explanation"]
    # sim(e, f) = 2 / sqrt(2 * 3); without its one event the session gets popularity
    # (f: 3 customers of 3 at most -> 1.0): the occlusion measures 0.816 - 1.0 < 0,
    # so no event is named, and the sentence rests on the co-customers
    assert x["score"] == pytest.approx(2 / math.sqrt(6), abs=1e-5) and x["events"] == []
    assert x["collaborative"] == [{"item_id": "e", "title": "Edger", "customers": 2, "verb": "bought"}]
    assert x["sentence"] == "2 customers who bought Edger also bought this; same brand (gro) and category (garden) as Edger."
    nobody = client.get("/v1/users/nobody/recommendations", params={"k": 1, "explain": "true"}).json()
    assert nobody["strategy"] == "popularity"
    assert nobody["items"][0]["explanation"]["sentence"].startswith("Popular: 3 customers bought this")


def test_openapi_documents_the_option(client):
    spec = client.get("/openapi.json").json()
    params = [p["name"] for p in spec["paths"]["/v1/users/{user_id}/recommendations"]["get"]["parameters"]]
    assert "explain" in params and "Explanation" in spec["components"]["schemas"]


def test_transformer_attribution_is_the_score_drop_without_each_event(shop, tmp_path):
    with client_for(shop, tmp_path, "sasrec") as c:
        body = c.get("/v1/users/u2/recommendations", params={"k": 2, "explain": "true"}).json()
        served = c.app.state.service.require()
        model, vocab = served.run.model, served.run.items
    assert served.vectors is not None  # vector retrieval: the occlusion reused the answer's user vector
    hist = vocab.encode(["a", "b", "d"])
    full = model.score(Sequences.from_lists([hist.tolist()]))[0]
    for item in body["items"]:
        x, j = item["explanation"], vocab.index(item["item_id"])
        assert x["score"] == pytest.approx(float(full[j]), abs=1e-4)
        # provenance from the history items' scores alone: the rank over the whole catalog
        assert x["rules"]["model_rank"] == int(model_ranks(full, np.array([j]))[0])
        for e in x["events"]:
            rest = np.delete(hist, e["position"])
            drop = full[j] - model.score(Sequences.from_lists([rest.tolist()]))[0, j]
            assert e["attribution"] == pytest.approx(float(drop), abs=1e-4)


def test_explain_precision_setting_reaches_the_occlusion(shop, tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, shop["data"])
    settings = ServeSettings(store_url=url, run=shop["sasrec"], api_key="k", explain_precision="int8")
    with TestClient(create_app(settings), headers={"X-API-Key": "k"}) as c:
        assert c.app.state.explainers.config.occlusion.precision == "int8"
        body = c.get("/v1/users/u2/recommendations", params={"k": 2, "explain": "true"}).json()
        model, vocab = c.app.state.service.require().run.model, c.app.state.service.require().run.items
    full = model.score(Sequences.from_lists([vocab.encode(["a", "b", "d"]).tolist()]))[0]
    for item in body["items"]:  # the served score stays the float32 one; events still named
        x = item["explanation"]
        assert x["score"] == pytest.approx(float(full[vocab.index(item["item_id"])]), abs=1e-4)
        assert x["events_tested"] == 3
    assert model._int8 is not None  # the occluded rows came from the int8 copy
    with pytest.raises(ValueError, match="explain_precision"):
        ServeSettings(explain_precision="fp4")
    assert ServeSettings.from_env({"SHOPFORMER_EXPLAIN_PRECISION": "Int8"}).explain_precision == "int8"
    with pytest.raises(ValueError, match="SHOPFORMER_EXPLAIN_PRECISION"):
        ServeSettings.from_env({"SHOPFORMER_EXPLAIN_PRECISION": "half"})
