"""``shopformer forecast`` and ``GET /v1/forecast/items/{id}`` on a tiny shop ingested
from an Online Retail-format file: 70 weeks of two products with a steady weekly
pattern, one cancellation, one product sold once long ago."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from typer.testing import CliRunner

from shopformer.cli import app
from shopformer.ingest.api import ingest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("holidays", reason="the forecast extra (holidays) is not installed")

from fastapi.testclient import TestClient  # noqa: E402

from shopformer.serve import ServeSettings, create_app  # noqa: E402

runner = CliRunner()
START = date(2010, 1, 5)  # a Tuesday


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("forecastshop")
    rows = ["InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"]
    for week in range(70):
        day = START + timedelta(weeks=week)
        rows.append(f"{500000 + week},MUG,RED MUG,{10 + week % 4},{day} 10:00:00,2.50,12001,United Kingdom")
        rows.append(f"{600000 + week},JAR,GLASS JAR,{50 if week % 2 else 30},{day} 11:00:00,1.00,12002,United Kingdom")
    rows.append(f"C600068,JAR,GLASS JAR,-10,{START + timedelta(weeks=68, days=1)} 12:00:00,1.00,12002,United Kingdom")
    rows.append(f"700000,OLD,OLD LAMP,5,{START} 09:00:00,9.00,12003,United Kingdom")
    (root / "retail.csv").write_text("\n".join(rows) + "\n")
    data = root / "data"
    ingest(root / "retail.csv", "online-retail", data)
    fitted = root / "fitted"
    result = runner.invoke(app, ["forecast", "fit", "--data", str(data), "--out", str(fitted),
                                 "--method", "seasonal_naive", "--horizon", "4"])
    assert result.exit_code == 0, result.output
    return {"data": data, "fitted": fitted}


def test_cli_fits_and_prints_json(shop):
    result = runner.invoke(app, ["forecast", "--data", str(shop["data"]), "--item", "MUG", "--horizon", "3",
                                 "--method", "seasonal_naive", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["item_id"] == "MUG" and out["method"] == "seasonal_naive"
    # the last whole week is 68 (the data end on week 69's Tuesday: partial, dropped); week 68+h
    # is forecast from week 16+h, a year earlier, whose units were 10 + (16+h) % 4
    assert [p["units"] for p in out["forecast"]] == [10 + (16 + h) % 4 for h in (1, 2, 3)]
    assert out["forecast"][0]["revenue"] == pytest.approx(2.5 * out["forecast"][0]["units"])


def test_cli_transformer_runs_and_reads_a_fitted_folder(shop):
    result = runner.invoke(app, ["forecast", "--data", str(shop["data"]), "--epochs", "1", "--ensemble", "1", "--json"])
    assert result.exit_code == 0, result.output
    ids = [f["item_id"] for f in json.loads(result.stdout)]
    assert ids[0] == "__total__" and set(ids[1:]) == {"JAR", "MUG"}  # OLD: not sold in the last year
    result = runner.invoke(app, ["forecast", "--model", str(shop["fitted"])])
    assert result.exit_code == 0 and "MUG" in result.stdout


def test_cli_fit_saves_a_transformer_ensemble_of_the_asked_size(shop, tmp_path):
    from shopformer.forecast.neural import TransformerForecaster

    out = tmp_path / "ens"
    result = runner.invoke(app, ["forecast", "fit", "--data", str(shop["data"]), "--out", str(out), "--epochs", "1",
                                 "--ensemble", "2", "--horizon", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "forecast.json").read_text())["config"]["transformer"]["ensemble"] == 2
    assert len(TransformerForecaster.load(out / "model").nets) == 2
    result = runner.invoke(app, ["forecast", "--model", str(out), "--item", "MUG", "--json"])
    assert result.exit_code == 0 and len(json.loads(result.stdout)["forecast"]) == 2
    result = runner.invoke(app, ["forecast", "fit", "--data", str(shop["data"]), "--out", str(out), "--ensemble", "0"])
    assert result.exit_code != 0  # at least one net


def test_cli_errors_are_named(shop):
    result = runner.invoke(app, ["forecast", "--model", str(shop["fitted"]), "--item", "NOPE"])
    assert result.exit_code == 1 and "NOPE" in result.output
    result = runner.invoke(app, ["forecast", "--model", str(shop["fitted"]), "--horizon", "9"])
    assert result.exit_code == 1 and "horizon" in result.output
    result = runner.invoke(app, ["forecast"])
    assert result.exit_code == 1 and "--data" in result.output


def _client(tmp_path, forecast_dir) -> TestClient:
    settings = ServeSettings(store_url=f"sqlite:///{tmp_path / 'api.db'}", search=False, storefront=False,
                             console=False, impressions=None, forecast_dir=forecast_dir)
    return TestClient(create_app(settings))


def test_api_serves_the_fitted_forecast(shop, tmp_path):
    with _client(tmp_path, shop["fitted"]) as client:
        r = client.get("/v1/forecast/items/MUG", params={"horizon": 2})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["method"] == "seasonal_naive" and len(body["forecast"]) == 2
        assert body["forecast"][0]["horizon"] == 1 and body["forecast"][0]["units"] == 10 + 17 % 4
        assert date.fromisoformat(body["forecast"][0]["week_start"]) == date.fromisoformat(body["last_week"]) + timedelta(7)
        assert body["recent"][-1]["units"] == 10 + 68 % 4
        r = client.get("/v1/forecast/items/JAR")
        assert r.json()["recent"][-1]["units"] == 30 - 10  # the cancellation is netted out
        assert client.get("/v1/forecast/items/NOPE").status_code == 404
        assert client.get("/v1/forecast/items/OLD").status_code == 404
        r = client.get("/v1/forecast/items/MUG", params={"horizon": 5})
        assert r.status_code == 422 and "horizon" in r.text
        assert client.get("/v1/forecast/items/MUG", params={"horizon": 0}).status_code == 422


def test_api_without_a_forecast_says_so(shop, tmp_path):
    with _client(tmp_path, None) as client:
        r = client.get("/v1/forecast/items/MUG")
        assert r.status_code == 404 and "SHOPFORMER_FORECAST_DIR" in r.text  # this server serves none
    with _client(tmp_path, tmp_path / "missing") as client:
        r = client.get("/v1/forecast/items/MUG")
        assert r.status_code == 503 and "forecast fit" in r.text
