"""DP-SGD training of a causal SASRec network (``--set dp.epsilon=4``): Poisson-sampled
batches of users, per-user clipped gradients (``per_user.py``), Gaussian noise and the
accountant (``dp.py``), through the shared ``Trainer``. Epochs are fixed and the last
weights are kept: no validation is read during training (see ``dp.py`` for what the
guarantee covers)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from shopformer.features.sequences import Sequences
from shopformer.models.sasrec import SASRec
from shopformer.train.batches import Windows
from shopformer.train.dp import DPSGD, DPConfig, PrivacyReport
from shopformer.train.loop import Trainer, TrainConfig, TrainHistory
from shopformer.train.per_user import UserRows, clipped_sum


def _chunks(w: Windows, size: int) -> list[UserRows]:
    """Users sorted by length and cut into chunks of ``size``, each trimmed of the
    columns that are padding in all its rows; inputs are a window's first T columns,
    targets its last T (position t predicts event t + 1)."""
    order = np.argsort((w.items > 0).sum(axis=1), kind="stable")
    out = []
    for start in range(0, len(order), size):
        c = w.select(order[start : start + size]).trim()
        t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a[:, :-1]))  # noqa: E731
        out.append(UserRows(t(c.items), torch.from_numpy(np.ascontiguousarray(c.items[:, 1:])), t(c.types),
                            t(c.gaps)))
    return out


def fit_private(
    module: SASRec,
    seqs: Sequences,
    windows: Callable[[Sequences, np.random.Generator], Windows],
    train: TrainConfig,
    dp: DPConfig,
    n_users: int,
    progress: bool = True,
) -> tuple[TrainHistory, PrivacyReport]:
    """Train ``module`` on ``seqs`` (one row per user, each with an input and a target)
    with DP-SGD; ``windows(rows, rng)`` cuts the users' training windows (a random crop of
    long histories draws from ``rng``). ``n_users``: users in the data (delta's default
    is 1 / n_users). Returns the training record and the privacy spent."""
    if not module.config.causal:
        raise ValueError("dp.epsilon: DP-SGD trains the causal model (sasrec) only")
    users = len(seqs)
    steps_per_epoch = max(1, round(users / train.batch_size))
    mech = DPSGD(dp, users, train.batch_size, steps_per_epoch * train.epochs, n_users, train.seed)
    crop_rng = np.random.default_rng(train.seed + 1)

    def epoch_batches(epoch: int) -> list[np.ndarray]:
        return [mech.sample() for _ in range(steps_per_epoch)]

    def step(rows: np.ndarray) -> torch.Tensor:
        chunks = _chunks(windows(seqs.rows(rows), crop_rng), dp.chunk) if len(rows) else []
        s = clipped_sum(module, chunks, dp.max_grad_norm)
        mech.privatize(module, s.grads, s.users, s.clipped)
        return torch.tensor(s.loss / max(s.positions, 1))  # mean cross-entropy a target, for the record

    history = Trainer(train).fit(module, epoch_batches, step, None, progress=progress, own_grads=True)
    history.stopped += f"; DP-SGD: epsilon {mech.epsilon():.3f} spent of {dp.epsilon} (delta {mech.delta:.3g})"
    return history, mech.report()
