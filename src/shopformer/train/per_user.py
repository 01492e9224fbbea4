"""Per-user clipped gradients of SASRec's next-item loss, the core of DP-SGD.

Each user (one window of their history) is one example. The gradient of every user is
clipped to ``max_norm`` and the clipped gradients are summed; ``train.dp`` adds the noise.

How, and why not Opacus's ``GradSampleModule``: the network reads the item table twice,
as its input rows (``table[items]``) and as the output layer of the softmax (tied
weights, used as a tensor, not through an ``nn.Embedding`` call), and the positions
through ``pos_emb(arange(T))``; Opacus's per-layer hooks see neither use. So:

- the Transformer body (every parameter but the item table, ~0.1M at d_model 64) gets
  per-user gradients from ``torch.func``: ``vmap(grad(loss of one user))``, with
  ``randomness="different"`` so each user draws their own dropout masks;
- the item table (N x D, 0.8M on Beauty) is never differentiated per user: a user's
  gradient of it is a sum of outer products, ``P^T h`` from the softmax (P = softmax -
  one-hot, T x N; h the hidden states, T x D) plus ``S^T X`` from the input rows (S the
  one-hot of the input items, X the gradient of their rows). Its squared norm comes from
  T x T Gram matrices (``||A^T B||^2 = sum((A A^T) * (B B^T))``, "ghost clipping", Li et
  al. 2022), and the clipped sum is one matrix product weighted per user. A B x N x D
  tensor of per-user tables (100 MB for 32 Beauty users) is never built: that made
  vmapping the whole network 5-10x slower than this.

``tests/train/test_dp.py`` checks the result against one ordinary backward per user.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from shopformer.models.sasrec import SASRec

TABLE = "item_emb.weight"


@dataclass
class ClippedSum:
    """Per-user clipped gradients of one batch, summed."""

    grads: dict[str, torch.Tensor]  # parameter name -> summed clipped gradient (param's shape)
    loss: float  # summed cross-entropy over every target position
    positions: int  # target positions in the batch
    users: int
    clipped: int  # users whose gradient norm was above max_norm
    norms: torch.Tensor  # (users,) each user's gradient norm before clipping


def _user_loss(module: SASRec, body: dict, rows, items, targets, types, gaps, out_table):  # noqa: ANN001
    """One user's summed next-item cross-entropy. rows: (T, D) the input items' table
    rows; items, targets, types, gaps: (T,); out_table: (N, D) items 1..N. Returns
    (loss, (loss, hidden (T, D), logits (T, N)))."""
    add = (lambda a: None if a is None else a[None])  # noqa: E731
    h = functional_call(module, body, (items[None], add(types), add(gaps)), {"rows": rows[None]})[0]  # (T, D)
    logits = h @ out_table.T  # (T, N)
    loss = F.cross_entropy(logits, targets - 1, ignore_index=-1, reduction="sum")
    return loss, (loss.detach(), h.detach(), logits.detach())


def _table_sq_norms(P: torch.Tensor, h: torch.Tensor, items: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """(b,) squared Frobenius norms of each user's item-table gradient
    ``G = P^T h`` (rows 1..N) ``+ S^T X`` (rows ``items``), from T x T Gram matrices.
    P: (b, T, N) softmax - one-hot over items 1..N (0 at padding targets); h: (b, T, D);
    items: (b, T) input items (0 = padding); X: (b, T, D) gradient of the input rows."""
    out = ((P @ P.transpose(1, 2)) * (h @ h.transpose(1, 2))).sum((1, 2))  # ||P^T h||^2
    same = (items[:, :, None] == items[:, None, :]) & (items > 0)[:, :, None]  # (b, T, T)
    inp = ((X @ X.transpose(1, 2)) * same).sum((1, 2))  # ||S^T X||^2
    # <P^T h, S^T X> = sum_{s,t} P[s, items_t - 1] (h_s . X_t): the output column of each input item
    col = (items - 1).clamp(min=0)[:, None, :].expand(-1, P.shape[1], -1)  # (b, T, T)
    p_at = P.gather(2, col) * (items > 0)[:, None, :]  # (b, T_s, T_t)
    cross = (p_at * (h @ X.transpose(1, 2))).sum((1, 2))
    return out + inp + 2 * cross


@dataclass
class UserRows:
    """A chunk of users, one a row: inputs and next-item targets, (b, T) each, 0 = padding;
    optional event-type and time-gap inputs."""

    items: torch.Tensor
    targets: torch.Tensor
    types: torch.Tensor | None = None
    gaps: torch.Tensor | None = None


def clipped_sum(module: SASRec, chunks: Iterable[UserRows], max_norm: float) -> ClippedSum:
    """Sum over users (rows of every chunk) of each user's gradient clipped to
    ``max_norm``. Memory: about chunk size x T x N floats (the softmax)."""
    table = module.item_emb.weight.detach()  # (N + 2, D)
    n = module.config.n_items
    out_table = table[1 : n + 1]  # (N, D)
    body = {k: p.detach() for k, p in module.named_parameters() if k != TABLE}
    sums = {k: torch.zeros_like(p) for k, p in module.named_parameters()}
    total_loss, positions, norms, clipped = 0.0, 0, [], 0

    def loss_fn(body, rows, it, tg, ty, gp):  # noqa: ANN001, ANN202
        return _user_loss(module, body, rows, it, tg, ty, gp, out_table)

    # The math kernel of scaled_dot_product_attention has batching rules under vmap; the
    # fused CPU kernel falls back to a loop over users.
    with sdpa_kernel(SDPBackend.MATH):
        for chunk in chunks:
            it, tg, ty, gp = chunk.items, chunk.targets, chunk.types, chunk.gaps
            dims = (None, 0, 0, 0, None if ty is None else 0, None if gp is None else 0)
            per_user = vmap(grad(loss_fn, argnums=(0, 1), has_aux=True), in_dims=dims, randomness="different")
            (g_body, X), (loss, h, logits) = per_user(body, table[it], it, tg, ty, gp)  # X, h: (b, T, D)
            with torch.no_grad():
                P = torch.softmax(logits, dim=-1)  # (b, T, N)
                real = tg > 0
                P.scatter_add_(2, (tg - 1).clamp(min=0)[..., None], -real[..., None].to(P.dtype))
                P *= real[..., None]  # softmax - one-hot at the target positions, 0 elsewhere
                sq = _table_sq_norms(P, h, it, X)  # (b,)
                for g in g_body.values():
                    sq = sq + g.flatten(1).pow(2).sum(1)
                norm = sq.clamp(min=0).sqrt()
                c = (max_norm / (norm + 1e-6)).clamp(max=1.0)  # (b,) clip factors
                for k, g in g_body.items():
                    sums[k] += torch.einsum("b,b...->...", c, g)
                flat_p = (P * c[:, None, None]).flatten(0, 1)  # (b T, N)
                sums[TABLE][1 : n + 1] += flat_p.T @ h.flatten(0, 1)  # sum_i c_i P_i^T h_i
                sums[TABLE].index_add_(0, it.flatten(), (X * c[:, None, None]).flatten(0, 1))  # sum_i c_i S_i^T X_i
            total_loss += float(loss.sum())
            positions += int(real.sum())
            norms.append(norm)
            clipped += int((norm > max_norm).sum())
    return ClippedSum(sums, total_loss, positions, sum(len(x) for x in norms), clipped,
                      torch.cat(norms) if norms else torch.zeros(0))
