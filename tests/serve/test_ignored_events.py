"""A user's answer says which of their stored events the model did not read
(``ignored_event_types``): a model trained on purchases only ignores posted views and
add-to-cart events, and says so; a model that reads every item event type uses them."""

from __future__ import annotations

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

KEY = "k3y"
SEQUENCES = "u1 a b c\nu2 a b d\nu3 b c d\nu4 e f g\nu5 e f h\nu6 f g h\nu7 a c d\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ignored")
    (root / "seq.txt").write_text(SEQUENCES)  # ingested as purchases
    ingest(root / "seq.txt", "sequence", root / "data")
    out = {"data": root / "data"}
    for name, types in (("purchases", ("purchase",)), ("all", None)):
        out[name] = root / name
        train_run(make_model("itemknn", {"shrink": "0"}), root / "data", DataConfig(event_types=types), out[name],
                  fit_on="all")
    return out


def _client(runs, run_name: str, tmp_path) -> TestClient:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, runs["data"])
    settings = ServeSettings(store_url=url, run=runs[run_name], api_key=KEY, search=False)
    return TestClient(create_app(settings), headers={"X-API-Key": KEY})


def _post(client: TestClient, type_: str, item: str) -> None:
    r = client.post("/v1/events", json={"user_id": "u1", "item_id": item, "type": type_})
    assert r.status_code in (200, 201), r.text


def test_purchase_model_reports_the_views_and_carts_it_ignored(runs, tmp_path):
    with _client(runs, "purchases", tmp_path) as client:
        before = client.get("/v1/users/u1/recommendations").json()
        assert before["ignored_event_types"] == {} and before["history_length"] == 3
        _post(client, "view", "d")
        _post(client, "view", "e")
        _post(client, "add_to_cart", "f")
        after = client.get("/v1/users/u1/recommendations").json()
        assert after["ignored_event_types"] == {"view": 2, "add_to_cart": 1}
        assert after["items"] == before["items"] and after["history_length"] == 3
        spec = client.get("/openapi.json").json()["components"]["schemas"]["RecommendationResponse"]
        assert "ignored_event_types" in spec["properties"]


def test_model_reading_every_type_uses_views(runs, tmp_path):
    with _client(runs, "all", tmp_path) as client:
        before = client.get("/v1/users/u1/recommendations").json()
        assert "d" in [x["item_id"] for x in before["items"]]
        _post(client, "view", "d")
        _post(client, "remove_from_cart", "d")  # not a type any model reads
        after = client.get("/v1/users/u1/recommendations").json()
        assert after["history_length"] == 4 and "d" not in [x["item_id"] for x in after["items"]]
        assert after["ignored_event_types"] == {"remove_from_cart": 1}
