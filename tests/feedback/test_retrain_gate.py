"""The safety gate (feedback/gate.py): held-out cases built by hand, a run whose item
ids are shuffled is refused, a better run is promoted."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from shopformer.artifact import load_run, make_model
from shopformer.dataset import DataConfig, load_events
from shopformer.experiment import train_run
from shopformer.features.vocab import Vocabulary
from shopformer.feedback.gate import GateConfig, cases_for, compare, holdout_cases, read_events

from test_retrain import CONFIG, SPLIT, T0, chain_events, shop, shuffle_items  # noqa: E402, F401 - fixtures

ALL = pl.DataFrame(chain_events()).with_columns(position=pl.int_range(pl.len()))


def test_cases_histories_and_targets_by_hand():
    t = [T0 + timedelta(days=d) for d in range(6)]
    ev = pl.DataFrame({
        "user_id": ["a", "a", "a", "a", "b", "c", "c", "a"],
        "item_id": ["x", "y", "y", "z", "x", "q", "x", "w"],
        "event_type": ["purchase", "purchase", "purchase", "view", "purchase", "purchase", "purchase", "purchase"],
        "timestamp": [t[0], t[1], t[2], t[3], t[4], t[3], t[4], t[5]],
        "position": list(range(8)),
    })
    read = read_events(ev, DataConfig(event_types=("purchase",), dedupe_consecutive=True))
    # a: x, y, (y collapsed), (z a view), w; b: x; c: q, x
    assert read["item_id"].to_list() == ["x", "y", "w", "x", "q", "x"]
    rows, held = holdout_cases(read, t[3], GateConfig())
    # held out from day 3: a's w, b's x (no earlier event: not a case), c's q (first: not a case) and x
    assert held == 4 and read[rows.tolist()]["item_id"].to_list() == ["w", "x"]

    class Known:  # a run that knows x, y and q (w is new to it)
        items = Vocabulary(["q", "x", "y"])

    cases = cases_for(Known, read, rows, history_limit=1)
    assert cases.history.row(0).tolist() == [3] and cases.history.row(1).tolist() == [1]  # y; q (latest 1)
    assert cases.targets.items.tolist() == [0, 2]  # w unknown (a miss), x
    wide = cases_for(Known, read, rows, history_limit=200)
    assert wide.history.row(0).tolist() == [2, 3] and wide.history.row(1).tolist() == [1]


def test_the_gate_refuses_a_run_with_shuffled_item_ids_and_promotes_a_better_one(shop, tmp_path):  # noqa: F811 - the fixture
    current = load_run(shop["v0"])
    broken = tmp_path / "broken"
    shutil.copytree(shop["v0"], broken)
    shuffle_items(broken)
    verdict = compare(current, load_run(broken), ALL, SPLIT)
    assert not verdict.promote and verdict.candidate < verdict.threshold == pytest.approx(verdict.current * 0.98)
    assert verdict.current > 0.3 and verdict.candidate < 0.1 and "worse than the 2% tolerance" in verdict.reason
    assert verdict.cases == 80 * 6 and verdict.holdout_events == 80 * 6  # days 18-33: 6 purchases each

    popular = train_run(make_model("popular", {}), shop["early"], CONFIG, tmp_path / "pop")
    better = compare(popular, current, ALL, SPLIT)
    assert better.promote and better.candidate > better.current and better.diff_se > 0
    same = compare(current, load_run(shop["v0"]), ALL, SPLIT, GateConfig(tolerance=0.0))
    assert same.promote and same.candidate == same.current


def test_too_few_cases_decide_nothing_and_data_settings_must_match(shop):  # noqa: F811 - the fixture
    current = load_run(shop["v0"])
    late = T0 + timedelta(days=33, hours=20)  # the last purchase of 12 customers
    assert compare(current, current, ALL, late, GateConfig(min_cases=50)) is None
    other = replace(current, data_config=DataConfig(event_types=("purchase", "view")))
    with pytest.raises(ValueError, match="same data settings"):
        compare(current, other, ALL, SPLIT)


def test_held_out_events_are_the_snapshot_rows_after_the_cutoff(shop):  # noqa: F811 - the fixture
    events = load_events(shop["early"])
    rows, held = holdout_cases(read_events(events, CONFIG), SPLIT - timedelta(days=3), GateConfig())
    assert held == int((events["timestamp"] >= SPLIT - timedelta(days=3)).sum()) and len(rows) == held
    assert np.all(np.diff(rows) > 0)
