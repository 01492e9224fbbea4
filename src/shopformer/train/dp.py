"""Differential privacy for training: DP-SGD's noise and its privacy accountant.

The unit of privacy is ONE USER: each step draws every user independently with
probability q (Poisson sampling), clips each drawn user's whole gradient (all of their
window's next-item targets together, ``train/per_user.py``) to ``max_grad_norm``, sums
them and adds Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm``
to every coordinate. The trained weights are then (epsilon, delta)-differentially
private with respect to adding or removing one user's entire history.

The noise multiplier is found from the target epsilon by Opacus's accountant
(``opacus.accountants``: PRV by default, RDP as the option), which analyses exactly this
mechanism, the Poisson-subsampled Gaussian; Opacus has no accountant for shuffled
fixed-size batches, so they are not offered. The epsilon actually spent is the
accountant's answer for the steps taken (fewer than planned when a time limit stops
training), recorded in the run folder with the rest of the guarantee.

What the guarantee does not cover, stated so a report cannot overstate it: anything
else that reads the data, such as choosing hyperparameters or the number of epochs on
validation (DP training itself never evaluates: the epochs are fixed, the last weights
are kept; the training loss, a plain statistic of the data, is shown while training but
not saved with the model); the run folder's ``users.json``, which lists every training user's id (the
serving vocabulary: hand out ``model/`` and ``items.json``, not the run folder, where
membership must stay private); the item vocabulary and the number of users, taken as
public (the catalog, the data's size); the noise comes from PyTorch's seeded generator,
not a cryptographically secure one (as Opacus without ``secure_mode``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch


@dataclass(frozen=True)
class DPConfig:
    """DP-SGD settings (``--set dp.epsilon=4``).

    epsilon: target epsilon of the whole training run; None = ordinary (non-private)
        training. The noise multiplier is computed from it, the steps and the sampling rate.
    delta: target delta; None = 1 / (number of users in the training data).
    max_grad_norm: each user's gradient is clipped to this L2 norm.
    accountant: "prv" (Opacus's PRV accountant, tighter) or "rdp" (Renyi DP, the classic).
    chunk: users whose per-user gradients are computed at once (memory ~ chunk x T x N).
    The expected batch is ``train.batch_size`` users: q = batch_size / users; an epoch is
    round(1 / q) steps, so ``train.epochs`` sets the steps.
    """

    epsilon: float | None = None
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: Literal["prv", "rdp"] = "prv"
    chunk: int = 64

    def __post_init__(self) -> None:
        if self.epsilon is not None and not (0 < self.epsilon < math.inf):
            raise ValueError(f"dp.epsilon must be a finite number > 0 (or none for non-private training), "
                             f"got {self.epsilon}")
        if self.delta is not None and not (0 < self.delta < 1):
            raise ValueError(f"dp.delta must be in (0, 1), got {self.delta}")
        if not (0 < self.max_grad_norm < math.inf):
            raise ValueError(f"dp.max_grad_norm must be a finite number > 0, got {self.max_grad_norm}")
        if self.accountant not in ("prv", "rdp"):
            raise ValueError(f"dp.accountant must be prv or rdp, got {self.accountant!r}")
        if self.chunk < 1:
            raise ValueError(f"dp.chunk must be >= 1, got {self.chunk}")

    @property
    def enabled(self) -> bool:
        return self.epsilon is not None


@dataclass
class PrivacyReport:
    """The guarantee a DP-trained model has, saved with it."""

    epsilon: float  # spent, by the accountant, for the steps actually taken
    delta: float
    target_epsilon: float
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float  # q: each user's chance to be in a step's batch
    steps: int
    users: int  # users that can be drawn (two or more training events)
    accountant: str
    clipped_share: float = 0.0  # share of drawn users whose gradient was clipped
    unit: str = "user (a user's whole training history)"
    sampling: str = "poisson"
    covers: str = ("the trained weights; not model selection on validation (hyperparameters chosen "
                   "there are outside the guarantee)")

    def to_dict(self) -> dict:
        return asdict(self)


class DPSGD:
    """Poisson sampling, noise and accounting for ``steps`` planned steps over ``users``
    users, an expected ``batch_size`` a step."""

    def __init__(self, config: DPConfig, users: int, batch_size: int, steps: int, n_users: int,
                 seed: int = 0):
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier

        if not config.enabled:
            raise ValueError("DPSGD needs dp.epsilon")
        if users < 1 or steps < 1:
            raise ValueError(f"DP-SGD needs users and steps, got {users} users and {steps} steps")
        self.config, self.users, self.steps_planned = config, users, steps
        self.sample_rate = min(1.0, batch_size / users)
        self.delta = config.delta if config.delta is not None else 1.0 / max(n_users, users)
        with warnings.catch_warnings():  # RDP's "optimal order is the largest alpha": a bound a bit loose, not wrong
            warnings.simplefilter("ignore", UserWarning)
            self.noise_multiplier = get_noise_multiplier(
                target_epsilon=config.epsilon, target_delta=self.delta, sample_rate=self.sample_rate,
                steps=steps, accountant=config.accountant)
        self.accountant = create_accountant(config.accountant)
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.drawn = self.clipped = 0

    def sample(self) -> np.ndarray:
        """The users (indexes < users) in the next step's batch: each with probability q."""
        return np.flatnonzero(self.rng.random(self.users) < self.sample_rate)

    @torch.no_grad()
    def privatize(self, module: torch.nn.Module, sums: dict[str, torch.Tensor], drawn: int, clipped: int) -> None:
        """Set each parameter's ``.grad`` to (clipped sum + N(0, (sigma C)^2)) / (q users),
        and count the step in the accountant."""
        std = self.noise_multiplier * self.config.max_grad_norm
        scale = 1.0 / (self.sample_rate * self.users)  # the expected batch: the batch's own size would leak it
        for name, p in module.named_parameters():
            noise = torch.normal(0.0, std, p.shape, generator=self.generator)
            p.grad = (sums[name] + noise) * scale
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.drawn += drawn
        self.clipped += clipped

    @property
    def steps(self) -> int:
        return sum(n for _, _, n in self.accountant.history)

    def epsilon(self) -> float:
        if not self.steps:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return float(self.accountant.get_epsilon(self.delta))

    def report(self) -> PrivacyReport:
        return PrivacyReport(
            epsilon=self.epsilon(), delta=self.delta, target_epsilon=float(self.config.epsilon),
            noise_multiplier=self.noise_multiplier, max_grad_norm=self.config.max_grad_norm,
            sample_rate=self.sample_rate, steps=self.steps, users=self.users, accountant=self.config.accountant,
            clipped_share=round(self.clipped / self.drawn, 4) if self.drawn else 0.0,
        )
