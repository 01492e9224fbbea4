"""The learned re-ranker: gradient-boosted trees (LightGBM) over query-product features
(:mod:`.features`), re-ordering the fused top candidates.

Two objectives, both trained on judged (query, product, relevance) pairs:

* ``lambdarank`` (the default): learns to order each query's retrieved candidates by
  graded gain; a candidate with no judgment counts as gain 0, as in full-catalog NDCG.
* ``regression``: predicts the relevance grade of a judged pair (L2), trained on the
  judged pairs only; its RMSE is the Home Depot competition's metric.

Training data comes from :func:`training_set`, which runs the searcher's own retrieval,
so a model sees at training time exactly the evidence it gets at serving time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from .features import FEATURES, candidate_features
from .fusion import Candidates, fused_scores, order

if TYPE_CHECKING:
    from .searcher import QueryPlan, Searcher

#: judgments: query text -> {item_id: gain}
Judgments = Mapping[str, Mapping[str, float]]


@dataclass(frozen=True)
class RerankerConfig:
    """objective: "lambdarank" or "regression" (see the module docstring).
    trees / learning_rate / leaves / min_child_samples / feature_fraction: LightGBM's
    settings; early stopping on ``valid`` data when it is given to :meth:`Reranker.fit`."""

    objective: Literal["lambdarank", "regression"] = "lambdarank"
    trees: int = 500
    learning_rate: float = 0.05
    leaves: int = 31
    min_child_samples: int = 20
    feature_fraction: float = 0.8
    early_stopping: int = 50
    seed: int = 0


@dataclass
class TrainingSet:
    X: np.ndarray  # (P, F) features
    y: np.ndarray  # (P,) gain
    groups: list[int]  # pairs per query, in order
    queries: list[str]


class Reranker:
    def __init__(self, config: RerankerConfig = RerankerConfig(), booster=None) -> None:  # noqa: ANN001
        self.config = config
        self.booster = booster

    def _params(self) -> dict:
        c = self.config
        p = {"learning_rate": c.learning_rate, "num_leaves": c.leaves, "min_child_samples": c.min_child_samples,
             "feature_fraction": c.feature_fraction, "bagging_seed": c.seed, "feature_fraction_seed": c.seed,
             "seed": c.seed, "verbose": -1, "num_threads": 1, "deterministic": True}
        if c.objective == "lambdarank":
            p.update(objective="lambdarank", metric="ndcg", eval_at=[10], lambdarank_truncation_level=20,
                     label_gain=list(range(0, 64)))
        else:
            p.update(objective="regression", metric="rmse")
        return p

    def fit(self, train: TrainingSet, valid: TrainingSet | None = None) -> "Reranker":
        import lightgbm as lgb

        rank = self.config.objective == "lambdarank"
        # lambdarank wants integer grades: gains 0..2 in thirds become 0..6
        label = (lambda y: np.rint(y * 3).astype(int)) if rank else (lambda y: y)
        ds = lgb.Dataset(train.X, label(train.y), group=train.groups if rank else None,
                         feature_name=list(FEATURES), free_raw_data=False)
        sets, callbacks = [], []
        if valid is not None and len(valid.y):
            sets = [lgb.Dataset(valid.X, label(valid.y), group=valid.groups if rank else None, reference=ds)]
            callbacks = [lgb.early_stopping(self.config.early_stopping, verbose=False)]
        self.booster = lgb.train(self._params(), ds, num_boost_round=self.config.trees, valid_sets=sets,
                                 callbacks=callbacks)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.booster is None:
            raise RuntimeError("the re-ranker is not trained: call fit() first")
        n = self.booster.best_iteration or None
        # one thread: a request's hundred rows are too few to share, and requests run side by side
        return np.asarray(self.booster.predict(X, num_iteration=n, num_threads=1), np.float64)

    def score(self, plan: "QueryPlan", searcher: "Searcher", c: Candidates, pick: np.ndarray,
              fused: np.ndarray) -> np.ndarray:
        """Scores of the candidates at positions ``pick`` (higher is better)."""
        return self.predict(candidate_features(plan, searcher, c, pick, fused))

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / "model.txt"))
        (folder / "reranker.json").write_text(json.dumps({"config": asdict(self.config), "features": list(FEATURES)}))

    @classmethod
    def load(cls, folder: Path) -> "Reranker":
        import lightgbm as lgb

        folder = Path(folder)
        meta = json.loads((folder / "reranker.json").read_text())
        if meta["features"] != list(FEATURES):
            raise ValueError(f"{folder}: the re-ranker was trained on other features; train it again")
        return cls(RerankerConfig(**meta["config"]), lgb.Booster(model_file=str(folder / "model.txt")))


def examples(searcher: "Searcher", plan: "QueryPlan", c: Candidates, gains: Mapping[str, float],
             objective: str) -> tuple[np.ndarray, np.ndarray]:
    """Features and gains of one query. lambdarank: the fused top ``rerank_depth`` of the
    retrieved candidates ``c`` (unjudged ones gain 0); regression: the judged products
    among ``c`` (pass candidates made with their rows added, see Searcher.candidates)."""
    fused = fused_scores(c, searcher.fusion)
    if objective == "regression":
        pick = np.flatnonzero(np.isin(c.rows, searcher.catalog.rows(list(gains))))
    else:
        pick = order(fused, c.rows)[: searcher.config.rerank_depth]
    ids = [searcher.catalog.ids[r] for r in c.rows[pick].tolist()]
    return candidate_features(plan, searcher, c, pick, fused), np.array([gains.get(i, 0.0) for i in ids], np.float64)


def training_set(searcher: "Searcher", queries: Sequence[str], judgments: Judgments,
                 objective: str = "lambdarank",
                 candidates: Callable[[str, "QueryPlan"], Candidates] | None = None) -> TrainingSet:
    """:func:`examples` of every query (queries with no searchable terms are skipped).
    ``candidates(query, plan)``: precomputed candidates (default: the searcher's
    retrieval, with the judged rows added for regression)."""
    Xs, ys, groups, kept = [], [], [], []
    for q in queries:
        plan = searcher.plan(q)
        if not plan.has_terms:
            continue
        gains = judgments[q]
        if candidates is not None:
            c = candidates(q, plan)
        else:
            judged = searcher.catalog.rows(list(gains))
            c = searcher.candidates(plan, extra_rows=judged[judged > 0] if objective == "regression" else None)
        X, y = examples(searcher, plan, c, gains, objective)
        if len(y):
            Xs.append(X)
            ys.append(y)
            groups.append(len(y))
            kept.append(q)
    if not Xs:
        return TrainingSet(np.zeros((0, len(FEATURES)), np.float32), np.zeros(0), [], [])
    return TrainingSet(np.concatenate(Xs), np.concatenate(ys), groups, kept)
