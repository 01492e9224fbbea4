"""Audiences over HTTP and the CLI on a tiny shop with a known answer: three aisles whose
customers buy only their aisle's items, so the customers of an item's aisle must be named
first (GET /v1/items/{id}/audience, GET /v1/audience?category=, shopformer audience)."""

from __future__ import annotations

import csv

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from shopformer.artifact import make_model  # noqa: E402
from shopformer.cli import app as cli_app  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402
from shopformer.ingest.api import ingest  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.store import EventStore, StoreConfig, import_folder  # noqa: E402
from shopformer.store.access import audit_entries, create_key  # noqa: E402

KEY = "audience-admin-key"
AISLES = "abc"
PER_AISLE = 12
SASREC = {"arch.d_model": "16", "arch.n_layers": "1", "arch.n_heads": "1", "arch.max_len": "8",
          "train.epochs": "40", "train.batch_size": "8"}


pytestmark = pytest.mark.usefixtures("restore_threads")


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("audshop")
    lines = []
    for aisle in AISLES:  # each customer walks their aisle's items 0..4 in a rotating order
        for u in range(PER_AISLE):
            order = [(u + j) % 5 for j in range(int(3 + u % 3))]
            lines.append(f"{aisle}{u:02d} " + " ".join(f"{aisle}{i}" for i in order))
    (root / "seq.txt").write_text("\n".join(lines) + "\n")
    (root / "catalog.csv").write_text("item_id,title,categories\n" + "".join(
        f"{a}{i},Item {a}{i},aisle-{a}\n" for a in AISLES for i in range(5)) + "z9,Never sold,aisle-z\n")
    data = root / "data"
    ingest(root / "seq.txt", "sequence", data, catalog=root / "catalog.csv")
    train_run(make_model("sasrec", SASREC), data, DataConfig(), root / "sasrec", fit_on="all")
    train_run(make_model("itemknn", {}), data, DataConfig(), root / "itemknn", fit_on="all")
    return {"root": root, "data": data}


@pytest.fixture
def store_url(shop, tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, shop["data"])
    return url


def client_for(store_url: str, run, **kw) -> TestClient:
    settings = ServeSettings(store_url=store_url, run=run, api_key=KEY, search=False, **kw)
    return TestClient(create_app(settings), headers={"X-API-Key": KEY})


@pytest.fixture
def client(shop, store_url):
    with client_for(store_url, shop["root"] / "sasrec") as c:
        yield c


def test_item_audience_names_the_aisles_customers_first(client):
    r = client.get("/v1/items/b3/audience", params={"k": PER_AISLE})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["customers"]) == PER_AISLE
    assert all(c["user_id"].startswith("b") for c in body["customers"]), body["customers"]
    assert [c["rank"] for c in body["customers"]] == list(range(1, PER_AISLE + 1))
    scores = [c["score"] for c in body["customers"]]
    assert scores == sorted(scores, reverse=True)
    assert body["item_id"] == "b3" and body["items_scored"] == 1
    assert body["customers_indexed"] == 3 * PER_AISLE
    assert body["request_id"] == r.headers["X-Request-ID"] and len(body["request_id"]) == 32
    every = client.get("/v1/items/b3/audience", params={"k": 1000}).json()["customers"]
    assert len(every) == 3 * PER_AISLE  # k past the customers: all of them, once
    assert {c["user_id"][0] for c in every[:PER_AISLE]} == {"b"}


def test_category_audience_names_the_category_customers(client):
    r = client.get("/v1/audience", params={"category": "aisle-c", "k": PER_AISLE})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["category"] == "aisle-c" and body["items_scored"] == 5
    assert {c["user_id"][0] for c in body["customers"]} == {"c"}


def test_bad_requests_are_clear_4xx(client, store_url):
    r = client.get("/v1/items/nope/audience")
    assert r.status_code == 404 and "'nope' is unknown" in r.json()["detail"]
    r = client.get("/v1/items/z9/audience")  # in the catalog, never trained on
    assert r.status_code == 404 and "not been trained" in r.json()["detail"]
    r = client.get("/v1/audience", params={"category": "aisle-z"})
    assert r.status_code == 404 and "aisle-z" in r.json()["detail"]
    for k in (0, 100_001, "x"):
        r = client.get("/v1/items/a1/audience", params={"k": k})
        assert r.status_code == 422 and "k" in str(r.json()["detail"])
    assert client.get("/v1/audience").status_code == 422  # category is required


def test_an_audience_needs_an_admin_key_and_is_audited(client, store_url):
    with EventStore(StoreConfig(store_url)) as store:
        _, reader = create_key(store, "reader", ["read"])
    assert client.get("/v1/items/a1/audience", headers={"X-API-Key": reader}).status_code == 403
    assert client.get("/v1/items/a1/audience", headers={"X-API-Key": ""}).status_code == 401
    assert client.get("/v1/items/a1/audience", params={"k": 3}).status_code == 200
    with EventStore(StoreConfig(store_url)) as store:
        found = audit_entries(store, action="audience")
    assert [(e.target, e.detail["customers"]) for e in found] == [("item:a1", 3)]


def test_a_baseline_answers_409(shop, store_url):
    with client_for(store_url, shop["root"] / "itemknn") as c:
        r = c.get("/v1/items/a1/audience")
    assert r.status_code == 409 and "user vectors" in r.json()["detail"]


def test_an_erased_customer_is_never_named_again(client):
    first = client.get("/v1/items/a2/audience", params={"k": 3}).json()["customers"][0]["user_id"]
    assert client.delete(f"/v1/users/{first}").status_code == 200
    after = client.get("/v1/items/a2/audience", params={"k": 1000}).json()
    assert first not in [c["user_id"] for c in after["customers"]]
    assert after["customers_indexed"] == 3 * PER_AISLE - 1


def test_states_refresh_and_pick_up_new_customers(shop, store_url):
    with client_for(store_url, shop["root"] / "sasrec", audience_refresh_s=0.0) as c:
        before = c.get("/v1/items/c4/audience", params={"k": 1000}).json()
        for n, item in enumerate(("c0", "c1", "c2", "c3")):
            r = c.post("/v1/events", json={"event_id": f"new-{n}", "user_id": "newcomer", "item_id": item,
                                           "type": "view", "timestamp": f"2026-01-01T00:00:0{n}Z"})
            assert r.status_code == 201, r.text
        after = c.get("/v1/items/c4/audience", params={"k": PER_AISLE + 1}).json()
    assert after["customers_indexed"] == before["customers_indexed"] + 1
    assert after["states_built_at"] > before["states_built_at"]
    assert "newcomer" in [m["user_id"] for m in after["customers"]]  # among the aisle's customers


def test_cli_exports_the_same_audience_as_csv(shop, store_url, client, tmp_path):
    api = client.get("/v1/items/a4/audience", params={"k": 5}).json()["customers"]
    out = tmp_path / "audience.csv"
    res = CliRunner().invoke(cli_app, ["audience", "a4", "--run", str(shop["root"] / "sasrec"), "--store", store_url,
                                       "--k", "5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert [r["user_id"] for r in rows] == [m["user_id"] for m in api]
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5]
    assert [float(r["score"]) for r in rows] == pytest.approx([m["score"] for m in api], abs=1e-4)
    res = CliRunner().invoke(cli_app, ["audience", "--category", "aisle-a", "--run", str(shop["root"] / "sasrec"),
                                       "--store", store_url, "--k", "4"])
    assert res.exit_code == 0 and res.stdout.splitlines()[0] == "user_id,score,rank"
    assert {line.split(",")[0][0] for line in res.stdout.splitlines()[1:5]} == {"a"}
    bad = CliRunner().invoke(cli_app, ["audience", "nope", "--run", str(shop["root"] / "sasrec"), "--store", store_url])
    assert bad.exit_code == 1 and "unknown" in bad.output
