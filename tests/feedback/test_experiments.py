"""A/B experiments: stable assignment, the store's record (SQLite and PostgreSQL), and
both runs served side by side by one process, followed by another."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shopformer.artifact import run_version
from shopformer.cli import app as cli
from shopformer.feedback.experiments import (
    Experiment,
    ExperimentError,
    Variant,
    parse_split,
    running,
    start_experiment,
    stop_experiment,
)
from shopformer.store import EventStore, StoreConfig
from shopformer.store.access import audit_entries
from shopformer.store.experiments import all_experiments

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))  # the API tests' tiny shop
from test_api import make_client, shop, store_url  # noqa: E402, F401 - fixtures



def two(split=(0.5, 0.5), name="exp") -> Experiment:
    return Experiment(name, (Variant("a", Path("runs/a"), "a-1", split[0]), Variant("b", Path("runs/b"), "b-1",
                                                                                       split[1])))


# -- assignment ------------------------------------------------------------------------
def test_assignment_is_stable_and_follows_the_shares():
    exp = two((0.9, 0.1))
    users = [f"user-{i}" for i in range(20_000)]
    first = [exp.assign(u).name for u in users]
    assert first == [two((0.9, 0.1)).assign(u).name for u in users]  # a new object (another process) agrees
    share_b = first.count("b") / len(users)
    assert abs(share_b - 0.1) < 0.01  # binomial sd 0.0021: 4.7 sd


def test_two_experiments_split_customers_independently():
    users = [f"user-{i}" for i in range(20_000)]
    x = [two(name="x").assign(u).name == "b" for u in users]
    y = [two(name="y").assign(u).name == "b" for u in users]
    both = sum(a and b for a, b in zip(x, y)) / len(users)
    assert abs(both - 0.25) < 0.015  # independent halves overlap on a quarter


def test_parse_split_and_validation():
    assert parse_split("50/50", 2) == [0.5, 0.5]
    assert parse_split("90/10", 2) == [0.9, 0.1]
    assert parse_split(None, 4) == [0.25] * 4
    for bad, why in (("50/50/0", "3 parts"), ("a/b", "numbers"), ("100/0", "> 0")):
        with pytest.raises(ExperimentError, match=why):
            parse_split(bad, 2 if "0/" not in bad[3:] else 2)
    with pytest.raises(ExperimentError, match="at least two"):
        Experiment("e", (Variant("a", Path("x"), "v", 1.0),))
    with pytest.raises(ExperimentError, match="repeat"):
        Experiment("e", (Variant("a", Path("x"), "v", 0.5), Variant("a", Path("y"), "w", 0.5)))
    with pytest.raises(ExperimentError, match="name"):
        Experiment("bad name!", (Variant("a", Path("x"), "v", 0.5), Variant("b", Path("y"), "w", 0.5)))


# -- the store's record ----------------------------------------------------------------
@pytest.fixture
def store(backend_store):  # SQLite, and PostgreSQL when configured (tests/conftest.py)
    return backend_store


def fake_run(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"model": name}))
    return folder


def test_start_stop_and_one_at_a_time(store, tmp_path):
    a, b = fake_run(tmp_path, "a"), fake_run(tmp_path, "b")
    exp = start_experiment(store, "first", [("a", a), ("b", b)], "80/20", "tester")
    assert [(v.name, v.share, v.version) for v in exp.variants] == [("a", 0.8, run_version(a)),
                                                                    ("b", 0.2, run_version(b))]
    assert running(store) == exp
    with pytest.raises(ExperimentError, match="'first' is running"):
        start_experiment(store, "second", [("a", a), ("b", b)])
    with pytest.raises(ExperimentError, match="already exists"):
        start_experiment(store, "first", [("a", a), ("b", b)])
    stopped = stop_experiment(store, "first")
    assert stopped.status == "stopped" and stopped.stopped_at is not None and running(store) is None
    with pytest.raises(ExperimentError, match="already stopped"):
        stop_experiment(store, "first")
    with pytest.raises(ExperimentError, match="no experiment named"):
        stop_experiment(store, "nope")
    start_experiment(store, "second", [("a", a), ("b", b)])
    assert [e.name for e in all_experiments(store)] == ["second", "first"]


def test_a_variant_that_is_not_a_run_is_refused_and_nothing_is_written(store, tmp_path):
    a = fake_run(tmp_path, "a")
    with pytest.raises(ExperimentError, match="not a trained run folder"):
        start_experiment(store, "e", [("a", a), ("b", tmp_path / "missing")])
    assert all_experiments(store) == [] and running(store) is None


# -- served side by side ---------------------------------------------------------------
def test_each_customer_gets_their_variants_run_and_another_process_follows(shop, store_url, tmp_path):  # noqa: F811
    users = [f"u{i}" for i in range(1, 8)] + [f"visitor-{i}" for i in range(30)]
    with make_client(store_url, shop["run1"], sync_s=0.05) as c, make_client(store_url, shop["run1"], sync_s=0.05) as other:
        r = c.post("/v1/admin/experiments", json={"name": "knn-vs-ease", "split": "50/50", "variants": [
            {"name": "a", "run": str(shop["run1"])}, {"name": "b", "run": str(shop["run2"])}]})
        assert r.status_code == 201, r.text
        assert [v["version"] for v in r.json()["variants"]] == [run_version(shop["run1"]), run_version(shop["run2"])]
        exp = two(name="knn-vs-ease")
        expected = {u: ("itemknn" if exp.assign(u).name == "a" else "ease") for u in users}
        assert set(expected.values()) == {"itemknn", "ease"}  # both arms have customers
        got = {u: c.get(f"/v1/users/{u}/recommendations").json()["model"]["name"] for u in users}
        assert got == expected
        # each arm keeps its own catalog view (alternating arms must not rebuild one slot)
        views = c.app.state.service._catalogs
        assert {run_version(shop["run1"]), run_version(shop["run2"])} <= set(views)
        deadline = time.monotonic() + 5  # the other process loads the arms on its sync tick
        while time.monotonic() < deadline and other.app.state.service.experiment is None:
            time.sleep(0.05)
        assert {u: other.get(f"/v1/users/{u}/recommendations").json()["model"]["name"] for u in users} == expected
        # outside the experiment: anonymous sessions and similar items get the served run
        assert c.post("/v1/recommendations/session", json={"item_ids": ["a"]}).json()["model"]["name"] == "itemknn"
        listed = c.get("/v1/admin/experiments").json()
        assert [(e["name"], e["status"]) for e in listed] == [("knn-vs-ease", "running")]
        assert c.post("/v1/admin/experiments/knn-vs-ease/stop").json()["status"] == "stopped"
        assert {c.get(f"/v1/users/{u}/recommendations").json()["model"]["name"] for u in users} == {"itemknn"}
        assert c.post("/v1/admin/experiments/knn-vs-ease/stop").status_code == 400
        assert c.post("/v1/admin/experiments/nope/stop").status_code == 404
    with EventStore(StoreConfig(store_url)) as s:
        actions = [(e.action, e.target, e.outcome) for e in audit_entries(s)]
    assert ("experiment_start", "knn-vs-ease", "ok") in actions and ("experiment_stop", "knn-vs-ease", "ok") in actions


def test_the_api_refuses_bad_experiments_and_needs_admin(shop, store_url):  # noqa: F811
    with make_client(store_url, shop["run1"]) as c:
        body = {"name": "e", "variants": [{"name": "a", "run": str(shop["run1"])}, {"name": "b", "run": "/nowhere"}]}
        r = c.post("/v1/admin/experiments", json=body)
        assert r.status_code == 400 and "not a trained run folder" in r.json()["detail"]
        assert c.post("/v1/admin/experiments", json={**body, "variants": body["variants"][:1]}).status_code == 422
        assert c.post("/v1/admin/experiments", json=body, headers={"X-API-Key": "wrong"}).status_code == 403
        assert c.app.state.service.experiment is None


def test_cli_start_list_stop(shop, store_url):  # noqa: F811
    runner = CliRunner()
    r = runner.invoke(cli, ["experiment", "start", "cli-exp", "--store", store_url, "--variant",
                            f"a={shop['run1']}", "--variant", f"b={shop['run2']}", "--split", "90/10"])
    assert r.exit_code == 0, r.output
    assert "a=" in r.output and "90%" in r.output
    listed = json.loads(runner.invoke(cli, ["experiment", "list", "--store", store_url, "--json"]).output)
    assert listed[0]["name"] == "cli-exp" and [v["share"] for v in listed[0]["variants"]] == [0.9, 0.1]
    r = runner.invoke(cli, ["experiment", "start", "again", "--store", store_url, "--variant", f"a={shop['run1']}",
                            "--variant", f"b={shop['run2']}"])
    assert r.exit_code == 1 and "is running" in r.output
    r = runner.invoke(cli, ["experiment", "start", "x", "--store", store_url, "--variant", "a"])
    assert r.exit_code == 1 and "NAME=RUN_FOLDER" in r.output
    assert runner.invoke(cli, ["experiment", "stop", "cli-exp", "--store", store_url]).exit_code == 0
    with EventStore(StoreConfig(store_url)) as s:
        assert running(s) is None
        assert [e.outcome for e in audit_entries(s, action="experiment_start")] == ["ok", "failed"]


def test_the_report_counts_what_each_variants_customers_did_with_their_answers(shop, store_url, tmp_path):  # noqa: F811
    """Customers of ``b`` click a shown item; customers of ``a`` click an item they were
    not shown (not a conversion); the report counts customers, answers and clicks per
    variant from the store, through the API and the CLI."""
    users = [f"visitor-{i}" for i in range(40)]
    exp = two(name="rep")
    with make_client(store_url, shop["run1"]) as c:
        assert c.post("/v1/admin/experiments", json={"name": "rep", "variants": [
            {"name": "a", "run": str(shop["run1"])}, {"name": "b", "run": str(shop["run2"])}]}).status_code == 201
        for u in users:
            for _ in range(2):  # two answers each: the unit is the customer, not the answer
                body = c.get(f"/v1/users/{u}/recommendations", params={"k": 3}).json()
            shown = [x["item_id"] for x in body["items"]]
            item = shown[0] if exp.assign(u).name == "b" else next(i for i in "abcdefgh" if i not in shown)
            r = c.post("/v1/events", json={"user_id": u, "item_id": item, "type": "click",
                                           "request_id": body["request_id"]})
            assert r.status_code == 201, r.text
        api = c.get("/v1/admin/experiments/rep/report").json()
    n_b = sum(exp.assign(u).name == "b" for u in users)
    a, b = api["variants"]
    assert (a["variant"], a["units"], a["answers"]) == ("a", 40 - n_b, 2 * (40 - n_b))
    assert (b["variant"], b["units"], b["answers"]) == ("b", n_b, 2 * n_b)
    assert a["rates"]["click"]["events"] == 0 and b["rates"]["click"]["events"] == n_b
    assert b["rates"]["click"]["rate"] == 1.0 and b["rates"]["click"]["p_value"] < 0.05
    assert api["decision"] == "too_small"  # a had no click at all: fewer than min_events
    r = CliRunner().invoke(cli, ["experiment", "report", "rep", "--store", store_url, "--json",
                                 "--plot", str(tmp_path / "ab.png")])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["variants"] == api["variants"]
    assert (tmp_path / "ab.png").stat().st_size > 10_000
    r = CliRunner().invoke(cli, ["experiment", "report", "rep", "--store", store_url])
    assert r.exit_code == 0 and "too small to decide" in " ".join(r.output.split())
    assert CliRunner().invoke(cli, ["experiment", "report", "nope", "--store", store_url]).exit_code == 1
