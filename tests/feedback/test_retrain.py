"""Continuous retraining (feedback/retrain.py): a round promotes a better run and every app
on the store follows it, refuses a broken one, skips when nothing new came in; versions,
rollback (also to a folder that is gone) and the audit trail.

The shop: 100 products in 5 chains of 20; each customer walks along one chain, one
product every 3 days, so the next product is learnable from the last ones. Customers
60-79 move to a fifth chain (products no current run knows) from their 9th purchase on.
The current run (v0) is a tiny SASRec trained on the first 18 days."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from shopformer.artifact import load_run, make_model, run_version
from shopformer.dataset import DataConfig
from shopformer.experiment import reload_data, train_run
from shopformer.feedback import retrain as retrain_module
from shopformer.feedback.gate import GateConfig
from shopformer.feedback.retrain import (
    RetrainConfig,
    RetrainError,
    every,
    parse_interval,
    planned_epochs,
    retrain,
    rollback,
)
from shopformer.store import EventStore, StoreConfig, export_snapshot
from shopformer.store.access import audit_entries
from shopformer.store.served import served_run
from shopformer.store.versions import list_versions

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
SPLIT = T0 + timedelta(days=18)  # the current run saw the events before this
CONFIG = DataConfig(event_types=("purchase",))
SASREC = {"arch.d_model": "16", "arch.n_layers": "1", "arch.n_heads": "1", "arch.max_len": "12",
          "arch.dropout": "0.1", "train.lr": "0.01", "train.warmup_steps": "1", "train.batch_size": "16",
          "train.epochs": "10", "train.patience": "3"}
#: a round on the small shop: the newest 10% of its 960 events (98 cases) decide
ROUND = RetrainConfig(gate=GateConfig(min_cases=10))


def chain_events(users=range(80), steps=range(12)) -> list[dict]:
    rows = []
    for u in users:
        for t in steps:
            chain = 4 if u >= 60 and t >= 8 else u % 4
            rows.append({"event_id": f"e{u}-{t}", "user_id": f"u{u:03d}", "item_id": f"p{chain * 20 + (3 * u + t) % 20:03d}",
                         "event_type": "purchase", "timestamp": T0 + timedelta(days=3 * t, hours=u % 24)})
    return rows


def catalog(n: int = 100) -> list[dict]:
    """Chains 0-3 are categories c0-c3; the fifth chain's (added with its products later)
    sorts before them."""
    return [{"item_id": f"p{i:03d}", "title": f"product {i}", "categories": [f"c{i // 20}" if i < 80 else "a-new"]}
            for i in range(n)]


EARLY = [r for r in chain_events() if r["timestamp"] < SPLIT]
LATE = [r for r in chain_events() if r["timestamp"] >= SPLIT]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> dict[str, Path]:
    """v0: SASRec on the early events (a snapshot of a store holding only those)."""
    root = tmp_path_factory.mktemp("retrain")
    with EventStore(StoreConfig(make_store(root / "early.db", EARLY))) as store:
        export_snapshot(store, root / "early")
    train_run(make_model("sasrec", SASREC), root / "early", CONFIG, root / "v0")
    return {"root": root, "v0": root / "v0", "early": root / "early"}


def make_store(path: Path, events: list[dict] = EARLY + LATE) -> str:
    """A store with ``events`` and the products they name (the fifth chain's only with them)."""
    url = f"sqlite:///{path}"
    with EventStore(StoreConfig(url)) as store:
        store.upsert_products(catalog(100 if any(int(e["item_id"][1:]) >= 80 for e in events) else 80))
        store.add_events(events)
    return url


@pytest.fixture
def store(tmp_path):
    with EventStore(StoreConfig(make_store(tmp_path / "shop.db"))) as s:
        yield s


def shuffle_items(folder: Path, seed: int = 0) -> None:
    """Break a run: its item ids permuted in the vocabulary (every index now means another product)."""
    items = json.loads((folder / "items.json").read_text())
    (folder / "items.json").write_text(json.dumps(list(np.random.default_rng(seed).permutation(items))))


def test_a_round_promotes_a_better_run_and_a_running_app_follows(shop, store, tmp_path):
    from fastapi.testclient import TestClient

    from shopformer.serve import ServeSettings, create_app

    url = store.config.url
    settings = ServeSettings(store_url=url, run=shop["v0"], api_key="k", sync_s=0.1)
    with TestClient(create_app(settings), headers={"X-API-Key": "k"}) as app:
        assert app.get("/health").json()["model"]["version"] == run_version(shop["v0"])
        said = []
        o = retrain(store, shop["v0"], tmp_path / "v1", tmp_path / "data", ROUND, "cli:test", said.append)
        assert o.status == "promoted", o.message
        new = run_version(tmp_path / "v1")
        assert served_run(store) == {"folder": str((tmp_path / "v1").resolve()), "version": new}
        deadline = time.monotonic() + 10
        while app.get("/health").json()["model"]["version"] != new and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.get("/health").json()["model"]["version"] == new
        # answers come from the new run, which reads the fifth chain's products (v0 knew none)
        answer = app.get("/v1/users/u070/recommendations?k=5").json()
        assert answer["model"]["version"] == new and answer["history_length"] == 12
    g = o.gate
    assert g.candidate >= g.current * (1 - 0.02) and g.cases == o.details["cases"] >= 10
    assert g.unknown_targets["current"] > 0 and g.unknown_targets["candidate"] == 0  # the fifth chain
    assert o.details["items"] == {"kept": 80, "added": 20, "total": 100}
    assert any("holdout" in line for line in said)
    v0, v1 = list_versions(store)
    assert (v0.status, v0.mode, v0.run_version) == ("imported", "imported", run_version(shop["v0"]))
    assert (v1.status, v1.mode, v1.parent_id, v1.run_version) == ("promoted", "warm", v0.version_id, new)
    assert v1.metrics["current"] == pytest.approx(g.current, abs=1e-6) and v1.metrics["cases"] == g.cases
    assert v1.train_seconds > 0 and "u0" not in json.dumps(v1.to_dict())  # no customer ids in a version
    audit = audit_entries(store, action="retrain_promote")
    assert len(audit) == 1 and audit[0].actor == "cli:test" and audit[0].target == str((tmp_path / "v1").resolve())
    assert audit[0].detail["version_id"] == v1.version_id and audit[0].detail["new"] == pytest.approx(g.candidate)
    # the warm run rebuilds its own data (items kept at the parent's indexes) for `evaluate`
    run = load_run(tmp_path / "v1")
    data, _ = reload_data(run)
    assert data.items == run.items and run.items.ids[:80] == load_run(shop["v0"]).items.ids
    # the lineage's plan is carried: a warm round plans 30% of v0's 10 epochs, and so does
    # the next one from v1 (not 30% of 3); a scratch retrain from v1 plans all 10
    assert run.model.config.train.epochs == 3 and run.info["retrain"]["planned_epochs"] == 10
    assert planned_epochs(run, True, ROUND) == (3, 10) and planned_epochs(run, False, ROUND) == (10, 10)
    assert planned_epochs(run, True, RetrainConfig(epochs=7)) == (7, 10)


def test_a_broken_candidate_is_refused_and_the_current_run_stays(shop, store, tmp_path, monkeypatch):
    real = retrain_module.train_like

    def broken(current, data_dir, out, *args, **kw):
        trained = real(current, data_dir, out, *args, **kw)
        shuffle_items(out)
        return trained

    monkeypatch.setattr(retrain_module, "train_like", broken)
    store.put_state("served_run", json.dumps({"folder": str(shop["v0"].resolve()), "version": run_version(shop["v0"])}))
    before = served_run(store)
    o = retrain(store, shop["v0"], tmp_path / "v1", tmp_path / "data", ROUND, "cli:test", lambda m: None)
    assert o.status == "refused" and served_run(store) == before
    assert f"{o.gate.candidate:.4f}" in o.message and f"{o.gate.current:.4f}" in o.message
    assert o.gate.candidate < o.gate.threshold
    assert [v.status for v in list_versions(store)] == ["imported", "refused"]
    assert (tmp_path / "v1" / "run.json").exists()  # kept for inspection
    assert [e.action for e in audit_entries(store)] == ["retrain_refuse"]
    with pytest.raises(RetrainError, match="failed the gate"):
        rollback(store, 2, "cli:test")


def test_nothing_new_since_the_current_run_skips_the_round(shop, tmp_path):
    with EventStore(StoreConfig(make_store(tmp_path / "early.db", EARLY))) as store:
        o = retrain(store, shop["v0"], tmp_path / "v1", tmp_path / "data", ROUND, "cli:test", lambda m: None)
        assert o.status == "skipped" and "0 held-out events" in o.message
        assert not (tmp_path / "v1").exists() and list_versions(store) == [] and served_run(store) is None


def test_the_new_folder_must_be_new(shop, store, tmp_path):
    (tmp_path / "v1").mkdir()
    with pytest.raises(RetrainError, match="exists"):
        retrain(store, shop["v0"], tmp_path / "v1", tmp_path / "data", ROUND, "cli:test", lambda m: None)


def test_rollback_publishes_an_earlier_version_and_refuses_a_missing_folder(shop, store, tmp_path):
    v0_copy = tmp_path / "v0"
    shutil.copytree(shop["v0"], v0_copy)  # this test deletes it later
    o = retrain(store, v0_copy, tmp_path / "v1", tmp_path / "data", ROUND, "cli:test", lambda m: None)
    assert o.status == "promoted"
    v, previous = rollback(store, 1, "cli:ops")
    assert previous["version"] == run_version(tmp_path / "v1")
    assert served_run(store) == {"folder": str(v0_copy.resolve()), "version": run_version(v0_copy)}
    assert [(x.version_id, x.status) for x in list_versions(store)] == [(1, "imported"), (2, "rolled_back")]
    back, _ = rollback(store, 2, "cli:ops")  # and forward again
    assert back.status == "promoted" and served_run(store)["version"] == run_version(tmp_path / "v1")

    shutil.rmtree(v0_copy)
    state, statuses = served_run(store), [x.status for x in list_versions(store)]
    with pytest.raises(RetrainError, match="no longer exists"):
        rollback(store, 1, "cli:ops")
    assert served_run(store) == state and [x.status for x in list_versions(store)] == statuses
    with pytest.raises(RetrainError, match="no version 9"):
        rollback(store, 9, "cli:ops")
    log = [(e.action, e.outcome, e.actor) for e in audit_entries(store)]
    assert log == [("retrain_promote", "ok", "cli:test"), ("rollback", "ok", "cli:ops"), ("rollback", "ok", "cli:ops"),
                   ("rollback", "failed", "cli:ops"), ("rollback", "failed", "cli:ops")]


def test_every_repeats_until_stopped_and_survives_a_failed_round():
    stop, seen, said = threading.Event(), [], []

    def round_(n: int) -> None:
        seen.append(n)
        if n == 1:
            raise RuntimeError("store unreachable")
        stop.set()

    assert every(0.01, round_, stop, said.append) == 2
    assert seen == [1, 2] and any("round 1 failed" in s and "store unreachable" in s for s in said)


@pytest.mark.parametrize("text,seconds", [("6h", 21600), ("30m", 1800), ("90s", 90), ("1d", 86400), ("45", 45)])
def test_intervals(text, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "6x", "-1h", "0s"])
def test_bad_intervals(text):
    with pytest.raises(RetrainError, match="--every"):
        parse_interval(text)
