"""Fitting the Answerer's parts on training questions, choosing on validation ones:
the question-type model, the BM25 + MiniLM fusion, the re-ranker, the yes/no answer model
(in that order: each later part reads the earlier ones' outputs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from shopformer.search.fusion import Candidates, FusionConfig, fused_scores, fusion_grid

from .data import YES_NO
from .features import FEATURES
from .protocol import expected_rank_metrics
from .adapter import fit_adapter
from .yesno import YesNoModel, platt, type_features, with_question

if TYPE_CHECKING:
    from .answerer import Answerer

#: search/fusion.py's grid with lighter BM25 weights too (down to none: MiniLM alone),
#: as a question and its answer share fewer words than a query and its product
FUSION_GRID = [FusionConfig("convex", a) for a in (0.0, 0.05, 0.1, 0.15)] + fusion_grid()
List = tuple[int, Candidates, float]  # question row, its candidates (true answer first), P(yes/no question)


def _track(rows, progress: bool, what: str):  # noqa: ANN001, ANN202
    if not progress:
        return rows
    from rich.progress import track

    return track(rows, description=what, console=None)


def _lists(a: "Answerer", rows: np.ndarray, qvecs: np.ndarray, progress: bool, what: str) -> list[List]:
    p = a.p_yes_no_question([a.questions[i] for i in rows], qvecs[rows])
    out = []
    for i, pi in _track(list(zip(rows.tolist(), p.tolist())), progress, what):
        cand = a.sets.of(i)
        if len(cand) >= 2:  # a single candidate has nothing to rank
            out.append((i, a.candidates(a.questions[i], qvecs[i], a.sets.items[i], cand), float(pi)))
    return out


def _rankable(a: "Answerer", rows: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Those of ``rows`` with at least two candidates, and their candidates."""
    groups = [(i, a.sets.of(i)) for i in rows.tolist()]
    groups = [(i, g) for i, g in groups if len(g) >= 2]
    return np.array([i for i, _ in groups], np.int64), [g for _, g in groups]


def mean_rr(scores: list[np.ndarray]) -> float:
    return float(np.mean([expected_rank_metrics(s, 0)[0] for s in scores])) if scores else 0.0


def fit_type(a: "Answerer", train: np.ndarray, valid: np.ndarray, qvecs: np.ndarray) -> dict:
    qt = a.frame["question_type"].to_list()
    y = np.array([1 if t == YES_NO else 0 for t in qt])
    tr = np.array([i for i in train if qt[i] is not None], np.int64)
    va = np.array([i for i in valid if qt[i] is not None], np.int64)
    if len(tr) == 0 or len(np.unique(y[tr])) < 2:
        return {"question_type": "not fitted: the training questions lack both types"}
    X = lambda r: type_features(qvecs[r], [a.questions[i] for i in r])  # noqa: E731
    a.yesno.fit_type(X(tr), y[tr], X(va), y[va])
    out = {"train": int(len(tr)), "valid": int(len(va))}
    if len(va):
        pred = a.yesno.p_yes_no_question(X(va)) >= 0.5
        out.update(valid_accuracy=float((pred == y[va]).mean()), valid_majority=float(max(y[va].mean(), 1 - y[va].mean())))
    return out


def choose_fusion(a: "Answerer", valid: list[List]) -> tuple[FusionConfig, list[dict]]:
    table = [{**cfg.__dict__, "valid_mrr": mean_rr([fused_scores(c, cfg) for _, c, _ in valid])}
             for cfg in FUSION_GRID]
    best = max(table, key=lambda r: r["valid_mrr"])
    return FusionConfig(**{k: v for k, v in best.items() if k != "valid_mrr"}), table


def _matrix(a: "Answerer", lists: list[List], seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Features, labels and group sizes; each group's rows in a seeded random order: the
    true answer is the first candidate, and LightGBM's ranking metrics break ties by
    position, which would make a model with few distinct scores look good."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for i, c, p in lists:
        perm = rng.permutation(len(c))
        X.append(a.features(a.questions[i], c, p)[perm])
        y.append((perm == 0).astype(np.float64))
    return np.vstack(X), np.concatenate(y), [len(c) for _, c, _ in lists]


def _grouped_mrr(pred: np.ndarray, y: np.ndarray, groups: list[int]) -> float:
    starts = np.r_[0, np.cumsum(groups)]
    return float(np.mean([expected_rank_metrics(pred[s:e], int(np.argmax(y[s:e])))[0]
                          for s, e in zip(starts[:-1], starts[1:])]))


def fit_reranker(a: "Answerer", train: list[List], valid: list[List]):  # noqa: ANN201 - (lgb.Booster, report)
    import lightgbm as lgb

    cfg = a.config.rerank
    X, y, groups = _matrix(a, train, cfg.seed)
    Xv, yv, gv = _matrix(a, valid, cfg.seed + 1)
    ds = lgb.Dataset(X, y, group=groups, feature_name=list(FEATURES), free_raw_data=False)
    dv = lgb.Dataset(Xv, yv, group=gv, reference=ds)
    best, best_mrr, table = None, -1.0, []
    for leaves in cfg.leaves_grid:
        params = {"objective": "lambdarank", "metric": "map", "eval_at": [1000], "learning_rate": cfg.learning_rate,
                  "num_leaves": leaves, "min_child_samples": cfg.min_child_samples,
                  "feature_fraction": cfg.feature_fraction, "seed": cfg.seed, "deterministic": True,
                  "num_threads": 1, "verbose": -1}
        booster = lgb.train(params, ds, num_boost_round=cfg.max_trees, valid_sets=[dv],
                            callbacks=[lgb.early_stopping(cfg.early_stopping, verbose=False)])
        mrr = _grouped_mrr(booster.predict(Xv, num_threads=1), yv, gv)
        table.append({"leaves": leaves, "trees": int(booster.best_iteration), "valid_mrr": mrr})
        if mrr > best_mrr:
            best, best_mrr = booster, mrr
    gain = best.feature_importance("gain")
    importance = {f: round(float(g / max(gain.sum(), 1e-12)), 4) for f, g in zip(FEATURES, gain)}
    return best, {"grid": table, "train_pairs": int(len(y)), "importance": importance}


def _yes_no_set(a: "Answerer", rows: np.ndarray, qvecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The legacy learner's inputs for the yes/no questions of ``rows`` answered Y or N, and their labels."""
    from .answerer import yes_no_rows

    keep, y = yes_no_rows(a.frame, rows)
    ranked = []
    p = a.p_yes_no_question([a.questions[i] for i in keep], qvecs[keep])
    for i, pi in zip(keep.tolist(), p.tolist()):
        others = a.sets.others(i)  # never the question's own answer
        if len(others):
            c = a.candidates(a.questions[i], qvecs[i], a.sets.items[i], others)
            others = others[np.lexsort((others, -a.scores("rerank", a.questions[i], c, pi)))]
        ranked.append(others)
    X = a._evidence_features(list(qvecs[keep]), ranked) if len(keep) else np.zeros((0, 2 * qvecs.shape[1] + 4))
    return X, y


def yes_no_inputs(a: Answerer, kind: str, rows: np.ndarray, qvecs: np.ndarray,
                  cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Learner ``kind``'s inputs for the yes/no questions of ``rows`` answered Y or N, and
    their labels (1 = yes). The evidence learners read the Q&A answered before each
    question only (:class:`~.yesno.Evidence`); ``cache``: evidence already computed, by rows."""
    from .answerer import yes_no_rows

    if kind == "legacy":
        return _yes_no_set(a, rows, qvecs)
    keep, y = yes_no_rows(a.frame, rows)
    if kind == "prior":
        return np.zeros((len(keep), 1), np.float32), y
    key = tuple(keep.tolist())
    if cache is not None and key in cache:
        E = cache[key]
    else:
        E = a.evidence.rows(keep, a.questions, a.sets.items, qvecs)
        if cache is not None:
            cache[key] = E
    return (with_question(E, qvecs[keep]) if "question" in kind else E), y


def _scores(p: np.ndarray, y: np.ndarray) -> dict:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return {"accuracy": float(((p >= 0.5) == y).mean()), "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
            "brier": float(np.mean((p - y) ** 2))}


def _folds(n: int, k: int, seed: int) -> list[np.ndarray]:
    return np.array_split(np.random.default_rng(seed).permutation(n), max(min(k, n), 2)) if n >= 2 else []


def out_of_fold(logit: np.ndarray, y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Calibrated P(yes) of each validation question from Platt scaling fitted on the
    other folds: how the calibrated decision does on questions it was not fitted on."""
    p = np.empty(len(y))
    for fold in _folds(len(y), k, seed):
        rest = np.setdiff1d(np.arange(len(y)), fold)
        s, b = platt(logit[rest], y[rest])
        p[fold] = 1.0 / (1.0 + np.exp(-np.clip(s * logit[fold] + b, -40, 40)))
    return p


def prior_out_of_fold(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """The prior's P(yes) of each validation question: the yes share of the other folds."""
    p = np.empty(len(y))
    for fold in _folds(len(y), k, seed):
        p[fold] = y[np.setdiff1d(np.arange(len(y)), fold)].mean()
    return p


def choose_learner(table: list[dict]) -> dict | None:
    """The served learner's row of ``table`` (the prior's row first, then the learners',
    each with its ``out_of_fold`` scores), marking each learner ``eligible`` or not: of
    those that beat always answering the majority (accuracy) and the prior (log-loss) on
    validation out of fold, the lowest log-loss; None: none did, serve the prior."""
    prior, learners = table[0], table[1:]
    for r in learners:
        o = r["out_of_fold"]
        r["eligible"] = o["accuracy"] > prior["always_majority_accuracy"] and o["log_loss"] < prior["out_of_fold"]["log_loss"]
    eligible = [r for r in learners if r["eligible"]]
    return min(eligible, key=lambda r: r["out_of_fold"]["log_loss"]) if eligible else None


def fit_answer_model(a: "Answerer", train: np.ndarray, valid: np.ndarray, qvecs: np.ndarray) -> dict:
    """Fit every learner of ``config.yesno.learners`` on the training yes/no questions,
    compare them on the validation ones and keep the best, or the prior.

    Each learner's setting is chosen on validation log-loss; its decision is calibrated by
    Platt scaling on validation, and since that is fitted on validation too, the learners
    are compared by the out-of-fold calibrated predictions (Platt fitted on the other
    ``folds`` of validation). A learner is eligible when its out-of-fold accuracy beats
    always answering the training majority on validation and its out-of-fold log-loss
    beats the prior's (the other folds' yes share); the eligible one with the lowest
    out-of-fold log-loss is served. With none eligible the prior is: the majority answer
    with the yes share of training and validation as its confidence."""
    from .answerer import yes_no_rows

    cfg = a.config.yesno
    _, y = yes_no_rows(a.frame, train)
    _, yv = yes_no_rows(a.frame, valid)
    if len(np.unique(y)) < 2:
        return {"yes_no_answer": "not fitted: the training questions lack both yes and no answers"}
    share = float(np.concatenate([y, yv]).mean())
    majority = int(y.mean() >= 0.5)
    out: dict = {"train": len(y), "valid": len(yv), "train_yes_share": float(y.mean()),
                 "valid_yes_share": float(yv.mean()) if len(yv) else None, "prior_yes_share": share,
                 "folds": cfg.folds}
    a.yesno.set_answer(YesNoModel.prior(share))
    if len(yv) < 2 or len(np.unique(yv)) < 2:
        out.update(chosen="prior", why="too few validation yes/no questions (or one answer only) to check a learner on")
        return out
    folds, seed = cfg.folds, cfg.seed
    prior_oof = _scores(prior_out_of_fold(yv, folds, seed), yv)
    always = float((yv == majority).mean())
    table = [{"learner": "prior", "out_of_fold": prior_oof, "always_majority_accuracy": always}]
    cache: dict = {}
    fitted = {}
    for kind in cfg.learners:
        X, _ = yes_no_inputs(a, kind, train, qvecs, cache)
        Xv, _ = yes_no_inputs(a, kind, valid, qvecs, cache)
        weights, grid = YesNoModel.fit_learner(kind, X, y, Xv, yv, cfg)
        m = YesNoModel(cfg).set_answer(weights)
        z = m.answer_logit(Xv)
        in_sample = _scores(m.calibrate(Xv, yv).p_yes(Xv), yv)
        table.append({"learner": kind, "features": int(X.shape[1]), "grid": grid,
                      "out_of_fold": _scores(out_of_fold(z, yv, folds, seed), yv), "valid_in_sample": in_sample})
        fitted[kind] = (m.weights, Xv)
    out["learners"] = table
    best = choose_learner(table)
    if best is not None:
        a.yesno.set_answer(fitted[best["learner"]][0])
        out.update(chosen=best["learner"], valid_accuracy=best["out_of_fold"]["accuracy"])
    else:
        out.update(chosen="prior", valid_accuracy=always,
                   why="no learner beat always answering the majority on validation (out of fold)")
    return out


def fit_models(a: "Answerer", split: np.ndarray, qvecs: np.ndarray, progress: bool = False) -> None:
    train, valid = np.flatnonzero(split == "train"), np.flatnonzero(split == "valid")
    report: dict = {"train_questions": int(len(train)), "valid_questions": int(len(valid))}
    a.yesno = YesNoModel(a.config.yesno)
    report["question_type"] = fit_type(a, train, valid, qvecs)
    if a.config.adapter is not None:  # before the lists: their candidates carry the adapted cosine
        tr, tr_groups = _rankable(a, train)
        va, va_groups = _rankable(a, valid)
        if len(tr) and len(va):
            a.delta, report["adapter"] = fit_adapter(a.config.adapter, qvecs[tr], tr_groups, qvecs[va], va_groups,
                                                     a.answer_vecs)
    train_lists = _lists(a, train, qvecs, progress, "training questions")
    valid_lists = _lists(a, valid, qvecs, progress, "validation questions")
    report["skipped_single_answer"] = {"train": int(len(train) - len(train_lists)),
                                       "valid": int(len(valid) - len(valid_lists))}
    if a.config.fusion is None and valid_lists:
        a.fusion, report["fusion_grid"] = choose_fusion(a, valid_lists)
    report["fusion"] = a.fusion.__dict__
    if a.config.rerank is not None and train_lists and valid_lists:
        a.booster, report["reranker"] = fit_reranker(a, train_lists, valid_lists)
    report["yes_no_answer"] = fit_answer_model(a, train, valid, qvecs)
    if not a.yesno.weights:
        a.yesno = None
    a.report = report
