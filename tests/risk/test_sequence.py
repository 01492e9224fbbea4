"""The sequence network's shapes, and its inputs: only events strictly before the line."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn", reason="the sequence model's early stopping needs the risk extra (scikit-learn)")

from shopformer.risk.features import build_history, line_features  # noqa: E402
from shopformer.risk.labels import build_log, labelled, read_raw  # noqa: E402
from shopformer.risk.sequence import SequenceRisk, SequenceRiskConfig  # noqa: E402
from shopformer.risk.sequence_net import RiskSequenceNet, RiskSequenceNetConfig  # noqa: E402

from .shop import write_shop  # noqa: E402


def test_network_shapes_and_empty_history():
    net = RiskSequenceNet(RiskSequenceNetConfig(n_items=10, n_tabular=4, dim=8, hidden=16))
    B, L = 3, 5
    items = torch.tensor([[2, 3, 0, 0, 0], [0, 0, 0, 0, 0], [4, 4, 4, 4, 4]])
    kinds = (items > 0).long()
    out = net(items, kinds, torch.randn(B, L, 3), torch.tensor([2, 0, 5]), torch.tensor([2, 3, 1]),
              torch.randn(B, 2), torch.randn(B, 4))
    assert out.shape == (B,) and torch.isfinite(out).all()


def test_sequences_hold_only_earlier_events_and_the_model_trains(tmp_path):
    log = build_log(read_raw([write_shop(tmp_path / "retail.csv", days=120)]))
    history = build_history(log.lines, log.cancels)
    feats = labelled(line_features(log.lines, history), 10)
    train = feats.filter(pl.col("time") < datetime(2011, 3, 1))
    val = feats.filter(pl.col("time") >= datetime(2011, 3, 1))
    model = SequenceRisk(SequenceRiskConfig(seq_len=6, max_epochs=1, batch_size=256, threads=1,
                                            negative_fraction=1.0)).fit(train, val, history)
    x = model.inputs(val, history)
    assert x.items.shape == (val.height, 6) and x.numbers.shape == (val.height, 6, 3)
    row = val.height // 2
    customer, t = val["customer_id"][row], val["time"][row]
    earlier = history.events.filter((pl.col("customer_id") == customer) & (pl.col("time") < t))
    assert x.lengths[row] == min(6, earlier.height) > 0
    assert (x.numbers[row, : x.lengths[row], 2] > 0).all()  # every event strictly before: a gap > 0 days
    p = model.predict(val, history)
    assert p.shape == (val.height,) and np.isfinite(p).all()
    assert 1 <= model.chosen["epoch"] <= 1
