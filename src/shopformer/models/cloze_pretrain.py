"""Masked-item pretraining of the causal model's layers (``PretrainConfig``): the same
network, read bidirectionally, is first trained with the Cloze objective (BERT4Rec), then
its weights start the next-item training. The causal flag changes only the attention
mask, so the two networks have the same parameters, one for one."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from shopformer.features.sequences import Sequences

if TYPE_CHECKING:
    from shopformer.models.sequential import SASRecRecommender


def cloze_pretrain(model: "SASRecRecommender", train: Sequences, n_items: int) -> tuple[float, int]:
    """Train ``model.module`` (built, not yet trained) with ``model.config.pretrain.epochs``
    Cloze epochs in place; returns (seconds spent, epochs run). No validation is read: the
    last weights are kept (the fine-tuning's validation chooses what is served). With
    ``train.time_limit_s`` the pretraining stops at ``pretrain.time_share`` of it."""
    from shopformer.models.sequential import BERT4RecConfig, BERT4RecRecommender

    c = model.config
    limit = c.train.time_limit_s * c.pretrain.time_share if c.train.time_limit_s else 0.0
    config = BERT4RecConfig(
        arch=replace(model.module.config, causal=False),
        train=replace(c.train, epochs=c.pretrain.epochs, time_limit_s=limit),
        score_batch=c.score_batch,
        calibration=replace(c.calibration, enabled=False),
    )
    bert = BERT4RecRecommender(config, model.content)
    bert.warm_start = lambda net: net.load_state_dict(model.module.state_dict())  # the same initial weights
    t0 = time.perf_counter()
    bert.fit(train, n_items, valid=None)
    model.module.load_state_dict(bert.module.state_dict())
    return time.perf_counter() - t0, len(bert.history.records)
