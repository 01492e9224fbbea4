"""`shopformer forget` and `shopformer export-user` on a SQLite store."""

import json
from datetime import datetime, timezone

from typer.testing import CliRunner

from shopformer.cli import app
from shopformer.store import EventStore, StoreConfig
from shopformer.store.schema import SERVED_RUN

runner = CliRunner()
T0 = datetime(2024, 5, 1, tzinfo=timezone.utc)


def invoke(*args) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_export_then_forget(tmp_path):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    run = tmp_path / "run"
    run.mkdir()
    (run / "users.json").write_text(json.dumps(["ann", "bob"]))  # what the served run was trained on
    with EventStore(StoreConfig(url)) as store:
        store.add_events([
            {"user_id": "ann", "item_id": "i1", "event_type": "view", "timestamp": T0, "context": {"page": "home"}},
            {"user_id": "ann", "event_type": "search", "query": "red shoes", "timestamp": T0},
            {"user_id": "bob", "item_id": "i2", "event_type": "purchase", "timestamp": T0},
            {"user_id": "cy", "item_id": "i2", "event_type": "view", "timestamp": T0},
        ])
        store.put_state(SERVED_RUN, json.dumps({"folder": str(run), "version": "run-v1"}))

    out = tmp_path / "ann.json"
    invoke("export-user", "ann", "--store", url, "--out", out)
    data = json.loads(out.read_text())
    assert data["user_id"] == "ann" and data["event_counts"] == {"view": 1, "search": 1}
    assert {"page": "home"} in [e["context"] for e in data["events"]] and "red shoes" in [e["query"] for e in data["events"]]
    assert data["model"] == {"version": "run-v1", "saw_user": True}

    receipt = json.loads(invoke("forget", "ann", "--store", url, "--json"))
    assert receipt["user_id"] == "ann" and receipt["removed"] == {"events": 2, "impressions": 0}
    assert receipt["status"] == "pending_retrain" and receipt["model_version"] == "run-v1"
    assert receipt["storage"]["secure_delete"] is True and receipt["notes"]

    table = invoke("forget", "cy", "--store", url)  # the served run never saw cy: complete at once
    assert "erasure receipt 2: complete" in table and "events: 1" in table

    after = json.loads(invoke("export-user", "ann", "--store", url))
    assert after["events"] == [] and [r["status"] for r in after["erasures"]] == ["pending_retrain"]
    with EventStore(StoreConfig(url)) as store:
        assert store.user_events("bob").height == 1 and store.count_events() == 1
