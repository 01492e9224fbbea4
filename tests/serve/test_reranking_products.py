"""serve/reranking.py's NewProducts: which catalog products are new, and their
impressions and attributed clicks (what Thompson sampling draws from)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from shopformer.rank.exposure import ClickThrough, ExposureConfig
from shopformer.serve.reranking import NewProducts
from shopformer.store import EventStore, StoreConfig

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def shown(request_id: str, items: list[str], age_days: float = 0.0) -> dict:
    return {"request_id": request_id, "shown_at": NOW - timedelta(days=age_days), "user_id": "u1", "session_id": None,
            "placement": "home", "route": "user_recommendations", "model_name": "sasrec", "model_version": "v",
            "experiment": None, "variant": None, "strategy": "history", "item_ids": items}


def click(event_id: str, item: str, request_id: str, type_: str = "click") -> dict:
    return {"event_id": event_id, "user_id": "u1", "item_id": item, "event_type": type_, "timestamp": NOW,
            "context": json.dumps({"request_id": request_id})}


def test_new_products_and_their_click_through(tmp_path):
    with EventStore(StoreConfig(f"sqlite:///{tmp_path / 's.db'}")) as store:
        store.upsert_products([
            {"item_id": "fresh", "title": "F", "created_at": NOW - timedelta(days=2)},
            {"item_id": "old", "title": "O", "created_at": NOW - timedelta(days=90)},
            {"item_id": "tagged", "title": "T", "created_at": NOW - timedelta(days=90), "tags": ["New"]},
            {"item_id": "undated", "title": "U"},
        ])
        cfg = ExposureConfig(slots=1, new_days=30)
        products = NewProducts(store, ttl_s=60)
        assert sorted(products.ids(cfg)) == ["fresh", "tagged"]
        store.add_impressions([shown("r1", ["old", "fresh", "tagged"]), shown("r2", ["fresh"]),
                               shown("r3", ["fresh"]), shown("r0", ["fresh"], age_days=40)])  # r0: too old
        store.add_events([click("e1", "fresh", "r1"), click("e2", "fresh", "r2"), click("e3", "fresh", "r2"),
                          click("e4", "tagged", "r2"),  # not shown in r2: not its click
                          click("e5", "tagged", "r1", "purchase")])  # not a click
        got = products.click_through(cfg, ["fresh", "tagged"])
        # e2 and e3 are one click on one answer: counted once
        assert got == {"fresh": ClickThrough(3, 2), "tagged": ClickThrough(1, 0)}
        # cached for ttl_s; forget() reads again
        store.upsert_products([{"item_id": "old", "title": "O", "tags": ["new"]}])
        assert sorted(products.ids(cfg)) == ["fresh", "tagged"]
        products.forget()
        assert sorted(products.ids(cfg)) == ["fresh", "old", "tagged"]
