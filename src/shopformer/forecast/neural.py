"""TransformerForecaster: trains forecast/transformer.py as one global model over every
series of a panel, and forecasts from any later history.

Training: every (series, origin) window of the panel (forecast/windows.py), loss =
|target - output| x scale, averaged over the known targets: the L1 error in units, so
training minimises what WAPE measures (large series weigh more) and forecasts a median.
Adam, a fixed number of epochs (chosen on a validation window by the benchmark, never
on test weeks), a fixed seed; CPU in minutes for a few hundred series. Saved as
``forecaster.json`` (config) + ``forecaster.pt`` (weights).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .base import Panel
from .calendar import CalendarConfig
from .transformer import ForecastNetConfig, ForecastTransformer
from .windows import N_FEATURES, make_windows, training_pairs


@dataclass(frozen=True)
class TransformerForecastConfig:
    context: int = 26
    horizon: int = 8
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    dropout: float = 0.1
    ff_mult: int = 2
    epochs: int = 12  # the learning-rate schedule's length
    #: stop after this many epochs of it (None: all); 5 is what benchmarks/forecast.py chose
    #: on Online Retail's validation weeks for these settings
    stop_after: int | None = 5
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    min_history: int = 4  # observed weeks a training window needs
    seed: int = 0
    threads: int = 1
    calendar: CalendarConfig = field(default_factory=CalendarConfig)

    def net(self) -> ForecastNetConfig:
        return ForecastNetConfig(N_FEATURES, self.context, self.horizon, self.d_model, self.n_heads,
                                 self.n_layers, self.dropout, self.ff_mult)

    @classmethod
    def from_dict(cls, d: dict) -> TransformerForecastConfig:
        d = dict(d)
        d["calendar"] = CalendarConfig(**d.get("calendar", {}))
        return cls(**d)


class TransformerForecaster:
    name = "transformer"

    def __init__(self, config: TransformerForecastConfig = TransformerForecastConfig()) -> None:
        self.config = config
        self.net: ForecastTransformer | None = None
        self.history: list[dict] = []  # per epoch: loss, seconds (and what on_epoch adds)

    def fit(self, panel: Panel, on_epoch: Callable[[int, TransformerForecaster], dict] | None = None,
            stop_after: int | None = None) -> TransformerForecaster:
        """Train on every window of ``panel``; ``on_epoch(epoch, self)`` may return
        numbers to record (the benchmark's validation WAPE). ``stop_after``: stop after
        that many epochs of the ``epochs``-long learning-rate schedule (the epoch a
        validation run chose; default: the config's)."""
        c = self.config
        torch.set_num_threads(c.threads)
        torch.manual_seed(c.seed)
        rng = np.random.default_rng(c.seed)
        series, origins = training_pairs(panel, c.min_history)
        w = make_windows(panel, series, origins, c.context, c.horizon, c.calendar)
        tokens = torch.from_numpy(w.tokens)
        targets = torch.from_numpy(np.nan_to_num(w.targets, nan=0.0))
        known = torch.from_numpy(~np.isnan(w.targets)).float()
        weight = torch.from_numpy((w.scale / w.scale.mean()).astype(np.float32))
        self.net = ForecastTransformer(c.net())
        opt = torch.optim.AdamW(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        steps = c.epochs * -(-len(tokens) // c.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=c.lr, total_steps=max(steps, 1), pct_start=0.1)
        stop_after = stop_after or c.stop_after or c.epochs
        for epoch in range(min(c.epochs, stop_after)):
            self.net.train()
            started, total = time.perf_counter(), 0.0
            order = torch.from_numpy(rng.permutation(len(tokens)))
            for b in order.split(c.batch_size):
                out = self.net(tokens[b])  # [B, H]
                err = (out - targets[b]).abs() * known[b] * weight[b, None]
                loss = err.sum() / known[b].sum().clamp(min=1.0)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(b)
            record = {"epoch": epoch + 1, "loss": total / len(tokens), "seconds": time.perf_counter() - started}
            self.history.append(record)
            if on_epoch is not None:
                record.update(on_epoch(epoch + 1, self))
        return self

    @torch.no_grad()
    def predict(self, panel: Panel, horizon: int) -> np.ndarray:
        if self.net is None:
            raise RuntimeError("fit or load the forecaster first")
        if horizon > self.config.horizon:
            raise ValueError(f"horizon {horizon} > the model's {self.config.horizon}")
        c = self.config
        self.net.eval()
        origin = np.full(panel.n_series, panel.n_weeks - 1)
        w = make_windows(panel, np.arange(panel.n_series), origin, c.context, c.horizon, c.calendar)
        out = [self.net(torch.from_numpy(t)) for t in np.array_split(w.tokens, max(1, len(w.tokens) // 1024))]
        scaled = torch.cat(out).numpy() if out else np.zeros((0, c.horizon))
        forecast = np.clip(scaled * w.scale[:, None], 0.0, None)
        forecast[panel.starts >= panel.n_weeks] = 0.0  # never sold: nothing to forecast from
        return forecast[:, :horizon]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "forecaster.json").write_text(json.dumps({"kind": self.name, "config": asdict(self.config)}, indent=2))
        torch.save(self.net.state_dict(), folder / "forecaster.pt")

    @classmethod
    def load(cls, folder: Path) -> TransformerForecaster:
        meta = json.loads((folder / "forecaster.json").read_text())
        model = cls(TransformerForecastConfig.from_dict(meta["config"]))
        model.net = ForecastTransformer(model.config.net())
        model.net.load_state_dict(torch.load(folder / "forecaster.pt", weights_only=True))
        model.net.eval()
        return model
