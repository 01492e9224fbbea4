"""Shared by benchmarks/diversity.py and benchmarks/new_product_exposure.py: a SASRec
trained the way benchmarks/accuracy.py trains it (its data loading, split and
settings, under a shorter training cap), each evaluated user's full-catalog candidates
computed once, and the metrics of re-ranked top-10 lists.

Full ranking: every catalog item is scored for every evaluated user (history items
excluded, as in accuracy.py); the re-ranking steps then choose the top 10 from the
best ``fetch`` of them, which is exactly what serving does."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import Progress

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from accuracy import DATASETS, TRANSFORMER_GRID, load  # noqa: E402

from shopformer.artifact import load_run, make_model, save_run  # noqa: E402
from shopformer.dataset import describe  # noqa: E402
from shopformer.evaluate import metrics  # noqa: E402
from shopformer.experiment import fit  # noqa: E402
from shopformer.retrieve.exact import mask_items, top_k  # noqa: E402

#: accuracy.py's SASRec settings, with the changes these benchmarks make to train in
#: minutes on a shared 2-CPU machine (the question is a trade-off, not the top score).
#: Beauty keeps accuracy.py's own (d256, 10 epochs: ~14 min on a quiet machine): d64 for 6
#: epochs reached only validation NDCG@10 0.043 against 0.071.
SHORTER = {
    "beauty": {},
    "online-retail": {"train.epochs": "15"},
}


def sasrec_settings(dataset: str, minutes: float, quick: bool) -> dict[str, str]:
    params = {**TRANSFORMER_GRID[dataset]["sasrec"][0], **SHORTER[dataset],
              "train.time_limit_s": str(round(minutes * 60))}
    if quick:
        params.update({"arch.d_model": "32", "train.epochs": "1", "train.time_limit_s": "30"})
    return params


def trained(dataset: str, data_root: Path, work: Path, minutes: float, quick: bool):
    """(data, split, model, settings, fit seconds): the SASRec of ``dataset``, trained on
    the training split, kept under ``work/runs`` so a second benchmark reuses it."""
    data, split = load(dataset, data_root, work)
    params = sasrec_settings(dataset, minutes, quick)
    folder = work / "runs" / f"{dataset}-sasrec{'-quick' if quick else ''}"
    if (folder / "run.json").exists():
        run = load_run(folder)
        if run.info.get("settings") == params:
            return data, split, run.model, params, run.info["fit_seconds"]
    model = make_model("sasrec", params)
    fit_s = fit(model, data, split)
    save_run(folder, model, data.items, data.users, DATASETS[dataset][2],
             {"dataset": describe(data), "fit_on": "train", "fit_seconds": round(fit_s, 1), "settings": params})
    return data, split, model, params, round(fit_s, 1)


def unit_item_vectors(model) -> np.ndarray:  # noqa: ANN001 - a SASRecRecommender
    """(n_items + 1, D) the model's output item embeddings, L2-normalized: the vectors
    that serving's similar items and diversity re-ranking compare."""
    table = model.similarity_table().detach().float().cpu().numpy().astype(np.float64)
    norms = np.linalg.norm(table, axis=1, keepdims=True)
    return table / np.where(norms > 0, norms, 1.0)


@dataclass
class Candidates:
    """Per evaluated user: the best ``fetch`` items (indexes, scores, best first), the
    target, and (when a new-item mask is given) the best-scored new items."""

    idx: np.ndarray  # (U, fetch)
    scores: np.ndarray  # (U, fetch)
    target: np.ndarray  # (U,)
    new_idx: np.ndarray | None = None  # (U, n_new_kept)
    new_scores: np.ndarray | None = None


def candidates(model, cases, fetch: int, new_mask: np.ndarray | None = None, n_new: int = 10,  # noqa: ANN001
               batch: int = 512, label: str = "") -> Candidates:
    """Full-catalog scores of every case (history masked), kept as the top ``fetch``
    (and the top ``n_new`` new items when ``new_mask`` (n_items + 1,) is given)."""
    idx, top, new_i, new_s = [], [], [], []
    with Progress(transient=True) as bar:
        task = bar.add_task(f"scoring {label}", total=len(cases))
        for start in range(0, len(cases), batch):
            rows = np.arange(start, min(start + batch, len(cases)))
            history = cases.history.rows(rows)
            scores = model.score(history)
            mask_items(scores, history)
            scores[:, 0] = -np.inf
            i, s = top_k(scores, fetch)
            idx.append(i)
            top.append(s)
            if new_mask is not None:
                only_new = np.where(new_mask[None], scores, -np.inf)
                i, s = top_k(only_new, n_new)
                new_i.append(i)
                new_s.append(s)
            bar.advance(task, len(rows))
    targets = cases.targets
    assert (targets.lengths == 1).all(), "leave-one-out: one target per case"
    return Candidates(np.concatenate(idx), np.concatenate(top).astype(np.float64), targets.items.copy(),
                      np.concatenate(new_i) if new_i else None, np.concatenate(new_s) if new_s else None)


def ndcg_at(lists: np.ndarray, target: np.ndarray, k: int = 10) -> np.ndarray:
    hits = lists[:, :k] == target[:, None]
    return metrics.ndcg(hits, np.ones(len(lists), dtype=np.int64), k)


def list_metrics(lists: np.ndarray, target: np.ndarray, n_items: int, vectors: np.ndarray, k: int = 10) -> dict:
    """NDCG@k, HR@k, intra-list diversity@k (mean over users) and catalog coverage@k."""
    from shopformer.rank.diversity import intra_list_diversity

    top = lists[:, :k]
    return {
        f"NDCG@{k}": float(ndcg_at(top, target, k).mean()),
        f"HR@{k}": float((top == target[:, None]).any(axis=1).mean()),
        f"ILD@{k}": float(np.nanmean(intra_list_diversity(vectors, top))),
        f"Coverage@{k}": metrics.coverage(top, n_items),
    }
