"""The model_versions table (store/versions.py) and publishing (store/served.py) on
SQLite and, with SHOPFORMER_TEST_POSTGRES_URL, PostgreSQL."""

from __future__ import annotations

import json

import pytest

from shopformer.store.schema import SERVED_RUN
from shopformer.store.served import publish_run, served_run
from shopformer.store.versions import add_version, find_version, get_version, list_versions, set_status



@pytest.fixture
def store(backend_store):  # SQLite, and PostgreSQL when configured (tests/conftest.py)
    return backend_store


def test_versions_round_trip(store):
    assert list_versions(store) == [] and get_version(store, 1) is None
    a = add_version(store, "v0-abc", "/runs/v0", "imported", "imported")
    b = add_version(store, "v1-def", "/runs/v1", "warm", "promoted", parent_id=a.version_id, train_seconds=12.5,
                    metrics={"current": 0.1, "candidate": 0.12, "cases": 300})
    assert (a.version_id, b.version_id) == (1, 2)
    assert list_versions(store) == [a, b] and get_version(store, 2) == b
    assert find_version(store, "v1-def") == b and find_version(store, "nope") is None
    set_status(store, 2, "rolled_back")
    again = get_version(store, 2)
    assert again.status == "rolled_back" and again.status_at >= b.status_at and again.metrics["cases"] == 300
    with pytest.raises(ValueError, match="status"):
        set_status(store, 2, "served")
    with pytest.raises(ValueError, match="mode"):
        add_version(store, "x", "/x", "hot", "promoted")


def test_publish_names_the_run_for_every_process_and_settles_erasures(store, tmp_path):
    store.add_events([{"user_id": "gone", "item_id": "i1", "event_type": "view"}])
    receipt = store.forget_user("gone", model_version="old", model_saw_user=True)
    assert receipt.status == "pending_retrain" and served_run(store) is None
    done = publish_run(store, tmp_path / "run", "run-123", ["someone else"])
    assert done == [receipt.receipt_id]
    assert json.loads(store.get_state(SERVED_RUN)) == served_run(store) == {
        "folder": str((tmp_path / "run").resolve()), "version": "run-123"}
