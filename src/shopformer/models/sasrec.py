"""SASRec-style causal Transformer over a behaviour sequence (the tensor maths only).

Item embeddings are shared between the input and the output: the score of item i after
position t is ``h_t · E_i``. Training, vocabularies and devices live in
``shopformer.models.sequential``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from shopformer.models.layers import Block, attention_mask
from shopformer.types import EVENT_TYPES


@dataclass(frozen=True)
class SASRecConfig:
    """Architecture.

    n_items: catalog size without padding (set from the data).
    max_len: positions the model reads (the latest ``max_len`` events).
    d_model, n_layers, n_heads, dropout: the usual Transformer sizes.
    event_types: add an event-type embedding (view / cart / purchase ...).
    time_gap_buckets: >0 adds an embedding of the (log-bucketed) time since the
        previous event; needs timestamps.
    causal: True = next-item model; False = bidirectional (Cloze) model.
    """

    n_items: int = 0
    max_len: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    event_types: bool = False
    time_gap_buckets: int = 0
    causal: bool = True


class SASRec(nn.Module):
    def __init__(self, config: SASRecConfig):
        super().__init__()
        self.config = config
        c = config
        # Row 0 = padding; row n_items + 1 = [MASK] for the Cloze objective.
        self.item_emb = nn.Embedding(c.n_items + 2, c.d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(c.max_len, c.d_model)
        n_types = len(EVENT_TYPES) + 1
        self.type_emb = nn.Embedding(n_types, c.d_model, padding_idx=0) if c.event_types else None
        n_gaps = c.time_gap_buckets + 1
        self.gap_emb = nn.Embedding(n_gaps, c.d_model, padding_idx=0) if c.time_gap_buckets else None
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c.d_model, c.n_heads, c.dropout) for _ in range(c.n_layers))
        self.ln_f = nn.LayerNorm(c.d_model)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()

    @property
    def mask_token(self) -> int:
        return self.config.n_items + 1

    def forward(
        self, items: torch.Tensor, types: torch.Tensor | None = None, gaps: torch.Tensor | None = None
    ) -> torch.Tensor:
        # items, types, gaps: (B, T) left-padded with 0, T <= max_len -> hidden (B, T, D)
        B, T = items.shape
        pos = torch.arange(self.config.max_len - T, self.config.max_len, device=items.device)
        x = self.item_emb(items) * self.config.d_model**0.5 + self.pos_emb(pos)[None]  # (B, T, D)
        if self.type_emb is not None and types is not None:
            x = x + self.type_emb(types)
        if self.gap_emb is not None and gaps is not None:
            x = x + self.gap_emb(gaps)
        x = self.drop(x * (items > 0)[..., None])
        mask = attention_mask(items, self.config.causal)  # (B, 1, T, T)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)  # (B, T, D)

    def item_table(self) -> torch.Tensor:
        """(n_items + 1, D) output embeddings; row 0 (padding) is never a valid answer."""
        return self.item_emb.weight[: self.config.n_items + 1]
