"""Repeat purchases end to end: ``shopformer repeats`` learns on validation that these
customers buy their favourite again, keeps the settings in the run, ``evaluate`` reports
both answers, and the API lets past items back in by default (not when asked to leave
the history out)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from shopformer.artifact import REPEATS, load_run
from shopformer.cli import app

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def favourite_lines(n_users: int = 60, seed: int = 0) -> list[str]:
    """Each customer re-buys one favourite (f0..f2) between other products (p0..p19),
    and the last two purchases (validation and test targets) are the favourite."""
    rng = np.random.default_rng(seed)
    lines = []
    for u in range(n_users):
        fav = f"f{u % 3}"
        seq = []
        for _ in range(6):
            seq += [fav, *(f"p{int(x)}" for x in rng.choice(20, size=2, replace=False))]
        lines.append(f"u{u} " + " ".join(seq + [fav, fav]))
    return lines


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("repeats")
    (root / "shop.txt").write_text("\n".join(favourite_lines()) + "\n")
    invoke("ingest", root / "shop.txt", "--format", "sequence", "--data", root / "data")
    invoke("train", "--data", root / "data", "--model", "itemknn", "--set", "shrink=0", "--out", root / "run")
    return root / "run"


def test_repeats_are_learned_on_validation_and_kept_in_the_run(run, tmp_path):
    out = invoke("repeats", "--run", run)
    assert "saved" in out
    meta = json.loads((run / REPEATS / "config.json").read_text())
    valid = meta["valid_ndcg10"]
    assert valid["excluded"] < 0.5 < valid["repeat_aware"]  # the favourite is every validation target
    assert load_run(run).repeats is not None

    res = tmp_path / "res.json"
    invoke("evaluate", "--run", run, "--k", "1,10", "--out", res)
    records = {r["model"]: r for r in json.loads(res.read_text())}
    assert set(records) == {"itemknn", "itemknn+repeats"}
    assert records["itemknn"]["eval_config"]["exclude_history"] is True
    assert records["itemknn+repeats"]["eval_config"]["exclude_history"] is False
    assert records["itemknn+repeats"]["metrics"]["HR@1"] > 0.9 > records["itemknn"]["metrics"]["HR@10"]


def test_the_api_serves_repeats_by_default(run, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from shopformer.serve import ServeSettings, create_app
    from shopformer.store import EventStore, StoreConfig, import_folder

    invoke("repeats", "--run", run)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with EventStore(StoreConfig(url)) as store:
        import_folder(store, json.loads((run / "run.json").read_text())["data_dir"])
    with TestClient(create_app(ServeSettings(store_url=url, run=run, search=False))) as client:
        fav = "f1"  # u1's favourite
        default = client.get("/v1/users/u1/recommendations", params={"k": 5}).json()
        assert default["items"][0]["item_id"] == fav
        left_out = client.get("/v1/users/u1/recommendations", params={"k": 5, "exclude_history": "true"}).json()
        history = {e["item_id"] for e in client.get("/v1/users/u1").json()["events"]}
        assert not {i["item_id"] for i in left_out["items"]} & history
    invoke("repeats", "--run", run, "--remove")
    assert load_run(run).repeats is None
    with TestClient(create_app(ServeSettings(store_url=url, run=run, search=False))) as client:
        plain = client.get("/v1/users/u1/recommendations", params={"k": 5}).json()
        assert plain["items"] == left_out["items"]  # without repeats: the history is left out by default


def test_repeats_refuses_a_folder_that_is_no_run(tmp_path):
    result = runner.invoke(app, ["repeats", "--run", str(tmp_path)])
    assert result.exit_code == 1 and "not a trained run" in " ".join(result.output.split())
