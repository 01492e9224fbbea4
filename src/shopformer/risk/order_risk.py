"""Order risk end to end: the temporal split, fitting on Online Retail-like logs, and the
served model (:class:`OrderRiskModel`: LightGBM + the history's latest state) that
scores a posted basket line by line, with reasons.

Split (every boundary leaves a ``horizon_days`` gap, so a period's labels are known
before the next period starts):

    [first + warmup .. train_end)  train     (the warm-up gives the first lines a past)
    [val_start .. val_end)         validation: every hyperparameter, early stopping
    [test_start .. label_end]      test, read once; label_end = last time - horizon
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from .features import History, build_history, line_features, matrix
from .labels import RetailLog, labelled, load_log
from .tabular import LightGbmConfig, LightGbmRisk, RfmLogistic, scores

FORMAT = "shopformer-order-risk/1"

#: what a feature means, for the reasons given with a score
FEATURE_TEXT = {
    "c_recency_days": "days since the customer's last order", "c_frequency": "the customer's past orders",
    "c_monetary_log": "the customer's past spend (log)", "c_new": "a customer with no past order",
    "c_tenure_days": "days since the customer's first order", "c_lines": "the customer's past order lines",
    "c_mean_log_qty": "the customer's usual quantity (log)", "c_mean_line_value_log": "the customer's usual line value (log)",
    "c_cancel_lines": "the customer's past cancelled lines", "c_cancel_rate": "the customer's past cancellation rate",
    "c_cancel_value_share": "share of the customer's spend cancelled before",
    "c_days_since_cancel": "days since the customer's last cancellation",
    "p_lines": "the product's past order lines", "p_cancel_rate": "the product's past cancellation rate",
    "p_price_ratio": "price relative to the product's usual price", "p_customers_log": "the product's past buyers (log)",
    "cp_bought": "times the customer bought this product", "cp_cancelled": "times the customer cancelled this product",
    "price_log": "unit price (log)", "quantity_log": "quantity (log)", "line_value_log": "line value (log)",
    "qty_vs_usual": "quantity relative to the customer's usual (log ratio)", "basket_lines": "lines in the basket",
    "basket_value_log": "basket value (log)", "basket_share": "the line's share of the basket value",
    "hour": "hour of the order", "weekday": "day of the week", "is_uk": "a UK customer",
}


@dataclass(frozen=True)
class RiskSplitConfig:
    """The periods, in days (see the module docstring)."""

    horizon_days: float = 30.0
    warmup_days: float = 90.0
    val_days: float = 91.0
    test_days: float = 100.0

    def bounds(self, first: datetime, last: datetime) -> dict[str, datetime]:
        h = timedelta(days=self.horizon_days)
        label_end = last - h
        test_start = label_end - timedelta(days=self.test_days)
        val_end = test_start - h
        val_start = val_end - timedelta(days=self.val_days)
        b = {"train_start": first + timedelta(days=self.warmup_days), "train_end": val_start - h,
             "val_start": val_start, "val_end": val_end, "test_start": test_start, "label_end": label_end}
        if b["train_end"] <= b["train_start"]:
            raise ValueError(f"the log ({first:%Y-%m-%d} .. {last:%Y-%m-%d}) is too short for this split: {b}")
        return b


def split(features: pl.DataFrame, bounds: dict[str, datetime], horizon_days: float) -> dict[str, pl.DataFrame]:
    """Labelled train / val / test lines (labels: cancelled within the horizon)."""
    lab = labelled(features, horizon_days)
    t = pl.col("time")
    return {"train": lab.filter((t >= bounds["train_start"]) & (t < bounds["train_end"])),
            "val": lab.filter((t >= bounds["val_start"]) & (t < bounds["val_end"])),
            "test": lab.filter((t >= bounds["test_start"]) & (t <= bounds["label_end"]))}


@dataclass(frozen=True)
class OrderRiskConfig:
    """Everything ``shopformer risk fit`` decides up front."""

    split: RiskSplitConfig = field(default_factory=RiskSplitConfig)
    lightgbm: LightGbmConfig = field(default_factory=LightGbmConfig)
    prior_rate: float = 0.02
    reasons: int = 3


@dataclass
class PreparedLog:
    log: RetailLog
    history: History
    features: pl.DataFrame
    bounds: dict
    parts: dict[str, pl.DataFrame]


def prepare(paths: list[Path], config: OrderRiskConfig) -> PreparedLog:
    log = load_log(paths)
    history = build_history(log.lines, log.cancels)
    features = line_features(log.lines, history, prior_rate=config.prior_rate)
    bounds = config.split.bounds(log.lines["time"].min(), log.lines["time"].max())
    return PreparedLog(log, history, features, bounds, split(features, bounds, config.split.horizon_days))


class OrderRiskModel:
    """The served model: a LightGBM booster and the history's latest state."""

    def __init__(self, config: OrderRiskConfig, booster, history: History, countries: dict[str, str], meta: dict):
        self.config = config
        self.booster = booster
        self.history = history
        self.countries = countries
        self.meta = meta

    @classmethod
    def fit(cls, paths: list[Path], config: OrderRiskConfig = OrderRiskConfig(), say=print) -> OrderRiskModel:
        """Choose on validation, report validation and test, then refit the chosen model
        on every labelled line (train + validation + test) for serving."""
        started = time.perf_counter()
        prep = prepare(paths, config)
        train, val, test = prep.parts["train"], prep.parts["val"], prep.parts["test"]
        for name, part in prep.parts.items():
            if part.height == 0 or part["cancelled"].n_unique() < 2:
                raise ValueError(f"the {name} period has {part.height} lines and not both labels; the log is too "
                                 f"small for this split ({prep.bounds})")
        say(f"lines: train {train.height:,}, validation {val.height:,}, test {test.height:,}")
        lr = RfmLogistic().fit(train, val)
        gbm = LightGbmRisk(config.lightgbm).fit(train, val)
        evaluation = {"rfm_logistic": {"val": scores(val["cancelled"].to_numpy(), lr.predict(val)),
                                       "test": scores(test["cancelled"].to_numpy(), lr.predict(test)),
                                       "chosen": lr.chosen},
                      "lightgbm": {"val": scores(val["cancelled"].to_numpy(), gbm.predict(val)),
                                   "test": scores(test["cancelled"].to_numpy(), gbm.predict(test)),
                                   "chosen": gbm.chosen}}
        labelled_all = pl.concat([train, val, test])
        gbm.refit(labelled_all)
        countries = dict(prep.log.lines.sort("time").group_by("customer_id").agg(pl.col("country").last())
                         .drop_nulls().iter_rows())
        meta = {"format": FORMAT, "fitted_at": datetime.now().isoformat(timespec="seconds"),
                "data": [str(p) for p in paths], "data_end": str(prep.history.end), "bounds":
                {k: str(v) for k, v in prep.bounds.items()}, "rejected": prep.log.rejected,
                "matching": prep.log.matching, "evaluation": evaluation, "refit_lines": labelled_all.height,
                "fit_seconds": round(time.perf_counter() - started, 1)}
        return cls(config, gbm.booster, prep.history.latest(1), countries, meta)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / "lightgbm.txt"))
        self.history.save(folder / "history")
        (folder / "countries.json").write_text(json.dumps(self.countries))
        (folder / "config.json").write_text(json.dumps(asdict(self.config), indent=2))
        (folder / "model.json").write_text(json.dumps(self.meta, indent=2, default=str))

    @classmethod
    def load(cls, folder: Path) -> OrderRiskModel:
        import lightgbm as lgb

        folder = Path(folder)
        if not (folder / "model.json").exists():
            raise FileNotFoundError(f"{folder} holds no order-risk model (no model.json; write one with "
                                    "`shopformer risk fit --data ... --out DIR`)")
        meta = json.loads((folder / "model.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder}: format {meta.get('format')!r}, expected {FORMAT!r}")
        raw = json.loads((folder / "config.json").read_text())
        lgb_raw = raw["lightgbm"]
        config = OrderRiskConfig(split=RiskSplitConfig(**raw["split"]), lightgbm=LightGbmConfig(
            **{**lgb_raw, "grid": tuple(lgb_raw["grid"]), "features": tuple(lgb_raw["features"])}),
            prior_rate=raw["prior_rate"], reasons=raw["reasons"])
        booster = lgb.Booster(model_file=str(folder / "lightgbm.txt"))
        countries = json.loads((folder / "countries.json").read_text())
        return cls(config, booster, History.load(folder / "history"), countries, meta)

    def score(self, user_id: str, lines: list[dict], when: datetime | None = None,
              country: str | None = None) -> dict:
        """Probability of cancellation per line of a basket (``item_id``, ``quantity``,
        ``price``), with the features that raised it most (LightGBM's SHAP values)."""
        when = (when or datetime.now()).replace(tzinfo=None)
        country = country or self.countries.get(user_id)
        targets = pl.DataFrame({
            "customer_id": [user_id] * len(lines), "stock_code": [str(x["item_id"]).upper() for x in lines],
            "time": [when] * len(lines), "quantity": [int(x["quantity"]) for x in lines],
            "price": [float(x["price"]) for x in lines], "invoice": ["basket"] * len(lines),
            "country": [country] * len(lines)},
            schema={"customer_id": pl.String, "stock_code": pl.String, "time": pl.Datetime("us"),
                    "quantity": pl.Int64, "price": pl.Float64, "invoice": pl.String, "country": pl.String})
        feats = line_features(targets, self.history, prior_rate=self.config.prior_rate)
        names = list(self.config.lightgbm.features)
        x = matrix(feats, names)
        prob = self.booster.predict(x)
        contrib = self.booster.predict(x, pred_contrib=True)[:, :-1]  # last column: the bias
        out = []
        for i, line in enumerate(lines):
            top = [j for j in np.argsort(-contrib[i]) if contrib[i, j] > 0][: self.config.reasons]
            out.append({"item_id": line["item_id"], "quantity": line["quantity"], "price": line["price"],
                        "probability": float(prob[i]), "known_item": feats["p_lines"][i] > 0,
                        "reasons": [{"feature": names[j], "value": _finite(x[i, j]),
                                     "effect": round(float(contrib[i, j]), 4), "text": FEATURE_TEXT.get(names[j], names[j])}
                                    for j in top]})
        return {"user_id": user_id, "known_customer": bool(feats["c_new"][0] == 0) if lines else False,
                "time": when.isoformat(), "lines": out,
                "basket_probability": float(1 - np.prod(1 - prob)) if len(prob) else 0.0}


def _finite(v: float) -> float | None:
    return None if not np.isfinite(v) else round(float(v), 4)


