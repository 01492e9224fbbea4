"""Features read nothing at or after a line's time: adding later events changes no
feature of earlier lines, and the latest-state history scores a basket as the full one."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shopformer.risk.features import FEATURES, build_history, line_features
from shopformer.risk.labels import build_log, read_raw

from .shop import write_shop

CUT = datetime(2011, 6, 1)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = write_shop(tmp_path_factory.mktemp("risk") / "retail.csv")
    return build_log(read_raw([path]))


def _features(lines: pl.DataFrame, cancels: pl.DataFrame) -> pl.DataFrame:
    return line_features(lines, build_history(lines, cancels)).sort("line_id").select("line_id", *FEATURES)


def test_later_events_change_no_earlier_feature(log):
    before = log.lines.filter(pl.col("time") <= CUT)
    early = _features(before, log.cancels.filter(pl.col("time") <= CUT))
    full = _features(log.lines, log.cancels).filter(pl.col("line_id").is_in(before["line_id"].to_list()))
    assert early.height == before.height > 100
    assert_frame_equal(early, full)
    assert full["c_cancel_lines"].max() > 0  # the check is not vacuous: cancellations are read


def test_a_cancellation_counts_only_from_its_own_time(log):
    feats = _features(log.lines, log.cancels).join(log.lines.select("line_id", "customer_id", "time"), on="line_id")
    row = feats.filter(pl.col("c_cancel_lines") > 0).sort("time").row(0, named=True)
    known = log.cancels.filter((pl.col("customer_id") == row["customer_id"]) & (pl.col("time") < row["time"]))
    assert row["c_cancel_lines"] == known.height
    same_time = log.lines.filter(pl.col("time") == row["time"]).filter(pl.col("customer_id") == row["customer_id"])
    past = log.lines.filter((pl.col("customer_id") == row["customer_id"]) & (pl.col("time") < row["time"]))
    assert row["c_lines"] == past.height and same_time.height >= 1  # its own basket is not its past


def test_latest_state_scores_a_new_basket_like_the_full_history(log):
    history = build_history(log.lines, log.cancels)
    basket = pl.DataFrame({"customer_id": ["13000", "13000", "99999"], "stock_code": ["10000", "10009", "10001"],
                           "time": [datetime(2012, 1, 1)] * 3, "quantity": [3, 100, 1], "price": [1.0, 10.0, 2.0],
                           "invoice": ["basket"] * 3, "country": ["United Kingdom"] * 3})
    full = line_features(basket, history).select(FEATURES)
    latest = line_features(basket, history.latest(seq_len=8)).select(FEATURES)
    assert_frame_equal(full, latest)
    assert full["c_new"].to_list() == [0, 0, 1]
