"""Data folders exported from the store are registered there, so that an erasure removes
the customer's rows from them and a retention purge applies its policy to them too."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone

import polars as pl

from shopformer.privacy.retention import purge_store
from shopformer.store import EventStore, RetentionConfig, StoreConfig, export_snapshot
from shopformer.store.exports import registered

NOW = datetime.now(timezone.utc)
MARK = "zq-export-marker-71c"


def _store(tmp_path) -> EventStore:
    store = EventStore(StoreConfig(f"sqlite:///{tmp_path / 'shop.db'}"))
    store.add_events([
        {"user_id": "ann-7f2", "item_id": "i1", "event_type": "view", "timestamp": NOW, "context": {"m": MARK}},
        {"user_id": "ann-7f2", "event_type": "search", "query": MARK, "timestamp": NOW},
        {"user_id": "bob", "item_id": "i2", "event_type": "purchase", "timestamp": NOW},
        {"user_id": "cy", "item_id": "i2", "event_type": "view", "timestamp": NOW - timedelta(days=400)},
    ])
    return store


def test_an_erasure_cleans_every_exported_folder(tmp_path):
    with _store(tmp_path) as store:
        a, b = tmp_path / "snap-a", tmp_path / "snap-b"
        export_snapshot(store, a)
        export_snapshot(store, b)
        export_snapshot(store, a)  # registered once
        assert registered(store) == [str(a.resolve()), str(b.resolve())]
        assert MARK.encode() in (a / "events.parquet").read_bytes()  # the control: the byte check can see it
        shutil.rmtree(b)
        receipt = store.forget_user("ann-7f2", None, None)
        assert receipt.storage["exported_folders"] == {str(a.resolve()): 2, str(b.resolve()): "missing"}
        left = pl.read_parquet(a / "events.parquet")
        assert sorted(left["user_id"]) == ["bob", "cy"]
        raw = (a / "events.parquet").read_bytes()
        assert b"ann-7f2" not in raw and MARK.encode() not in raw
        assert registered(store) == [str(a.resolve())]  # the missing folder is dropped
        # stored with the receipt, as read back later
        assert store.erasures()[-1].storage["exported_folders"][str(a.resolve())] == 2


def test_a_retention_purge_applies_to_exported_folders(tmp_path):
    with _store(tmp_path) as store:
        snap = tmp_path / "snap"
        export_snapshot(store, snap, retention=False)  # every event, the old one too
        assert pl.read_parquet(snap / "events.parquet").height == 4
        result = purge_store(store, RetentionConfig(days=365), trigger="test")
        assert result.deleted == 1
        assert sorted(pl.read_parquet(snap / "events.parquet")["user_id"]) == ["ann-7f2", "ann-7f2", "bob"]
