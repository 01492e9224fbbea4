"""UCI Online Retail for benchmarks/replay.py: the purchase lines with a customer, the
first month as a data folder and a store, and the rest as invoices in time order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from shopformer.ingest.adapters import read_online_retail
from shopformer.ingest.api import EVENTS_FILE, PRODUCTS_FILE
from shopformer.store import EventStore, StoreConfig, import_folder

#: where the replay starts (the model is trained on everything before)
REPLAY_START = datetime(2011, 1, 1, tzinfo=timezone.utc)


@dataclass
class Invoice:
    user_id: str
    invoice: str
    timestamp: datetime
    events: list[dict]  # the API's event bodies (no request_id yet)

    @property
    def items(self) -> set[str]:
        return {e["item_id"] for e in self.events}


def load(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(purchase events with a customer, sorted by time; the derived catalog)."""
    got = read_online_retail(path)
    events = got.events.filter(pl.col("event_type") == "purchase").sort("timestamp", "position")
    return events, got.products


def first_month(events: pl.DataFrame, products: pl.DataFrame, folder: Path, store_file: Path) -> int:
    """Write the events before :data:`REPLAY_START` and the whole catalog as a data folder
    and load them into a SQLite store; returns the number of events."""
    folder.mkdir(parents=True, exist_ok=True)
    before = events.filter(pl.col("timestamp") < REPLAY_START)
    before.write_parquet(folder / EVENTS_FILE)
    products.write_parquet(folder / PRODUCTS_FILE)
    with EventStore(StoreConfig(f"sqlite:///{store_file}")) as store:
        import_folder(store, folder)
    return before.height


def invoices(events: pl.DataFrame) -> list[Invoice]:
    """The purchases from :data:`REPLAY_START` on, one entry per invoice (its lines as
    events), in time order."""
    after = events.filter(pl.col("timestamp") >= REPLAY_START)
    out: list[Invoice] = []
    for (user, inv), rows in after.group_by("user_id", "session_id", maintain_order=True):
        ts = rows["timestamp"][0]
        bodies = [{"event_id": f"or-{inv}-{r['position']}", "user_id": user, "item_id": r["item_id"], "type": "purchase",
                   "timestamp": r["timestamp"].isoformat(), "session_id": inv, "value": r["value"],
                   "context": json.loads(r["context"]) if r["context"] else None}
                  for r in rows.iter_rows(named=True)]
        out.append(Invoice(user, inv, ts, bodies))
    out.sort(key=lambda x: (x.timestamp, x.invoice))
    return out
