"""Next-item losses over the catalog: full softmax, sampled softmax (logQ), gBCE.

Every loss takes hidden states ``h`` (P, D) at the positions that have a target, the
item table ``table`` (N + 1, D) whose row 0 is padding, and ``targets`` (P,) in 1..N.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def full_ce(
    h: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax cross-entropy over the whole catalog; ``exclude`` (N + 1,) bool leaves
    items out of the softmax (e.g. products that did not exist yet)."""
    logits = h @ table[1:].T  # (P, N): padding is left out rather than masked (faster)
    if exclude is not None:
        logits = logits.masked_fill(exclude[1:], float("-inf"))
    return F.cross_entropy(logits, targets - 1)


def sampled_softmax(
    h: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    n_negatives: int,
    log_q: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Softmax over the target + ``n_negatives`` items shared by the batch, drawn from
    q = exp(log_q) (over items 1..N). Each negative's logit is corrected by -log(K q_j),
    its expected count, so the sum over samples estimates the full partition function
    (Jean et al. 2015; Yi et al. 2019); draws equal to the target are masked."""
    q = log_q[1:].exp()
    neg = torch.multinomial(q, n_negatives, replacement=True, generator=generator) + 1  # (K,)
    pos_logit = (h * table[targets]).sum(-1, keepdim=True)  # (P, 1)
    correction = log_q[neg] + math.log(n_negatives)  # (K,)
    neg_logit = h @ table[neg].T - correction[None]  # (P, K)
    neg_logit = neg_logit.masked_fill(neg[None] == targets[:, None], float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], dim=1)  # (P, 1 + K)
    return F.cross_entropy(logits, torch.zeros(len(h), dtype=torch.long, device=h.device))


def gbce(
    h: torch.Tensor,
    table: torch.Tensor,
    targets: torch.Tensor,
    n_negatives: int,
    t: float = 0.75,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Generalised BCE (Petrov & Macdonald, gSASRec 2023) with uniform negatives per
    position: the positive term is raised to beta = alpha * (t * (1 - 1/alpha) + 1/alpha),
    alpha = K / (N - 1), which counters the overconfidence negative sampling causes."""
    n_items = table.shape[0] - 1
    neg = torch.randint(1, n_items + 1, (len(h), n_negatives), generator=generator, device=h.device)
    pos = (h * table[targets]).sum(-1)  # (P,)
    negs = torch.einsum("pd,pkd->pk", h, table[neg])  # (P, K)
    alpha = n_negatives / max(n_items - 1, 1)
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
    keep = (neg != targets[:, None]).float()
    loss_pos = beta * F.softplus(-pos)
    loss_neg = (F.softplus(negs) * keep).sum(-1)
    return (loss_pos + loss_neg).mean()


def popularity_log_q(counts: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """log of the sampling distribution ~ count^power over items (index 0 gets -inf)."""
    w = (counts.float() + 1.0) ** power
    w[0] = 0.0
    return torch.log(w / w.sum())
