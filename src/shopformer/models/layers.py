"""Transformer layers shared by the causal (SASRec-style) and bidirectional models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FastDropout(nn.Module):
    """Inverted dropout whose mask costs one random byte per element.

    PyTorch's CPU dropout draws one random number per element through ``bernoulli_``;
    at SASRec sizes that was a fifth of a training step (seven dropouts a step). Here
    eight mask bytes come from each random int64, so the drop rate is rounded to a
    multiple of 1/256 (0.2 -> 0.199; 0.5 stays 0.5) and survivors are scaled by the
    exact keep rate. Draws come from torch's global generator, so seeds still apply."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.threshold = round(p * 256)  # a byte below this drops its element

    @property
    def p(self) -> float:
        return self.threshold / 256

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        n = x.numel()
        words = torch.randint(-(2**63), 2**63 - 1, ((n + 7) // 8,), dtype=torch.int64, device=x.device)
        keep = words.view(torch.uint8)[:n].view(x.shape) >= self.threshold
        return x * keep * (256 / (256 - self.threshold))


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def heads(self, x: torch.Tensor, queries: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys, values of ``x`` (..., D), each split into heads: (..., H, D/H).
        ``queries``: indexes into x's first axis; only those rows' queries are returned
        (and, for a float projection, computed)."""
        D = x.shape[-1]
        if queries is None:
            q, k, v = self.qkv(x).split(D, dim=-1)
        elif isinstance(self.qkv, nn.Linear):  # one projection for keys and values, one for the few queries
            w, b = self.qkv.weight, self.qkv.bias
            q = F.linear(x[queries], w[:D], b[:D])
            k, v = F.linear(x, w[D:], b[D:]).split(D, dim=-1)
        else:  # e.g. a quantized copy: its weight is not sliced
            q, k, v = self.qkv(x).split(D, dim=-1)
            q = q[queries]
        return tuple(t.unflatten(-1, (self.n_heads, -1)) for t in (q, k, v))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # q: (B, Tq, H, D/H); k, v: (B, T, H, D/H); mask: (B, 1, Tq, T) -> (B, Tq, D)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, Tq, D/H)
        return self.out(y.transpose(1, 2).flatten(2))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        # x: (B, T, D); mask: (B, 1, T, T) bool, True = may attend
        # last_only: only the last position asks (keys and values still read every one)
        q, k, v = self.heads(x)  # (B, T, H, D/H) each
        if last_only:
            q, mask = q[:, -1:], mask[:, :, -1:]  # (B, 1, H, D/H), (B, 1, 1, T)
        return self.attend(q, k, v, mask)  # (B, T or 1, D)


class Block(nn.Module):
    """Pre-norm block: x + Attn(LN(x)), then x + FFN(LN(x)). With ``pre_norm=False`` the
    original post-norm layout: LN(x + Attn(x)), then LN(x + FFN(x)) (as in SASRec's and
    RecBole's implementations)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, attn_dropout: float, ffn_mult: int = 4,
                 pre_norm: bool = True):
        super().__init__()
        self.pre_norm = pre_norm
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, attn_dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_mult * d_model),
            nn.GELU(),
            FastDropout(dropout),
            nn.Linear(ffn_mult * d_model, d_model),
        )
        self.drop = FastDropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        # last_only: the output at the last position alone, (B, 1, D) (what inference reads)
        rest = x[:, -1:] if last_only else x
        return self.finish(rest, self.attn(self.attn_input(x), mask, last_only))  # (B, T or 1, D)

    # The block in two halves, so that a caller may bring keys and values computed
    # elsewhere (occlusion reuses a shared prefix's, models/occlusion.py).
    def attn_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the attention projects to queries, keys and values."""
        return self.ln1(x) if self.pre_norm else x

    def finish(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """The block's output at the positions of ``x`` given their attention output."""
        if not self.pre_norm:
            x = self.ln1(x + self.drop(attended))  # (B, T, D)
            return self.ln2(x + self.drop(self.ffn(x)))  # (B, T, D)
        x = x + self.drop(attended)
        return x + self.drop(self.ffn(self.ln2(x)))


def attention_mask(items: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, 1, T, T) bool: a position attends to non-padding keys (and, if causal, only
    to itself and earlier). A query on padding still sees itself so no row is empty."""
    B, T = items.shape
    keys = (items > 0)[:, None, None, :]  # (B, 1, 1, T)
    mask = keys.expand(B, 1, T, T)
    if causal:
        mask = mask & torch.ones(T, T, dtype=torch.bool, device=items.device).tril()
    eye = torch.eye(T, dtype=torch.bool, device=items.device)
    return mask | eye
