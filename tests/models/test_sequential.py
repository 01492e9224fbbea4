"""The Transformer recommenders on a shop with a known sequential answer.

Every customer walks the ring 1..12 from a random start, half of them upwards
(i -> i + 1) and half downwards (i -> i - 1). After [3, 4, 5] comes 6, after [5, 4, 3]
comes 2: only the order tells them apart, which co-occurrence baselines cannot see.
"""

import json
from dataclasses import replace

import numpy as np
import pytest

from shopformer.artifact import MODELS, make_model
from shopformer.features.sequences import Sequences
from shopformer.features.splits import leave_one_out
from shopformer.models.base import recommend
from shopformer.models.sasrec import SASRecConfig
from shopformer.models.sequential import (
    BERT4RecConfig,
    BERT4RecRecommender,
    SASRecRecommender,
    TransformerConfig,
)
from shopformer.train.loop import TrainConfig

N = 12


def cycle_shop(users: int = 200, seed: int = 0) -> Sequences:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(users):
        start, length = rng.integers(0, N), rng.integers(4, 10)
        step = 1 if rng.random() < 0.5 else -1
        rows.append([(start + step * t) % N + 1 for t in range(length)])
    return Sequences.from_lists(rows)


def small(cls, causal=True, loss="ce", epochs=40):
    cfg_cls = TransformerConfig if causal else BERT4RecConfig
    return cls(cfg_cls(
        arch=SASRecConfig(max_len=10, d_model=32, n_layers=1, n_heads=2, dropout=0.0, causal=causal),
        train=TrainConfig(epochs=epochs, batch_size=32, lr=5e-3, warmup_steps=5, loss=loss,
                          n_negatives=4, patience=100, threads=1),
    ))


@pytest.fixture(scope="module")
def sasrec():
    return small(SASRecRecommender).fit(cycle_shop(), N)


def next_of(i: int) -> int:
    return i % N + 1


def test_sasrec_learns_the_order(sasrec):
    hist = Sequences.from_lists([[3, 4, 5], [5, 4, 3], [11, 12], [2, 1, 12]])
    idx, _ = recommend(sasrec, hist, k=1)
    assert idx[:, 0].tolist() == [6, 2, 1, 11]


def test_post_norm_layout_also_learns_the_order():
    model = small(SASRecRecommender)
    model.config = replace(model.config, arch=replace(model.config.arch, pre_norm=False))
    model.fit(cycle_shop(), N)
    assert not model.module.blocks[0].pre_norm
    idx, _ = recommend(model, Sequences.from_lists([[3, 4, 5], [5, 4, 3], [11, 12], [2, 1, 12]]), k=1)
    assert idx[:, 0].tolist() == [6, 2, 1, 11]


@pytest.mark.parametrize("loss", ["sampled", "gbce"])
def test_sampled_losses_also_learn(loss):
    model = small(SASRecRecommender, loss=loss, epochs=60).fit(cycle_shop(), N)
    idx, _ = recommend(model, Sequences.from_lists([[2, 3], [6, 5]]), k=1)
    assert idx[:, 0].tolist() == [4, 4]


def test_bert4rec_learns_the_order():
    model = small(BERT4RecRecommender, causal=False, epochs=80).fit(cycle_shop(), N)
    idx, _ = recommend(model, Sequences.from_lists([[2, 3, 4], [7, 6]]), k=1)
    assert idx[:, 0].tolist() == [5, 5]


def test_early_stopping_keeps_the_best_validation_weights():
    # With history items excluded, the ring is solved as soon as neighbours are learned:
    # validation NDCG@10 reaches its ceiling (1.0) and cannot improve, so patience 2
    # stops training two evaluations later and the best weights are put back.
    split = leave_one_out(cycle_shop())
    model = small(SASRecRecommender, epochs=15)
    model = SASRecRecommender(replace(model.config, train=replace(model.config.train, patience=2)))
    model.fit(split.train, N, valid=split.valid)
    h = model.history
    vals = [r.valid for r in h.records]
    assert h.best_valid == max(vals) == 1.0
    assert h.stopped.startswith("early stop") and len(vals) == h.best_epoch + 2
    from shopformer.evaluate.protocol import EvalConfig, evaluate

    again = evaluate(model, split.valid, N, EvalConfig(cutoffs=(10,)), progress=False)
    assert again.metrics["NDCG@10"] == pytest.approx(h.best_valid)


def test_score_contract(sasrec):
    scores = sasrec.score(Sequences.from_lists([[1, 2], [], [0, 1, 0, 2]]))
    assert scores.shape == (3, N + 1) and scores.dtype == np.float32
    assert np.all(scores[:, 0] == -np.inf) and np.all(np.isfinite(scores[:, 1:]))
    np.testing.assert_allclose(scores[0], scores[2], rtol=1e-5)  # padding ignored
    with pytest.raises(ValueError, match="outside"):
        sasrec.score(Sequences.from_lists([[N + 1]]))
    with pytest.raises(RuntimeError, match="not fitted"):
        SASRecRecommender().score(Sequences.from_lists([[1]]))


def test_rows_scored_independently_of_batch_padding(sasrec):
    rows = [[1], [2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [5, 6]]
    batch = sasrec.score(Sequences.from_lists(rows))
    for r, row in enumerate(rows):
        np.testing.assert_allclose(batch[r], sasrec.score(Sequences.from_lists([row]))[0], rtol=1e-4, atol=1e-5)


def test_similar_items_excludes_query(sasrec):
    idx, sims = sasrec.similar_items(np.arange(1, N + 1), 3)
    assert idx.shape == (N, 3)
    assert not np.any(idx == np.arange(1, N + 1)[:, None]) and not np.any(idx == 0)
    assert np.all(np.diff(sims, axis=1) <= 0)


def test_save_load_round_trip(sasrec, tmp_path):
    sasrec.save(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model"] == "sasrec" and cfg["arch"]["n_items"] == N
    assert (tmp_path / "training.png").exists()
    loaded = MODELS["sasrec"].load(tmp_path)
    hist = Sequences.from_lists([[1, 2, 3], [7]])
    np.testing.assert_array_equal(loaded.score(hist), sasrec.score(hist))


def test_make_model_dotted_settings():
    m = make_model("sasrec", {"arch.d_model": "48", "train.loss": "gbce", "train.lr": "0.002"})
    assert m.config.arch.d_model == 48 and m.config.train.loss == "gbce" and m.config.train.lr == 0.002
    assert make_model("bert4rec").config.arch.causal is False
    with pytest.raises(ValueError, match="train.loss"):
        make_model("sasrec", {"train.loss": "hinge"})
    with pytest.raises(ValueError, match="no setting"):
        make_model("sasrec", {"d_model": "48"})


def _shop_with(users=160, seed=1):
    """Ring walks whose step depends on a side feature of the current event."""
    rng = np.random.default_rng(seed)
    rows, sides = [], []
    for _ in range(users):
        item, row, srow = int(rng.integers(1, N + 1)), [], []
        for _ in range(int(rng.integers(4, 9))):
            f = int(rng.integers(0, 2))
            row.append(item)
            srow.append(f)
            item = (item - 1 + (1 if f == 0 else 3)) % N + 1  # step 1 or 3 by the feature
        rows.append(row)
        sides.append(srow)
    return Sequences.from_lists(rows), np.array([x for r in sides for x in r])


def test_event_types_change_the_next_item():
    from shopformer.types import EVENT_TYPES

    seqs, flag = _shop_with()
    view, purchase = EVENT_TYPES.index("view"), EVENT_TYPES.index("purchase")
    seqs.event_types = np.where(flag == 0, view, purchase).astype(np.int8)
    model = small(SASRecRecommender, epochs=60)
    model = SASRecRecommender(replace(model.config, arch=replace(model.config.arch, event_types=True)))
    model.fit(seqs, N)
    hist = Sequences.from_lists([[5], [5]])
    hist.event_types = np.array([view, purchase], dtype=np.int8)
    idx, _ = recommend(model, hist, k=1)
    assert idx[:, 0].tolist() == [6, 8]


def test_time_gaps_change_the_next_item():
    seqs, flag = _shop_with()
    # flag 0: this event came 10 s after the previous one; flag 1: 3 days after
    gaps = np.where(flag == 0, 10.0, 3 * 86400.0)
    seqs.timestamps = np.zeros(len(gaps))
    for r in range(len(seqs)):  # cumulative time per row
        sl = slice(seqs.offsets[r], seqs.offsets[r + 1])
        seqs.timestamps[sl] = np.cumsum(gaps[sl])
    model = small(SASRecRecommender, epochs=60)
    model = SASRecRecommender(replace(model.config, arch=replace(model.config.arch, time_gap_buckets=16)))
    model.fit(seqs, N)
    hist = Sequences.from_lists([[4, 5], [4, 5]])
    hist.timestamps = np.array([0.0, 10.0, 0.0, 3 * 86400.0])
    idx, _ = recommend(model, hist, k=1)
    assert idx[:, 0].tolist() == [6, 8]
    with pytest.raises(ValueError, match="timestamp"):
        model.score(Sequences.from_lists([[4, 5]]))


def test_an_ensemble_scores_the_mean_of_its_members(tmp_path):
    import torch

    from shopformer.models.ensemble import SASRecEnsemble

    model = small(SASRecRecommender, epochs=30)
    model.config = replace(model.config, members=2)
    model.fit(cycle_shop(), N, valid=leave_one_out(cycle_shop()).valid)
    assert isinstance(model.module, SASRecEnsemble) and len(model.module.members) == 2
    hist = Sequences.from_lists([[3, 4, 5], [5, 4, 3], [11, 12], [2, 1, 12]])
    # each member on its own, then the mean
    scores = []
    for member in model.module.members:
        single = SASRecRecommender(replace(model.config, members=1))
        single.module = member
        scores.append(single.score(hist))
    np.testing.assert_allclose(model.score(hist)[:, 1:], np.mean(scores, axis=0)[:, 1:], rtol=1e-5, atol=1e-5)
    assert not np.allclose(scores[0], scores[1])  # two seeds, two different networks
    assert recommend(model, hist, k=1)[0][:, 0].tolist() == [6, 2, 1, 11]
    assert 0 < model.history.best_valid <= 1 and "member 2" in model.history.stopped
    # the run folder rebuilds the ensemble alone
    model.save(tmp_path)
    back = SASRecRecommender.load(tmp_path)
    assert back.config.members == 2
    np.testing.assert_allclose(back.score(hist), model.score(hist), rtol=1e-5)
    assert back.user_vectors(hist).shape == (4, 64) and back.module.item_table().shape == (N + 1, 64)
    with pytest.raises(ValueError, match="ensemble"):
        back.with_new_items(np.zeros((1, 1), dtype=np.int64))
    with torch.no_grad():  # served through the vector index like a single network
        from shopformer.serve.retrieval import build_vector_indexes, is_vector_model

        assert is_vector_model(back) and build_vector_indexes(back).kind == "flat"


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("pre_norm", [True, False])
def test_last_only_forward_equals_the_full_forwards_last_position(causal, pre_norm):
    import torch

    from shopformer.models.ensemble import SASRecEnsemble
    from shopformer.models.sasrec import SASRec

    torch.manual_seed(0)
    cfg = SASRecConfig(n_items=30, max_len=12, d_model=16, n_layers=2, n_heads=2, causal=causal, pre_norm=pre_norm)
    nets = [SASRec(cfg).eval(), SASRec(cfg).eval()]
    items = torch.tensor([[0, 0, 0, 3, 7, 2, 9], [4, 5, 6, 7, 8, 9, 10], [0, 0, 0, 0, 0, 0, 1]])  # (B, T)
    with torch.no_grad():
        for net in (nets[0], SASRecEnsemble(nets)):
            full = net(items)  # (B, T, D)
            last = net(items, last_only=True)  # (B, 1, D)
            assert last.shape == (3, 1, full.shape[-1])
            torch.testing.assert_close(last[:, 0], full[:, -1], rtol=1e-5, atol=1e-5)
