"""The sequence model of order risk: :class:`RiskSequenceNet` trained on the training
period, the epoch kept by validation AUC (early stopping), never looking at the test.

A line's sequence is the customer's last ``seq_len`` events (original lines and
cancellation lines) strictly before its invoice time, read from the same
:class:`~shopformer.risk.features.History` as the tabular features, so it leaks nothing
either.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from sklearn.metrics import roc_auc_score

from .features import FEATURES, History, matrix
from .sequence_net import RiskSequenceNet, RiskSequenceNetConfig

_DAY_S = 86_400.0


@dataclass(frozen=True)
class SequenceRiskConfig:
    """Training of the sequence model (every choice but the epoch is fixed up front)."""

    seq_len: int = 32
    min_item_lines: int = 5  # stock codes with fewer training lines share the unknown index
    dim: int = 32
    hidden: int = 64
    dropout: float = 0.1
    batch_size: int = 1024
    lr: float = 2e-3
    weight_decay: float = 1e-5
    #: share of the training period's negative lines the network trains on (all positives
    #: kept): the 2 shared CPUs' budget; AUC reads ranks, which a uniform sample of one
    #: class leaves unbiased
    negative_fraction: float = 0.35
    max_epochs: int = 6
    patience: int = 2
    max_minutes: float = 20.0
    threads: int = 2
    seed: int = 0


@dataclass
class SequenceBatchInputs:
    """Everything the network reads for a set of lines, as arrays (one row per line)."""

    items: np.ndarray  # (N, L) int64
    kinds: np.ndarray  # (N, L) int64
    numbers: np.ndarray  # (N, L, 3) float32
    lengths: np.ndarray  # (N,) int64
    line_item: np.ndarray  # (N,)
    line_numbers: np.ndarray  # (N, 2)
    tabular: np.ndarray  # (N, F)

    def batch(self, rows: np.ndarray) -> list[torch.Tensor]:
        return [torch.from_numpy(a[rows]) for a in (self.items, self.kinds, self.numbers, self.lengths,
                                                    self.line_item, self.line_numbers, self.tabular)]


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


class SequenceRisk:
    """Vocabulary, feature scaling and the trained :class:`RiskSequenceNet`."""

    def __init__(self, config: SequenceRiskConfig = SequenceRiskConfig()):
        self.config = config
        self.vocab: dict[str, int] = {}
        self.mean = self.std = None
        self.net: RiskSequenceNet | None = None
        self.chosen: dict = {}

    def inputs(self, features: pl.DataFrame, history: History) -> SequenceBatchInputs:
        """Arrays for the lines of ``features`` (line_features' output)."""
        L = self.config.seq_len
        events = history.events.sort("customer_id", "time").with_row_index("_ev")
        first = events.group_by("customer_id").agg(_first=pl.col("_ev").min())
        targets = features.select("customer_id", "time").with_row_index("_row")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = targets.sort("time").join_asof(events.select("customer_id", "time", "_ev").rename({"time": "_t"}),
                                                   left_on="time", right_on="_t", by="customer_id",
                                                   strategy="backward", allow_exact_matches=False)
        found = found.join(first, on="customer_id", how="left").sort("_row")
        last = found["_ev"].fill_null(-1).to_numpy().astype(np.int64)
        start = np.maximum(found["_first"].fill_null(0).to_numpy().astype(np.int64), last - L + 1)
        lengths = np.where(last >= 0, last - start + 1, 0)
        idx = start[:, None] + np.arange(L)[None, :]  # (N, L), right-padded
        valid = np.arange(L)[None, :] < lengths[:, None]
        idx = np.where(valid, idx, 0)
        ev_item = self.encode(events["stock_code"])
        ev_kind = events["kind"].to_numpy().astype(np.int64)
        ev_time = events["time"].dt.epoch("s").to_numpy().astype(np.float64)
        ev_qty = np.log1p(events["quantity"].to_numpy().astype(np.float64))
        ev_price = np.log1p(events["price"].to_numpy().astype(np.float64))
        t = features["time"].dt.epoch("s").to_numpy().astype(np.float64)
        gap = np.log1p(np.clip((t[:, None] - ev_time[idx]) / _DAY_S, 0, None))
        numbers = np.stack([ev_qty[idx], ev_price[idx], gap], axis=-1) * valid[..., None]
        tab = _signed_log(matrix(features, FEATURES).astype(np.float64))
        tab = np.nan_to_num((tab - self.mean) / self.std).astype(np.float32)
        line_numbers = np.stack([np.log1p(features["quantity"].to_numpy().astype(np.float64)),
                                 np.log1p(features["price"].to_numpy().astype(np.float64))], axis=1)
        return SequenceBatchInputs(
            items=np.where(valid, ev_item[idx], 0), kinds=np.where(valid, ev_kind[idx], 0),
            numbers=numbers.astype(np.float32), lengths=lengths.astype(np.int64),
            line_item=self.encode(features["stock_code"]), line_numbers=line_numbers.astype(np.float32), tabular=tab)

    def encode(self, codes: pl.Series) -> np.ndarray:
        """Stock codes to indexes: 1 for codes outside the vocabulary."""
        return np.array([self.vocab.get(c, 1) for c in codes.to_list()], dtype=np.int64)

    def fit(self, train: pl.DataFrame, val: pl.DataFrame, history: History, progress=None) -> SequenceRisk:
        """Train on ``train``; keep the epoch with the best validation AUC-ROC."""
        c = self.config
        torch.manual_seed(c.seed)
        torch.set_num_threads(c.threads)
        rng = np.random.default_rng(c.seed)
        keep = (train["cancelled"].to_numpy() == 1) | (rng.random(train.height) < c.negative_fraction)
        train = train.filter(pl.Series(keep))
        counts = train["stock_code"].value_counts()
        kept = sorted(counts.filter(pl.col("count") >= c.min_item_lines)["stock_code"].to_list())
        self.vocab = {code: i + 2 for i, code in enumerate(kept)}
        tab = _signed_log(matrix(train, FEATURES).astype(np.float64))
        self.mean, self.std = np.nanmean(tab, axis=0), np.nanstd(tab, axis=0) + 1e-6
        xt, xv = self.inputs(train, history), self.inputs(val, history)
        yt = torch.from_numpy(train["cancelled"].to_numpy().astype(np.float32))
        yv = val["cancelled"].to_numpy()
        self.net = RiskSequenceNet(RiskSequenceNetConfig(n_items=len(self.vocab) + 2, n_tabular=len(FEATURES),
                                                         dim=c.dim, hidden=c.hidden, dropout=c.dropout))
        opt = torch.optim.AdamW(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        best, best_state, bad, history_auc = -1.0, None, 0, []
        started = time.perf_counter()
        for epoch in range(c.max_epochs):
            self.net.train()
            order = rng.permutation(len(yt))
            for i in range(0, len(order), c.batch_size):
                rows = order[i:i + c.batch_size]
                opt.zero_grad()
                loss = loss_fn(self.net(*xt.batch(rows)), yt[rows])
                loss.backward()
                opt.step()
                if progress is not None:
                    progress(len(rows))
            auc = float(roc_auc_score(yv, self._predict(xv)))
            history_auc.append(round(auc, 5))
            if auc > best:
                best, bad = auc, 0
                best_state = {k: v.clone() for k, v in self.net.state_dict().items()}
            else:
                bad += 1
            if bad >= c.patience or time.perf_counter() - started > c.max_minutes * 60:
                break
        self.net.load_state_dict(best_state)
        self.chosen = {"epoch": int(np.argmax(history_auc)) + 1, "val_auc_roc": best, "val_auc_by_epoch": history_auc,
                       "vocab": len(self.vocab), "train_lines": train.height,
                       "train_seconds": round(time.perf_counter() - started, 1)}
        return self

    def _predict(self, x: SequenceBatchInputs) -> np.ndarray:
        self.net.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(x.lengths), 4096):
                rows = np.arange(i, min(i + 4096, len(x.lengths)))
                out.append(torch.sigmoid(self.net(*x.batch(rows))).numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def predict(self, features: pl.DataFrame, history: History) -> np.ndarray:
        return self._predict(self.inputs(features, history))
