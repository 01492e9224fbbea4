"""The forecasting Transformer: past weeks + the weeks to forecast in, one number per
future week out (direct multi-horizon: all horizons at once, no feeding back).

Tokens are weeks (forecast/windows.py: scaled units, observed flags, the same week last
year, calendar, series size). Optional series-level numbers (``n_static``: the history's
summaries, windows.py STATS) are embedded once and added to every token, so each week
reads the level of the last 4..52 weeks even when the context is shorter. Past and
future weeks share one pre-norm encoder with full self-attention, so each future week can read the whole history and the other
future weeks' calendars. Output is in the series' scale (the wrapper multiplies back).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ForecastNetConfig:
    n_features: int
    context: int = 26  # past weeks read (the same weeks a year earlier ride along in each token)
    horizon: int = 8  # future weeks forecast
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    dropout: float = 0.1
    ff_mult: int = 2  # feed-forward width / d_model
    n_static: int = 0  # series-level numbers added to every token (0: none)


class ForecastTransformer(nn.Module):
    def __init__(self, config: ForecastNetConfig) -> None:
        super().__init__()
        self.config = config
        length = config.context + config.horizon
        self.embed = nn.Linear(config.n_features, config.d_model)
        self.position = nn.Embedding(length, config.d_model)  # learned, one per week of the window
        self.is_future = nn.Embedding(2, config.d_model)  # past week / week to forecast
        self.static = nn.Linear(config.n_static, config.d_model) if config.n_static else None
        layer = nn.TransformerEncoderLayer(config.d_model, config.n_heads, config.ff_mult * config.d_model, config.dropout,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, 1)
        self.register_buffer("future_flag", torch.arange(length) >= config.context, persistent=False)

    def forward(self, tokens: torch.Tensor, static: torch.Tensor | None = None) -> torch.Tensor:
        # tokens: [B, L+H, F]; static: [B, n_static] or None
        length = tokens.shape[1]
        pos = torch.arange(length, device=tokens.device)
        x = self.embed(tokens) + self.position(pos) + self.is_future(self.future_flag.long())  # [B, L+H, D]
        if self.static is not None:
            x = x + self.static(static)[:, None, :]  # [B, 1, D] broadcast over the weeks
        x = self.encoder(x)  # [B, L+H, D]
        future = self.norm(x[:, self.config.context:])  # [B, H, D]
        return self.head(future).squeeze(-1)  # [B, H] units / scale
