"""Impressions in the store, on SQLite and (with SHOPFORMER_TEST_POSTGRES_URL) PostgreSQL:
written in batches and read back, erased with the customer (bytes scrubbed, counted on
the receipt, never written back from a queue), purged by the retention policy, and in
the customer's access export."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from shopformer.privacy import export_user
from shopformer.store import EventStore, PurgeConfig, RetentionConfig, StoreConfig

NOW = datetime.now(timezone.utc).replace(microsecond=0)
MARKER = "zq-impression-session-9931"


def row(request_id: str, user: str | None = "u1", age_days: float = 0.0, items: list[str] | None = None,
        **kw) -> dict:
    return {"request_id": request_id, "shown_at": NOW - timedelta(days=age_days), "user_id": user,
            "session_id": None, "placement": "home", "route": "user_recommendations", "model_name": "sasrec",
            "model_version": "run1-abc", "experiment": None, "variant": None, "strategy": "history",
            "item_ids": items if items is not None else ["i1", "i2", "i3"], **kw}


@pytest.fixture
def store(backend_store):  # SQLite, and PostgreSQL when configured (tests/conftest.py)
    return backend_store


def test_write_and_read_back(store):
    rows = [row("r1", items=["b", "a", "c"], experiment="exp", variant="v2"),
            row("r2", user=None, session_id="s9", placement="pdp", route="similar", model_name=None,
                model_version=None, strategy=None, age_days=2),
            row("r3", user="u2", age_days=1)]
    assert store.add_impressions(rows) == 3
    assert store.add_impressions([row("r1", items=["x"]), row("r4")]) == 1  # r1 is stored already: left out
    got = store.impressions()
    assert got["request_id"].to_list() == ["r1", "r2", "r3", "r4"]  # in the order written
    assert got.row(0, named=True) == {**rows[0], "shown_at": NOW}
    assert got.row(1, named=True) == {**rows[1], "shown_at": NOW - timedelta(days=2)}
    assert got.schema["item_ids"] == pl.List(pl.String) and str(got.schema["shown_at"]) == "Datetime(time_unit='us', time_zone='UTC')"
    assert store.impressions(since=NOW - timedelta(days=1, seconds=1))["request_id"].to_list() == ["r1", "r3", "r4"]
    assert store.impressions(until=NOW - timedelta(hours=1))["request_id"].to_list() == ["r2", "r3"]
    assert store.impressions(user_id="u1")["request_id"].to_list() == ["r1", "r4"]
    assert store.impressions(experiment="exp")["request_id"].to_list() == ["r1"]
    assert store.impressions(request_ids=["r3", "nope", "r2"])["request_id"].to_list() == ["r2", "r3"]
    one = store.impression("r1")
    assert one["item_ids"] == ["b", "a", "c"] and one["variant"] == "v2" and one["shown_at"] == NOW
    assert store.impression("nope") is None and store.count_impressions() == 4


def test_events_that_name_an_answer(store):
    store.add_events([
        {"event_id": "e1", "user_id": "u1", "item_id": "i2", "event_type": "click", "timestamp": NOW,
         "context": json.dumps({"request_id": "r1", "page": "home"})},
        {"event_id": "e2", "user_id": "u1", "item_id": "i3", "event_type": "view", "timestamp": NOW,
         "context": json.dumps({"page": "home"})},
        {"event_id": "e3", "user_id": "u1", "item_id": "i3", "event_type": "purchase", "timestamp": NOW,
         "context": 'not json "request_id"'},  # mentions it, names nothing
        {"event_id": "e4", "user_id": "u1", "item_id": "i3", "event_type": "purchase",
         "timestamp": NOW - timedelta(days=3), "context": json.dumps({"request_id": "r0"})},
    ])
    got = store.attributable_events()
    assert got.select("event_id", "request_id").rows() == [("e1", "r1"), ("e4", "r0")]
    assert store.attributable_events(NOW - timedelta(days=1))["event_id"].to_list() == ["e1"]


def test_an_erasure_takes_the_impressions_and_wins_over_a_queue(store):
    store.add_impressions([row("r1", session_id=MARKER), row("r2"), row("r3", user="u2")])
    receipt = store.forget_user("u1")
    assert receipt.removed == {"events": 0, "impressions": 2}
    assert store.impressions()["request_id"].to_list() == ["r3"]
    # a process that showed u1 an answer before the erasure writes it only now: left out;
    # an answer shown after the erasure is new data and stays
    late = [row("r4", age_days=1 / 24), row("r5", user="u2", age_days=1 / 24)]
    late.append({**row("r6"), "shown_at": datetime.now(timezone.utc) + timedelta(seconds=1)})
    assert store.add_impressions(late) == 2
    assert store.impressions()["request_id"].to_list() == ["r3", "r5", "r6"]


def test_sqlite_bytes_of_erased_impressions_are_gone(tmp_path):
    db = tmp_path / "shop.db"
    with EventStore(StoreConfig(f"sqlite:///{db}")) as store:
        for i in range(0, 600, 50):  # many commits: many WAL frames
            store.add_impressions([row(f"r{j}", user="zq-user-77" if j % 3 == 0 else f"o{j}",
                                       session_id=MARKER if j % 3 == 0 else None) for j in range(i, i + 50)])
        files = [db, Path(f"{db}-wal")]
        assert any(MARKER.encode() in p.read_bytes() for p in files if p.exists())  # written where we look
        receipt = store.forget_user("zq-user-77")
        assert receipt.removed == {"events": 0, "impressions": 200} and receipt.storage["wal_truncated"] is True
        assert store.count_impressions() == 400
    assert not any(m in p.read_bytes() for p in files if p.exists() for m in (MARKER.encode(), b"zq-user-77"))


def test_sqlite_writes_a_batch_in_chunks_handing_the_gil_over_between_them(tmp_path, monkeypatch):
    from shopformer.store import impressions as shown

    monkeypatch.setattr(shown, "SQLITE_CHUNK_ROWS", 4)
    sleeps = []
    monkeypatch.setattr(shown.time, "sleep", sleeps.append)  # the hand-over between chunks
    with EventStore(StoreConfig(f"sqlite:///{tmp_path / 'shop.db'}")) as store:
        assert store.add_impressions([row("r3"), row("r7")]) == 2 and sleeps == []  # one chunk: no pause
        batch = [row(f"r{i}", user=f"u{i}") for i in range(10)]  # r3 and r7 are stored already
        assert store.add_impressions(batch) == 8
        assert sleeps == [shown.GIL_HANDOVER_S, shown.GIL_HANDOVER_S]  # chunks of 4, 4 and 2
        got = store.impressions()
        assert got["request_id"].to_list() == ["r3", "r7", "r0", "r1", "r2", "r4", "r5", "r6", "r8", "r9"]
        assert got.filter(got["request_id"] == "r9")["user_id"].to_list() == ["u9"]
        store.forget_user("u5")  # one transaction: an erased customer's row is left out of any chunk
        later = [row(f"s{i}", user=f"u{i}", age_days=1) for i in range(4, 7)]
        assert store.add_impressions(later) == 2 and store.count_impressions() == 11


def test_retention_purges_old_impressions_at_the_default_age(store):
    store.add_impressions([row(f"r{d}", age_days=d + 0.5) for d in range(10)])
    store.add_events([{"event_id": "e1", "user_id": "u1", "item_id": "i1", "event_type": "view",
                       "timestamp": NOW - timedelta(days=9)}])
    dry = store.purge_events(RetentionConfig(days=4), now=NOW, dry_run=True)
    assert (dry.impressions, store.count_impressions()) == (6, 10)
    result = store.purge_events(RetentionConfig(days=4), now=NOW, config=PurgeConfig(batch_size=4))
    assert result.impressions == 6 and result.event_types == {"view": 1}
    assert store.impressions()["request_id"].to_list() == ["r0", "r1", "r2", "r3"]
    [logged] = store.purges()
    assert logged.impressions == 6 and "impressions_deleted" not in logged.storage
    # per-type ages only: impressions have no age, they stay
    assert store.purge_events(RetentionConfig(types={"view": 1}), now=NOW).impressions == 0
    assert store.count_impressions() == 4


def test_the_access_export_lists_the_customers_impressions(store):
    store.add_impressions([row("r1", session_id="s1", items=["a", "b"]), row("r2", user="u2"), row("r3", age_days=1)])
    found = export_user(store, "u1", None)
    assert [i["request_id"] for i in found["impressions"]] == ["r1", "r3"]
    first = found["impressions"][0]
    assert first["item_ids"] == ["a", "b"] and first["session_id"] == "s1" and "user_id" not in first
    assert first["shown_at"] == NOW.isoformat() and first["model_version"] == "run1-abc"
    assert export_user(store, "nobody", None)["impressions"] == []
