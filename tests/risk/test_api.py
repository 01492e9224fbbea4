"""``shopformer risk fit`` on a tiny log, then ``POST /v1/risk/orders`` over HTTP: risky
customers score higher, bad input is a 422 naming the field, no model is a 404."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("lightgbm")
pytest.importorskip("sklearn", reason="risk fit needs the risk extra (scikit-learn)")

from fastapi.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from shopformer.cli import app as cli_app  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402

from .shop import write_shop  # noqa: E402

SPLIT = ["--horizon-days", "10", "--val-days", "60", "--test-days", "60", "--warmup-days", "20", "--threads", "1"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("riskapi")
    data = write_shop(root / "retail.csv")
    out = root / "model"
    result = CliRunner().invoke(cli_app, ["risk", "fit", "--data", str(data), "--out", str(out), *SPLIT])
    assert result.exit_code == 0, result.output
    assert "test AUC-ROC" in result.output
    return out


@pytest.fixture(scope="module")
def client(model_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("riskdb") / "s.db"
    settings = ServeSettings(store_url=f"sqlite:///{db}", search=False, sync_s=0, risk_dir=model_dir,
                             storefront=False, console=False, impressions=None)
    with TestClient(create_app(settings)) as c:
        yield c


def _basket(user: str) -> dict:
    return {"user_id": user, "time": "2011-11-01T10:00:00",
            "lines": [{"item_id": "10000", "quantity": 6, "price": 1.0}, {"item_id": "10008", "quantity": 2, "price": 9.0},
                      {"item_id": "NEW1", "quantity": 1, "price": 3.5}]}


def test_risky_customers_score_higher_with_reasons(client, model_dir):
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["matching"]["matched"] > 0 and meta["evaluation"]["lightgbm"]["test"]["auc_roc"] > 0.5
    risky = client.post("/v1/risk/orders", json=_basket("13000"))  # cancels half of P0-P2
    calm = client.post("/v1/risk/orders", json=_basket("13001"))  # never cancels
    assert risky.status_code == 200, risky.text
    body, other = risky.json(), calm.json()
    assert body["known_customer"] and len(body["lines"]) == 3
    assert body["lines"][0]["probability"] > other["lines"][0]["probability"]
    assert body["lines"][0]["reasons"] and body["lines"][0]["reasons"][0]["effect"] > 0
    assert body["lines"][2]["known_item"] is False
    assert 0 <= body["basket_probability"] <= 1 and body["model"]["kind"] == "lightgbm"
    unknown = client.post("/v1/risk/orders", json=_basket("no-such-customer")).json()
    assert unknown["known_customer"] is False


@pytest.mark.parametrize("patch,field", [
    ({"lines": [{"item_id": "10000", "quantity": 0, "price": 1.0}]}, ["body", "lines", 0, "quantity"]),
    ({"lines": [{"item_id": "10000", "quantity": 1, "price": -2}]}, ["body", "lines", 0, "price"]),
    ({"lines": []}, ["body", "lines"]),
    ({"user_id": ""}, ["body", "user_id"]),
    ({"lines": [{"item_id": "10000", "quantity": 1}]}, ["body", "lines", 0, "price"]),
])
def test_bad_input_is_a_422_naming_the_field(client, patch, field):
    r = client.post("/v1/risk/orders", json={**_basket("13000"), **patch})
    assert r.status_code == 422, r.text
    assert field in [e["loc"] for e in r.json()["detail"]]


def test_no_model_is_a_clear_404(tmp_path):
    settings = ServeSettings(store_url=f"sqlite:///{tmp_path / 's.db'}", search=False, sync_s=0,
                             storefront=False, console=False, impressions=None)
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/risk/orders", json=_basket("13000"))
    assert r.status_code == 404 and "SHOPFORMER_RISK_DIR" in r.json()["detail"]


def test_cli_scores_a_basket_file(model_dir, tmp_path):
    path = tmp_path / "basket.json"
    path.write_text(json.dumps(_basket("13000")))
    result = CliRunner().invoke(cli_app, ["risk", "score", "--model", str(model_dir), str(path)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["lines"]) == 3
