"""`shopformer retrain | versions | rollback` end to end on the small chain shop (tiny
SASRec, a few epochs)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from shopformer.artifact import run_version
from shopformer.cli import app
from shopformer.feedback import retrain as retrain_module
from shopformer.store import EventStore, StoreConfig
from shopformer.store.served import served_run

from test_retrain import make_store, shop, shuffle_items  # noqa: E402, F401 - fixtures

runner = CliRunner()


def cli(*args, code: int = 0):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def test_retrain_versions_rollback_and_audit(shop, tmp_path):  # noqa: F811 - the fixture
    url = make_store(tmp_path / "shop.db")
    out = cli("retrain", "--store", url, "--run", shop["v0"], "--out", tmp_path / "v1", "--min-cases", 10, "--json")
    outcome = json.loads(out.stdout)  # one JSON line: training's progress went to stderr
    assert outcome["status"] == "promoted" and outcome["version"]["version_id"] == 2
    assert outcome["details"]["candidate"] >= outcome["details"]["threshold"]
    with EventStore(StoreConfig(url)) as store:
        assert served_run(store)["version"] == run_version(tmp_path / "v1")

    listed = json.loads(cli("versions", "--store", url, "--json").stdout)
    assert [(v["version_id"], v["status"], v["mode"], v["served"]) for v in listed] == [
        (1, "imported", "imported", False), (2, "promoted", "warm", True)]
    assert "2 model versions" in cli("versions", "--store", url).stdout

    assert "serving version 1" in cli("rollback", 1, "--store", url).stdout
    with EventStore(StoreConfig(url)) as store:
        assert served_run(store)["version"] == run_version(shop["v0"])
    assert "no version 7" in cli("rollback", 7, "--store", url, code=2).output

    audit = [json.loads(line) for line in cli("audit", "--store", url, "--json").stdout.splitlines()]
    assert [(a["action"], a["outcome"]) for a in audit] == [("retrain_promote", "ok"), ("rollback", "ok"),
                                                            ("rollback", "failed")]
    assert all(a["actor"].startswith("cli") for a in audit)


def test_a_refused_round_exits_3_and_keeps_the_served_run(shop, tmp_path, monkeypatch):  # noqa: F811 - the fixture
    real = retrain_module.train_like

    def broken(current, data_dir, out, *args, **kw):
        trained = real(current, data_dir, out, *args, **kw)
        shuffle_items(out)
        return trained

    monkeypatch.setattr(retrain_module, "train_like", broken)
    url = make_store(tmp_path / "shop.db")
    result = cli("retrain", "--store", url, "--run", shop["v0"], "--out", tmp_path / "v1", "--min-cases", 10, code=3)
    assert "refused" in result.stdout and "kept" in result.stdout and "current" in result.stdout
    with EventStore(StoreConfig(url)) as store:
        assert served_run(store) is None


def test_every_names_each_round_and_starts_from_the_served_run(shop, tmp_path, monkeypatch):  # noqa: F811 - the fixture
    def two_rounds(interval, round_, stop, say):
        assert interval == 6 * 3600
        round_(1)
        round_(2)
        return 2

    monkeypatch.setattr(retrain_module, "every", two_rounds)
    url = make_store(tmp_path / "shop.db")
    result = cli("retrain", "--store", url, "--run", shop["v0"], "--out", tmp_path / "v", "--min-cases", 10,
                 "--every", "6h", "--json")
    first, second = (json.loads(line) for line in result.stdout.splitlines() if line.startswith("{"))
    assert first["status"] == "promoted" and first["folder"].startswith(str(tmp_path / "v-"))
    # round 2 starts from the run promoted in round 1: nothing newer than its data yet
    assert second["status"] == "skipped" and first["folder"] in second["message"]
    assert "stopped" in result.stdout


def test_bad_options_are_refused(tmp_path):
    url = make_store(tmp_path / "shop.db")
    result = cli("retrain", "--store", url, "--run", tmp_path / "v0", "--out", tmp_path / "v1", "--every", "soon", code=2)
    assert "--every" in result.output
    result = cli("retrain", "--store", url, "--out", tmp_path / "v1", code=2)  # no --run and nothing served
    assert "serves no run" in result.output
