"""Knowledge distillation of a trained Transformer run into a smaller one (``shopformer
distil``).

The student is a plain SASRec trained for next-item prediction on the teacher's data,
with the loss (Hinton et al. 2015) at every position that has a target

    (1 - alpha) * CE(student, next item)
      + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

both softmaxes over the full catalog. The teacher's logits are computed on the fly from
its network (no grad) on the same windows the student reads; T^2 keeps the soft term's
gradients on the scale of the hard one's when T changes. ``alpha`` and ``T`` are chosen
on validation NDCG@10 from a small grid (``DistillGrid``); ``alpha = 0`` is the same
student trained without a teacher.

The training loop is the shared :class:`~shopformer.train.loop.Trainer` (AdamW, warm-up
and decay, early stopping on validation, best weights kept); the windows are the
student's own (``SASRecRecommender._windows``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from shopformer.features.sequences import Sequences
from shopformer.features.splits import EvalCases
from shopformer.models.sasrec import SASRec
from shopformer.models.sequential import SASRecRecommender, TransformerConfig
from shopformer.train.batches import LazyBatches, Windows, bucketed_batches
from shopformer.train.loop import Trainer, seed_everything


@dataclass(frozen=True)
class DistillConfig:
    """alpha: weight of the teacher's soft targets (0 = next-item cross-entropy alone, 1 =
    the teacher alone). temperature: T, both logits divided by it before the softmax."""

    alpha: float = 0.5
    temperature: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"distill alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ValueError(f"distill temperature must be > 0, got {self.temperature}")


@dataclass(frozen=True)
class DistillGrid:
    """The candidates tried on validation: every (alpha, temperature) pair."""

    alphas: tuple[float, ...] = (0.5, 0.9)
    temperatures: tuple[float, ...] = (1.0, 2.0)

    def candidates(self) -> list[DistillConfig]:
        return [DistillConfig(a, t) for a in self.alphas for t in self.temperatures]


def kd_loss(student: torch.Tensor, teacher: torch.Tensor | None, targets: torch.Tensor,
            config: DistillConfig) -> torch.Tensor:
    """student, teacher: (P, N) logits over the catalog; targets: (P,) column indexes.
    Mean over positions of (1 - a) CE + a T^2 KL(teacher_T || student_T)."""
    ce = F.cross_entropy(student, targets)
    if config.alpha == 0.0:
        return ce
    if teacher is None:
        raise ValueError("alpha > 0 needs the teacher's logits")
    t = config.temperature
    kl = F.kl_div(F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1),
                  log_target=True, reduction="batchmean")
    return (1.0 - config.alpha) * ce + config.alpha * t * t * kl


def check_pair(teacher: SASRecRecommender, student_config: TransformerConfig) -> None:
    """What this distillation supports, with the reason for what it does not."""
    t, s = teacher.config, student_config
    problems = []
    if not (t.arch.causal and s.arch.causal):
        problems.append("both models must be causal (sasrec): the loss is next-item at every position")
    if teacher.content is not None or s.arch.content_tokens or s.arch.content_dim:
        problems.append("teachers with product content are not distilled yet (ID-only models)")
    if s.members != 1:
        problems.append("the student is one network (members=1)")
    if s.arch.max_len > t.arch.max_len:
        problems.append(f"the student reads at most the teacher's {t.arch.max_len} positions (arch.max_len)")
    for name in ("event_types", "time_gap_buckets", "time_context"):
        if getattr(s.arch, name) != getattr(t.arch, name):
            problems.append(f"arch.{name} must be the teacher's ({getattr(t.arch, name)}): both read the same windows")
    if s.dp.enabled or s.contrastive.enabled or s.pretrain.epochs:
        problems.append("DP-SGD and self-supervision are options of `shopformer train`, not of distillation")
    if s.train.crop not in ("random", "last"):
        problems.append("train.crop must be random or last")
    if problems:
        raise ValueError("cannot distil: " + "; ".join(problems))


def _tensors(w: Windows) -> tuple[torch.Tensor | None, ...]:
    return tuple(None if a is None else torch.from_numpy(np.ascontiguousarray(a)) for a in (w.items, w.types, w.gaps))


def distil(teacher: SASRecRecommender, student: SASRecRecommender, train: Sequences, n_items: int,
           valid: EvalCases | None, config: DistillConfig) -> SASRecRecommender:
    """Train ``student`` (its config; its network is built here) from ``train`` with the
    teacher's soft targets; returns it fitted, best validation weights kept."""
    check_pair(teacher, student.config)
    c = student.config
    seed_everything(c.train.seed)
    arch = replace(c.arch, n_items=n_items)
    student.config = replace(c, arch=arch)
    module = student.module = SASRec(arch)
    student._table = None
    teacher_net = teacher.module.eval()
    with torch.no_grad():  # the teacher's items never change: one output table for the run
        teacher_table = teacher.item_representations()
        teacher_items = teacher_net.item_table(teacher_table)[1:]  # (N, Dt)
    rng = np.random.default_rng(c.train.seed)
    rows = np.flatnonzero(train.lengths >= 2)  # a row needs an input and a target
    length = arch.max_len + 1
    window_lengths = np.minimum(train.lengths[rows], length)
    crop_rng = rng if c.train.crop == "random" else None

    def epoch_batches(epoch: int) -> LazyBatches:
        groups = bucketed_batches(window_lengths, c.train.batch_size, rng)
        return LazyBatches(groups, lambda g: student._windows(train.rows(rows[g]), length, crop_rng).trim())

    def step(batch: Windows) -> torch.Tensor:
        # position t reads events <= t and predicts event t + 1; both models read the same inputs
        inputs, targets = batch.columns(slice(None, -1)), batch.items[:, 1:]
        y = torch.from_numpy(targets)
        keep = y > 0
        x = _tensors(inputs)
        table = module.item_representations()  # (N + 2, D)
        h = module(*x, table=table)[keep]  # (P, D)
        logits = h @ module.item_table(table)[1:].T  # (P, N): items 1..N, padding left out
        soft = None
        if config.alpha > 0:
            with torch.no_grad():
                soft = teacher_net(*x, table=teacher_table)[keep] @ teacher_items.T  # (P, N)
        return kd_loss(logits, soft, y[keep] - 1, config)

    def validate() -> float:
        return student._validate(valid, n_items)

    t0 = time.perf_counter()
    student.history = Trainer(c.train).fit(module, epoch_batches, step, validate if valid is not None else None)
    student._table = None  # the best weights were restored
    student.training_setup = {"device": "cpu", "processes": 1, "precision": "float32",
                              "distill": {"alpha": config.alpha, "temperature": config.temperature,
                                          "seconds": round(time.perf_counter() - t0, 3)}}
    return student


def choose(teacher: SASRecRecommender, student_config: TransformerConfig, train: Sequences, n_items: int,
           valid: EvalCases | None, candidates: list[DistillConfig],
           say=lambda message: None) -> tuple[SASRecRecommender, DistillConfig, list[dict]]:  # noqa: ANN001
    """Distil one student per candidate; keep the best validation NDCG@10. Returns the
    student, its config and every candidate's score (validation only: test is never read)."""
    if not candidates:
        raise ValueError("no distillation candidates")
    if len(candidates) > 1 and valid is None:
        raise ValueError("choosing alpha and temperature needs validation data (a teacher trained with fit_on=train)")
    best, scores = None, []
    for cand in candidates:
        student = distil(teacher, SASRecRecommender(student_config), train, n_items, valid, cand)
        score = student.history.best_valid if valid is not None else float("nan")
        scores.append({"alpha": cand.alpha, "temperature": cand.temperature, "valid_NDCG@10": score,
                       "epochs": len(student.history.records), "stopped": student.history.stopped})
        say(f"alpha {cand.alpha:g}, T {cand.temperature:g}: valid NDCG@10 {score:.4f}")
        if best is None or score > best[0]:
            best = score, student, cand
    return best[1], best[2], scores
