"""Yes/no questions: is a question one, and is its answer yes or no, with a calibrated
probability.

Two logistic regressions (scikit-learn) on sentence vectors:

* question type: the question's MiniLM vector and whether it opens with an auxiliary
  verb ("does", "is", "can" ...), trained on the data's ``questionType``;
* answer: the question's vector, the mean vector of the top retrieved answers (the
  product's past answers, best first: evidence about this product) and how those answers
  open ("yes ..." / "no ..."), trained on the yes/no questions whose ``answerType`` is Y or
  N (not "?": the answer did not say).

The regularization ``C`` of each is chosen on validation log-loss; the answer model's
probability is then calibrated by Platt scaling fitted on the validation questions (a
logistic regression on its decision value), so "confidence 0.8" means right about 80%
of the time on held-out questions. Weights are plain arrays (saved with NumPy, no pickle).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AUXILIARY = re.compile(r"^\W*(is|are|am|was|were|does|do|did|can|could|will|would|should|shall|has|have|had|may|might"
                       r"|must|isn't|aren't|doesn't|don't|won't|can't|wouldn't)\b", re.I)
YES = re.compile(r"^\W*(yes|yeah|yep|yup|ya|sure|correct|absolutely|definitely|certainly|it does|it is|it will"
                 r"|they do|they are)\b", re.I)
NO = re.compile(r"^\W*(no|nope|not|nah|never|it does not|it doesn't|it is not|it isn't|it won't|unfortunately"
                r"|they don't|they do not)\b", re.I)


def polarity(answer: str) -> int:
    """+1 when an answer opens with a yes, -1 with a no, 0 otherwise."""
    return 1 if YES.match(answer) else -1 if NO.match(answer) else 0


def opens_with_auxiliary(question: str) -> float:
    return 1.0 if AUXILIARY.match(question) else 0.0


@dataclass(frozen=True)
class YesNoConfig:
    """evidence: top retrieved answers read; grid: the C values tried (validation log-loss)."""

    evidence: int = 3
    grid: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)
    seed: int = 0


def type_features(question_vecs: np.ndarray, questions: list[str]) -> np.ndarray:
    """(N, D + 1)."""
    aux = np.array([[opens_with_auxiliary(q)] for q in questions], np.float32).reshape(-1, 1)
    return np.hstack([question_vecs, aux]).astype(np.float32)


def answer_features(question_vecs: np.ndarray, evidence_vecs: list[np.ndarray], evidence_texts: list[list[str]]) -> np.ndarray:
    """(N, 2D + 4): the question, the mean of its evidence answers' vectors, the top
    answer's polarity, the mean polarity and the shares of yes / no openings."""
    d = question_vecs.shape[1]
    rows = []
    for q, vecs, texts in zip(question_vecs, evidence_vecs, evidence_texts):
        mean = vecs.mean(0) if len(vecs) else np.zeros(d, np.float32)
        pol = np.array([polarity(t) for t in texts], np.float32)
        cues = [pol[0] if len(pol) else 0.0, pol.mean() if len(pol) else 0.0,
                float((pol > 0).mean()) if len(pol) else 0.0, float((pol < 0).mean()) if len(pol) else 0.0]
        rows.append(np.concatenate([q, mean, np.array(cues, np.float32)]))
    return np.asarray(rows, np.float32).reshape(len(rows), 2 * d + 4)


def _fit_lr(X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray, config: YesNoConfig):  # noqa: ANN202
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


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


class YesNoModel:
    """Question type and answer polarity (see the module docstring)."""

    def __init__(self, config: YesNoConfig = YesNoConfig(), weights: dict[str, np.ndarray] | None = None) -> None:
        self.config = config
        self.weights = weights or {}
        self.report: dict = {}

    def fit_type(self, X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray) -> "YesNoModel":
        if len(np.unique(y)) < 2:
            self.weights.update(type_w=np.zeros(X.shape[1], np.float32), type_b=np.array([10.0 if y.mean() > 0.5 else -10.0]))
            return self
        lr, table = _fit_lr(X, y, Xv, yv, self.config)
        self.weights.update(type_w=lr.coef_[0].astype(np.float32), type_b=lr.intercept_.astype(np.float32))
        self.report["type_grid"] = table
        return self

    def fit_answer(self, X: np.ndarray, y: np.ndarray, Xv: np.ndarray, yv: np.ndarray) -> "YesNoModel":
        """y: 1 = yes, 0 = no."""
        from sklearn.linear_model import LogisticRegression

        if len(np.unique(y)) < 2:
            raise ValueError("the yes/no answer model needs both yes and no answers among the training questions")
        lr, table = _fit_lr(X, y, Xv, yv, self.config)
        self.weights.update(answer_w=lr.coef_[0].astype(np.float32), answer_b=lr.intercept_.astype(np.float32))
        self.report["answer_grid"] = table
        a, b = 1.0, 0.0  # Platt scaling on validation (identity when it has one class only)
        if len(np.unique(yv)) == 2:
            platt = LogisticRegression(C=1e6, max_iter=1000).fit(self._answer_logit(Xv).reshape(-1, 1), yv)
            a, b = float(platt.coef_[0, 0]), float(platt.intercept_[0])
        self.weights["platt"] = np.array([a, b], np.float32)
        return self

    def p_yes_no_question(self, X: np.ndarray) -> np.ndarray:
        return _sigmoid(X @ self.weights["type_w"] + self.weights["type_b"][0])

    def _answer_logit(self, X: np.ndarray) -> np.ndarray:
        return X @ self.weights["answer_w"] + self.weights["answer_b"][0]

    def p_yes(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probability that the answer is yes."""
        a, b = self.weights.get("platt", np.array([1.0, 0.0]))
        return _sigmoid(a * self._answer_logit(X) + b)

    @property
    def answers(self) -> bool:
        return "answer_w" in self.weights

    def save(self, path: Path) -> None:
        np.savez(path, **self.weights)

    @classmethod
    def load(cls, path: Path, config: YesNoConfig) -> "YesNoModel":
        with np.load(path) as f:
            return cls(config, {k: f[k] for k in f.files})
