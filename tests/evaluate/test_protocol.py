"""evaluate() on a fake model whose scores are fixed, checked by hand."""

import math
from dataclasses import dataclass

import numpy as np
import pytest

from shopformer.evaluate.protocol import EvalConfig, evaluate
from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases


@dataclass(frozen=True)
class FixedConfig:
    pass


class FixedScores:
    """Every user gets the same scores: item i scores 10 - i (item 1 best)."""

    name = "fixed"

    def __init__(self, config: FixedConfig = FixedConfig(), n_items: int = 6):
        self.config = config
        self.n_items = n_items

    def score(self, history: Sequences) -> np.ndarray:
        row = 10.0 - np.arange(self.n_items + 1, dtype=np.float32)
        return np.tile(row, (len(history), 1))


def cases(histories, targets):
    return EvalCases(np.arange(len(histories)), Sequences.from_lists(histories), Sequences.from_lists(targets))


def test_single_target_metrics_by_hand():
    # user 0: history [1] excluded -> ranking 2,3,4,5,6; target 3 at rank 1.
    # user 1: history [] -> ranking 1..6; target 6 at rank 5 (outside top-2).
    c = cases([[1], []], [[3], [6]])
    res = evaluate(FixedScores(), c, 6, EvalConfig(cutoffs=(2,), batch_size=1), progress=False)
    assert res.metrics["HR@2"] == pytest.approx(0.5)
    assert res.metrics["NDCG@2"] == pytest.approx((1 / math.log2(3)) / 2)
    assert res.metrics["MRR"] == pytest.approx((1 / 2 + 1 / 6) / 2)
    assert res.metrics["Coverage@2"] == pytest.approx(3 / 6)  # items 1,2,3 shown
    assert res.unreachable_targets == 0


def test_history_target_is_unreachable_when_excluded():
    c = cases([[1, 2]], [[1]])
    excl = evaluate(FixedScores(), c, 6, EvalConfig(cutoffs=(1,)), progress=False)
    assert excl.metrics["HR@1"] == 0.0 and excl.unreachable_targets == 1
    assert excl.metrics["MRR"] == 0.0
    incl = evaluate(FixedScores(), c, 6, EvalConfig(cutoffs=(1,), exclude_history=False), progress=False)
    assert incl.metrics["HR@1"] == 1.0 and incl.metrics["MRR"] == 1.0


def test_multi_target_recall_and_precision():
    # ranking 1..6, targets {2, 5}: top-3 = 1,2,3 -> one hit
    c = cases([[]], [[2, 5]])
    res = evaluate(FixedScores(), c, 6, EvalConfig(cutoffs=(3,)), progress=False)
    assert res.metrics["Recall@3"] == pytest.approx(0.5)
    assert res.metrics["Precision@3"] == pytest.approx(1 / 3)
    assert res.metrics["MRR"] == pytest.approx(1 / 2)


def test_masked_items_never_count_as_hits_when_the_catalog_runs_out():
    # 6 items, history holds 5 of them plus the target: with exclusion the top-10 has one
    # real item; the target (in history) must not be found among the masked tail.
    c = cases([[1, 2, 3, 4, 5]], [[2]])
    res = evaluate(FixedScores(), c, 6, EvalConfig(cutoffs=(10,)), progress=False)
    assert res.metrics["HR@10"] == 0.0 and res.unreachable_targets == 1
    assert res.metrics["Coverage@10"] == pytest.approx(1 / 6)
