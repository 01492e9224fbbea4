"""Learning-rate schedule: warm-up, decay over the planned steps, and over the clock when a
time limit comes first."""

import math

import pytest

from shopformer.train.loop import TrainConfig, lr_factor


def test_warmup_rises_linearly_to_one() -> None:
    c = TrainConfig(warmup_steps=10)
    assert lr_factor(0, 100, c) == pytest.approx(0.1)
    assert lr_factor(9, 100, c) == pytest.approx(1.0)


def test_cosine_reaches_half_midway_and_zero_at_the_end() -> None:
    c = TrainConfig(warmup_steps=0, decay="cosine")
    assert lr_factor(50, 100, c) == pytest.approx(0.5)
    assert lr_factor(100, 100, c) == pytest.approx(0.0, abs=1e-12)


def test_time_limit_drives_the_decay_when_it_comes_first() -> None:
    c = TrainConfig(warmup_steps=0, decay="cosine", time_limit_s=100.0)
    # 10% of the steps but 75% of the time: the clock sets the progress
    assert lr_factor(10, 100, c, elapsed_s=75.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
    # 60% of the steps, 10% of the time: the steps do
    assert lr_factor(60, 100, c, elapsed_s=10.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.6)))
    assert lr_factor(10, 100, c, elapsed_s=150.0) == pytest.approx(0.0, abs=1e-12)


def test_time_is_ignored_without_a_limit() -> None:
    c = TrainConfig(warmup_steps=0, decay="linear")
    assert lr_factor(25, 100, c, elapsed_s=1e9) == pytest.approx(0.75)


def test_embeddings_decay_only_when_asked() -> None:
    """An embedding row no step ever touches keeps its values, unless decay_embeddings:
    then AdamW's decoupled decay shrinks it by (1 - lr * weight_decay) a step."""
    import torch

    from shopformer.train.loop import Trainer

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.item_emb = torch.nn.Embedding(3, 2)
            torch.nn.init.ones_(self.item_emb.weight)

    def shrinkage(decay_embeddings: bool) -> float:
        module = Tiny()
        cfg = TrainConfig(epochs=1, lr=0.1, weight_decay=0.5, warmup_steps=0, decay="none", grad_clip=0.0,
                          decay_embeddings=decay_embeddings)
        step = lambda _: module.item_emb(torch.tensor([0])).sum()  # noqa: E731 - only row 0 is used
        Trainer(cfg).fit(module, lambda epoch: [None] * 4, step, None, progress=False)
        return float(module.item_emb.weight[2, 0].detach())

    assert shrinkage(False) == pytest.approx(1.0)
    assert shrinkage(True) == pytest.approx((1 - 0.1 * 0.5) ** 4)
