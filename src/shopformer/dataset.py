"""From an ingested data folder to model-ready sequences and an evaluation split.

A data folder (written by ``shopformer ingest``) holds ``events.parquet`` and
``products.parquet``. :class:`DataConfig` says which events count and how to split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import polars as pl

from shopformer.features.sequences import SequenceData, build_sequences, kcore
from shopformer.features.sharded import ShardConfig, cached_sharded, leave_one_out_sharded
from shopformer.features.splits import Split, leave_one_out, temporal
from shopformer.features.vocab import Vocabulary
from shopformer.types import PRODUCT_SCHEMA, conform, empty_products


@dataclass(frozen=True)
class DataConfig:
    """Which events become sequences, and how they are split.

    event_types: keep only these types (None keeps every type that names an item; for a
        shop's log ("view", "add_to_cart", "purchase") is typical; cancellations are
        left out unless listed).
    min_user_events / min_item_events: iterative k-core filter (1 = no filter).
    dedupe_consecutive: collapse repeats of the same item in a row (e.g. several invoice
        lines for one product) into one event.
    protocol: "leave_one_out" (last item test, second last validation) or "temporal"
        (global cut by time; needs timestamps).
    """

    event_types: tuple[str, ...] | None = None
    min_user_events: int = 1
    min_item_events: int = 1
    dedupe_consecutive: bool = False
    protocol: Literal["leave_one_out", "temporal"] = "leave_one_out"
    valid_fraction: float = 0.1
    test_fraction: float = 0.1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["event_types"] = list(self.event_types) if self.event_types else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DataConfig":
        d = dict(d)
        if d.get("event_types") is not None:
            d["event_types"] = tuple(d["event_types"])
        return cls(**d)


DEFAULT_EVENT_TYPES = ("view", "click", "add_to_cart", "purchase", "rate")


def load_events(data_dir: Path) -> pl.DataFrame:
    path = Path(data_dir) / "events.parquet"
    if not path.exists():
        raise FileNotFoundError(f"no events in {data_dir}: run `shopformer ingest` first")
    return pl.read_parquet(path)


def load_products(data_dir: Path) -> pl.DataFrame:
    path = Path(data_dir) / "products.parquet"
    return conform(pl.read_parquet(path), PRODUCT_SCHEMA) if path.exists() else empty_products()


def prepare(events: pl.DataFrame, config: DataConfig, items: Vocabulary | None = None) -> tuple[SequenceData, Split]:
    """Filter events, build sequences and split them as ``config`` says. ``items``: index
    items by this vocabulary (events of other items are dropped) instead of by first
    appearance: a warm-started run keeps its parent's indexes (feedback/warmstart.py)."""
    types = config.event_types or DEFAULT_EVENT_TYPES
    ev = events.filter(pl.col("event_type").is_in(list(types)))
    if config.dedupe_consecutive:
        ev = ev.sort(["user_id", "timestamp", "position"], nulls_last=False)
        same = (pl.col("item_id") == pl.col("item_id").shift(1).over("user_id")).fill_null(False)
        ev = ev.filter(~same)
    if config.min_user_events > 1 or config.min_item_events > 1:
        ev = kcore(ev, config.min_user_events, config.min_item_events)
    if ev.height == 0:
        raise ValueError(f"no events left after filtering with {config}")
    data = build_sequences(ev, items)
    if config.protocol == "leave_one_out":
        split = leave_one_out(data.sequences)
    elif config.protocol == "temporal":
        split = temporal(data.sequences, config.valid_fraction, config.test_fraction)
    else:
        raise ValueError(f"unknown protocol {config.protocol!r}: use leave_one_out or temporal")
    return data, split


def prepare_folder(
    data_dir: Path, config: DataConfig, items: Vocabulary | None = None, stream: bool | None = None,
    shard: ShardConfig | None = None,
) -> tuple[SequenceData, Split]:
    """:func:`prepare` on a data folder. A large folder (``stream`` True, or None and the
    folder marked large by the streaming ingest: ``ingest/streaming.py``) is prepared in
    bounded memory into memory-mapped arrays (``features/sharded.py``; leave-one-out
    without k-core, consecutive dedupe or a fixed item vocabulary); others eagerly."""
    from shopformer.ingest.streaming import is_large_folder

    if not (is_large_folder(data_dir) if stream is None else stream):
        return prepare(load_events(data_dir), config, items)
    unsupported = [name for name, bad in (
        ("protocol=temporal", config.protocol != "leave_one_out"), ("dedupe_consecutive", config.dedupe_consecutive),
        ("k-core (min_user_events / min_item_events > 1)", config.min_user_events > 1 or config.min_item_events > 1),
        ("a fixed item vocabulary (warm start)", items is not None)) if bad]
    if unsupported:
        raise ValueError(f"{data_dir} is prepared in bounded memory (a large folder), which does not support "
                         f"{', '.join(unsupported)} yet: leave them out, or prepare a smaller folder eagerly")
    shard = shard or ShardConfig(eval_users=LARGE_EVAL_USERS)
    data, train = cached_sharded(Path(data_dir), config.event_types or DEFAULT_EVENT_TYPES, shard)
    return data, leave_one_out_sharded(data.sequences, train, shard)


#: users validated and tested in a large folder by default (a seeded sample; see ShardConfig)
LARGE_EVAL_USERS = 10_000


def describe(data: SequenceData) -> dict:
    """Counts that identify a prepared dataset in results."""
    return {
        "users": len(data.users),
        "items": len(data.items),
        "interactions": data.sequences.n_interactions,
    }
