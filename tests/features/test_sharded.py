"""The bounded-memory preparation gives the eager preparation's data and split."""

import json

import numpy as np
import polars as pl
import pytest

from shopformer.dataset import DataConfig, load_events, prepare, prepare_folder
from shopformer.features.sequences import Sequences
from shopformer.features.sharded import ShardConfig, prepared_dir
from shopformer.ingest import ingest_to_folder
from shopformer.ingest.streaming import stream_events_to_folder
from shopformer.train.batches import build_windows, window_positions


def _same(a: Sequences, b: Sequences) -> None:
    assert np.array_equal(a.offsets, b.offsets)
    assert np.array_equal(a.items, b.items)
    if a.timestamps is not None:
        assert np.array_equal(a.timestamps, b.timestamps, equal_nan=True)
    if a.event_types is not None:
        assert np.array_equal(a.event_types, b.event_types)


@pytest.fixture
def folders(tmp_path):
    """5,000 synthetic events (Zipf items, some search events, some missing times,
    timestamp ties) ingested eagerly and streamed."""
    rng = np.random.default_rng(0)
    n = 5000
    ts = rng.integers(1_600_000_000, 1_600_002_000, n).astype(float)
    ts[rng.random(n) < 0.02] = np.nan
    ev = pl.DataFrame({
        "user": [f"u{x}" for x in rng.integers(0, 300, n)],
        "item": [f"i{x}" for x in rng.zipf(1.3, n) % 500],
        "type": rng.choice(["view", "purchase", "add_to_cart", "search", "cancel"], n),
        "query": ["q"] * n,
        "ts": ts,
    }).with_columns(pl.col("ts").fill_nan(None))
    src = tmp_path / "e.parquet"
    ev.write_parquet(src)
    ingest_to_folder(tmp_path / "eager", src)
    stream_events_to_folder(tmp_path / "large", src, row_group_rows=700)
    return tmp_path / "eager", tmp_path / "large"


def test_same_vocabularies_sequences_and_split_as_eager(folders):
    eager_dir, large_dir = folders
    d1, s1 = prepare(load_events(eager_dir), DataConfig())
    d2, s2 = prepare_folder(large_dir, DataConfig(), shard=ShardConfig(shard_rows=600))
    assert d1.items == d2.items and d1.users == d2.users and len(d2.users) == 300
    _same(d1.sequences, d2.sequences)
    _same(s1.train, s2.train)
    for a, b in ((s1.valid, s2.valid), (s1.test, s2.test)):
        assert np.array_equal(a.users, b.users)
        _same(a.history, b.history)
        _same(a.targets, b.targets)
    assert np.isnan(d2.sequences.timestamps).any()  # missing times kept as NaN, sorted first
    # memory-mapped, not loaded
    assert isinstance(d2.sequences.items.base, np.memmap) or isinstance(d2.sequences.items, np.memmap)
    assert isinstance(s2.train.items.base, np.memmap) or isinstance(s2.train.items, np.memmap)
    # eager-prepared, with the type filter and a stream=True request on the eager folder
    cfg = DataConfig(event_types=("purchase", "add_to_cart"))
    d3, s3 = prepare(load_events(eager_dir), cfg)
    d4, s4 = prepare_folder(eager_dir, cfg, stream=True, shard=ShardConfig(shard_rows=250))
    assert d3.items == d4.items and d3.users == d4.users
    _same(d3.sequences, d4.sequences)
    _same(s3.train, s4.train)


def test_cache_is_reused_until_the_settings_change(folders):
    _, large = folders
    prepare_folder(large, DataConfig())
    items = prepared_dir(large) / "items.npy"
    first = items.stat().st_mtime_ns
    prepare_folder(large, DataConfig())
    assert items.stat().st_mtime_ns == first
    prepare_folder(large, DataConfig(event_types=("view",)))
    assert items.stat().st_mtime_ns != first
    assert json.loads((prepared_dir(large) / "meta.json").read_text())["key"]["event_types"] == ["view"]
    assert not (prepared_dir(large) / "_shards").exists()


def test_sampled_evaluation_users(folders):
    eager_dir, large = folders
    _, s1 = prepare(load_events(eager_dir), DataConfig())
    _, s2 = prepare_folder(large, DataConfig(), shard=ShardConfig(eval_users=40, seed=3))
    assert len(s2.valid.users) == 40 and np.all(np.diff(s2.valid.users) > 0)
    pick = np.searchsorted(s1.valid.users, s2.valid.users)
    assert np.array_equal(s1.valid.users[pick], s2.valid.users)
    _same(s1.valid.history.rows(pick), s2.valid.history)
    _same(s1.test.history.rows(pick), s2.test.history)
    _same(s1.test.targets.rows(pick), s2.test.targets)


def test_unsupported_settings_are_named(folders):
    _, large = folders
    with pytest.raises(ValueError, match="protocol=temporal"):
        prepare_folder(large, DataConfig(protocol="temporal"))
    with pytest.raises(ValueError, match="k-core"):
        prepare_folder(large, DataConfig(min_user_events=5))


def test_training_windows_read_the_memory_map_without_copying_it(folders):
    _, large = folders
    data, split = prepare_folder(large, DataConfig())
    train = split.train
    rows = np.arange(len(train))
    assert train.rows(rows) is train  # every row in order: no copy
    pos = window_positions(train, 4)
    lengths = train.lengths
    for u in (0, 7, 299):
        want = train.items[train.offsets[u]:train.offsets[u + 1]][-4:]
        got = pos[u][pos[u] >= 0]
        assert np.array_equal(train.items[got], want)
        assert (pos[u] == -1).sum() == max(0, 4 - lengths[u])
    w = build_windows(train, 4, event_types=True)
    assert w.items.dtype == np.int64 and np.array_equal(w.items[0][w.items[0] > 0], train.items[pos[0][pos[0] >= 0]])
    assert np.all((w.types > 0) == (w.items > 0))


def test_rows_of_increasing_users_equal_the_gathered_rows():
    rng = np.random.default_rng(5)
    seqs = Sequences.from_lists([list(rng.integers(1, 9, rng.integers(0, 6))) for _ in range(40)])
    seqs.timestamps = rng.random(len(seqs.items))
    seqs.event_types = rng.integers(0, 5, len(seqs.items)).astype(np.int8)
    users = np.flatnonzero(seqs.lengths >= 2)  # increasing: the mask path
    got = seqs.rows(users)
    want = Sequences.from_lists([seqs.row(u).tolist() for u in users])
    assert np.array_equal(got.offsets, want.offsets) and np.array_equal(got.items, want.items)
    take = np.concatenate([np.arange(seqs.offsets[u], seqs.offsets[u + 1]) for u in users])
    assert np.array_equal(got.timestamps, seqs.timestamps[take])
    assert np.array_equal(got.event_types, seqs.event_types[take])
    back = seqs.rows(users[::-1])  # not increasing: the gather path, same rows reversed
    assert np.array_equal(back.rows(np.arange(len(users))[::-1]).items, got.items)
