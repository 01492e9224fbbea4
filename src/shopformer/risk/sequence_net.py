"""RiskSequenceNet: the customer's past order and cancellation lines, pooled by attention
to the line being scored (target attention, as DIN does for click-through), joined with
the line and its tabular features, giving the logit of "this line will be cancelled".

Why attention pooling and not a GRU: on the project's 2 shared CPUs a GRU over 32 steps
cost seconds per batch of 1,024 (its steps run one after another); pooling is one batched
matrix product, and the event's position in time still enters through its "days before
the scored line" input. Tensor maths only; vocabularies, batching and training are in
:mod:`shopformer.risk.sequence`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

#: numbers per past event: log quantity, log price, log days before the scored line
EVENT_NUMBERS = 3
#: numbers of the scored line itself: log quantity, log price
LINE_NUMBERS = 2


@dataclass(frozen=True)
class RiskSequenceNetConfig:
    """Sizes of the network (``n_items`` counts padding 0 and unknown 1)."""

    n_items: int
    n_tabular: int
    dim: int = 32
    hidden: int = 64
    dropout: float = 0.1


class RiskSequenceNet(nn.Module):
    def __init__(self, config: RiskSequenceNetConfig):
        super().__init__()
        self.config = config
        c = config
        self.item = nn.Embedding(c.n_items, c.dim, padding_idx=0)
        self.kind = nn.Embedding(3, c.dim, padding_idx=0)  # 0 pad, 1 purchase, 2 cancellation
        self.event_numbers = nn.Linear(EVENT_NUMBERS, c.dim)
        self.event = nn.Sequential(nn.LayerNorm(c.dim), nn.Linear(c.dim, c.dim), nn.GELU())
        self.line_numbers = nn.Linear(LINE_NUMBERS, c.dim)
        self.query = nn.Linear(c.dim, c.dim)
        self.head = nn.Sequential(nn.Linear(3 * c.dim + c.n_tabular, c.hidden), nn.ReLU(),
                                  nn.Dropout(c.dropout), nn.Linear(c.hidden, 1))

    def forward(self, items: torch.Tensor, kinds: torch.Tensor, numbers: torch.Tensor, lengths: torch.Tensor,
                line_item: torch.Tensor, line_numbers: torch.Tensor, tabular: torch.Tensor) -> torch.Tensor:
        """items, kinds (B, L) int64, right-padded with 0; numbers (B, L, 3); lengths (B,)
        (0 for a customer with no past); line_item (B,); line_numbers (B, 2); tabular
        (B, F). Returns logits (B,)."""
        events = self.event(self.item(items) + self.kind(kinds) + self.event_numbers(numbers))  # (B, L, D)
        line = self.item(line_item) + self.line_numbers(line_numbers)  # (B, D)
        logits = torch.einsum("bld,bd->bl", events, self.query(line)) / events.shape[-1] ** 0.5  # (B, L)
        valid = kinds > 0  # (B, L)
        weights = torch.softmax(logits.masked_fill(~valid, -1e9), dim=1) * valid  # (B, L); no past -> zeros
        attended = torch.einsum("bl,bld->bd", weights, events)  # (B, D)
        mean = (events * valid.unsqueeze(-1)).sum(1) / lengths.clamp(min=1).unsqueeze(1).to(events.dtype)  # (B, D)
        return self.head(torch.cat([attended, mean, line, tabular], dim=1)).squeeze(1)  # (B,)
