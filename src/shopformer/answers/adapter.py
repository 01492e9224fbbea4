"""A learned question-side adapter on frozen MiniLM vectors: the question's vector moves
to where its answers lie, ``q' = normalize(q + q @ delta)``, scored by cosine with the
(unchanged) answer vectors.

Why: MiniLM was trained on general sentence pairs; a question and its answer ("does it
fit a 30 inch cabinet?" / "mine fit fine") share less than its training pairs did. A
full fine-tune costs re-encoding every answer; this adapter reads the stored vectors
only, trains in seconds on CPU (softmax over each training question's candidate answers,
the product's other answers being the negatives) and is stopped early on validation MRR.
``delta`` starts at zero, so an adapter that learned nothing is plain MiniLM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .protocol import expected_rank_metrics


@dataclass(frozen=True)
class AdapterConfig:
    """temperature: softmax scale of the cosines; lr / weight_decay: AdamW's; batch:
    questions per step; max_epochs / patience: early stopping on validation MRR."""

    temperature: float = 0.05
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch: int = 256
    max_epochs: int = 40
    patience: int = 4
    seed: int = 0


def adapt(question_vecs: np.ndarray, delta: np.ndarray | None) -> np.ndarray:
    """(N, D) unit vectors of the adapted questions (the input when ``delta`` is None)."""
    if delta is None:
        return question_vecs
    q = question_vecs + question_vecs @ delta
    return (q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _padded(groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(g) for g in groups)
    idx = np.zeros((len(groups), width), np.int64)
    mask = np.zeros((len(groups), width), bool)
    for r, g in enumerate(groups):
        idx[r, : len(g)], mask[r, : len(g)] = g, True
    return idx, mask


def _valid_mrr(delta: np.ndarray, qvecs: np.ndarray, avecs: np.ndarray, groups: list[np.ndarray]) -> float:
    q = adapt(qvecs, delta)
    return float(np.mean([expected_rank_metrics(avecs[g] @ q[r], 0)[0] for r, g in enumerate(groups)]))


def fit_adapter(config: AdapterConfig, train_q: np.ndarray, train_groups: list[np.ndarray], valid_q: np.ndarray,
                valid_groups: list[np.ndarray], answer_vecs: np.ndarray) -> tuple[np.ndarray | None, dict]:
    """``*_q``: (G, D) question vectors; ``*_groups``: each question's candidate answer
    rows, the true one first. Returns the best ``delta`` on validation (None: plain
    MiniLM was best) and a report."""
    import torch

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    d = answer_vecs.shape[1]
    A = torch.from_numpy(np.asarray(answer_vecs, np.float32))  # (N, D)
    Q = torch.from_numpy(np.asarray(train_q, np.float32))  # (G, D)
    idx, mask = (torch.from_numpy(x) for x in _padded(train_groups))  # (G, M)
    delta = torch.zeros(d, d, requires_grad=True)
    opt = torch.optim.AdamW([delta], lr=config.lr, weight_decay=config.weight_decay)
    best, best_mrr = None, _valid_mrr(np.zeros((d, d), np.float32), valid_q, answer_vecs, valid_groups)
    history, stale = [{"epoch": 0, "valid_mrr": best_mrr}], 0
    for epoch in range(1, config.max_epochs + 1):
        order = torch.from_numpy(rng.permutation(len(Q)))
        for start in range(0, len(Q), config.batch):
            rows = order[start: start + config.batch]
            q = Q[rows] + Q[rows] @ delta  # (B, D)
            q = torch.nn.functional.normalize(q, dim=-1)
            cos = torch.einsum("bd,bmd->bm", q, A[idx[rows]])  # (B, M)
            logits = (cos / config.temperature).masked_fill(~mask[rows], float("-inf"))
            loss = torch.nn.functional.cross_entropy(logits, torch.zeros(len(rows), dtype=torch.long))
            opt.zero_grad()
            loss.backward()
            opt.step()
        mrr = _valid_mrr(delta.detach().numpy(), valid_q, answer_vecs, valid_groups)
        history.append({"epoch": epoch, "valid_mrr": mrr, "train_loss": float(loss.detach())})
        if mrr > best_mrr:
            best, best_mrr, stale = delta.detach().numpy().copy(), mrr, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    return best, {"best_valid_mrr": best_mrr, "epochs": history, "used": best is not None}
