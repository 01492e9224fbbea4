"""The fidelity benchmark's ceiling search and its approximate-vs-exact agreement."""

from __future__ import annotations

import importlib
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from shopformer.explain.attribution import Attribution, item_scorer
from shopformer.features.sequences import Sequences, without

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def fidelity():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("explain_fidelity")
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def model():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
    try:
        from test_occlusion import random_model
    finally:
        sys.path.pop(0)
    return random_model(True)


def brute_force(model, history: Sequences, top1: np.ndarray, k: int) -> np.ndarray:
    """Each user's largest drop over every k-subset, scored one history at a time."""
    scorer = item_scorer(model)
    out = []
    for u in range(len(history)):
        length = int(history.lengths[u])
        drops = np.zeros((1 + len(list(itertools.combinations(range(length), k))), length), dtype=bool)
        for r, subset in enumerate(itertools.combinations(range(length), k), start=1):
            drops[r, list(subset)] = True
        sc = scorer(without(history, u, drops), np.repeat(top1[u:u + 1], len(drops), axis=0), False)[0][:, 0]
        out.append(sc[0] - sc[1:].min())
    return np.array(out)


def test_exhaustive_and_a_wide_beam_find_the_best_removal_and_greedy_does_not_beat_them(fidelity, model,
                                                                                       monkeypatch):
    rng = np.random.default_rng(4)
    history = Sequences.from_lists([rng.integers(1, 41, n).tolist() for n in (5, 7, 9, 10)])
    top1 = rng.integers(1, 41, (len(history), 1))
    truth = {k: brute_force(model, history, top1, k) for k in fidelity.KS}
    exact = fidelity.best_removals(model, history, top1)  # every history is small enough to search fully
    monkeypatch.setattr(fidelity, "MAX_SUBSETS", 0)  # every history by the beam
    monkeypatch.setattr(fidelity, "BEAM", 10**4)  # wider than any layer of subsets: exhaustive too
    wide = fidelity.best_removals(model, history, top1)
    monkeypatch.setattr(fidelity, "BEAM", 1)  # plain greedy
    greedy = fidelity.best_removals(model, history, top1)
    for k in fidelity.KS:
        np.testing.assert_allclose(exact[k]["drops"], truth[k], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(wide[k]["drops"], truth[k], rtol=1e-5, atol=1e-5)
        assert wide[k]["beam"].all() and not exact[k]["beam"].any()
        assert np.all(greedy[k]["drops"] <= truth[k] + 1e-5)
    np.testing.assert_allclose(greedy[1]["drops"], truth[1], rtol=1e-5, atol=1e-5)  # one event: greedy is exact


def attribution(values: np.ndarray) -> Attribution:
    n = len(values)
    return Attribution(np.arange(1, n + 1), np.arange(n), np.array([7]), np.array([1.0]), values.reshape(n, 1))


def test_agreement_counts_matching_top_events_and_the_relative_error(fidelity):
    exact = [attribution(np.array([3.0, 2.0, 1.0, 0.5, 0.0])), attribution(np.array([1.0, 4.0, 2.0, 0.0, 0.1]))]
    same = fidelity.agreement(exact, exact)
    assert same["top1_same"] == same["top3_same"] == 1.0 and same["relative_error"]["max"] == 0.0
    # the first user's 2nd and 3rd events swap places: top-1 and top-3 sets still agree, top-2 does not
    moved = [attribution(np.array([3.0, 1.0, 2.0, 0.5, 0.0])), exact[1]]
    close = fidelity.agreement(moved, exact)
    assert close["top1_same"] == 1.0 and close["top2_same"] == 0.5 and close["top3_same"] == 1.0
    err = np.linalg.norm([0, -1, 1, 0, 0]) / np.linalg.norm([3, 2, 1, 0.5, 0])
    assert close["relative_error"]["max"] == pytest.approx(err)
