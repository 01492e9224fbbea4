"""Item representations: an ID embedding fused with a content embedding.

    item(i) = known(i) * id(i) + mean(token embeddings of i) + W · vector(i)

``known`` is False for items with no training interactions: their ID rows were never
trained as positives, so they are represented by content alone, the same way a product
added after training is. ``id_dropout`` hides the ID part of a random share of items at
each training step, which teaches the content part to stand on its own.
"""

from __future__ import annotations

import torch
from torch import nn

from shopformer.models.text_adapter import MoEAdapter, TextAdapterConfig


class ContentEncoder(nn.Module):
    """(n_rows, D) content embeddings from per-item token ids and dense vectors, held as
    buffers so a saved model carries its catalog's content."""

    def __init__(self, n_rows: int, d_model: int, n_tokens: int, width: int, vector_dim: int,
                 adapter: TextAdapterConfig | None = None):
        # adapter: map the vectors with UniSRec's MoE whitening adaptor instead of one linear map
        super().__init__()
        self.register_buffer("tokens", torch.zeros(n_rows, max(width, 1), dtype=torch.long))  # (R, A)
        self.token_emb = nn.EmbeddingBag(n_tokens, d_model, mode="mean", padding_idx=0) if n_tokens > 1 else None
        self.register_buffer("vectors", torch.zeros(n_rows, vector_dim))  # (R, V)
        self.vector_proj = (None if not vector_dim else MoEAdapter(adapter) if adapter is not None
                            else nn.Linear(vector_dim, d_model, bias=False))
        self.d_model = d_model

    def forward(self) -> torch.Tensor:
        out = torch.zeros(self.tokens.shape[0], self.d_model, device=self.tokens.device)  # (R, D)
        if self.token_emb is not None:
            out = out + self.token_emb(self.tokens)  # rows with no token give zeros
        if self.vector_proj is not None:
            out = out + self.vector_proj(self.vectors)
        return out

    def set_rows(self, tokens: torch.Tensor, vectors: torch.Tensor | None) -> None:
        """Fill the content of rows 0..len(tokens)-1 (row 0 = padding stays empty)."""
        with torch.no_grad():
            width = min(tokens.shape[1], self.tokens.shape[1])
            self.tokens.zero_()
            self.tokens[: len(tokens), :width] = tokens[:, :width]
            self.tokens[0] = 0
            if vectors is not None and self.vector_proj is not None:
                self.vectors.zero_()
                self.vectors[: len(vectors)] = vectors
                self.vectors[0] = 0


def id_keep_mask(known: torch.Tensor, id_dropout: float, training: bool) -> torch.Tensor:
    """(R, 1) float: 1 where the ID embedding counts, 0 where it is hidden."""
    keep = known
    if training and id_dropout > 0:
        keep = keep & (torch.rand(known.shape, device=known.device) >= id_dropout)
    return keep[:, None].float()


def token_unit_rows(tokens: torch.Tensor, idf: torch.Tensor) -> torch.Tensor:
    """(R, A) token ids + (n_tokens,) IDF -> (R, n_tokens) unit-length rows: each row's
    tokens weighted by their IDF (token 0 = none is dropped; a row without tokens is 0)."""
    rows = torch.zeros(tokens.shape[0], len(idf))
    rows.scatter_(1, tokens, idf[tokens])  # a token twice in a row counts once
    rows[:, 0] = 0
    return torch.nn.functional.normalize(rows, dim=1)
