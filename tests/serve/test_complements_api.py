"""Complements over HTTP on a tiny shop with a known answer (Online Retail format:
invoices are baskets). A red tea cup (A) is always bought with a saucer (B); it is
bought even more often with its twin (A2, "RED TEA CUP": the same words, another stock
code), a near-substitute by title. B must be A's first complement and A2 never appear; unknown ids are named."""

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
from shopformer.serve.complements import ServeComplementsConfig  # noqa: E402
from shopformer.store import EventStore, StoreConfig, import_folder  # noqa: E402
from shopformer.store.access import create_key  # noqa: E402

KEY = "complements-admin-key"
TITLES = {"A": "TEA CUP RED", "A2": "RED TEA CUP", "B": "SAUCER WHITE", "C": "CANDLE HOLDER",
          "D": "PAPER NAPKINS", "E": "GIFT BAG", "F": "STRING LIGHTS", "G": "DOOR MAT"}
FILLER = ["C", "D", "E", "F", "G"]


def _invoices() -> list[list[str]]:
    out = [["A", "B"] for _ in range(10)]  # A is always bought with B ...
    out += [["A", "A2", FILLER[i % 5]] for i in range(12)]  # ... and more often with its twin
    out += [[FILLER[i % 5], FILLER[(i + 1) % 5], FILLER[(i + 2) % 5]] for i in range(30)]  # popular fillers
    out += [["B", FILLER[i % 5]] for i in range(4)]
    return out


pytestmark = pytest.mark.usefixtures("restore_threads")


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cmpshop")
    rows = ["InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"]
    for n, basket in enumerate(_invoices()):
        when = f"2011-01-{1 + n % 28:02d} {10 + n % 8:02d}:00:00"
        rows += [f"{500000 + n},{item},{TITLES[item]},1,{when},2.5,{12000 + n % 9},United Kingdom" for item in basket]
    (root / "retail.csv").write_text("\n".join(rows) + "\n")
    data = root / "data"
    ingest(root / "retail.csv", "online-retail", data)
    train_run(make_model("itemknn", {}), data, DataConfig(event_types=("purchase",)), root / "itemknn", fit_on="all")
    return {"root": root, "data": data}


@pytest.fixture
def store_url(shop, tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, shop["data"])
    return url


@pytest.fixture
def client(shop, store_url):
    settings = ServeSettings(store_url=store_url, run=shop["root"] / "itemknn", api_key=KEY, search=False, sync_s=0)
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as c:
        yield c


def ids(body: dict) -> list[str]:
    return [x["item_id"] for x in body["items"]]


def test_item_complements_put_the_saucer_first_and_drop_the_twin(client):
    r = client.get("/v1/items/A/complements", params={"k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert ids(body)[0] == "B"
    assert "A2" not in ids(body) and "A" not in ids(body)
    assert body["items"][0]["title"] == "SAUCER WHITE"
    assert body["request_id"] == r.headers["X-Request-ID"] and len(body["request_id"]) == 32
    assert body["item_ids"] == ["A"] and body["baskets_counted"] == len(_invoices())
    assert body["settings"]["title_overlap"] == ServeComplementsConfig().complements.title_overlap == 1.0
    # similar items are another question: the twin (bought with A in the same baskets) is there
    assert "A2" in ids(client.get("/v1/items/A/similar", params={"k": 7}).json())


def test_cart_is_completed_without_its_items_and_is_logged(client):
    r = client.post("/v1/recommendations/cart", json={"item_ids": ["A", "C"], "k": 3, "placement": "cart"})
    assert r.status_code == 200, r.text
    body = r.json()
    got = ids(body)
    assert got[0] == "B" and len(got) == 3
    assert not {"A", "A2", "C"} & set(got)
    scores = [x["score"] for x in body["items"]]
    assert scores == sorted(scores, reverse=True)
    client.app.state.feedback.close()  # flush the impression log
    with EventStore(StoreConfig(client.app.state.settings.store_url)) as s:
        shown = s.impression(body["request_id"])
    assert shown is not None and shown["route"] == "cart" and shown["placement"] == "cart"
    assert shown["item_ids"] == got


def test_unknown_items_are_named(client):
    r = client.get("/v1/items/NOPE/complements")
    assert r.status_code == 404 and "'NOPE'" in r.json()["detail"]
    r = client.post("/v1/recommendations/cart", json={"item_ids": ["A", "NOPE", "ALSO"]})
    assert r.status_code == 422
    locs = [(e["loc"], e["input"]) for e in r.json()["detail"]]
    assert locs == [(["body", "item_ids", 1], "NOPE"), (["body", "item_ids", 2], "ALSO")]
    assert client.post("/v1/recommendations/cart", json={"item_ids": []}).status_code == 422


def test_business_rules_and_filters_apply(client):
    r = client.post("/v1/admin/rules", json={"kind": "exclude", "match": {"items": ["B"]}})
    assert r.status_code == 201, r.text
    body = client.get("/v1/items/A/complements", params={"k": 3}).json()
    assert "B" not in ids(body) and "A2" not in ids(body) and len(ids(body)) == 3
    assert body["rules"] and body["rules"][0]["item_id"] == "B" and body["rules"][0]["effect"] == "excluded"
    assert client.get("/v1/items/A/complements", params={"category": "nothing-here"}).json()["items"] == []


def test_user_id_needs_the_read_scope(client, store_url):
    with EventStore(StoreConfig(store_url)) as s:
        _, writer = create_key(s, "writer", ["write"])
    body = {"item_ids": ["A"], "user_id": "12000"}
    assert client.post("/v1/recommendations/cart", json=body, headers={"X-API-Key": writer}).status_code == 403
    r = client.post("/v1/recommendations/cart", json=body)
    assert r.status_code == 200 and ids(r.json())[0] == "B" and r.json()["user_id"] == "12000"


def test_a_sequence_model_blends_in_and_its_vectors_filter_substitutes(shop, store_url):
    from shopformer.rank.complements import ComplementsConfig
    from shopformer.serve.complements import ComplementsService

    run = shop["root"] / "sasrec"
    if not run.exists():
        params = {"arch.d_model": "16", "arch.n_layers": "1", "arch.n_heads": "1", "arch.max_len": "8",
                  "train.epochs": "5", "train.batch_size": "8"}
        train_run(make_model("sasrec", params), shop["data"], DataConfig(event_types=("purchase",)), run,
                  fit_on="all")
    settings = ServeSettings(store_url=store_url, run=run, api_key=KEY, search=False, sync_s=0)
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as c:
        blended = ComplementsConfig(sequence_weight=0.3, substitute_similarity=0.999, title_overlap=0.75)
        c.app.state.complements = ComplementsService(ServeComplementsConfig(complements=blended),
                                                     c.app.state.service.store)
        for body in ({"item_ids": ["A"], "k": 4}, {"item_ids": ["A"], "k": 4, "user_id": "12000"}):
            r = c.post("/v1/recommendations/cart", json=body)
            assert r.status_code == 200, r.text
            got = ids(r.json())
            assert got[0] == "B" and len(got) == 4 and not {"A", "A2"} & set(got)
            assert r.json()["settings"]["sequence_weight"] == 0.3
        built = c.app.state.complements.built(c.app.state.service.served)
        assert built.complements.unit_vectors is not None  # the served model's item vectors
        assert c.app.state.complements.builds == 1  # counted once, reused by the second answer


def test_a_raw_user_id_in_the_cart_body_becomes_its_pseudonym(shop, tmp_path):
    from shopformer.privacy.pseudonym import PseudonymConfig, Pseudonymizer

    config = PseudonymConfig(b"pseudonym key for the tests, 32b")
    pseudonyms = Pseudonymizer(config)
    data = tmp_path / "data"
    ingest(shop["root"] / "retail.csv", "online-retail", data, pseudonyms=pseudonyms)
    train_run(make_model("itemknn", {}), data, DataConfig(event_types=("purchase",)), tmp_path / "run", fit_on="all")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, data)
    settings = ServeSettings(store_url=url, run=tmp_path / "run", api_key=KEY, search=False, sync_s=0,
                             pseudonyms=config)
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as c:
        r = c.post("/v1/recommendations/cart", json={"item_ids": ["A"], "user_id": "12000"})
        assert r.status_code == 200, r.text
        assert r.json()["user_id"] == pseudonyms.user("12000") and ids(r.json())[0] == "B"
        c.app.state.feedback.close()
        with EventStore(StoreConfig(url)) as s:
            assert s.impression(r.json()["request_id"])["user_id"] == pseudonyms.user("12000")
