"""The learned audience ranker served: ``shopformer audience-fit`` fits it on the store's
purchases and saves it in the run, then ``GET /v1/items/{id}/audience`` and
``shopformer audience`` rank item audiences by it. A tiny shop where each regular
customer buys one item every 10 days, among busier customers buying at random: the
item's regular customer must be named first."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone

import numpy as np
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

KEY = "audience-ranker-admin-key"
N_ITEMS = 30
N_BUSY = 60
SASREC = {"arch.d_model": "8", "arch.n_layers": "1", "arch.n_heads": "1", "arch.max_len": "8",
          "train.epochs": "1", "train.batch_size": "32"}
START = datetime(2011, 1, 1, tzinfo=timezone.utc)


pytestmark = pytest.mark.usefixtures("restore_threads")


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("rankershop")
    rng = np.random.default_rng(0)
    lines = ["user_id,item_id,event_type,timestamp"]

    def line(user: str, item: int, day: float) -> str:
        when = START + timedelta(days=day)
        return f"{user},i{item:02d},purchase,{when.strftime('%Y-%m-%dT%H:%M:%SZ')}"

    for i in range(1, N_ITEMS + 1):  # r05 buys i05 every 10 days
        lines += [line(f"r{i:02d}", i, d + rng.uniform(0, 1)) for d in range(i % 10, 240, 10)]
    for u in range(N_BUSY):  # busier customers, random items (each one rarely)
        lines += [line(f"n{u:02d}", int(rng.integers(1, N_ITEMS + 1)), float(d))
                  for d in np.sort(rng.uniform(0, 240, size=int(rng.integers(40, 60))))]
    (root / "events.csv").write_text("\n".join(lines) + "\n")
    data = root / "data"
    ingest(root / "events.csv", "csv", data)
    train_run(make_model("sasrec", SASREC), data, DataConfig(event_types=("purchase",)), root / "run", fit_on="all")
    url = f"sqlite:///{root / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, data)
    res = CliRunner().invoke(cli_app, ["audience-fit", "--run", str(root / "run"), "--store", url, "--threads", "1",
                                       "--min-child-samples", "5"])
    assert res.exit_code == 0, res.output
    assert (root / "run" / "audience_ranker" / "audience_ranker.txt").exists()
    return {"root": root, "url": url}


@pytest.fixture(scope="module")
def client(shop):
    settings = ServeSettings(store_url=shop["url"], run=shop["root"] / "run", api_key=KEY, search=False)
    with TestClient(create_app(settings), headers={"X-API-Key": KEY}) as c:
        yield c


def test_the_api_ranks_by_the_fitted_ranker_and_names_the_regular_buyer_first(client):
    for item in (1, 5, 12, 30):
        r = client.get(f"/v1/items/i{item:02d}/audience", params={"k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["scoring"]["method"] == "learned_ranker"
        assert body["customers"][0]["user_id"] == f"r{item:02d}"
        scores = [c["score"] for c in body["customers"]]
        assert scores == sorted(scores, reverse=True)
    every = client.get("/v1/items/i03/audience", params={"k": 1000}).json()["customers"]
    assert len({c["user_id"] for c in every}) == len(every) == N_ITEMS + N_BUSY  # everyone, once
    category = client.get("/v1/audience", params={"category": "none-such"})
    assert category.status_code == 404


def test_the_cli_exports_the_same_ranked_audience(shop, client, tmp_path):
    api = client.get("/v1/items/i07/audience", params={"k": 6}).json()["customers"]
    out = tmp_path / "audience.csv"
    res = CliRunner().invoke(cli_app, ["audience", "i07", "--run", str(shop["root"] / "run"), "--store", shop["url"],
                                       "--k", "6", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(out.open()))
    assert [r["user_id"] for r in rows] == [m["user_id"] for m in api]
    assert [float(r["score"]) for r in rows] == pytest.approx([m["score"] for m in api], abs=1e-4)
    plain = CliRunner().invoke(cli_app, ["audience", "i07", "--run", str(shop["root"] / "run"), "--store",
                                         shop["url"], "--k", "6", "--no-ranker"])
    assert plain.exit_code == 0 and plain.stdout.splitlines()[0] == "user_id,score,rank"
