"""Question-answer features for the learned re-ranker, one row per candidate answer.

Only the question and the candidate ANSWER are read, never the question the answer was
given to: in the evaluation protocol the true answer's own question is the query itself,
so any feature of it (question-question similarity) would hand the true answer its
label. Features relative to the list (a candidate's BM25 over the list's best, its rank)
let one model serve products with 2 or 200 answers.
"""

from __future__ import annotations

import re

import numpy as np
from scipy.stats import rankdata

from .yesno import polarity

FEATURES = ("bm25", "bm25_rel", "bm25_rank", "cosine", "cosine_gap", "cosine_rank", "adapted", "adapted_gap",
            "adapted_rank", "fused", "fused_rank",
            "answer_words", "question_words", "candidates", "p_yes_no_question", "answer_polar",
            "yes_no_agree", "asks_number", "answer_number", "number_agree")

ASKS_NUMBER = re.compile(
    r"\b(how (many|much|long|tall|wide|big|deep|high|heavy|far|loud|often|old)|what (size|is the size|are the "
    r"dimensions|dimensions|temp|temperature|wattage|voltage|amperage|weight|height|width|depth|model|year)"
    r"|dimensions?|measurements?|weigh|inch|inches|watts?|volts?|amps?|btu|cubic|gallons?)\b", re.I)
DIGIT = re.compile(r"\d")


def answer_static(answers: list[str]) -> np.ndarray:
    """(N, 3) per answer, computed once: log word count, |polarity|, has a number."""
    return np.array([[np.log1p(len(a.split())), abs(polarity(a)), 1.0 if DIGIT.search(a) else 0.0] for a in answers],
                    np.float32).reshape(len(answers), 3)


def _rank(x: np.ndarray) -> np.ndarray:
    return rankdata(-x, method="min").astype(np.float32)


def candidate_features(question: str, bm25: np.ndarray, cosine: np.ndarray, adapted: np.ndarray, fused: np.ndarray,
                       static: np.ndarray, p_yes_no_question: float) -> np.ndarray:
    """(C, len(FEATURES)) float32 for one question's C candidates; ``static``: their
    :func:`answer_static` rows."""
    n = len(bm25)
    top = float(bm25.max()) if n else 0.0
    asks = 1.0 if ASKS_NUMBER.search(question) else 0.0
    cols = [
        bm25, bm25 / top if top > 0 else np.zeros(n), _rank(bm25),
        cosine, cosine - (cosine.max() if n else 0.0), _rank(cosine),
        adapted, adapted - (adapted.max() if n else 0.0), _rank(adapted),
        fused, _rank(fused),
        static[:, 0], np.full(n, np.log1p(len(question.split()))), np.full(n, float(n)),
        np.full(n, p_yes_no_question), static[:, 1], p_yes_no_question * static[:, 1],
        np.full(n, asks), static[:, 2], asks * static[:, 2],
    ]
    return np.stack([np.asarray(c, np.float32) for c in cols], axis=1)
