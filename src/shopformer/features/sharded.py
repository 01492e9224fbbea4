"""Sequences of an event log larger than memory, built shard by shard onto disk.

:func:`features.sequences.build_sequences` holds the event table, its sorted copy and
the string ids in memory. Here the same sequences are computed with lazy Polars queries
(streaming engine) and written as NumPy ``.npy`` arrays that are memory-mapped back
(``np.load(mmap_mode="r")``) into the ordinary :class:`Sequences`, so models and
evaluation see the usual type while the operating system pages the arrays in and out:

1. vocabularies: items by first appearance in arrival order (``position``), users by
   id, exactly as the eager path orders them (two streaming group-bys; the id lists
   themselves are in memory: megabytes per million ids);
2. the events, int-encoded by two joins against those vocabularies, are written once
   into per-shard Parquet files (a shard = consecutive users holding about
   ``shard_rows`` events);
3. each shard is sorted by (user, time, position) in memory and copied into its slice
   of the arrays: the full sequences and the leave-one-out training sequences (all but
   the last two events of users with 3 or more).

Peak memory is one shard plus the vocabularies, whatever the log's size. The result is
cached in the folder (``prepared/``) and reused while events.parquet and the settings
are unchanged.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
from numpy.lib.format import dtype_to_descr, write_array_header_1_0

from shopformer.features.sequences import SequenceData, Sequences
from shopformer.features.splits import EvalCases, Split, _cut, _single_targets
from shopformer.features.vocab import Vocabulary
from shopformer.types import EVENT_TYPES

#: array name -> dtype; ``train_`` + name holds the leave-one-out training rows
_ARRAYS = {"items": np.int64, "timestamps": np.float64, "event_types": np.int8}


@dataclass(frozen=True)
class ShardConfig:
    """How the bounded-memory preparation works.

    shard_rows: events sorted in memory at once (about 40 bytes each while sorting).
    eval_users: validate and test on a seeded sample of this many users (None: every
        user with 3 or more events, as the eager split; each evaluated history is
        copied into memory, so a sample keeps a large log's evaluation bounded).
    seed: the sample's seed.
    """

    shard_rows: int = 10_000_000
    eval_users: int | None = None
    seed: int = 0


def _encoded(events: pl.LazyFrame, event_types: tuple[str, ...]) -> pl.LazyFrame:
    """The events that become sequences (as ``build_sequences`` keeps them)."""
    return events.filter(
        pl.col("event_type").is_in(list(event_types))
        & pl.col("item_id").is_not_null()
        & (pl.col("item_id") != "")
        & (pl.col("event_type") != "search")
    ).select("user_id", "item_id", "event_type", "timestamp", "position")


def _write_shards(base: pl.LazyFrame, items: list[str], users: pl.DataFrame, shard_of_user: np.ndarray,
                  folder: Path) -> None:
    """One pass: every event int-encoded, into ``folder/shard=K/*.parquet``."""
    # ids -> indexes by casting to an Enum of the vocabulary (its physical value is the
    # id's place in it): elementwise, so the streaming engine keeps memory flat, where
    # a join against the vocabulary tables grew with the number of events
    item_index = pl.col("item_id").cast(pl.Enum(items)).to_physical().cast(pl.Int64) + 1
    user_index = pl.col("user_id").cast(pl.Enum(users["user_id"])).to_physical().cast(pl.Int64)
    # shard = how many shard starts the user is at or past (shards are consecutive users)
    starts = np.flatnonzero(np.diff(shard_of_user)) + 1
    shard = pl.sum_horizontal(pl.lit(0, dtype=pl.Int64), *[(user_index >= int(b)).cast(pl.Int64) for b in starts])
    # a when/then chain: Expr.replace_strict(dict) is not run by the streaming engine
    type_index = pl.lit(0, dtype=pl.Int8)
    for i, t in reversed(list(enumerate(EVENT_TYPES))):
        type_index = pl.when(pl.col("event_type") == t).then(pl.lit(i, dtype=pl.Int8)).otherwise(type_index)
    encoded = base.select(
        shard.alias("shard"), user_index.alias("user"), item_index.alias("item"), "position",
        pl.col("timestamp").dt.epoch("us").alias("ts_us"), type_index.alias("event_type"),
    )
    encoded.sink_parquet(pl.PartitionBy(folder, key="shard", include_key=False, approximate_bytes_per_file=64 << 20),
                         engine="streaming", mkdir=True)


def _npy_writer(path: Path, dtype, length: int):
    """An open ``.npy`` file of ``length`` values whose header is written; the caller
    writes the values in order (``ndarray.tofile``) and closes it."""
    f = open(path, "wb")
    write_array_header_1_0(f, {"descr": dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": (length,)})
    return f


def build_sharded(events: pl.LazyFrame, out: Path, event_types: tuple[str, ...],
                  config: ShardConfig = ShardConfig()) -> SequenceData:
    """Write the sequences of ``events`` (EVENT_SCHEMA, lazy) into ``out`` and return
    them memory-mapped; the same vocabularies and rows as ``build_sequences`` on the
    same events."""
    out.mkdir(parents=True, exist_ok=True)
    base = _encoded(events, event_types)
    items = (base.group_by("item_id").agg(pl.col("position").min()).sort("position")
             .collect(engine="streaming")["item_id"].to_list())
    users = base.group_by("user_id").agg(pl.len().alias("n")).sort("user_id").collect(engine="streaming")
    if users.height == 0:
        raise ValueError("no events with an item left after filtering")
    lengths = users["n"].to_numpy().astype(np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    train_lengths = np.where(lengths >= 3, lengths - 2, lengths)
    train_offsets = np.zeros_like(offsets)
    np.cumsum(train_lengths, out=train_offsets[1:])
    # consecutive users, about shard_rows events each (a user is never split)
    shard_of_user = np.unique(offsets[:-1] // max(1, config.shard_rows), return_inverse=True)[1].astype(np.int64)

    parts = out / "_shards"
    shutil.rmtree(parts, ignore_errors=True)
    _write_shards(base, items, users, shard_of_user, parts)
    # shards come in user order, so each array is written front to back with plain file
    # writes: pages written through a memory map would count in the process's RSS
    full = {k: _npy_writer(out / f"{k}.npy", t, int(offsets[-1])) for k, t in _ARRAYS.items()}
    train = {k: _npy_writer(out / f"train_{k}.npy", t, int(train_offsets[-1])) for k, t in _ARRAYS.items()}
    for shard in np.unique(shard_of_user):
        in_shard = np.flatnonzero(shard_of_user == shard)
        lo, hi = int(in_shard[0]), int(in_shard[-1]) + 1
        df = (pl.scan_parquet(parts / f"shard={shard}" / "*.parquet")
              .sort(["user", "ts_us", "position"], nulls_last=False).collect())
        ts = df["ts_us"].cast(pl.Float64).to_numpy() / 1e6  # null -> NaN, as the eager path
        cols = {"items": df["item"].to_numpy(), "timestamps": ts, "event_types": df["event_type"].to_numpy()}
        n = lengths[lo:hi]
        rank = np.arange(len(df)) - np.repeat(offsets[lo:hi] - offsets[lo], n)
        keep = np.repeat(n < 3, n) | (rank < np.repeat(n - 2, n))
        for k, values in cols.items():
            values = values.astype(_ARRAYS[k], copy=False)
            values.tofile(full[k])
            values[keep].tofile(train[k])
        del df, cols
    for arrays in (full, train):
        for f in arrays.values():
            f.close()
    np.save(out / "offsets.npy", offsets)
    np.save(out / "train_offsets.npy", train_offsets)
    Vocabulary(items).save(out / "items.json")
    Vocabulary(users["user_id"].to_list()).save(out / "users.json")
    shutil.rmtree(parts, ignore_errors=True)
    return open_sharded(out)[0]


def _load(out: Path, prefix: str) -> Sequences:
    a = {k: np.load(out / f"{prefix}{k}.npy", mmap_mode="r") for k in _ARRAYS}
    return Sequences(np.load(out / f"{prefix}offsets.npy"), a["items"], a["timestamps"], a["event_types"])


def open_sharded(out: Path) -> tuple[SequenceData, Sequences]:
    """(every user's full sequence, the leave-one-out training rows), memory-mapped."""
    data = SequenceData(Vocabulary.load(out / "users.json"), Vocabulary.load(out / "items.json"), _load(out, ""))
    return data, _load(out, "train_")


def leave_one_out_sharded(full: Sequences, train: Sequences, config: ShardConfig = ShardConfig()) -> Split:
    """``splits.leave_one_out`` with the training rows already on disk; with
    ``config.eval_users`` only a seeded sample of the evaluable users is evaluated."""
    lengths = full.lengths
    users = np.flatnonzero(lengths >= 3)
    if config.eval_users is not None and len(users) > config.eval_users:
        rng = np.random.default_rng(config.seed)
        users = np.sort(rng.choice(users, config.eval_users, replace=False))
    valid = EvalCases(users, train.rows(users), _single_targets(full, users, 2))
    picked = full.rows(users)
    test = EvalCases(users, _cut(picked, picked.lengths - 1), _single_targets(full, users, 1))
    return Split("leave_one_out", train, valid, test)


def prepared_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "prepared"


def cached_sharded(data_dir: Path, event_types: tuple[str, ...], config: ShardConfig = ShardConfig()
                   ) -> tuple[SequenceData, Sequences]:
    """The prepared sequences of ``data_dir/events.parquet``: built on first use, then
    reused while the events file (size, modification time) and the event types and
    shard size are the same."""
    events = Path(data_dir) / "events.parquet"
    if not events.exists():
        raise FileNotFoundError(f"no events in {data_dir}: run `shopformer ingest` first")
    st = events.stat()
    key = {"events_bytes": st.st_size, "events_mtime_ns": st.st_mtime_ns, "event_types": list(event_types),
           "shard_rows": config.shard_rows, "version": 1}
    out = prepared_dir(data_dir)
    meta = out / "meta.json"
    if meta.exists() and json.loads(meta.read_text()).get("key") == key:
        return open_sharded(out)
    meta.unlink(missing_ok=True)
    build_sharded(pl.scan_parquet(events), out, event_types, config)
    meta.write_text(json.dumps({"key": key, "config": asdict(config)}, indent=2) + "\n")
    return open_sharded(out)
