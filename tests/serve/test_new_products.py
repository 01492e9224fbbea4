"""A product added through the API joins a content-fused model at once (no retraining)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from shopformer.artifact import make_model  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402
from shopformer.features.content import ContentConfig  # noqa: E402
from shopformer.ingest.api import ingest  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.store import EventStore, StoreConfig, import_folder  # noqa: E402

KEY = "k"
AUTH = {"X-API-Key": KEY}
KITCHEN, GARDEN = "abcd", "efgh"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("shop")
    lines = [f"k{i} " + " ".join(KITCHEN[(i + j) % 4] for j in range(4)) for i in range(12)]
    lines += [f"g{i} " + " ".join(GARDEN[(i + j) % 4] for j in range(4)) for i in range(12)]
    (root / "seq.txt").write_text("\n".join(lines) + "\n")
    (root / "catalog.csv").write_text("item_id,title,categories\n" + "".join(
        f"{x},{x.upper()},{'kitchen' if x in KITCHEN else 'garden'}\n" for x in KITCHEN + GARDEN))
    data = root / "data"
    ingest(root / "seq.txt", "sequence", data, catalog=root / "catalog.csv")
    model = make_model("sasrec", {"arch.d_model": "16", "arch.n_heads": "1", "arch.max_len": "8",
                                  "arch.id_dropout": "0.5", "train.epochs": "40", "train.batch_size": "8"})
    train_run(model, data, DataConfig(), root / "run", fit_on="all", content=ContentConfig(fields=("categories",)))
    url = f"sqlite:///{root / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, data)
    return root / "run", url


def test_upserted_product_is_recommendable_and_similar_at_once(run):
    folder, url = run
    settings = ServeSettings(store_url=url, run=folder, api_key=KEY, cache_ttl_s=60)
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as client:
        assert client.get("/v1/items/kettle").status_code == 404
        r = client.put("/v1/catalog/items", json=[{"item_id": "kettle", "title": "Kettle", "categories": ["kitchen"]}],
                       headers=AUTH)
        assert r.status_code == 200 and r.json() == {"upserted": 1, "placed_in_model": 1}
        assert client.get("/v1/items/kettle").json()["known_to_model"] is True
        sim = client.get("/v1/items/kettle/similar", params={"k": 4}).json()
        assert sim["model"]["version"].endswith("+1new")
        assert sum(x["item_id"] in KITCHEN for x in sim["items"]) >= 3  # placed among the kitchen items
        recs = client.post("/v1/recommendations/session", json={"item_ids": ["a", "b"], "k": 7}).json()
        assert "kettle" in [x["item_id"] for x in recs["items"]]
        # re-upserting a known product places nothing new
        again = client.put("/v1/catalog/items", json=[{"item_id": "kettle", "title": "Kettle 2"}], headers=AUTH)
        assert again.json()["placed_in_model"] == 0
    # a fresh server over the same store places catalog products the run never saw
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as client:
        assert client.get("/v1/items/kettle").json()["known_to_model"] is True
