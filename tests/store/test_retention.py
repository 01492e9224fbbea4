"""Retention in the store: the policy, purges by age and per type in batches, the purge log,
dry runs, the lease, the bytes of purged events gone from the SQLite file and WAL, and
snapshots that leave expired events out. SQLite always; PostgreSQL when
SHOPFORMER_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from shopformer.store import (
    EventStore,
    PurgeConfig,
    RetentionConfig,
    StoreConfig,
    export_snapshot,
)
from shopformer.store.retention import LeaseHeld, release_lease, take_lease

NOW = datetime(2025, 6, 1, tzinfo=timezone.utc)
TYPES = ("view", "purchase", "search", "click")


def aged(n: int = 200) -> list[dict]:
    """Event i is i days old; types cycle view, purchase, search, click; one untimed event."""
    rows = [{"event_id": f"e{i}", "user_id": f"u{i % 9}", "event_type": TYPES[i % 4],
             "item_id": None if TYPES[i % 4] == "search" else f"i{i % 13}",
             "query": f"q{i}" if TYPES[i % 4] == "search" else None, "timestamp": NOW - timedelta(days=i, hours=1)}
            for i in range(n)]
    rows.append({"event_id": "untimed", "user_id": "u0", "item_id": "i1", "event_type": "view"})
    return rows


def older(n: int, t: str, days: float) -> set[str]:
    """Ids of the events of type ``t`` among ``aged(n)`` older than ``days``."""
    return {f"e{i}" for i in range(n) if TYPES[i % 4] == t and i + 1 / 24 > days}


@pytest.fixture
def store(backend_store):  # SQLite, and PostgreSQL when configured (tests/conftest.py)
    return backend_store


def ids(store: EventStore) -> set[str]:
    return set(store.events()["event_id"].to_list())


def test_purge_by_age_in_batches_with_a_log(store):
    store.add_events(aged())
    before = ids(store)
    policy = RetentionConfig(days=50)
    dry = store.purge_events(policy, now=NOW, dry_run=True)
    assert ids(store) == before and store.purges() == [] and store.last_purge_id() == 0  # a dry run changes nothing

    result = store.purge_events(policy, now=NOW, config=PurgeConfig(batch_size=7))
    gone = set().union(*(older(200, t, 50) for t in TYPES))
    assert ids(store) == before - gone and "untimed" in ids(store)  # untimed events have no age: kept
    expected = {t: len(older(200, t, 50)) for t in TYPES}
    assert result.event_types == dry.event_types == expected and result.deleted == len(gone) == 150
    assert result.batches == -(-150 // 7) and result.status == "done" and result.trigger == "manual"
    assert result.cutoffs == {"*": (NOW - timedelta(days=50)).isoformat()}

    [logged] = store.purges()
    assert logged.purge_id == result.purge_id == store.last_purge_id()
    assert (logged.event_types, logged.batches, logged.status) == (expected, result.batches, "done")
    assert logged.policy == {"days": 50.0, "types": {}} and logged.finished_at is not None
    assert logged.storage["backend"] == store.dialect
    again = store.purge_events(policy, now=NOW)  # nothing left to purge: logged, but no cache needs dropping
    assert again.deleted == 0 and len(store.purges()) == 2 and store.last_purge_id() == result.purge_id


def test_per_type_ages_override_the_default(store):
    store.add_events(aged())
    policy = RetentionConfig(days=120, types={"purchase": 180, "search": 10, "click": None})
    result = store.purge_events(policy, now=NOW)
    gone = older(200, "view", 120) | older(200, "purchase", 180) | older(200, "search", 10)
    assert ids(store) == {f"e{i}" for i in range(200)} - gone | {"untimed"}
    assert result.event_types == {"purchase": len(older(200, "purchase", 180)), "search": 48,
                                  "view": len(older(200, "view", 120))}
    assert store.query_counts() == {"q2": 1, "q6": 1}  # the query log is purged too
    # only one type has an age: the others stay whatever their age
    clicks = store.events().filter(pl.col("event_type") == "click").height
    assert store.purge_events(RetentionConfig(types={"view": 1}), now=NOW).event_types == {"view": 29}
    views = store.events().filter(pl.col("event_type") == "view")
    assert set(views["event_id"]) == {"e0", "untimed"}
    assert store.events().filter(pl.col("event_type") == "click").height == clicks == 50


def test_policy_lives_in_the_store_and_bad_values_say_which_field(store):
    assert store.retention_policy() is None
    store.set_retention_policy(RetentionConfig(days=365, types={"purchase": "730", "search": 30}))
    got = store.retention_policy()
    assert got == RetentionConfig(days=365, types={"purchase": 730, "search": 30}) and got.max_age("view") == 365
    store.set_retention_policy(None)
    assert store.retention_policy() is None
    store.set_retention_policy(RetentionConfig(types={"view": "forever"}))  # keeps everything: no policy
    assert store.retention_policy() is None
    for kwargs, words in (({"days": 0}, "retention days"), ({"days": -3}, "retention days"),
                          ({"days": "soon"}, "retention days"), ({"days": float("inf")}, "retention days"),
                          ({"days": 1e9}, "<= 100000"), ({"types": {"purchse": 3}}, "unknown event type 'purchse'"),
                          ({"types": {"view": 0}}, "retention days of 'view'")):
        with pytest.raises(ValueError, match=words):
            RetentionConfig(**kwargs)
    with pytest.raises(ValueError, match=r"--type: 'view' must look like TYPE=DAYS"):
        RetentionConfig.parse_types(["view"], "--type")
    assert RetentionConfig.parse_types("purchase=730, search=forever") == {"purchase": 730.0, "search": None}


def test_the_lease_keeps_one_purger(store):
    store.add_events(aged(40))
    assert take_lease(store, "a", 60) is None
    assert take_lease(store, "b", 60)["holder"] == "a"  # held: refused, saying by whom
    with pytest.raises(LeaseHeld, match="taken over by a"):
        store.purge_events(RetentionConfig(days=1), now=NOW, holder="b")
    assert store.count_events() == 41 and store.purges()[0].status == "failed"
    release_lease(store, "b")  # not b's: nothing happens
    assert take_lease(store, "b", 60) is not None
    release_lease(store, "a")
    assert take_lease(store, "b", 0.05) is None  # free now; b's lease expires quickly
    time.sleep(0.1)
    assert take_lease(store, "c", 60, min_interval_s=3600)["recent"]  # a purge started just now (b's failed try)
    assert take_lease(store, "c", 60) is None  # an expired lease is taken over
    result = store.purge_events(RetentionConfig(days=1), now=NOW, holder="c")
    assert result.deleted == 39 and result.holder == "c"


def test_a_stopped_purge_ends_between_batches(store):
    store.add_events(aged(40))
    stop = threading.Event()
    stop.set()
    result = store.purge_events(RetentionConfig(days=1), now=NOW, stop=stop)
    assert (result.status, result.deleted, store.count_events()) == ("stopped", 0, 41)


def test_other_writers_keep_going_during_a_purge(store):
    store.add_events(aged(2000))
    done: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            store.add_events([{"user_id": "w", "item_id": f"w{i}", "event_type": "view", "timestamp": NOW}])
            done.append(time.monotonic())
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.05)
        t0 = time.monotonic()
        result = store.purge_events(RetentionConfig(days=1), now=NOW, config=PurgeConfig(batch_size=20))
        t1 = time.monotonic()
    finally:
        stop.set()
        t.join()
    assert result.deleted == 1999 and result.batches == 100
    during = [d for d in done if t0 < d < t1]
    assert len(during) >= 5, f"only {len(during)} writes committed during a {t1 - t0:.2f} s purge"
    assert store.user_events("w").height == len(done)  # every write is kept (they are all new)


def test_snapshot_leaves_expired_events_out_before_any_purge(store, tmp_path):
    now = datetime.now(timezone.utc)
    store.add_events([{"event_id": f"e{d}", "user_id": "u", "item_id": "i", "event_type": "view",
                       "timestamp": now - timedelta(days=d)} for d in (1, 10, 100)]
                     + [{"event_id": "p100", "user_id": "u", "item_id": "i", "event_type": "purchase",
                         "timestamp": now - timedelta(days=100)}])
    store.upsert_products([{"item_id": "i", "title": "Item"}])
    store.set_retention_policy(RetentionConfig(days=30, types={"purchase": 365}))

    def snap(name: str, **kw) -> set[str]:
        assert export_snapshot(store, tmp_path / name, **kw)[1] == 1
        return set(pl.read_parquet(tmp_path / name / "events.parquet")["event_id"])

    assert snap("policy") == {"e1", "e10", "p100"}  # the store's policy, no purge run yet
    assert snap("all", retention=False) == {"e1", "e10", "e100", "p100"}
    assert snap("given", retention=RetentionConfig(days=5)) == {"e1"}
    assert store.count_events() == 4  # a snapshot deletes nothing


def marker_bytes(db: Path, markers: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for p in (db, Path(f"{db}-wal")):
        if p.exists():
            data = p.read_bytes()
            out[p.name] = [m for m in markers if m.encode() in data]
    return out


def test_sqlite_bytes_of_purged_events_are_gone_from_file_and_wal(tmp_path):
    db = tmp_path / "shop.db"
    old, new = "zq-expired-marker-31337", "zq-kept-marker-4242"
    rows = []
    for i in range(600):  # old and new interleaved, so they share pages
        expired = i % 3 == 0
        mark = old if expired else new
        rows.append({"event_id": f"{mark}-{i}", "user_id": f"u{i % 11}", "event_type": "search" if i % 2 else "view",
                     "item_id": None if i % 2 else "i1", "query": f"{mark} q{i}" if i % 2 else None,
                     "context": json.dumps({"note": mark}),
                     "timestamp": NOW - timedelta(days=400 if expired else 1)})
    with EventStore(StoreConfig(f"sqlite:///{db}")) as store:
        for i in range(0, 600, 50):  # many commits: many WAL frames with the rows
            store.add_events(rows[i:i + 50])
        assert any(old in found for found in marker_bytes(db, (old,)).values())  # written where we look
        result = store.purge_events(RetentionConfig(days=30), now=NOW, config=PurgeConfig(batch_size=64))
        assert result.deleted == 200 and result.storage["wal_truncated"] is True
        assert result.storage["secure_delete"] is True
        open_now = marker_bytes(db, (old, new))
    assert all(old not in found for found in open_now.values()), open_now
    closed = marker_bytes(db, (old, new))
    assert all(old not in found for found in closed.values()), closed
    assert closed["shop.db"] == [new]  # the kept events are still there: the control that we read the right bytes
