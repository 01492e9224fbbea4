"""The tabular models of order risk: logistic regression on RFM features (the baseline the
issue names) and LightGBM on every feature of :mod:`shopformer.risk.features`.

Both choose their hyperparameters on the validation period only (LR: the inverse
regularization C; LightGBM: a small grid of tree shapes, and the number of trees by early
stopping on validation AUC). The test period is never read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .features import FEATURES, RFM_FEATURES, matrix

# scikit-learn (the ``risk`` extra) is imported where it is used: serving a fitted model
# needs LightGBM only

LABEL = "cancelled"


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC-ROC and AUC-PR (average precision) of probabilities ``p`` for labels ``y``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {"auc_roc": float(roc_auc_score(y, p)), "auc_pr": float(average_precision_score(y, p)),
            "positives": int(np.sum(y)), "lines": int(len(y))}


def rfm_matrix(features: pl.DataFrame) -> np.ndarray:
    """RFM for a linear model: log recency (a new customer: two years), log frequency, log
    monetary, new-customer flag."""
    x = matrix(features, RFM_FEATURES)
    x[:, 0] = np.log1p(np.nan_to_num(x[:, 0], nan=730.0).clip(0))
    x[:, 1] = np.log1p(x[:, 1])
    return x


@dataclass(frozen=True)
class RfmLogisticConfig:
    """The grid of C (inverse L2 strength) tried on validation."""

    cs: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
    max_iter: int = 1000


class RfmLogistic:
    """Logistic regression on standardized RFM features (scikit-learn)."""

    def __init__(self, config: RfmLogisticConfig = RfmLogisticConfig()):
        self.config = config
        self.model = None  # a scikit-learn Pipeline once fitted
        self.chosen: dict = {}

    def fit(self, train: pl.DataFrame, val: pl.DataFrame) -> RfmLogistic:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import roc_auc_score
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        best = (-1.0, None, None)
        xt, yt, xv, yv = rfm_matrix(train), train[LABEL].to_numpy(), rfm_matrix(val), val[LABEL].to_numpy()
        for c in self.config.cs:
            model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=self.config.max_iter)).fit(xt, yt)
            auc = roc_auc_score(yv, model.predict_proba(xv)[:, 1])
            if auc > best[0]:
                best = (auc, c, model)
        self.model = best[2]
        self.chosen = {"C": best[1], "val_auc_roc": float(best[0])}
        return self

    def predict(self, features: pl.DataFrame) -> np.ndarray:
        assert self.model is not None, "fit first"
        return self.model.predict_proba(rfm_matrix(features))[:, 1]


@dataclass(frozen=True)
class LightGbmConfig:
    """LightGBM's fixed settings and the grid tried on validation."""

    learning_rate: float = 0.05
    max_rounds: int = 2000
    early_stopping: int = 50
    grid: tuple[dict, ...] = (
        {"num_leaves": 15, "min_data_in_leaf": 200},
        {"num_leaves": 31, "min_data_in_leaf": 100},
        {"num_leaves": 63, "min_data_in_leaf": 50},
    )
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    threads: int = 2
    seed: int = 0
    features: tuple[str, ...] = field(default_factory=lambda: tuple(FEATURES))


class LightGbmRisk:
    """Gradient-boosted trees on the tabular features (LightGBM; missing history stays
    missing)."""

    def __init__(self, config: LightGbmConfig = LightGbmConfig()):
        self.config = config
        self.booster = None
        self.chosen: dict = {}

    def params(self, shape: dict) -> dict:
        c = self.config
        return {"objective": "binary", "metric": "auc", "learning_rate": c.learning_rate,
                "feature_fraction": c.feature_fraction, "bagging_fraction": c.bagging_fraction, "bagging_freq": 1,
                "num_threads": c.threads, "seed": c.seed, "verbose": -1, **shape}

    def fit(self, train: pl.DataFrame, val: pl.DataFrame, extra_train: np.ndarray | None = None,
            extra_val: np.ndarray | None = None) -> LightGbmRisk:
        """Pick the tree shape and round count on ``val``; ``extra_*``: more feature
        columns (the sequence model's output, say) appended to the tabular ones."""
        import lightgbm as lgb

        names = list(self.config.features)
        xt, xv = matrix(train, names), matrix(val, names)
        if extra_train is not None:
            xt, xv = np.hstack([xt, extra_train]), np.hstack([xv, extra_val])
            names = names + [f"extra_{i}" for i in range(extra_train.shape[1])]
        # feature_pre_filter off: the grid changes min_data_in_leaf on the same Dataset
        dt = lgb.Dataset(xt, train[LABEL].to_numpy(), feature_name=names, free_raw_data=False,
                         params={"feature_pre_filter": False})
        dv = lgb.Dataset(xv, val[LABEL].to_numpy(), reference=dt)
        best = (-1.0, None, None)
        for shape in self.config.grid:
            booster = lgb.train(self.params(shape), dt, self.config.max_rounds, valid_sets=[dv],
                                callbacks=[lgb.early_stopping(self.config.early_stopping, verbose=False)])
            auc = booster.best_score["valid_0"]["auc"]
            if auc > best[0]:
                best = (auc, shape, booster)
        self.booster = best[2]
        self.chosen = {**best[1], "rounds": self.booster.best_iteration, "val_auc_roc": float(best[0])}
        self.names = names
        return self

    def refit(self, data: pl.DataFrame) -> LightGbmRisk:
        """The chosen shape and round count, trained again on ``data`` (train + validation)."""
        import lightgbm as lgb

        shape = {k: v for k, v in self.chosen.items() if k not in ("rounds", "val_auc_roc")}
        names = list(self.config.features)
        dt = lgb.Dataset(matrix(data, names), data[LABEL].to_numpy(), feature_name=names)
        self.booster = lgb.train(self.params(shape), dt, self.chosen["rounds"])
        self.names = names
        return self

    def predict(self, features: pl.DataFrame, extra: np.ndarray | None = None) -> np.ndarray:
        x = matrix(features, list(self.config.features))
        if extra is not None:
            x = np.hstack([x, extra])
        return self.booster.predict(x, num_iteration=self.booster.best_iteration or None)
