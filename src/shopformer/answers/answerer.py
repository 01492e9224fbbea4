"""The Answerer: a customer's question about a product -> that product's past answers,
best first, and for a yes/no question a yes or no with a calibrated confidence.

Ranking, in three stages (benchmarks/answers.py measures each):

1. BM25 of the question against each answer (answers/lexical.py: one Tantivy index);
2. MiniLM cosine of the question's and the answer's sentence vectors (the project's text
   encoder, features/text.py), fused with BM25 by search/fusion.py (convex combination of
   max-normalized BM25 and the cosine, or RRF; which one and its weight chosen on
   validation questions);
3. a LightGBM lambdarank re-ranker over question-answer features (answers/features.py),
   trained on training questions, its leaves and trees chosen on validation; among its
   features the cosine of an adapted question vector (answers/adapter.py: a linear map
   learned on training questions, stopped on validation).

The answers of one product are few (2 to a few hundred), so every answer is scored:
there is no retrieval cut-off to tune. Candidates are answer texts only; see
answers/features.py for why the question an answer was given to is never a feature.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from shopformer.features.text import PACKAGED_MODEL, TextEncoder, TextEncoderConfig
from shopformer.search.fusion import Candidates, FusionConfig, fused_scores

from .data import YES_NO
from .features import FEATURES, answer_static, candidate_features
from .adapter import AdapterConfig, adapt
from .lexical import AnswerIndex
from .protocol import CandidateSets, expected_rank_metrics
from .yesno import Evidence, YesNoConfig, YesNoModel, answer_features, type_features, with_question

Method = Literal["bm25", "minilm", "adapted", "hybrid", "rerank"]
METHODS: tuple[str, ...] = ("bm25", "minilm", "adapted", "hybrid", "rerank")
FORMAT = 1


@dataclass(frozen=True)
class AnswerCandidates(Candidates):
    """Candidates with the cosine of the adapted question too (answers/adapter.py)."""

    adapted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (C,)


@dataclass(frozen=True)
class RerankConfig:
    """LightGBM lambdarank settings; ``leaves_grid`` is searched and the trees stopped
    early (``early_stopping`` rounds without gain, up to ``max_trees``), both on
    validation MRR."""

    leaves_grid: tuple[int, ...] = (15, 31, 63)
    learning_rate: float = 0.05
    max_trees: int = 1000
    early_stopping: int = 50
    min_child_samples: int = 20
    feature_fraction: float = 0.9
    seed: int = 0


@dataclass(frozen=True)
class AnswererConfig:
    """fusion: BM25 + MiniLM fusion (None: chosen on validation from search.fusion's grid);
    adapter: the question-side adapter (None: none); rerank: the re-ranker (None: answers
    by the fused score); yesno: the yes/no models; encoder: the sentence-transformers
    model (the packaged MiniLM or a local folder)."""

    fusion: FusionConfig | None = None
    adapter: AdapterConfig | None = field(default_factory=AdapterConfig)
    rerank: RerankConfig | None = field(default_factory=RerankConfig)
    yesno: YesNoConfig = field(default_factory=YesNoConfig)
    encoder: str = PACKAGED_MODEL

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AnswererConfig":
        rr = d.get("rerank")
        return cls(fusion=FusionConfig(**d["fusion"]) if d.get("fusion") else None,
                   adapter=AdapterConfig(**d["adapter"]) if d.get("adapter") else None,
                   rerank=RerankConfig(**{**rr, "leaves_grid": tuple(rr["leaves_grid"])}) if rr else None,
                   yesno=YesNoConfig(**{**d["yesno"], "grid": tuple(d["yesno"]["grid"]),
                                        **({"learners": tuple(d["yesno"]["learners"])} if "learners" in d["yesno"] else {})}),
                   encoder=d.get("encoder", PACKAGED_MODEL))


@dataclass(frozen=True)
class RankedAnswer:
    qa_id: int
    question: str  # the question this answer was given to
    answer: str
    score: float  # the final stage's score (higher is better)
    bm25: float
    cosine: float


@dataclass(frozen=True)
class YesNo:
    answer: Literal["yes", "no"]
    confidence: float  # calibrated probability of that answer
    p_yes_no_question: float
    abstain: bool = False  # confidence under config.yesno.min_confidence: say the answer is not sure
    model: str = "legacy"  # the answer model: a learner of yesno.LEARNERS, or "prior" (the majority answer)


@dataclass(frozen=True)
class Answer:
    item_id: str
    answers: list[RankedAnswer]
    p_yes_no_question: float
    yes_no: YesNo | None  # None: not a yes/no question (p < 0.5) or no yes/no model


class UnknownProduct(KeyError):
    """No Q&A stored for this product."""


class Answerer:
    """Ranks a product's stored answers for a question (see the module docstring)."""

    def __init__(self, config: AnswererConfig, frame: pl.DataFrame, answer_vecs: np.ndarray, index: AnswerIndex,
                 fusion: FusionConfig, booster=None, yesno: YesNoModel | None = None,  # noqa: ANN001 - lgb.Booster
                 encoder=None, delta: np.ndarray | None = None,  # noqa: ANN001 - encode(texts, progress=)
                 question_vecs: np.ndarray | None = None) -> None:
        if not np.array_equal(frame["qa_id"].to_numpy(), np.arange(frame.height)):
            raise ValueError("qa_id must be 0..N-1 in order (load_qa makes it so)")
        self.config = config
        self.frame = frame
        self.questions, self.answers = frame["question"].to_list(), frame["answer"].to_list()
        self.answer_vecs = np.asarray(answer_vecs, np.float32)
        self.index = index
        self.fusion = fusion
        self.booster = booster
        self.yesno = yesno
        self.delta = delta  # the question adapter's weights (answers/adapter.py); None: plain MiniLM
        #: the stored questions' vectors: the yes/no evidence (yesno.Evidence) reads them
        self.question_vecs = None if question_vecs is None else np.asarray(question_vecs, np.float32)
        self._evidence: Evidence | None = None
        self.static = answer_static(self.answers)
        self.sets = CandidateSets(frame)
        self._encoder = encoder
        self._encoding = threading.Lock()  # the fast tokenizer is not safe from two threads at once
        self.report: dict = {}

    @property
    def encoder(self):  # noqa: ANN201
        if self._encoder is None:  # loaded on first use: a server that never answers pays nothing
            self._encoder = TextEncoder(TextEncoderConfig(model=self.config.encoder))
        return self._encoder

    @property
    def evidence(self) -> Evidence:
        """What the stored Q&A say about a yes/no question (answers/yesno.py)."""
        if self._evidence is None:
            if self.question_vecs is None:
                raise ValueError("the yes/no evidence needs the stored questions' vectors (question_vectors.npy)")
            self._evidence = Evidence(self.frame, self.question_vecs, self.answer_vecs, self.config.yesno)
        return self._evidence

    def rows_of(self, item_id: str) -> np.ndarray:
        rows = self.sets.by_item.get(item_id)
        if rows is None:
            raise UnknownProduct(item_id)
        return np.asarray(rows, np.int64)

    # -- scoring --------------------------------------------------------------------
    def candidates(self, question: str, qvec: np.ndarray, item_id: str, rows: np.ndarray) -> AnswerCandidates:
        bm25 = self.index.scores(question, item_id, rows)
        cosine = self.answer_vecs[rows] @ qvec
        adapted = self.answer_vecs[rows] @ adapt(qvec[None], self.delta)[0] if self.delta is not None else cosine
        lex_rank = np.zeros(len(rows), np.int64)
        matched = np.flatnonzero(bm25 > 0)
        lex_rank[matched[np.argsort(-bm25[matched], kind="stable")]] = np.arange(1, len(matched) + 1)
        sem_rank = np.empty(len(rows), np.int64)
        sem_rank[np.argsort(-cosine, kind="stable")] = np.arange(1, len(rows) + 1)
        return AnswerCandidates(rows, bm25, lex_rank, cosine.astype(np.float32), sem_rank,
                                np.asarray(adapted, np.float32))

    def p_yes_no_question(self, questions: list[str], qvecs: np.ndarray) -> np.ndarray:
        if self.yesno is None or "type_w" not in self.yesno.weights:
            return np.zeros(len(questions))
        return self.yesno.p_yes_no_question(type_features(qvecs, questions))

    def features(self, question: str, c: AnswerCandidates, p_type: float, fusion: FusionConfig | None = None) -> np.ndarray:
        fused = fused_scores(c, fusion or self.fusion)
        return candidate_features(question, c.lexical, c.cosine, c.adapted, fused, self.static[c.rows], p_type)

    def scores(self, method: Method, question: str, c: AnswerCandidates, p_type: float) -> np.ndarray:
        """(C,) scores of the candidates by one stage (higher is better)."""
        if method == "bm25":
            return c.lexical.astype(np.float64)
        if method == "minilm":
            return c.cosine.astype(np.float64)
        if method == "adapted":
            return c.adapted.astype(np.float64)
        if method == "hybrid" or self.booster is None:
            return fused_scores(c, self.fusion)
        return np.asarray(self.booster.predict(self.features(question, c, p_type), num_threads=1), np.float64)

    # -- answering ------------------------------------------------------------------
    def answer(self, item_id: str, question: str, k: int = 5) -> Answer:
        """The ``k`` best answers of ``item_id``'s stored Q&A for ``question`` and, for a
        yes/no question, yes or no. Raises UnknownProduct."""
        rows = self.rows_of(item_id)
        with self._encoding:
            qvec = self.encoder.encode([question], progress=False)[0]
        p_type = float(self.p_yes_no_question([question], qvec[None])[0])
        c = self.candidates(question, qvec, item_id, rows)
        s = self.scores("rerank", question, c, p_type)
        order = np.lexsort((c.rows, -s))
        ranked = [RankedAnswer(int(c.rows[i]), self.questions[c.rows[i]], self.answers[c.rows[i]], float(s[i]),
                               float(c.lexical[i]), float(c.cosine[i])) for i in order[:k]]
        yes_no = None
        if p_type >= 0.5 and self.yesno is not None and self.yesno.answers:
            kind = self.yesno.kind
            if kind == "legacy":
                X = self._evidence_features([qvec], [c.rows[order]])
            elif kind == "prior":
                X = np.zeros((1, 1), np.float32)
            else:
                X = self.evidence.features(qvec, question, item_id)[None]
                X = with_question(X, qvec[None]) if "question" in kind else X
            p_yes = float(self.yesno.p_yes(X)[0])
            confidence = max(p_yes, 1 - p_yes)
            yes_no = YesNo("yes" if p_yes >= 0.5 else "no", confidence, p_type,
                           confidence < self.config.yesno.min_confidence, kind)
        return Answer(item_id, ranked, p_type, yes_no)

    def p_yes_rows(self, rows: np.ndarray, question_vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated P(yes) of the stored yes/no questions of ``rows`` answered Y or N, as
        the served model gives it (each reading the Q&A before it, never its own), and
        their labels (1 = yes)."""
        from .training import yes_no_inputs

        X, y = yes_no_inputs(self, self.yesno.kind, rows, question_vecs)
        return self.yesno.p_yes(X), y

    def _evidence_features(self, qvecs: list[np.ndarray], ranked_rows: list[np.ndarray]) -> np.ndarray:
        e = self.config.yesno.evidence
        return answer_features(np.asarray(qvecs, np.float32), [self.answer_vecs[r[:e]] for r in ranked_rows],
                               [[self.answers[j] for j in r[:e]] for r in ranked_rows])

    # -- building -------------------------------------------------------------------
    @classmethod
    def fit(cls, config: AnswererConfig, frame: pl.DataFrame, split: np.ndarray, encoder=None,  # noqa: ANN001
            question_vecs: np.ndarray | None = None, answer_vecs: np.ndarray | None = None,
            progress: bool = False) -> "Answerer":
        """Index every Q&A of ``frame`` and fit the models on its ``split == "train"``
        questions, choosing everything on ``split == "valid"`` (see the module docstring).
        ``*_vecs``: the questions' and answers' sentence vectors when already encoded."""
        from .training import fit_models

        encoder = encoder if encoder is not None else TextEncoder(TextEncoderConfig(model=config.encoder))
        if question_vecs is None:
            question_vecs = encoder.encode(frame["question"].to_list(), progress=progress)
        if answer_vecs is None:
            answer_vecs = encoder.encode(frame["answer"].to_list(), progress=progress)
        index = AnswerIndex()
        index.add(frame["qa_id"].to_numpy(), frame["item_id"].to_list(), frame["answer"].to_list())
        self = cls(config, frame, answer_vecs, index, config.fusion or FusionConfig(), encoder=encoder,
                   question_vecs=question_vecs)
        fit_models(self, np.asarray(split), np.asarray(question_vecs, np.float32), progress)
        return self

    def evaluate(self, rows: np.ndarray, question_vecs: np.ndarray, methods: tuple[str, ...] = METHODS,
                 k: int = 5) -> dict:
        """Mean expected MRR and Recall@k of each method over questions ``rows`` (their
        candidate sets, answers/protocol.py), and how many were skipped."""
        out = {m: {"rr": [], "recall": []} for m in methods}
        skipped = 0
        p_types = self.p_yes_no_question([self.questions[i] for i in rows], question_vecs[rows])
        for i, p in zip(np.asarray(rows).tolist(), p_types):
            cand = self.sets.of(i)
            if len(cand) < 2:
                skipped += 1
                continue
            c = self.candidates(self.questions[i], question_vecs[i], self.sets.items[i], cand)
            for m in methods:
                rr, rec = expected_rank_metrics(self.scores(m, self.questions[i], c, float(p)), 0, k)
                out[m]["rr"].append(rr)
                out[m]["recall"].append(rec)
        return {"questions": len(rows) - skipped, "skipped_single_answer": skipped,
                **{m: {"mrr": float(np.mean(v["rr"])) if v["rr"] else 0.0,
                       f"recall@{k}": float(np.mean(v["recall"])) if v["recall"] else 0.0} for m, v in out.items()}}

    def close(self) -> None:
        """Remove the temporary lexical index (one made by :meth:`fit`; a loaded one stays)."""
        self.index.close()

    # -- persistence ----------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.frame.write_parquet(folder / "qa.parquet")
        np.save(folder / "answer_vectors.npy", self.answer_vecs)
        self.index.save(folder / "lexical")
        if self.booster is not None:
            self.booster.save_model(str(folder / "reranker.txt"))
        if self.yesno is not None:
            self.yesno.save(folder / "yesno.npz")
        if self.delta is not None:
            np.save(folder / "adapter.npy", self.delta)
        if self.question_vecs is not None:
            np.save(folder / "question_vectors.npy", self.question_vecs)
        meta = {"format": FORMAT, "config": self.config.to_dict(), "fusion": asdict(self.fusion),
                "features": list(FEATURES), "qa": self.frame.height, "products": len(self.sets.by_item),
                "report": self.report}
        (folder / "answers.json").write_text(json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, folder: Path, encoder=None) -> "Answerer":  # noqa: ANN001
        folder = Path(folder)
        meta_path = folder / "answers.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{folder} is not an answers folder (no answers.json): "
                                    "build one with `shopformer answer build --qa FILE --out DIR`")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT or meta.get("features") != list(FEATURES):
            raise ValueError(f"{folder} was built by another version of shopformer; build it again")
        config = AnswererConfig.from_dict(meta["config"])
        booster = None
        if (folder / "reranker.txt").exists():
            import lightgbm as lgb

            booster = lgb.Booster(model_file=str(folder / "reranker.txt"))
        yesno = YesNoModel.load(folder / "yesno.npz", config.yesno) if (folder / "yesno.npz").exists() else None
        frame = pl.read_parquet(folder / "qa.parquet")
        delta = np.load(folder / "adapter.npy") if (folder / "adapter.npy").exists() else None
        qv = np.load(folder / "question_vectors.npy") if (folder / "question_vectors.npy").exists() else None
        if yesno is not None and yesno.kind not in ("legacy", "prior", None) and qv is None:
            raise ValueError(f"{folder}: its yes/no model reads the stored questions' vectors, but "
                             "question_vectors.npy is missing; build the answers folder again")
        self = cls(config, frame, np.load(folder / "answer_vectors.npy"), AnswerIndex(folder / "lexical"),
                   FusionConfig(**meta["fusion"]), booster, yesno, encoder, delta, qv)
        self.report = meta.get("report", {})
        return self


def yes_no_rows(frame: pl.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Those of ``rows`` that are yes/no questions answered Y or N, and their labels (1 = yes)."""
    qt, at = frame["question_type"].to_numpy(), frame["answer_type"].to_numpy()
    keep = np.asarray([i for i in rows if qt[i] == YES_NO and at[i] in ("Y", "N")], np.int64)
    return keep, np.asarray([1 if at[i] == "Y" else 0 for i in keep], np.int64)
