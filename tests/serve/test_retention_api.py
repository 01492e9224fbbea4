"""Retention in a served app: the schedule purges expired events, and no process keeps
serving them from memory (cached histories, autocomplete), on one store."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("tantivy")

from fastapi.testclient import TestClient  # noqa: E402
from test_api import AUTH, KEY, shop, store_url  # noqa: E402, F401 - fixtures

from shopformer.serve import ServeSettings, create_app  # noqa: E402
from shopformer.store import EventStore, RetentionConfig, StoreConfig  # noqa: E402
from shopformer.store.access import audit_entries  # noqa: E402

OLD = (datetime.now(timezone.utc) - timedelta(days=100)).isoformat()
QUERY = "zq-expired-query boots"


def make(store_url, run, folder, **kw) -> TestClient:  # noqa: F811
    settings = ServeSettings(store_url=store_url, run=run, api_key=KEY, search_dir=folder, search_semantic=False,
                             cache_ttl_s=60, **kw)
    return TestClient(create_app(settings))


def suggested(client, prefix: str) -> list[str]:
    return [s["text"] for s in client.get("/v1/search/suggest", params={"q": prefix}).json()["suggestions"]
            if s["kind"] == "query"]


def history_length(client, user: str) -> int:
    return client.get(f"/v1/users/{user}/recommendations", headers=AUTH).json()["history_length"]


def post_old_events(client, user: str) -> None:
    """Events 100 days old: views of a and b, a search; read once, so now cached."""
    for body in ({"item_id": "a", "type": "view"}, {"item_id": "b", "type": "view"}, {"type": "search", "query": QUERY}):
        r = client.post("/v1/events", headers=AUTH, json={"user_id": user, "timestamp": OLD, **body})
        assert r.status_code == 201, r.text
    assert history_length(client, user) >= 2
    assert suggested(client, "zq-exp") == [QUERY]


def wait_for(check, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def purged(store_url: str) -> bool:  # noqa: F811
    with EventStore(StoreConfig(store_url)) as store:
        return any(p.status == "done" and p.deleted for p in store.purges())


def test_the_schedule_purges_and_this_process_forgets(shop, store_url, tmp_path):  # noqa: F811
    # sync_s=0: no sync thread, so only the purging code path can drop the caches (TTL is 60 s)
    with make(store_url, shop["run1"], tmp_path / "s", retention_check_s=0.2, sync_s=0) as client:
        assert client.app.state.search.wait(60)
        post_old_events(client, "r1")
        time.sleep(0.5)  # ticks without a policy purge nothing
        assert history_length(client, "r1") >= 2 and not purged(store_url)
        with EventStore(StoreConfig(store_url)) as store:  # e.g. `shopformer retention --store URL --days 30`
            store.set_retention_policy(RetentionConfig(days=30))
        assert wait_for(lambda: purged(store_url)), "no scheduled purge ran"
        assert wait_for(lambda: history_length(client, "r1") == 0 and suggested(client, "zq-exp") == [])
        with EventStore(StoreConfig(store_url)) as store:
            [log] = [p for p in store.purges() if p.deleted]
            assert log.trigger == "schedule" and log.event_types == {"search": 1, "view": 2}
            assert store.user_events("r1").height == 0 and store.count_events() == 21  # the shop's untimed events stay
        assert history_length(client, "u1") > 0


@pytest.mark.parametrize("cache_check", [True, False])
def test_another_process_stops_serving_purged_events(shop, store_url, tmp_path, cache_check):  # noqa: F811
    """b does not purge: with cache_check and no sync thread, the changed newest position
    alone makes it re-read; without cache_check its sync tick drops the cache and the
    purged queries."""
    b_kw = {"cache_check": True, "sync_s": 0} if cache_check else {"sync_s": 0.1}
    with (make(store_url, shop["run1"], tmp_path / "a", retention_check_s=0.2, sync_s=0) as a,
          make(store_url, shop["run1"], tmp_path / "b", retention_check_s=0, **b_kw) as b):
        assert a.app.state.search.wait(60) and b.app.state.search.wait(60)
        post_old_events(b, "r2")
        with EventStore(StoreConfig(store_url)) as store:
            store.set_retention_policy(RetentionConfig(days=30))
        assert wait_for(lambda: purged(store_url)), "no scheduled purge ran"
        if cache_check:
            assert history_length(b, "r2") == 0  # at once
        else:
            assert wait_for(lambda: history_length(b, "r2") == 0 and suggested(b, "zq-exp") == [])


def test_environment_policy_is_published_and_one_process_purges_per_interval(shop, store_url, tmp_path):  # noqa: F811
    with EventStore(StoreConfig(store_url)) as store:
        store.add_events([{"user_id": "r3", "item_id": "a", "event_type": "view", "timestamp": OLD}])
    policy = RetentionConfig(days=30, types={"purchase": 730})
    with (make(store_url, shop["run1"], tmp_path / "a", retention=policy, retention_check_s=30, search=False),
          make(store_url, shop["run1"], tmp_path / "b", retention=policy, retention_check_s=30, search=False)):
        assert wait_for(lambda: purged(store_url))
        time.sleep(1.0)  # both processes have had their start-up tick
        with EventStore(StoreConfig(store_url)) as store:
            assert store.retention_policy() == policy
            assert [p.deleted for p in store.purges()] == [1], "a second process purged within the interval"
            log = audit_entries(store)  # the policy, published once (unchanged for the second), and the purge
            assert [(e.action, e.actor.split(":")[0]) for e in log] == [
                ("set_retention_policy", "env"), ("retention_purge", "schedule")]
