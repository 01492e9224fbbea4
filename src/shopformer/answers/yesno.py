"""Yes/no questions: is a question one, and is its answer yes or no, with a calibrated
probability.

* Question type: a logistic regression (scikit-learn) on the question's MiniLM vector and
  whether it opens with an auxiliary verb ("does", "is", "can" ...), trained on the data's
  ``questionType``, its ``C`` chosen on validation log-loss.
* Answer (yes or no): several learners are fitted on the training yes/no questions
  answered Y or N and compared on the validation ones (answers/training.py,
  :func:`fit_answer_model`); the served one is the best on validation of those that beat
  always answering the majority there, and with none the prior itself (``kind="prior"``:
  the majority answer with the share of it as the confidence). The learners read:

  - ``evidence``: a few numbers from the Q&A answered BEFORE the question
    (:class:`Evidence`): the yes/no of the answers to the product's past questions,
    weighted by the question-question MiniLM similarity (a near-repeat of an answered
    question says most), the most similar one's, the product's yes/no balance, the
    polarity of the answers most similar to the question, and the similarity-weighted
    yes/no of the nearest answered yes/no questions on any product; and negation and
    auxiliary words in the question;
  - ``evidence+question``: the same and the question's vector;
  - ``legacy``: the first model: the question's vector, the mean vector of the top
    re-ranked answers of the product and how they open ("yes ..." / "no ...").

  Logistic regressions have their ``C``, LightGBM its leaves and trees chosen on
  validation log-loss; the decision is then calibrated by Platt scaling fitted on the
  validation questions (a logistic regression on the model's logit: a bias and a slope
  chosen on validation, so the class prior is where validation puts it), and the answer
  is yes when the calibrated probability is at least 0.5. Under ``min_confidence`` the
  answer says it is unsure (``abstain``).

Weights are plain arrays (saved with NumPy, no pickle; a LightGBM model as its text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

AUXILIARY = re.compile(r"^\W*(is|are|am|was|were|does|do|did|can|could|will|would|should|shall|has|have|had|may|might"
                       r"|must|isn't|aren't|doesn't|don't|won't|can't|wouldn't)\b", re.IGNORECASE)
YES = re.compile(r"^\W*(yes|yeah|yep|yup|ya|sure|correct|absolutely|definitely|certainly|it does|it is|it will"
                 r"|they do|they are)\b", re.IGNORECASE)
NO = re.compile(r"^\W*(no|nope|not|nah|never|it does not|it doesn't|it is not|it isn't|it won't|unfortunately"
                r"|they don't|they do not)\b", re.IGNORECASE)
NEGATION = re.compile(r"\b(not|no|never|without|none|nothing|cannot|\w+n't)\b", re.IGNORECASE)
YES_NO = "yes/no"  # data.YES_NO (not imported: data.py imports nothing from here, keep it so)
#: the answer learners fitted and compared on validation (training.py); "prior" is the fallback
LEARNERS = ("legacy", "evidence-lr", "evidence+question-lr", "evidence-lgbm")
#: the numbers :class:`Evidence` gives per question, in order
EVIDENCE_FEATURES = ("question_negation", "question_auxiliary", "product_qa", "product_labelled",
                     "product_yes_balance", "product_similar_label", "product_top_similarity", "product_top_label",
                     "product_answer_polarity", "neighbour_label", "neighbour_top_similarity", "neighbour_wide_label")


def polarity(answer: str) -> int:
    """+1 when an answer opens with a yes, -1 with a no, 0 otherwise."""
    return 1 if YES.match(answer) else -1 if NO.match(answer) else 0


def opens_with_auxiliary(question: str) -> float:
    return 1.0 if AUXILIARY.match(question) else 0.0


@dataclass(frozen=True)
class YesNoConfig:
    """evidence: top re-ranked answers read by the legacy learner; grid: the C values tried
    (validation log-loss); learners: the answer learners compared on validation (of
    :data:`LEARNERS`); neighbours: the nearest answered yes/no questions (any product) read;
    temperature: of the similarity weights (``exp(similarity / temperature)``);
    min_confidence: under it a yes/no answer says it is unsure (``YesNo.abstain``);
    folds: the validation folds of the out-of-fold check of the calibrated decision."""

    evidence: int = 3
    grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
    seed: int = 0
    learners: tuple[str, ...] = LEARNERS
    neighbours: int = 25
    temperature: float = 0.05
    min_confidence: float = 0.75
    folds: int = 5


def type_features(question_vecs: np.ndarray, questions: list[str]) -> np.ndarray:
    """(N, D + 1)."""
    aux = np.array([[opens_with_auxiliary(q)] for q in questions], np.float32).reshape(-1, 1)
    return np.hstack([question_vecs, aux]).astype(np.float32)


def answer_features(question_vecs: np.ndarray, evidence_vecs: list[np.ndarray], evidence_texts: list[list[str]]) -> np.ndarray:
    """The legacy learner's (N, 2D + 4): the question, the mean of its evidence answers'
    vectors, the top answer's polarity, the mean polarity and the shares of yes / no openings."""
    d = question_vecs.shape[1]
    rows = []
    for q, vecs, texts in zip(question_vecs, evidence_vecs, evidence_texts):
        mean = vecs.mean(0) if len(vecs) else np.zeros(d, np.float32)
        pol = np.array([polarity(t) for t in texts], np.float32)
        cues = [pol[0] if len(pol) else 0.0, pol.mean() if len(pol) else 0.0,
                float((pol > 0).mean()) if len(pol) else 0.0, float((pol < 0).mean()) if len(pol) else 0.0]
        rows.append(np.concatenate([q, mean, np.array(cues, np.float32)]))
    return np.asarray(rows, np.float32).reshape(len(rows), 2 * d + 4)


def _weighted(sim: np.ndarray, values: np.ndarray, temperature: float) -> float:
    w = np.exp((sim - sim.max()) / temperature)
    return float((w * values).sum() / w.sum())


class Evidence:
    """What the stored Q&A say about a new yes/no question (:data:`EVIDENCE_FEATURES`).

    A stored Q&A's label is +1 / -1 for a yes/no question answered Y / N, else its
    answer's opening (:func:`polarity`: +1, -1 or 0). ``before``: only Q&A answered
    strictly before that time are read (the benchmark's held-out questions see the past
    only; a served question, ``before=None``, sees every stored Q&A)."""

    def __init__(self, frame: pl.DataFrame, question_vecs: np.ndarray, answer_vecs: np.ndarray,
                 config: YesNoConfig = YesNoConfig()) -> None:
        self.config = config
        self.qv = np.asarray(question_vecs, np.float32)
        self.av = np.asarray(answer_vecs, np.float32)
        qt, at = frame["question_type"].to_list(), frame["answer_type"].to_list()
        self.answered = np.array([q == YES_NO and t in ("Y", "N") for q, t in zip(qt, at)])
        self.polar = np.array([polarity(a) for a in frame["answer"].to_list()], np.float32)
        self.label = np.where(self.answered, np.where(np.array([t == "Y" for t in at]), 1.0, -1.0), self.polar)
        self.label = self.label.astype(np.float32)
        self.when = frame["answered_at"].dt.epoch("s").fill_null(-(2**62)).to_numpy()
        self.by_item: dict[str, np.ndarray] = {}
        for i, item in enumerate(frame["item_id"].to_list()):
            self.by_item.setdefault(item, []).append(i)
        self.by_item = {k: np.asarray(v, np.int64) for k, v in self.by_item.items()}
        self.pool = np.flatnonzero(self.answered)
        self.pool_vecs, self.pool_when, self.pool_label = self.qv[self.pool], self.when[self.pool], self.label[self.pool]

    def features(self, qvec: np.ndarray, question: str, item: str, before: int | None = None,
                 exclude: int | None = None) -> np.ndarray:
        """(len(EVIDENCE_FEATURES),) for one question."""
        t = self.config.temperature
        rows = self.by_item.get(item, np.zeros(0, np.int64))
        keep = rows != (-1 if exclude is None else exclude)
        if before is not None:
            keep &= self.when[rows] < before
        rows = rows[keep]
        lab = self.label[rows]
        n_yes, n_no = float((lab > 0).sum()), float((lab < 0).sum())
        f = [1.0 if NEGATION.search(question) else 0.0, opens_with_auxiliary(question), np.log1p(len(rows)),
             np.log1p(n_yes + n_no), (n_yes - n_no) / (n_yes + n_no + 2.0)]
        labelled = rows[lab != 0]
        if len(labelled):
            sim = self.qv[labelled] @ qvec
            top = int(np.argmax(sim))
            f += [_weighted(sim, self.label[labelled], t), float(sim[top]), float(self.label[labelled[top]] * sim[top])]
        else:
            f += [0.0, 0.0, 0.0]
        f.append(_weighted(self.av[rows] @ qvec, self.polar[rows], t) if len(rows) else 0.0)
        keep = self.pool != (-1 if exclude is None else exclude)
        if before is not None:
            keep &= self.pool_when < before
        if keep.any():
            sim, lab = (self.pool_vecs @ qvec)[keep], self.pool_label[keep]
            k = min(self.config.neighbours, len(sim))
            near = np.argpartition(-sim, k - 1)[:k]
            wide = np.argpartition(-sim, min(4 * k, len(sim)) - 1)[:4 * k]
            f += [_weighted(sim[near], lab[near], t), float(sim[near].max()), float(lab[wide].mean())]
        else:
            f += [0.0, 0.0, 0.0]
        return np.asarray(f, np.float32)

    def rows(self, rows: np.ndarray, questions: list[str], items: list[str], qvecs: np.ndarray) -> np.ndarray:
        """(len(rows), F) for stored questions ``rows``: each reads the Q&A answered before it, never itself."""
        out = [self.features(qvecs[i], questions[i], items[i], int(self.when[i]), int(i)) for i in np.asarray(rows)]
        return np.asarray(out, np.float32).reshape(len(out), len(EVIDENCE_FEATURES))


def with_question(evidence: np.ndarray, qvecs: np.ndarray) -> np.ndarray:
    """The ``evidence+question`` learner's input."""
    return np.hstack([evidence, qvecs]).astype(np.float32)


def _fit_lr(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, config: YesNoConfig):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    best, best_loss, table = None, np.inf, []
    for c in config.grid:
        lr = LogisticRegression(C=c, max_iter=2000, random_state=config.seed).fit(X, y)
        loss = log_loss(yv, lr.predict_proba(Xv)[:, 1], labels=[0, 1]) if len(yv) else 0.0
        table.append({"C": c, "valid_log_loss": float(loss)})
        if loss < best_loss:
            best, best_loss = lr, loss
    return best, table


def _fit_lgbm(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, config: YesNoConfig):
    import lightgbm as lgb

    best, best_loss, table = None, np.inf, []
    ds, dv = lgb.Dataset(X, y, free_raw_data=False), None
    dv = lgb.Dataset(Xv, yv, reference=ds)
    for leaves in (4, 8, 16):
        params = {"objective": "binary", "metric": "binary_logloss", "learning_rate": 0.03, "num_leaves": leaves,
                  "min_child_samples": 20, "feature_fraction": 0.9, "bagging_fraction": 0.9, "bagging_freq": 1,
                  "lambda_l2": 1.0, "seed": config.seed, "deterministic": True, "num_threads": 1, "verbose": -1}
        booster = lgb.train(params, ds, num_boost_round=1000, valid_sets=[dv],
                            callbacks=[lgb.early_stopping(50, verbose=False)])
        loss = float(booster.best_score["valid_0"]["binary_logloss"])
        table.append({"leaves": leaves, "trees": int(booster.best_iteration), "valid_log_loss": loss})
        if loss < best_loss:
            best, best_loss = booster, loss
    return best, table


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def platt(logit: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Slope and bias of ``P(yes) = sigmoid(a * logit + b)`` fitted on ``(logit, y)``
    (identity when ``y`` has one class only)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return 1.0, 0.0
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(logit).reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


class YesNoModel:
    """Question type and answer (see the module docstring). ``weights["kind"]``: the
    answer model: ``legacy`` (also a model saved before there were kinds), ``evidence-lr``,
    ``evidence+question-lr``, ``evidence-lgbm`` or ``prior``."""

    def __init__(self, config: YesNoConfig = YesNoConfig(), weights: dict[str, np.ndarray] | None = None) -> None:
        self.config = config
        self.weights = weights or {}
        self.report: dict = {}
        self._booster = None

    def fit_type(self, X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray) -> YesNoModel:
        if len(np.unique(y)) < 2:
            self.weights.update(type_w=np.zeros(X.shape[1], np.float32), type_b=np.array([10.0 if y.mean() > 0.5 else -10.0]))
            return self
        lr, table = _fit_lr(X, y, Xv, yv, self.config)
        self.weights.update(type_w=lr.coef_[0].astype(np.float32), type_b=lr.intercept_.astype(np.float32))
        self.report["type_grid"] = table
        return self

    @staticmethod
    def fit_learner(kind: str, X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray,
                    config: YesNoConfig) -> tuple[dict[str, np.ndarray], list[dict]]:
        """An answer learner fitted on ``(X, y)`` (y: 1 = yes), its setting chosen on
        validation log-loss; its weights (uncalibrated: ``platt`` is the identity) and the grid."""
        if len(np.unique(y)) < 2:
            raise ValueError("the yes/no answer model needs both yes and no answers among the training questions")
        w: dict[str, np.ndarray] = {"kind": np.array(kind), "platt": np.array([1.0, 0.0], np.float32)}
        if kind == "evidence-lgbm":
            booster, table = _fit_lgbm(X, y, Xv, yv, config)
            w["booster"] = np.array(booster.model_to_string(num_iteration=booster.best_iteration))
            return w, table
        mean, scale = X.mean(0), X.std(0)
        scale = np.where(scale > 1e-6, scale, 1.0)
        if kind == "legacy":  # as first fitted: on the raw features
            mean, scale = np.zeros_like(mean), np.ones_like(scale)
        lr, table = _fit_lr((X - mean) / scale, y, (Xv - mean) / scale, yv, config)
        w.update(answer_w=(lr.coef_[0] / scale).astype(np.float32),
                 answer_b=np.array([lr.intercept_[0] - (lr.coef_[0] * mean / scale).sum()], np.float32))
        return w, table

    @classmethod
    def prior(cls, p_yes: float) -> dict[str, np.ndarray]:
        """The fallback's weights: P(yes) = ``p_yes`` whatever the question."""
        return {"kind": np.array("prior"), "prior": np.array([p_yes], np.float64)}

    def set_answer(self, weights: dict[str, np.ndarray]) -> YesNoModel:
        for k in ("kind", "answer_w", "answer_b", "platt", "booster", "prior"):
            self.weights.pop(k, None)
        self.weights.update(weights)
        self._booster = None
        return self

    def calibrate(self, Xv: np.ndarray, yv: np.ndarray) -> YesNoModel:
        """Platt scaling of the answer model's logit on the validation questions."""
        self.weights["platt"] = np.array([1.0, 0.0], np.float32)
        self.weights["platt"] = np.array(platt(self.answer_logit(Xv), yv), np.float32)
        return self

    @property
    def kind(self) -> str | None:
        if "kind" in self.weights:
            return str(self.weights["kind"])
        return "legacy" if "answer_w" in self.weights else None

    def p_yes_no_question(self, X: np.ndarray) -> np.ndarray:
        return _sigmoid(X @ self.weights["type_w"] + self.weights["type_b"][0])

    def answer_logit(self, X: np.ndarray) -> np.ndarray:
        """The answer model's uncalibrated logit of yes."""
        if self.kind == "prior":
            return np.full(len(X), float(_logit(self.weights["prior"])[0]))
        if self.kind == "evidence-lgbm":
            if self._booster is None:
                import lightgbm as lgb

                self._booster = lgb.Booster(model_str=str(self.weights["booster"]))
            return _logit(self._booster.predict(np.asarray(X, np.float64), num_threads=1))
        return X @ self.weights["answer_w"] + self.weights["answer_b"][0]

    def p_yes(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probability that the answer is yes."""
        if self.kind == "prior":
            return np.full(len(X), float(self.weights["prior"][0]))
        a, b = self.weights.get("platt", np.array([1.0, 0.0]))
        return _sigmoid(a * self.answer_logit(X) + b)

    @property
    def answers(self) -> bool:
        return self.kind is not None

    def save(self, path: Path) -> None:
        np.savez(path, **self.weights)

    @classmethod
    def load(cls, path: Path, config: YesNoConfig) -> YesNoModel:
        with np.load(path) as f:  # no pickle: a LightGBM model is a text array
            weights = {k: f[k] for k in f.files}
        kind = str(weights["kind"]) if "kind" in weights else "legacy"
        if kind not in (*LEARNERS, "prior"):
            raise ValueError(f"{path}: unknown yes/no answer model {kind!r}: built by another version of shopformer; "
                             "build the answers folder again")
        return cls(config, weights)
