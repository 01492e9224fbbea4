"""Embedding of the time context (``features.time_context``): added to each event's
input embedding in ``SASRec.embed``.

Each position carries two moments. Its own event's (when it was bought) and the moment
its successor is predicted for (the next event's time in training, the request's time
when serving). The second matters most for seasons: what sells in December depends on
when the answer is shown, not on when the user last bought; the causal Transformer reads
it at the last position, whose output is the user vector. Adding it to the input (not
to the output vector) lets attention weigh the history by it (a December question
can pick out last December's purchases), where an output offset could only shift item
popularity by date.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from shopformer.features.time_context import HOLIDAY_BUCKETS, QUERY_GAP_BUCKETS

#: sine / cosine pairs of the day of year: yearly, half-yearly, ... periods
HARMONICS = 4


def season_table(harmonics: int = HARMONICS) -> torch.Tensor:
    """(367, 2 * harmonics): sin/cos of 2 pi k day / 365.25 for day 1..366; row 0 (unknown) 0."""
    day = torch.arange(367, dtype=torch.float32)[:, None]
    k = torch.arange(1, harmonics + 1, dtype=torch.float32)[None, :]
    angle = 2 * math.pi * k * day / 365.25
    table = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
    table[0] = 0
    return table


class TimeContextEmbedding(nn.Module):
    """(B, T, 5) context indexes -> (B, T, D). The day of year enters as a linear map of
    smooth harmonics (a few parameters, no per-day table to learn from two seasons);
    holiday distance and gap as bucket embeddings."""

    def __init__(self, d_model: int):
        super().__init__()
        self.register_buffer("season", season_table(), persistent=False)  # (367, 2H)
        width = self.season.shape[1]
        self.day = nn.Linear(width, d_model, bias=False)
        self.holiday = nn.Embedding(HOLIDAY_BUCKETS + 1, d_model, padding_idx=0)
        self.query_day = nn.Linear(width, d_model, bias=False)
        self.query_holiday = nn.Embedding(HOLIDAY_BUCKETS + 1, d_model, padding_idx=0)
        self.query_gap = nn.Embedding(QUERY_GAP_BUCKETS + 1, d_model, padding_idx=0)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        c = context.long()
        return (self.day(self.season[c[..., 0]]) + self.holiday(c[..., 1])
                + self.query_day(self.season[c[..., 2]]) + self.query_holiday(c[..., 3])
                + self.query_gap(c[..., 4]))
