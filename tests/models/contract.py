"""Contract every recommender must pass, as a mixin: ``class TestX(RecommenderContract)``.

The mixin's name does not start with ``Test``, so pytest only runs it through the model
test classes that inherit it. Each subclass sets ``model_cls`` and ``config`` and may add
model-specific checks.

The tiny shop has two disjoint groups of buyers: one buys among items {1, 2, 3}, the
other (larger) among {4, 5, 6}. Every model must therefore rank 3 first for a user who
has [1, 2] *unless* it ignores the history (popularity).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shopformer.features.sequences import Sequences
from shopformer.models import BASELINES, Recommender, recommend

N_ITEMS = 6
SHOP_ROWS = [
    [1, 2, 3], [1, 2, 3], [2, 1], [2],  # group A
    [4, 5, 6], [4, 5], [5, 4], [4, 5], [4, 5], [4], [4],  # group B
]
#: items by number of buyers: 4 (7), 5 (5), 2 (4), 1 (3), 3 (2), 6 (1)
POPULARITY_ORDER = [4, 5, 2, 1, 3, 6]


def shop() -> Sequences:
    return Sequences.from_lists(SHOP_ROWS)


class RecommenderContract:
    model_cls: type
    config: object
    #: expected top of ``recommend(model, [1, 2])`` with history excluded
    expected_for_12: list[int] = [3]

    def fitted(self, config: object | None = None):
        return self.model_cls(config if config is not None else self.config).fit(shop(), N_ITEMS)

    # --- interface -------------------------------------------------------------------

    def test_implements_protocol(self) -> None:
        model = self.fitted()
        assert isinstance(model, Recommender)
        assert BASELINES[model.name] is self.model_cls
        assert dataclasses.is_dataclass(model.config)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(model.config, dataclasses.fields(model.config)[0].name, None)

    def test_config_is_the_first_argument_and_defaults_work(self) -> None:
        """The annotated ``config`` type builds with no arguments (what the artifact
        code relies on to make a model from its name) and that model fits."""
        config_cls = typing.get_type_hints(self.model_cls.__init__)["config"]
        assert dataclasses.is_dataclass(config_cls) and isinstance(self.config, config_cls)
        assert list(inspect.signature(self.model_cls.__init__).parameters)[1] == "config"
        model = self.model_cls(config_cls()).fit(shop(), N_ITEMS, valid=None)
        assert model.score(Sequences.from_lists([[1]])).shape == (1, N_ITEMS + 1)

    def test_unfitted_model_says_so(self) -> None:
        with pytest.raises(RuntimeError, match="not fitted"):
            self.model_cls(self.config).score(Sequences.from_lists([[1]]))

    # --- known answer ----------------------------------------------------------------

    def test_known_answer(self) -> None:
        idx, scores = recommend(self.fitted(), Sequences.from_lists([[1, 2]]), k=4)
        assert idx[0, : len(self.expected_for_12)].tolist() == self.expected_for_12
        assert not {1, 2} & set(idx[0].tolist())
        assert np.all(np.diff(scores[0]) <= 0)

    # --- shapes, dtype, padding ------------------------------------------------------

    def test_score_shape_dtype_and_padding(self) -> None:
        hist = Sequences.from_lists([[1, 2], [4], [6, 6, 5], [3, 1, 2, 4, 5, 6]])
        scores = self.fitted().score(hist)
        assert scores.shape == (4, N_ITEMS + 1)
        assert scores.dtype == np.float32
        assert np.all(scores[:, 0] == -np.inf), "column 0 is padding and must be -inf"
        assert np.all(np.isfinite(scores[:, 1:]))

    def test_padding_in_history_is_ignored(self) -> None:
        model = self.fitted()
        a = model.score(Sequences.from_lists([[1, 2]]))
        b = model.score(Sequences.from_lists([[0, 1, 0, 2]]))
        np.testing.assert_array_equal(a, b)

    def test_rows_are_scored_independently(self) -> None:
        model = self.fitted()
        rows = [[1, 2], [4], [], [5, 6, 3]]
        batch = model.score(Sequences.from_lists(rows))
        for r, row in enumerate(rows):
            np.testing.assert_allclose(batch[r], model.score(Sequences.from_lists([row]))[0])

    def test_out_of_range_item_is_an_error(self) -> None:
        model = self.fitted()
        with pytest.raises(ValueError, match="outside 1..6"):
            model.score(Sequences.from_lists([[1, N_ITEMS + 1]]))
        with pytest.raises(ValueError, match="outside"):
            self.model_cls(self.config).fit(Sequences.from_lists([[1, 9]]), N_ITEMS)
        with pytest.raises(ValueError):
            model.similar_items(np.array([N_ITEMS + 1]), 2)

    # --- empty history ---------------------------------------------------------------

    def test_empty_history_falls_back_to_popularity(self) -> None:
        """A row with no (usable) history gets finite scores that rank items by
        popularity — for popularity itself trivially, for the others by design."""
        model = self.fitted()
        empty = Sequences.from_lists([[], [0]])
        scores = model.score(empty)
        assert np.all(np.isfinite(scores[:, 1:]))
        idx, _ = recommend(model, empty, k=N_ITEMS)
        assert idx.tolist() == [POPULARITY_ORDER, POPULARITY_ORDER]
        assert model.score(Sequences.from_lists([])).shape == (0, N_ITEMS + 1)

    # --- similar items ---------------------------------------------------------------

    def test_similar_items_excludes_query_and_padding(self) -> None:
        model = self.fitted()
        items = np.arange(1, N_ITEMS + 1)
        idx, scores = model.similar_items(items, k=3)
        assert idx.shape == scores.shape == (N_ITEMS, 3)
        for q, row in zip(items, idx):
            assert q not in row and 0 not in row
            assert len(set(row.tolist())) == 3
        assert np.all(np.diff(scores, axis=1) <= 0)
        # asking for more than exists gives every other item once
        idx, _ = model.similar_items(np.array([2]), k=50)
        assert sorted(idx[0].tolist()) == [1, 3, 4, 5, 6]

    def test_similar_items_of_unknown_item_is_popularity(self) -> None:
        idx, _ = self.fitted().similar_items(np.array([0]), k=3)
        assert idx[0].tolist() == POPULARITY_ORDER[:3]

    # --- persistence -----------------------------------------------------------------

    def test_save_load_round_trip(self, tmp_path: Path) -> None:
        model = self.fitted()
        model.save(tmp_path)
        saved = json.loads((tmp_path / "config.json").read_text())
        assert saved["model"] == model.name
        for f in dataclasses.fields(model.config):
            assert saved[f.name] == getattr(model.config, f.name)
        assert not list(tmp_path.glob("*.pt")) and list(tmp_path.glob("*.npz"))

        loaded = BASELINES[saved["model"]].load(tmp_path)
        assert type(loaded) is self.model_cls and loaded.config == model.config
        hist = Sequences.from_lists([[1, 2], [], [4, 6], [3]])
        np.testing.assert_array_equal(loaded.score(hist), model.score(hist))
        items = np.arange(0, N_ITEMS + 1)
        for a, b in zip(loaded.similar_items(items, 4), model.similar_items(items, 4)):
            np.testing.assert_array_equal(a, b)

    def test_load_refuses_another_models_folder(self, tmp_path: Path) -> None:
        (tmp_path / "config.json").write_text(json.dumps({"model": "something-else"}))
        with pytest.raises(ValueError, match="something-else"):
            self.model_cls.load(tmp_path)

    # --- any shop --------------------------------------------------------------------

    def test_any_shop(self) -> None:
        """Any training data (items never seen, users with no events, repeats) gives
        finite scores and valid similar items."""

        # The property is built per call: hypothesis wants one executor per test function,
        # and this mixin method runs under every model's test class.
        @settings(max_examples=25, deadline=None)
        @given(
            rows=st.lists(st.lists(st.integers(1, 9), max_size=6), min_size=1, max_size=12),
            hist=st.lists(st.integers(0, 9), max_size=5),
        )
        def check(rows: list[list[int]], hist: list[int]) -> None:
            model = self.model_cls(self.config).fit(Sequences.from_lists(rows), 9)
            scores = model.score(Sequences.from_lists([hist]))
            assert scores.shape == (1, 10) and np.all(np.isfinite(scores[:, 1:]))
            idx, sims = model.similar_items(np.arange(10), k=4)
            assert idx.shape == (10, 4) and np.all(np.isfinite(sims))
            assert not np.any(idx == np.arange(10)[:, None]) and not np.any(idx == 0)

        check()
