"""Erasure and access over HTTP: DELETE /v1/users/{id} and GET /v1/users/{id}/export.

The user's events, cached history and autocomplete counts go (in this process and in
another one on the same store), the receipt is pending while the served run was trained
on them and complete once a run retrained from the store without them is published."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("tantivy")

from fastapi.testclient import TestClient  # noqa: E402

from shopformer.artifact import make_model  # noqa: E402
from shopformer.dataset import DataConfig  # noqa: E402
from shopformer.experiment import train_run  # noqa: E402
from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.store import EventStore, StoreConfig, export_snapshot  # noqa: E402

from test_api import AUTH, KEY, ids, shop, store_url  # noqa: E402, F401 - fixtures

MARK = "zq-secret-marker-123"


def make(store_url, run, folder, **kw) -> TestClient:  # noqa: F811
    settings = ServeSettings(store_url=store_url, run=run, api_key=KEY, search_dir=folder, search_semantic=False,
                             cache_ttl_s=60, **kw)
    return TestClient(create_app(settings), headers={"X-API-Key": KEY})


@pytest.fixture
def client(shop, store_url, tmp_path):  # noqa: F811
    with make(store_url, shop["run1"], tmp_path / "search") as c:
        assert c.app.state.search.wait(60)
        yield c


def suggested(client, prefix: str) -> list[str]:
    return [s["text"] for s in client.get("/v1/search/suggest", params={"q": prefix}).json()["suggestions"]
            if s["kind"] == "query"]


def post(client, **event) -> None:
    r = client.post("/v1/events", headers=AUTH, json=event)
    assert r.status_code == 201, r.text


def test_keys_are_required(client):
    for method, path in (("DELETE", "/v1/users/u1"), ("GET", "/v1/users/u1/export")):
        assert client.request(method, path, headers={"X-API-Key": ""}).status_code == 401  # the client's default key off
        assert client.request(method, path, headers={"X-API-Key": "wrong"}).status_code == 403
    assert client.get("/v1/users/u1/export", headers=AUTH).json()["events"]  # nothing was erased


def test_erase_a_user_end_to_end(client, shop, store_url, tmp_path):  # noqa: F811
    post(client, user_id="u1", type="search", query=f"{MARK} cups", context={"device": "phone"})
    post(client, user_id="u1", item_id="d", type="view", context={"note": MARK})
    assert suggested(client, "zq-sec") == [f"{MARK} cups"]
    before = client.get("/v1/users/u1/export", headers=AUTH).json()
    assert len(before["events"]) == 5 and before["event_counts"] == {"purchase": 3, "search": 1, "view": 1}
    assert {"note": MARK} in [e["context"] for e in before["events"]] and before["erasures"] == []
    assert before["model"]["saw_user"] is True and before["model"]["version"].startswith("run1-")
    recs = client.get("/v1/users/u1/recommendations").json()
    assert recs["history_length"] > 0 and recs["strategy"] == "history"  # now cached
    shown = client.get("/v1/users/u1/export", headers=AUTH).json()["impressions"]  # the answer just given
    assert [i["request_id"] for i in shown] == [recs["request_id"]] and shown[0]["item_ids"] == ids(recs)

    r = client.delete("/v1/users/u1", headers=AUTH)
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["user_id"] == "u1" and receipt["removed"] == {"events": 5, "impressions": 1}
    assert receipt["event_types"] == {"purchase": 3, "search": 1, "view": 1}
    assert receipt["status"] == "pending_retrain" and receipt["model_saw_user"] is True
    assert receipt["model_version"] == before["model"]["version"] and receipt["completed_version"] is None
    assert receipt["storage"]["wal_truncated"] is True and receipt["caches"]["autocomplete_queries_removed"] == 1

    assert client.get("/v1/users/u1").json()["events"] == []
    recs = client.get("/v1/users/u1/recommendations").json()
    assert recs["history_length"] == 0 and recs["strategy"] == "popularity"  # the new-visitor path
    assert suggested(client, "zq-sec") == []
    after = client.get("/v1/users/u1/export", headers=AUTH).json()
    # the answer given after the erasure is new data: it is what the export holds now
    assert [i["request_id"] for i in after["impressions"]] == [recs["request_id"]]
    assert after["events"] == [] and [e["receipt_id"] for e in after["erasures"]] == [receipt["receipt_id"]]
    assert after["erasures"][0]["status"] == "pending_retrain" and after["erasures"][0]["user_id"] == "u1"
    assert client.get("/v1/users/u2/export", headers=AUTH).json()["event_counts"] == {"purchase": 3}

    # retrain from the store (no u1 any more) and publish: the receipt is complete
    data = tmp_path / "retrain"
    with EventStore(StoreConfig(store_url)) as store:
        export_snapshot(store, data)
    train_run(make_model("itemknn", {"shrink": "0"}), data, DataConfig(), tmp_path / "run3", fit_on="all")
    r = client.post("/v1/admin/reload", headers=AUTH, json={"run": str(tmp_path / "run3")})
    assert r.status_code == 200, r.text
    version = r.json()["model"]["version"]
    done = client.get("/v1/users/u1/export", headers=AUTH).json()
    assert done["model"] == {"version": version, "saw_user": False}
    assert done["erasures"][0]["status"] == "complete" and done["erasures"][0]["completed_version"] == version
    # erasing again (nothing left, a model that never saw them): complete at once
    again = client.delete("/v1/users/u1", headers=AUTH).json()
    assert again["removed"] == {"events": 0, "impressions": 1} and again["status"] == "complete"


@pytest.mark.parametrize("cache_check", [True, False])
def test_another_process_drops_the_user(shop, store_url, tmp_path, cache_check):  # noqa: F811
    """Two API processes on one store (two apps here): the one that did not answer the
    DELETE stops serving the cached history and the autocomplete counts."""
    with (make(store_url, shop["run1"], tmp_path / "a") as a,
          make(store_url, shop["run1"], tmp_path / "b", cache_check=cache_check, sync_s=0.1) as b):
        assert a.app.state.search.wait(60) and b.app.state.search.wait(60)
        post(b, user_id="u4", type="search", query=f"{MARK} hose")
        assert suggested(b, "zq-sec") == [f"{MARK} hose"]
        assert b.get("/v1/users/u4/recommendations").json()["history_length"] > 0  # cached in b
        assert a.delete("/v1/users/u4", headers=AUTH).status_code == 200
        if cache_check:  # the newest stored position changed: b reads again at once
            assert b.get("/v1/users/u4/recommendations").json()["history_length"] == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lengths = b.get("/v1/users/u4/recommendations").json()["history_length"]
            if lengths == 0 and suggested(b, "zq-sec") == []:
                break
            time.sleep(0.05)
        assert b.get("/v1/users/u4/recommendations").json()["history_length"] == 0
        assert suggested(b, "zq-sec") == []
