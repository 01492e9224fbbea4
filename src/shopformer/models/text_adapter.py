"""UniSRec's mixture-of-experts whitening adaptor: frozen sentence vectors of product
text -> the network's item space, learned (Hou et al., KDD 2022).

    expert_k(x) = (x - b_k) W_k              (parametric whitening: a shift, then a map)
    adapter(x)  = sum_k softmax(x G)_k expert_k(x)

Only the adaptor (and the Transformer above it) is learned; the text vectors are fixed,
so two shops whose products were encoded by the same text model share one item space:
a network trained on one shop's sequences can be fine-tuned on another's
(``models/transfer.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TextAdapterConfig:
    """in_dim: width of the text vectors (384 for all-MiniLM-L6-v2).
    d_model: width of the network's item space.
    experts: whitening experts mixed by a gate (UniSRec uses 8).
    dropout: on the text vectors before the experts (UniSRec's, against over-fitting
        the few parameters that see every item)."""

    in_dim: int
    d_model: int
    experts: int = 4
    dropout: float = 0.2


class MoEAdapter(nn.Module):
    def __init__(self, config: TextAdapterConfig):
        super().__init__()
        c = config
        self.config = config
        self.shift = nn.Parameter(torch.zeros(c.experts, c.in_dim))  # (K, V): b_k
        self.experts = nn.Parameter(torch.randn(c.experts, c.in_dim, c.d_model) * 0.02)  # (K, V, D): W_k
        self.gate = nn.Linear(c.in_dim, c.experts, bias=False)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        # vectors: (R, V) -> (R, D)
        x = self.drop(vectors)
        gate = torch.softmax(self.gate(x), dim=-1)  # (R, K)
        whitened = torch.einsum("rkv,kvd->rkd", x[:, None, :] - self.shift[None], self.experts)  # (R, K, D)
        return (gate[..., None] * whitened).sum(1)  # (R, D)
