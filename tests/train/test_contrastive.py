"""Self-supervision of the sequence model (train/augment.py, train/contrastive.py,
models/cloze_pretrain.py): augmentations, InfoNCE, training with the options, config
round trips, and the default leaving training as it was."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

from shopformer.artifact import make_model
from shopformer.features.sequences import Sequences
from shopformer.features.splits import leave_one_out
from shopformer.models.base import recommend
from shopformer.models.sasrec import SASRecConfig
from shopformer.models.sequential import BERT4RecConfig, BERT4RecRecommender, SASRecRecommender, TransformerConfig
from shopformer.train import distributed
from shopformer.train.augment import augment, crop_positions, mask_cells, reorder_positions
from shopformer.train.batches import Windows
from shopformer.train.contrastive import ContrastiveConfig, PretrainConfig, contrastive_views, info_nce
from shopformer.train.loop import TrainConfig

RATES = {"crop": 0.6, "mask": 0.3, "reorder": 0.6}
N = 12


def windows(seed: int = 0, rows: int = 64, width: int = 9) -> Windows:
    """Left-padded rows of 0..width real items; types and gaps tied to the items, so a
    view can be checked to move them together."""
    rng = np.random.default_rng(seed)
    items = np.zeros((rows, width), dtype=np.int64)
    for r in range(rows):
        n = rng.integers(0, width + 1)
        items[r, width - n:] = rng.integers(1, 50, n)
    return Windows(items, np.where(items > 0, items % 5 + 1, 0), np.where(items > 0, items % 7 + 1, 0))


def left_padded(items: np.ndarray) -> bool:
    real = items > 0
    return bool((np.diff(real.astype(int), axis=1) >= 0).all())  # no real cell before a padding cell


@pytest.mark.parametrize("method", ["crop", "mask", "reorder", "dropout"])
def test_views_keep_padding_lengths_and_side_inputs(method):
    w = windows()
    view = augment(w, (method,), RATES, mask_token=99, rng=np.random.default_rng(1))
    assert view.items.shape == w.items.shape and left_padded(view.items)
    n, m = (w.items > 0).sum(1), (view.items > 0).sum(1)
    if method == "crop":
        assert (m == np.maximum(1, np.floor(0.6 * n)) * (n > 0)).all()
        for r in range(len(n)):  # a contiguous piece of the row
            piece, row = view.items[r][view.items[r] > 0], w.items[r][w.items[r] > 0]
            assert any((row[s : s + len(piece)] == piece).all() for s in range(len(row) - len(piece) + 1))
    else:
        assert (m == n).all()
    if method == "mask":
        masked = view.items == 99
        assert (masked.sum(1) == np.floor(0.3 * n)).all()
        assert (view.items[~masked] == w.items[~masked]).all()
        assert (view.types[masked] == 0).all() and (view.gaps[masked] == 0).all()
    if method == "reorder":
        assert (np.sort(view.items, 1) == np.sort(w.items, 1)).all()
        assert (view.items != w.items).any()
    if method == "dropout":
        assert (view.items == w.items).all()
    real = (view.items > 0) & (view.items != 99)  # side inputs moved with their items
    assert (view.types[real] == view.items[real] % 5 + 1).all() and (view.gaps[real] == view.items[real] % 7 + 1).all()
    assert (view.types[view.items == 0] == 0).all()


def test_views_are_seeded():
    w = windows()
    a = augment(w, ("crop", "mask", "reorder"), RATES, 99, np.random.default_rng(7))
    b = augment(w, ("crop", "mask", "reorder"), RATES, 99, np.random.default_rng(7))
    c = augment(w, ("crop", "mask", "reorder"), RATES, 99, np.random.default_rng(8))
    assert (a.items == b.items).all() and (a.types == b.types).all()
    assert (a.items != c.items).any()


def test_position_helpers_on_a_hand_case():
    items = np.array([[0, 0, 1, 2, 3, 4, 5]])
    pos = crop_positions(items, 0.6, np.random.default_rng(0))  # keeps 3 of 5
    assert (pos[0, :4] == -1).all() and np.diff(pos[0, 4:]).tolist() == [1, 1]
    assert mask_cells(items, 0.4, np.random.default_rng(0)).sum() == 2
    assert mask_cells(items, 0.4, np.random.default_rng(0))[0, :2].sum() == 0  # never padding
    perm = reorder_positions(items, 1.0, np.random.default_rng(0))[0]
    assert perm[:2].tolist() == [0, 1] and sorted(perm[2:].tolist()) == [2, 3, 4, 5, 6]


def test_bad_augmentation_names_are_refused():
    with pytest.raises(ValueError, match="augmentations"):
        ContrastiveConfig(weight=0.1, augmentations=("shuffle",))
    with pytest.raises(ValueError, match="augmentations"):
        augment(windows(), ("flip",), RATES, 99, np.random.default_rng(0))


def test_info_nce_on_a_hand_computed_two_by_two_case():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    # views in order a1=(1,0), b1=(0,1), a2=(1,1), b2=(0,2); temperature 0.5 doubles the dots
    # a1: twin a2 (dot 1), others b1 (0), b2 (0)   b1: twin b2 (2), others a1 (0), a2 (1)
    # a2: twin a1 (1), others b1 (1), b2 (2)       b2: twin b1 (2), others a1 (0), a2 (2)
    rows = [(1, [0, 0]), (2, [0, 1]), (1, [1, 2]), (2, [0, 2])]
    expected = np.mean([-2 * pos + math.log(math.exp(2 * pos) + sum(math.exp(2 * o) for o in others))
                        for pos, others in rows])
    assert info_nce(z1, z2, temperature=0.5).item() == pytest.approx(expected, rel=1e-6)
    # cosine: unit vectors first
    cos = info_nce(z1, z2, temperature=1.0, similarity="cosine").item()
    s = 1 / math.sqrt(2)
    rows = [(s, [0, 0]), (1, [0, s]), (s, [s, s]), (1, [0, s])]  # a2 . b2 = s after scaling
    assert cos == pytest.approx(np.mean([-p + math.log(math.exp(p) + sum(math.exp(o) for o in others))
                                         for p, others in rows]), rel=1e-6)


def cycle_shop(users: int = 120, seed: int = 0) -> Sequences:
    """The ring 1..12 walked up or down from a random start (tests/models/test_sequential.py)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(users):
        start, length, step = rng.integers(0, N), rng.integers(4, 10), 1 if rng.random() < 0.5 else -1
        rows.append([(start + step * t) % N + 1 for t in range(length)])
    return Sequences.from_lists(rows)


def small(contrastive=ContrastiveConfig(), pretrain=PretrainConfig(), epochs=25, dropout=0.1):
    return SASRecRecommender(TransformerConfig(
        arch=SASRecConfig(max_len=10, d_model=32, n_layers=1, n_heads=2, dropout=dropout),
        train=TrainConfig(epochs=epochs, batch_size=32, lr=5e-3, warmup_steps=5, patience=100, threads=1,
                          device="cpu"),
        contrastive=contrastive, pretrain=pretrain,
    ))


@pytest.mark.parametrize("augmentations", [("crop", "mask", "reorder"), ("dropout",)])
def test_training_with_the_contrastive_loss_lowers_it_and_learns_the_order(augmentations):
    m = small(ContrastiveConfig(weight=0.2, augmentations=augmentations)).fit(cycle_shop(), N)
    losses = [r.loss for r in m.history.records]
    assert losses[-1] < 0.5 * losses[0]
    idx, _ = recommend(m, Sequences.from_lists([[3, 4, 5], [5, 4, 3]]), k=1)
    assert idx[:, 0].tolist() == [6, 2]
    # the recorded loss is the combined one: above the next-item loss alone at the start
    plain = small(epochs=1).fit(cycle_shop(), N)
    assert losses[0] > plain.history.records[0].loss


def test_the_default_is_off_and_trains_as_before():
    base = small(epochs=3).fit(cycle_shop(), N)
    # weight 0 with other fields changed: no view drawn, no generator step, the same weights
    off = small(ContrastiveConfig(weight=0.0, augmentations=("mask",), temperature=0.3), epochs=3).fit(cycle_shop(), N)
    assert not TransformerConfig().contrastive.enabled and TransformerConfig().pretrain.epochs == 0
    for key, value in base.module.state_dict().items():
        assert torch.equal(off.module.state_dict()[key], value), key
    on = small(ContrastiveConfig(weight=0.1), epochs=3).fit(cycle_shop(), N)
    assert not torch.equal(on.module.item_emb.weight, base.module.item_emb.weight)


def test_save_load_keeps_the_options_and_old_folders_still_load(tmp_path):
    cfg = ContrastiveConfig(weight=0.1, temperature=0.5, augmentations=("crop", "dropout"), crop_rate=0.4)
    m = small(cfg, PretrainConfig(epochs=1, time_share=0.2), epochs=2).fit(cycle_shop(), N)
    (tmp_path / "new").mkdir()
    m.save(tmp_path / "new")
    back = SASRecRecommender.load(tmp_path / "new")
    assert back.config.contrastive == cfg and back.config.pretrain == PretrainConfig(epochs=1, time_share=0.2)
    hist = Sequences.from_lists([[3, 4, 5]])
    np.testing.assert_allclose(back.score(hist), m.score(hist), rtol=1e-5)
    # a folder written before these options existed: no "contrastive" / "pretrain" keys
    (tmp_path / "old").mkdir()
    m.save(tmp_path / "old")
    raw = json.loads((tmp_path / "old" / "config.json").read_text())
    del raw["contrastive"], raw["pretrain"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(raw))
    old = SASRecRecommender.load(tmp_path / "old")
    assert old.config.contrastive == ContrastiveConfig() and old.config.pretrain == PretrainConfig()


def test_command_line_settings_reach_the_options():
    m = make_model("sasrec", {"contrastive.weight": "0.1", "contrastive.augmentations": "crop,reorder",
                              "contrastive.similarity": "cosine", "pretrain.epochs": "3"})
    assert m.config.contrastive == ContrastiveConfig(weight=0.1, augmentations=("crop", "reorder"),
                                                     similarity="cosine")
    assert m.config.pretrain.epochs == 3
    assert json.loads(json.dumps(asdict(m.config)))["contrastive"]["augmentations"] == ["crop", "reorder"]


def test_cloze_pretraining_then_next_item_fine_tuning():
    m = small(pretrain=PretrainConfig(epochs=3), epochs=15).fit(cycle_shop(), N)
    assert "after 3 Cloze pretraining epochs" in m.history.stopped
    assert m.module.config.causal  # served as the next-item model
    idx, _ = recommend(m, Sequences.from_lists([[3, 4, 5], [5, 4, 3]]), k=1)
    assert idx[:, 0].tolist() == [6, 2]
    plain = small(epochs=15).fit(cycle_shop(), N)
    assert not torch.equal(plain.module.item_emb.weight, m.module.item_emb.weight)


def test_options_of_the_causal_model_only():
    bert = BERT4RecRecommender(BERT4RecConfig(arch=SASRecConfig(max_len=10, d_model=16, n_layers=1, causal=False),
                                              train=TrainConfig(epochs=1, threads=1),
                                              contrastive=ContrastiveConfig(weight=0.1)))
    with pytest.raises(ValueError, match="causal"):
        bert.fit(cycle_shop(20), N)
    with pytest.raises(ValueError, match="contrastive"):
        cfg = small(ContrastiveConfig(weight=0.1)).config
        SASRecRecommender(replace(cfg, dp=replace(cfg.dp, epsilon=8.0))).fit(cycle_shop(20), N)


def test_dropout_view_is_the_inputs_again():
    w = windows()
    views = contrastive_views(w, ContrastiveConfig(weight=0.1, augmentations=("dropout",)), 99,
                              np.random.default_rng(0))
    assert len(views) == 1 and views[0] is w


# -- DDP: two gloo processes with the contrastive loss on stay in step -------------------

def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        split = leave_one_out(cycle_shop(61, seed=3))
        m = SASRecRecommender(replace(small(ContrastiveConfig(weight=0.2)).config,
                                      train=TrainConfig(epochs=2, batch_size=15, lr=5e-3, warmup_steps=2,
                                                        threads=1, device="cpu")))
        m.fit(split.train, N, split.valid)
        torch.save({"state": m.module.state_dict(), "losses": [r.loss for r in m.history.records]}, f"{out}.{rank}")
    finally:
        distributed.stop()


def test_two_gloo_processes_with_the_contrastive_loss_keep_one_set_of_weights(tmp_path, monkeypatch):
    from test_ddp import spawn_two

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    a, b = spawn_two(_worker, tmp_path)
    assert a["losses"] == pytest.approx(b["losses"]) and all(np.isfinite(a["losses"]))
    for key, value in a["state"].items():
        torch.testing.assert_close(b["state"][key], value, msg=key)
