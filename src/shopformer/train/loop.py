"""The training loop shared by the sequence models: AdamW, warm-up + decay, early
stopping on a validation metric, fixed seeds, Rich progress, a training curve."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from shopformer.train.device import autocast
from shopformer.train.distributed import Ranks


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation.

    loss: "ce" full softmax over the catalog; "sampled" sampled softmax with logQ
        correction (popularity^0.75 proposal); "gbce" generalised BCE.
    crop: "random" trains on a random window of histories longer than max_len each
        epoch; "last" always on the latest window (the classic SASRec recipe); "all"
        on every window (consecutive, from the end), so long histories weigh by length.
    patience: evaluations without a better validation score before stopping.
    time_limit_s: stop (keeping the best weights) after this much wall time; the
        learning-rate decay then runs to the limit or the last epoch, whichever is first.
    weight_decay: AdamW's decoupled decay of the weight matrices (never biases or
        LayerNorms); embeddings too when ``decay_embeddings`` (a regulariser for large
        item tables over sparse data).
    device: where the sequence models train: "auto" (CUDA when available, else CPU),
        "cpu", "cuda" or "cuda:N" (``train/device.py``); the trained weights are moved
        back to the CPU, so a run folder loads anywhere. Under ``torchrun`` each process
        takes the GPU of its local rank (``train/distributed.py``).
    mixed_precision: on CUDA, autocast to bfloat16 (float16 with loss scaling on GPUs
        without bfloat16); the loss stays float32. Never on CPU.
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    decay_embeddings: bool = False
    warmup_steps: int = 100
    decay: Literal["cosine", "linear", "none"] = "cosine"
    grad_clip: float = 1.0
    loss: Literal["ce", "sampled", "gbce"] = "ce"
    n_negatives: int = 256
    gbce_t: float = 0.75
    cloze_prob: float = 0.2
    crop: Literal["random", "last", "all"] = "random"
    patience: int = 10
    eval_every: int = 1
    time_limit_s: float = 0.0
    seed: int = 42
    threads: int = 0  # 0 = PyTorch's default (all cores)
    device: str = "auto"
    mixed_precision: bool = True


@dataclass
class EpochRecord:
    epoch: int
    step: int
    seconds: float  # training wall time so far (evaluation excluded)
    wall_seconds: float  # including evaluation
    loss: float
    valid: float | None


@dataclass
class TrainHistory:
    records: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: float = -math.inf
    stopped: str = ""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, config: TrainConfig, elapsed_s: float = 0.0) -> float:
    """Warm-up, then decay over the planned steps; with a time limit the decay also
    follows the clock, so a run cut by the limit still ends at a low learning rate."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.decay == "none" or total <= config.warmup_steps:
        return 1.0
    progress = min(1.0, (step - config.warmup_steps) / (total - config.warmup_steps))
    if config.time_limit_s:
        progress = max(progress, min(1.0, elapsed_s / config.time_limit_s))
    if config.decay == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


#: the caller's (bar, task) that Trainer.fit draws on instead of its own (see progress_into)
_CALLER_BAR: ContextVar[tuple[Progress, TaskID] | None] = ContextVar("shopformer_train_bar", default=None)


@contextmanager
def progress_into(bar: Progress, task: TaskID) -> Iterator[None]:
    """Inside this block :meth:`Trainer.fit` draws on ``task`` of the caller's ``bar``
    (one named bar per model, as ``shopformer demo`` shows them) instead of its own bar
    and its one line per evaluation: the task's total becomes the planned epochs,
    ``completed`` the epochs done (fractions within an epoch), and its ``status`` field a
    short text (epoch, loss, the best validation NDCG@10 so far and its epoch; at the end
    how many epochs ran and why training stopped)."""
    token = _CALLER_BAR.set((bar, task))
    try:
        yield
    finally:
        _CALLER_BAR.reset(token)


def _best(history: "TrainHistory") -> str:
    """The best validation so far, for a caller's bar; "" before the first evaluation."""
    return f"best {history.best_valid:.4f} (epoch {history.best_epoch})" if history.best_epoch else ""


class Trainer:
    """Runs epochs of ``step_fn`` over batches from ``epoch_batches`` and keeps the module
    weights that scored best on ``validate``."""

    def __init__(self, config: TrainConfig):
        self.config = config

    def fit(
        self,
        module: torch.nn.Module,
        epoch_batches: Callable[[int], list],
        step_fn: Callable[[object], torch.Tensor],
        validate: Callable[[], float] | None,
        progress: bool = True,
        own_grads: bool = False,
        ranks: Ranks | None = None,
        precision: torch.dtype | None = None,
    ) -> TrainHistory:
        """own_grads: ``step_fn`` sets every parameter's ``.grad`` itself (DP-SGD: clipped
        per-user gradients plus noise, ``train/private.py``) and returns the loss for the
        record; the trainer then runs no backward and no clipping of its own.

        ranks: this process among several (``train/distributed.py``): ``step_fn`` then
        trains through the DDP wrapper on its shard and returns its weighted loss; only
        rank 0 calls ``validate`` and draws progress, and every rank follows its scores
        and stop decisions. precision: the autocast dtype (``train/device.py``) on
        ``ranks.device``; float16 scales the loss."""
        c = self.config
        ranks = ranks or Ranks()
        progress = progress and ranks.main
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range
        scaler = torch.amp.GradScaler(ranks.device.type, enabled=precision == torch.float16)
        if c.threads:
            torch.set_num_threads(c.threads)
        decay, no_decay = [], []
        for name, p in module.named_parameters():
            (no_decay if p.ndim < 2 or ("emb" in name and not c.decay_embeddings) else decay).append(p)
        # The fused kernel updates every parameter in one pass: on CPU about 5x faster
        # than the per-tensor loop, a sixth of a small-batch step at d_model 256.
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": c.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=c.lr, fused=True,
        )
        history = TrainHistory()
        best_state = copy.deepcopy(module.state_dict())
        step, train_seconds, bad_evals = 0, 0.0, 0
        t_start = time.perf_counter()
        total_steps = None
        columns = (
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} batches"),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:.1f} it/s"),
            TextColumn("val {task.fields[val]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        caller = _CALLER_BAR.get() if progress else None  # the caller's named bar, if any
        with Progress(*columns, disable=not progress or caller is not None) as bar:
            task = bar.add_task("train", total=0, epoch=0, loss=0.0, rate=0.0, val="-")
            for epoch in range(1, c.epochs + 1):
                batches = epoch_batches(epoch)
                if total_steps is None:
                    total_steps = len(batches) * c.epochs
                bar.update(task, total=len(batches), completed=0, epoch=epoch)
                module.train()
                t0 = time.perf_counter()
                losses = []
                for i, batch in enumerate(batches):
                    elapsed = time.perf_counter() - t_start
                    if c.time_limit_s and ranks.distributed:  # one clock, so one learning rate
                        elapsed = ranks.broadcast([elapsed])[0]
                    for group in opt.param_groups:
                        group["lr"] = c.lr * lr_factor(step, total_steps, c, elapsed)
                    opt.zero_grad(set_to_none=True)
                    with autocast(ranks.device, precision):
                        loss = step_fn(batch)
                    if own_grads:
                        opt.step()
                    else:
                        scaler.scale(loss).backward()
                        if c.grad_clip:
                            scaler.unscale_(opt)
                            torch.nn.utils.clip_grad_norm_(module.parameters(), c.grad_clip)
                        scaler.step(opt)
                        scaler.update()
                    step += 1
                    losses.append(loss.item())
                    rate = (i + 1) / (time.perf_counter() - t0)
                    bar.update(task, advance=1, loss=float(np.mean(losses[-50:])), rate=rate)
                    if caller is not None:
                        caller[0].update(caller[1], total=c.epochs, completed=epoch - 1 + (i + 1) / len(batches),
                                         status=f"epoch {epoch}/{c.epochs}, loss {np.mean(losses[-50:]):.3f}"
                                         + (f", {_best(history)}" if history.best_epoch else ""))
                train_seconds += time.perf_counter() - t0
                # the ranks' weighted losses sum to the global batch's mean loss
                epoch_loss = ranks.sum(float(np.mean(losses))) / ranks.world_size
                val = None
                evaluate = validate is not None and (epoch % c.eval_every == 0 or epoch == c.epochs)
                if evaluate and ranks.main:
                    module.eval()
                    val = float(validate())
                out_of_time = bool(c.time_limit_s) and time.perf_counter() - t_start >= c.time_limit_s
                if ranks.distributed:  # rank 0 decides for everyone, so all stop at the same step
                    val, out_of_time = ranks.broadcast([math.nan if val is None else val, float(out_of_time)])
                    val, out_of_time = (val if evaluate else None), bool(out_of_time)
                if val is not None:
                    bar.update(task, val=f"{val:.4f}")
                    if val > history.best_valid:
                        history.best_valid, history.best_epoch, bad_evals = val, epoch, 0
                        best_state = copy.deepcopy(module.state_dict())
                    else:
                        bad_evals += 1
                rec = EpochRecord(epoch, step, round(train_seconds, 3),
                                  round(time.perf_counter() - t_start, 3), epoch_loss, val)
                history.records.append(rec)
                if progress and caller is None and (val is not None or not bar.console.is_terminal):
                    # one line per evaluation (every epoch when no live bar can be drawn)
                    bar.console.print(
                        f"epoch {epoch}: loss {rec.loss:.4f}"
                        + (f", valid NDCG@10 {val:.4f}" if val is not None else "")
                        + f", {rec.wall_seconds:.0f} s"
                    )
                if validate is not None and bad_evals >= c.patience:
                    history.stopped = f"early stop: no better validation for {c.patience} evaluations"
                    break
                if out_of_time:
                    history.stopped = f"time limit {c.time_limit_s:.0f} s"
                    break
            else:
                history.stopped = "epochs done"
            if caller is not None:
                why = {"early": ", early stop", "time ": ", time limit"}.get(history.stopped[:5], "")
                caller[0].update(caller[1], total=c.epochs, completed=c.epochs,
                                 status=f"{len(history.records)} epochs{why}"
                                 + (f"; {_best(history)}" if history.best_epoch else ""))
        if validate is not None:
            module.load_state_dict(best_state)
        else:
            history.best_epoch = history.records[-1].epoch if history.records else 0
        module.eval()
        return history


def plot_history(history: TrainHistory, path, title: str = "training") -> None:
    """Loss and validation metric against training wall time, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = history.records
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot([r.wall_seconds / 60 for r in recs], [r.loss for r in recs], color="tab:blue", label="train loss")
    ax1.set_xlabel("wall time (min)")
    ax1.set_ylabel("train loss", color="tab:blue")
    val = [(r.wall_seconds / 60, r.valid) for r in recs if r.valid is not None]
    if val:
        ax2 = ax1.twinx()
        ax2.plot(*zip(*val), color="tab:red", marker=".", label="valid NDCG@10")
        ax2.set_ylabel("validation NDCG@10", color="tab:red")
    ax1.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
